"""Google Cloud Vertex AI: Gemini and Claude models, translated with the Gemini and Anthropic
providers' own translations.

A configured ``type: vertex`` provider serves both publishers: ``vertex/gemini-2.5-flash`` (or
``vertex/google/gemini-2.5-flash``) goes to Google's ``generateContent``/
``streamGenerateContent?alt=sse``, ``vertex/claude-sonnet-4-5@20250929`` (or
``vertex/anthropic/...``) to Anthropic's ``rawPredict``/``streamRawPredict``; embeddings use
Vertex's ``:embedContent`` or ``:predict`` (:mod:`.embed`). Requests carry a Google OAuth
bearer token (``providers._google_auth``: a service-account key from ``credentials``, else
Application Default Credentials). The project is ``project``, else the credentials'; the
location ``region`` (default ``us-central1``; ``global``, ``us`` and ``eu`` too). ``/v1/models``
lists the configured ``models``; input tokens are counted by ``countTokens`` (Gemini) or
``count-tokens:rawPredict`` (Claude). Vertex's publisher-model list is another API (Model Garden,
``v1beta1``) and is not read.

- :mod:`.translate`: routing, URLs and what Vertex changes in the bodies (pure);
- :mod:`.embed`, :mod:`.errors`, :mod:`.wire`: embeddings, error shapes, Vertex-only types;
- :mod:`.access`, :mod:`.gemini`, :mod:`.claude`: the two sides of the provider.
"""

from __future__ import annotations

import re

from providers._google_auth import CREDENTIAL_FIELDS, GoogleToken, load_service_account
from providers._types import BuildContext, ProviderType, check_credentials
from providers._upstream import Upstream
from providers.base import Call, ModelInfo, Provider, Reply
from providers.vertex.access import Site
from providers.vertex.claude import VertexClaude
from providers.vertex.gemini import VertexGemini
from providers.vertex.translate import ANTHROPIC, default_root, route
from proxy.config import ConfigError, ProviderConfig

__all__ = ["DEFAULT_REGION", "TYPES", "VertexProvider", "VertexType"]

DEFAULT_REGION = "us-central1"
API_VERSIONS = ("v1", "v1beta1")
# A location names a host (``us-central1-aiplatform.googleapis.com``).
_LOCATION = re.compile(r"[a-z][a-z0-9-]{1,40}")
_BETA = "anthropic-beta"


class VertexProvider:
    """One Vertex AI provider: each request goes to the Gemini or the Claude side by the
    model's publisher."""

    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        upstream: Upstream,
        site: Site,
        *,
        proxy: str | None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.operations = frozenset({"chat_completion", "text_completion", "embedding"})
        self._google = VertexGemini(name, settings, upstream, site, proxy=proxy)
        self._anthropic = VertexClaude(name, settings, upstream, site, proxy=proxy)

    def _side(self, call: Call) -> VertexClaude | VertexGemini:
        model = call.target.model
        publisher, _ = route(self.settings.deployments.get(model, model))
        return self._anthropic if publisher == ANTHROPIC else self._google

    async def send(self, call: Call) -> Reply:
        return await self._side(call).send(call)

    async def count_tokens(self, call: Call) -> int:
        return await self._side(call).count_tokens(call)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, owned_by=self.name) for m in self.settings.models]

    async def aclose(self) -> None:
        return None


class VertexType:
    """``type: vertex``: Google credentials (never API keys), a location, a project."""

    key_env: str | None = None
    base_url_env: str | None = None

    def check(self, name: str, settings: ProviderConfig) -> None:
        at = f"at $.providers.{name}"
        if settings.keys is not None:
            raise ConfigError(
                f"{at}.keys: Vertex AI takes Google credentials, not API keys: set "
                "credentials.service_account_file or credentials.service_account_json, or "
                "leave both out for Application Default Credentials"
            )
        check_credentials(name, settings, CREDENTIAL_FIELDS)
        if len(settings.credentials) > 1:
            raise ConfigError(
                f"{at}.credentials: give service_account_file or service_account_json, not both"
            )
        if settings.region is not None and not _LOCATION.fullmatch(settings.region):
            raise ConfigError(
                f"{at}.region: expected a Vertex AI location such as `us-central1` or `global`"
            )
        if settings.api_version is not None and settings.api_version not in API_VERSIONS:
            raise ConfigError(f"{at}.api_version: one of {', '.join(API_VERSIONS)}")
        load_service_account(settings.credentials, where=f"$.providers.{name}")

    def create(self, name: str, settings: ProviderConfig, ctx: BuildContext) -> Provider | str:
        empty = [f for f, v in settings.credentials.items() if not v]
        if empty:
            return f"its credentials.{empty[0]} is empty (is its variable set?)"
        info = load_service_account(settings.credentials, where=f"$.providers.{name}")
        token = GoogleToken(info)
        if info is not None and not (settings.project or token.project):
            return f"its service-account key names no project (set providers.{name}.project)"
        location = settings.region or DEFAULT_REGION
        root = (settings.base_url or default_root(location)).rstrip("/")
        headers = {k: v for k, v in settings.headers.items() if k.lower() != _BETA}
        site = Site(
            provider=name,
            root=root,
            version=settings.api_version or API_VERSIONS[0],
            location=location,
            project=settings.project,
            token=token,
            headers={**headers, "Content-Type": "application/json"},
        )
        return VertexProvider(name, settings, ctx.upstream, site, proxy=ctx.proxy_for(root))


TYPES: dict[str, ProviderType] = {"vertex": VertexType()}
