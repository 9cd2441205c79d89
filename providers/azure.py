"""Azure OpenAI: OpenAI's wire format at Azure's URLs, with Azure's auth and content filter.

Two ways to address a model (README, "Azure OpenAI"):

- **deployments** (``api_version`` a date such as ``2024-10-21``, the default):
  ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21``, the
  deployment being ``deployments.get(model, model)``;
- **v1** (``api_version: v1`` or ``preview``, or a ``base_url`` ending in ``/openai/v1``):
  ``{base_url}/openai/v1/chat/completions`` with the deployment as the body's ``model``.

The Responses API takes the deployment as the body's ``model`` in both styles:
``{base_url}/openai/v1/responses``, or ``{base_url}/openai/responses?api-version=...`` with a
dated version from ``2025-03-01-preview`` on (with an older one the gateway serves the Responses
API through chat, and counting input tokens natively is refused, naming the version).

Auth is an ``api-key`` header, or a Microsoft Entra ID bearer token: a static one
(``credentials.token``) or one fetched with the client-credentials grant and kept until shortly
before it expires (:class:`EntraToken`).

Azure's additions to OpenAI's shapes pass through: ``prompt_filter_results`` and each choice's
``content_filter_results``, ``finish_reason: content_filter``, and a prompt-filter 400's
``innererror``. Two stream quirks are smoothed: the prompt-annotation chunk that opens a stream
(``choices: []``) leaves together with the first model chunk, so the stream commits (and time to
first byte is measured) on the model's output rather than on the filter's verdict; and the
Asynchronous Filter's annotation-only choices, which have no ``delta``, get an empty one, so the
OpenAI SDK's ``choice.delta`` is never ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode

import aiohttp
import msgspec

from providers._forward import PASSTHROUGH
from providers._keys import KeyRing
from providers._openai_compat import ALL_OPERATIONS, INPUT_TOKENS, PATHS, CompatSpec, ParamRule
from providers._openai_responses import ResponsesProvider
from providers._types import BuildContext, ProviderType, check_credentials, resolve_keys
from providers._upstream import Attempt, StreamAttempt, Timeouts, Upstream
from providers.base import EventStream, ModelInfo, Provider
from proxy.config import ConfigError, KeyConfig, ProviderConfig
from proxy.errors import GatewayError, UnsupportedCapabilityError, UpstreamError
from proxy.redact import Redactor

__all__ = [
    "DEFAULT_API_VERSION",
    "RESPONSES_SINCE",
    "TYPES",
    "AzureOpenAIProvider",
    "EntraToken",
    "endpoint_of",
]

# The latest GA date of the deployments API (learn.microsoft.com, "API version lifecycle").
DEFAULT_API_VERSION = "2024-10-21"
# The first dated version with the Responses API, which is addressed without a deployment:
# ``/openai/responses?api-version=...`` ("Azure OpenAI Responses API", API support).
RESPONSES_SINCE = "2025-03-01-preview"
_RESPONSES_OPS = frozenset({"responses", INPUT_TOKENS})
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
KEY_ENV = "AZURE_OPENAI_API_KEY"
ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
_CLIENT_FIELDS = ("tenant_id", "client_id", "client_secret")
_CREDENTIALS = (*_CLIENT_FIELDS, "authority", "scope", "token")
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
# A token is renewed when this much of its life is left (azure-identity renews 5 minutes ahead),
# or at half its life when it lives shorter than twice that.
_REFRESH_AHEAD_S = 300.0
# After a failed renewal the still-valid token serves this long before the next attempt.
_RETRY_AFTER_FAILURE_S = 30.0


class Endpoint(msgspec.Struct, frozen=True):
    """Where and how requests go: the resource root and the API style."""

    root: str  # https://<resource>.openai.azure.com, without /openai
    v1: bool
    api_version: str | None  # the ``api-version`` query value; None: v1 without one


def endpoint_of(base_url: str, api_version: str | None) -> Endpoint:
    """The endpoint a provider's ``base_url`` and ``api_version`` describe; ``ValueError`` says
    what is wrong with them."""
    root = base_url.rstrip("/")
    v1_url = root.endswith("/openai/v1")
    root = root.removesuffix("/v1") if v1_url else root
    root = root.removesuffix("/openai")
    if api_version in ("v1", "preview") or (api_version is None and v1_url):
        # The v1 API needs no api-version; ``preview`` opts into its preview features.
        return Endpoint(root, v1=True, api_version="preview" if api_version == "preview" else None)
    version = api_version or DEFAULT_API_VERSION
    if not _DATED.fullmatch(version):
        raise ValueError(
            f"expected `v1`, `preview`, or a dated version such as `{DEFAULT_API_VERSION}` "
            f"or `2025-04-01-preview`, got `{version}`"
        )
    if v1_url:
        raise ValueError(
            f"`{version}` is a version of the deployments API, but base_url ends in /openai/v1 "
            "(the v1 API): give the resource endpoint, or set api_version: v1"
        )
    return Endpoint(root, v1=False, api_version=version)


# --- what each API version accepts ------------------------------------------------------------

# Not in any dated version's request schema, and no instruction for the model.
_NOT_IN_DATED = frozenset({"prompt_cache_key", "safety_identifier", "service_tier"})


def _spec(endpoint: Endpoint) -> CompatSpec:
    """The request adjustments of an API version, from Azure's API changelog (learn.microsoft.com,
    "API version lifecycle"): a dated version rejects arguments added after it ("Unrecognized
    request argument supplied"); the v1 API follows OpenAI's."""
    if endpoint.v1:
        # The v1 GA API serves chat, embeddings and responses; audio is in its preview only.
        ops = {"chat_completion", "embedding", "responses"}
        if endpoint.api_version == "preview":
            ops |= {"speech", "transcription"}
        return CompatSpec(base_url=None, auth="api-key", operations=frozenset({*ops, PASSTHROUGH}))
    date = (endpoint.api_version or DEFAULT_API_VERSION)[:10]
    drop = set(_NOT_IN_DATED)
    rejected: list[ParamRule] = []
    renames: tuple[tuple[str, str], ...] = ()
    if date < "2025-01-01":
        drop.add("prediction")  # 2025-01-01-preview; only speeds the answer up
    if date < "2024-12-01":
        drop |= {"store", "metadata"}  # 2024-12-01-preview, stored completions
        rejected.append(_since("reasoning_effort", "2024-12-01-preview"))
    if date < "2024-09-01":
        # 2024-09-01-preview added stream_options, max_completion_tokens, parallel_tool_calls.
        renames = (("max_completion_tokens", "max_tokens"),)
        drop.add("parallel_tool_calls")
        rejected.append(
            ParamRule(
                "parallel_tool_calls",
                "turning parallel calls off needs api_version 2024-09-01-preview or later, or v1.",
                frozenset({b"null", b"true"}),
            )
        )
    return CompatSpec(
        base_url=None,
        auth="api-key",
        # Before RESPONSES_SINCE, Azure has no Responses API: the gateway serves it through chat.
        operations=ALL_OPERATIONS
        | {PASSTHROUGH}
        | ({"responses"} if date >= RESPONSES_SINCE[:10] else set()),
        drop_params=frozenset(drop),
        renames=renames,
        rejected=tuple(rejected),
        stream_options=date >= "2024-09-01",
    )


def _since(param: str, version: str) -> ParamRule:
    return ParamRule(param, f"it needs api_version {version} or later, or v1.")


# --- Entra ID tokens ----------------------------------------------------------------------------


class _TokenReply(msgspec.Struct):
    access_token: str
    # Seconds; some token endpoints send it as a string.
    expires_in: int | str = 3599


class _TokenFailure(msgspec.Struct):
    error: str = ""
    error_description: str = ""


_token_reply = msgspec.json.Decoder(_TokenReply).decode
_token_failure = msgspec.json.Decoder(_TokenFailure).decode


class EntraToken:
    """A Microsoft Entra ID access token from the OAuth 2.0 client-credentials grant.

    Fetched on first use over the gateway's own session, reused until shortly before it expires,
    then renewed by one request while the others wait for it (a lock, checked twice). A renewal
    that fails while the old token is still valid keeps serving the old one for a while.
    """

    __slots__ = (
        "_expires_at",
        "_form",
        "_lock",
        "_provider",
        "_proxy",
        "_refresh_at",
        "_scrub",
        "_timeout",
        "_token",
        "_upstream",
        "_url",
    )

    def __init__(
        self,
        upstream: Upstream,
        *,
        provider: str,
        credentials: Mapping[str, str],
        timeout: Attempt,
        proxy: str | None,
    ) -> None:
        authority = (credentials.get("authority") or ENTRA_AUTHORITY).rstrip("/")
        tenant = quote(credentials["tenant_id"], safe="")
        self._url = f"{authority}/{tenant}/oauth2/v2.0/token"
        self._form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
                "scope": credentials.get("scope") or ENTRA_SCOPE,
            }
        ).encode()
        self._upstream = upstream
        self._provider = provider
        self._timeout = timeout
        self._proxy = proxy
        self._scrub = Redactor([credentials["client_secret"]])
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0

    async def get(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < self._refresh_at:
            return token
        async with self._lock:
            now = time.monotonic()
            token = self._token
            if token is not None and now < self._refresh_at:
                return token  # renewed while this request waited
            try:
                fresh, lifetime = await self._fetch()
            except GatewayError:
                if token is not None and now < self._expires_at:
                    self._refresh_at = now + _RETRY_AFTER_FAILURE_S
                    return token
                raise
            self._token = fresh
            self._expires_at = now + lifetime
            self._refresh_at = now + max(lifetime - _REFRESH_AHEAD_S, lifetime / 2)
            return fresh

    def discard(self, token: str) -> None:
        """Forget a token the API refused (revoked, or expired early): the next use fetches."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        resp = await self._upstream.open(
            "POST",
            self._url,
            provider=self._provider,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            timeout=self._timeout,
            data=self._form,
            proxy=self._proxy,
        )
        try:
            body = await Upstream.read(resp, self._provider, self._timeout)
        finally:
            resp.release()
        if resp.status != 200:
            raise self._failure(resp.status, body)
        try:
            reply = _token_reply(body)
            lifetime = float(reply.expires_in)
        except (msgspec.DecodeError, ValueError):
            raise UpstreamError(
                f"{self._provider}: the Entra ID token endpoint answered without a token.",
                status=502,
                provider=self._provider,
            ) from None
        return reply.access_token, lifetime

    def _failure(self, status: int, body: bytes) -> UpstreamError:
        try:
            failure = _token_failure(body)
        except msgspec.DecodeError:
            failure = _TokenFailure()
        # "AADSTS7000215: Invalid client secret provided. ...\r\nTrace ID: ..." - the first line.
        detail = self._scrub(failure.error_description.split("\r\n")[0].strip())
        detail = detail or f"HTTP {status}"
        if status == 429 or status >= 500:
            return UpstreamError(
                f"{self._provider}: the Entra ID token endpoint failed: {detail}",
                status=status,
                provider=self._provider,
                code=failure.error or None,
            )
        # The token endpoint's 400/401 is about the gateway's credentials, not the caller's
        # request: the caller sees what a refused API key looks like.
        return UpstreamError(
            f"{self._provider}: Entra ID refused the client credentials "
            f"({failure.error or 'error'}): {detail}",
            status=401,
            provider=self._provider,
            type="authentication_error",
            code=failure.error or None,
        )


# --- the provider -------------------------------------------------------------------------------


class _Choices(msgspec.Struct):
    choices: list[msgspec.Raw] = []


class _AzureModel(msgspec.Struct):
    id: str
    # Azure's model objects have ``created_at``; OpenAI's shape says ``created``.
    created_at: int | None = 0
    created: int | None = 0


class _AzureModelList(msgspec.Struct):
    data: list[_AzureModel]


_choices = msgspec.json.Decoder(_Choices).decode
_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_raw_objects = msgspec.json.Decoder(list[dict[str, msgspec.Raw]]).decode
_model_list = msgspec.json.Decoder(_AzureModelList).decode
_encode = msgspec.json.Encoder().encode
_EMPTY_DELTA = msgspec.Raw(b"{}")


class AzureOpenAIProvider(ResponsesProvider):
    """Azure OpenAI over the OpenAI wire format (module docstring)."""

    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        endpoint: Endpoint,
        upstream: Upstream,
        keys: KeyRing,
        *,
        auth: Literal["api-key", "bearer"] = "api-key",
        entra: EntraToken | None = None,
        proxy: str | None = None,
    ) -> None:
        # ``bearer``: the keys are static Entra ID tokens.
        spec = msgspec.structs.replace(_spec(endpoint), auth=auth)
        api_root = endpoint.root + ("/openai/v1" if endpoint.v1 else "/openai")
        super().__init__(
            name,
            spec,
            msgspec.structs.replace(settings, base_url=api_root),
            upstream,
            keys,
            proxy=proxy,
        )
        self._endpoint = endpoint
        self._entra = entra
        self._deployments = settings.deployments
        self._query = f"?api-version={endpoint.api_version}" if endpoint.api_version else ""
        self._urls = {op: url + self._query for op, url in self._urls.items()}
        self._deployment_urls: dict[tuple[str, str], str] = {}

    def _route(self, op: str, model: str) -> tuple[str, str]:
        deployment = self._deployments.get(model, model)
        if self._endpoint.v1:
            return deployment, self._urls[op]
        if op in _RESPONSES_OPS:
            version = self._endpoint.api_version or DEFAULT_API_VERSION
            if version[:10] < RESPONSES_SINCE[:10]:
                raise UnsupportedCapabilityError(
                    self.name,
                    f"the Responses API with api_version `{version}`: it needs "
                    f"`{RESPONSES_SINCE}` or later, or `v1`",
                )
            # The deployment goes in the body's ``model``, as with the v1 API.
            return deployment, self._urls[op]
        url = self._deployment_urls.get((deployment, op))
        if url is None:
            url = f"{self._base}/deployments/{quote(deployment, safe='')}{PATHS[op]}{self._query}"
            if len(self._deployment_urls) < 4096:
                self._deployment_urls[deployment, op] = url
        return deployment, url

    def forward_url(self, path: str, query: str) -> str:
        """With a dated API version, the request names it (``api-version``) unless the client
        did: Azure's dated API serves files, batches and fine-tuning at
        ``{endpoint}/openai/{path}?api-version=...``."""
        url = super().forward_url(path, query)
        if self._endpoint.v1 or "api-version=" in query:
            return url
        version = self._endpoint.api_version or DEFAULT_API_VERSION
        return f"{url}{'&' if query else '?'}api-version={version}"

    async def _open(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeout: Attempt,
        data: Any = None,
    ) -> aiohttp.ClientResponse:
        entra = self._entra
        if entra is None:
            return await super()._open(method, url, headers, timeout, data)
        token = await entra.get()
        try:
            return await super()._open(
                method, url, {**headers, "Authorization": f"Bearer {token}"}, timeout, data
            )
        except UpstreamError as exc:
            if exc.status == 401:
                entra.discard(token)
            raise

    async def list_models(self) -> list[ModelInfo]:
        """The configured models and deployment names; with the v1 API also the resource's own
        list (base and fine-tuned models). The deployments API has no list of deployments that
        an API key may read."""
        names = dict.fromkeys((*self._configured_models, *self._deployments))
        listed = [ModelInfo(id=m, owned_by=self.name) for m in names]
        if not self._endpoint.v1:
            return listed
        headers = self._headers[self._keys.any_key() or 0]
        url = self._base + "/models" + self._query
        timeout = self._timeouts.json()
        resp = await self._open("GET", url, headers, timeout)
        try:
            data = await Upstream.read(resp, self.name, timeout)
        finally:
            resp.release()
        try:
            entries = _model_list(data).data
        except msgspec.DecodeError as exc:
            raise self._not_json("model list") from exc
        listed.extend(
            ModelInfo(id=e.id, created=e.created or e.created_at or 0, owned_by=self.name)
            for e in entries
            if e.id not in names
        )
        return listed

    async def _events(
        self,
        resp: aiohttp.ClientResponse,
        stream: EventStream,
        guard: StreamAttempt,
        *,
        forced: bool,
    ) -> AsyncGenerator[list[bytes], None]:
        held: list[bytes] = []
        first = True
        events = super()._events(resp, stream, guard, forced=forced)
        async with contextlib.aclosing(events) as batches:
            async for batch in batches:
                if first:
                    first = False
                    if all(_prompt_annotation(data) for data in batch):
                        held = batch
                        continue
                if any(b'"content_filter_offsets"' in data for data in batch):
                    batch = [_with_delta(data) for data in batch]
                if held:
                    batch, held = held + batch, []
                yield batch
        if held:
            yield held


def _prompt_annotation(data: bytes) -> bool:
    """The chunk that opens Azure's streams: the prompt's filter verdict, ``"choices": []``."""
    if b'"prompt_filter_results"' not in data and b'"prompt_annotations"' not in data:
        return False
    try:
        return not _choices(data).choices
    except msgspec.DecodeError:
        return False


def _with_delta(data: bytes) -> bytes:
    """An Asynchronous Filter annotation ("choices": [{"index", "finish_reason",
    "content_filter_results", "content_filter_offsets"}], no ``delta``) with ``"delta": {}``."""
    try:
        chunk = _raw_object(data)
        choices = _raw_objects(chunk["choices"])
    except (msgspec.DecodeError, KeyError):
        return data
    if all("delta" in choice for choice in choices):
        return data
    for choice in choices:
        choice.setdefault("delta", _EMPTY_DELTA)
    chunk["choices"] = msgspec.Raw(_encode(choices))
    return _encode(chunk)


# --- the provider type ----------------------------------------------------------------------------


class AzureType:
    """``type: azure``: checks the endpoint, API version and credentials, builds the provider."""

    # Keys come from the config or AZURE_OPENAI_API_KEY, but only the endpoint variable enables
    # Azure without a config: a key alone says nothing about where the resource is.
    key_env: str | None = None
    base_url_env: str | None = ENDPOINT_ENV

    def check(self, name: str, settings: ProviderConfig) -> None:
        at = f"at $.providers.{name}"
        if not settings.base_url:
            raise ConfigError(
                f"{at}.base_url: required: the resource endpoint, "
                "https://<resource>.openai.azure.com"
            )
        try:
            endpoint_of(settings.base_url, settings.api_version)
        except ValueError as exc:
            raise ConfigError(f"{at}.api_version: {exc}") from None
        creds = settings.credentials
        check_credentials(name, settings, _CREDENTIALS)
        if not creds:
            return
        if settings.keys is not None:
            raise ConfigError(f"{at}: give either keys (API keys) or credentials (Entra ID)")
        client = [f for f in _CLIENT_FIELDS if f in creds]
        if "token" in creds and (client or "authority" in creds or "scope" in creds):
            raise ConfigError(f"{at}.credentials: `token` is a bearer token on its own")
        if "token" not in creds and len(client) < len(_CLIENT_FIELDS):
            missing = ", ".join(f for f in _CLIENT_FIELDS if f not in creds)
            raise ConfigError(f"{at}.credentials: Entra ID client credentials need {missing}")
        authority = creds.get("authority")
        if authority and not re.match(r"https?://", authority):
            raise ConfigError(f"{at}.credentials.authority: expected an http:// or https:// URL")

    def create(self, name: str, settings: ProviderConfig, ctx: BuildContext) -> Provider | str:
        base = settings.base_url or ""
        endpoint = endpoint_of(base, settings.api_version)
        creds = settings.credentials

        def build(
            keys: KeyRing,
            auth: Literal["api-key", "bearer"] = "api-key",
            entra: EntraToken | None = None,
        ) -> AzureOpenAIProvider:
            return AzureOpenAIProvider(
                name,
                settings,
                endpoint,
                ctx.upstream,
                keys,
                auth=auth,
                entra=entra,
                proxy=ctx.proxy_for(base),
            )

        if "token" in creds:
            if not creds["token"]:
                return "its Entra ID token is empty"
            return build(KeyRing([KeyConfig(value=creds["token"])]), auth="bearer")
        if creds:
            empty = [f for f in _CLIENT_FIELDS if not creds[f]]
            if empty:
                return f"its Entra ID credentials are empty ({', '.join(empty)})"
            return build(KeyRing([]), entra=_entra(name, settings, ctx))
        keys = resolve_keys(name, settings, key_env=KEY_ENV, env=ctx.env)
        if isinstance(keys, str):
            return keys
        return build(KeyRing(keys))


def _entra(name: str, settings: ProviderConfig, ctx: BuildContext) -> EntraToken:
    creds = settings.credentials
    # A token is a small answer: a minute at most, whatever a model's answer may take.
    quick = msgspec.structs.replace(settings, timeout_s=min(settings.timeout_s, 60.0))
    timeout = Timeouts(name, quick).json()
    return EntraToken(
        ctx.upstream,
        provider=name,
        credentials=creds,
        timeout=timeout,
        proxy=ctx.proxy_for(creds.get("authority") or ENTRA_AUTHORITY),
    )


TYPES: dict[str, ProviderType] = {"azure": AzureType()}
