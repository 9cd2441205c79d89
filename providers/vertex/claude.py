"""Claude models on Vertex AI: the Anthropic provider with Vertex's URLs (``rawPredict``,
``streamRawPredict``, ``count-tokens:rawPredict``), OAuth token and body (see
:mod:`providers.vertex.translate`)."""

from __future__ import annotations

import asyncio
import base64

import msgspec

from providers._keys import KeyRing
from providers._translated import EmbeddingResult, Prepared
from providers._upstream import Upstream
from providers.anthropic import AnthropicProvider
from providers.vertex.access import OnVertex, Site
from providers.vertex.translate import (
    ANTHROPIC,
    claude_body,
    claude_count_body,
    image_urls,
    with_images,
)
from proxy.config import ProviderConfig
from proxy.errors import UnsupportedCapabilityError
from proxy.schemas.chat import ChatRequest
from proxy.schemas.embeddings import EmbeddingRequest

__all__ = ["VertexClaude"]

_encode = msgspec.json.Encoder().encode


class VertexClaude(OnVertex, AnthropicProvider):
    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        upstream: Upstream,
        site: Site,
        *,
        proxy: str | None = None,
    ) -> None:
        super().__init__(name, settings, upstream, KeyRing([]), proxy=proxy)
        self.site = site
        # The configured betas; a client's own are merged in by ``client_headers``.
        self._beta_header = {"anthropic-beta": self._betas} if self._betas else {}

    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared:
        body = claude_body(await self._inline_images(req), model, stream=stream, provider=self.name)
        headers = await self.site.auth_headers()
        headers.update(self._beta_header)
        method = "streamRawPredict" if stream else "rawPredict"
        return Prepared(
            url=self.site.url(ANTHROPIC, model, method), headers=headers, body=_encode(body)
        )

    async def prepare_count(self, req: ChatRequest, model: str, key: int | None) -> Prepared:
        body = claude_count_body(await self._inline_images(req), model, provider=self.name)
        headers = await self.site.auth_headers()
        headers.update(self._beta_header)
        # One endpoint counts for every Claude model: the body names the model.
        url = self.site.url(ANTHROPIC, "count-tokens", "rawPredict")
        return Prepared(url=url, headers=headers, body=_encode(body))

    async def _inline_images(self, req: ChatRequest) -> ChatRequest:
        """Claude on Vertex refuses image URLs ("URL sources are not supported"): each is
        downloaded (concurrently) and sent as base64."""
        urls = list(dict.fromkeys(image_urls(req)))
        if not urls:
            return req
        fetched = await asyncio.gather(*(self.fetch_media(url) for url in urls))
        inline = {
            url: f"data:{media_type};base64,{base64.b64encode(data).decode()}"
            for url, (media_type, data) in zip(urls, fetched, strict=True)
        }
        return with_images(req, inline)

    async def prepare_embedding(
        self, req: EmbeddingRequest, model: str, key: int | None
    ) -> Prepared:
        raise UnsupportedCapabilityError(self.name, "embeddings with Anthropic's models")

    def embedding_response(self, body: bytes, req: EmbeddingRequest) -> EmbeddingResult:
        raise UnsupportedCapabilityError(self.name, "embeddings with Anthropic's models")
