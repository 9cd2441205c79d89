"""Where Vertex AI is and who calls it, shared by the Gemini and Claude sides of the provider."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from providers._google_auth import GoogleCredentialsError, GoogleToken
from providers._translated import Prepared, TranslatingProvider
from providers._upstream import Attempt
from providers.vertex.errors import map_error
from providers.vertex.translate import model_url, route
from proxy.errors import UpstreamError

__all__ = ["OnVertex", "Site"]


class Site:
    """The API root and version, the location, the project and the OAuth token of one
    provider; ``headers`` are the configured extra headers with the content type."""

    __slots__ = ("headers", "location", "project", "provider", "root", "token", "version")

    def __init__(
        self,
        *,
        provider: str,
        root: str,
        version: str,
        location: str,
        project: str | None,
        token: GoogleToken,
        headers: Mapping[str, str],
    ) -> None:
        self.provider = provider
        self.root = root
        self.version = version
        self.location = location
        self.project = project
        self.token = token
        self.headers = dict(headers)

    def project_id(self) -> str:
        """The configured project, else the credentials' (known once a token was fetched)."""
        project = self.project or self.token.project
        if not project:
            raise GoogleCredentialsError(
                f"Provider `{self.provider}` needs a Google Cloud project: set "
                f"providers.{self.provider}.project (the credentials name none)."
            )
        return project

    def url(self, publisher: str, model: str, method: str) -> str:
        return model_url(
            self.root,
            self.version,
            project=self.project_id(),
            location=self.location,
            publisher=publisher,
            model=model,
            method=method,
        )

    async def auth_headers(self) -> dict[str, str]:
        return {**self.headers, "Authorization": await self.token.authorization()}


class OnVertex(TranslatingProvider):
    """What the Gemini and Claude providers do alike on Vertex AI: model ids without their
    publisher prefix, Vertex's error shapes, and a token the API refused dropped."""

    site: Site

    def upstream_model(self, model: str) -> str:
        return route(super().upstream_model(model))[1]

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return map_error(status, body, headers, provider=self.name, scrub=self.scrub)

    async def open(self, prepared: Prepared, timeout: Attempt) -> aiohttp.ClientResponse:
        try:
            return await super().open(prepared, timeout)
        except UpstreamError as exc:
            if exc.status == 401:
                # Revoked or expired early: the next request gets a new token, not this one
                # until its announced expiry.
                self.site.token.discard(prepared.headers.get("Authorization", ""))
            raise
