"""Gemini models on Vertex AI: the Gemini provider with Vertex's URLs, OAuth token, body
details (see :mod:`providers.vertex.translate`), embedding endpoints and ``countTokens`` body."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec
from msgspec import UNSET

from providers._keys import KeyRing
from providers._translated import (
    EmbeddingResult,
    Prepared,
    embedding_body,
    embedding_inputs,
)
from providers._upstream import Upstream
from providers.base import JSONReply
from providers.gemini.provider import GeminiProvider
from providers.gemini.request import check_request
from providers.gemini.wire import Part
from providers.vertex.access import OnVertex, Site
from providers.vertex.embed import (
    embed_content_body,
    embed_content_result,
    one_per_request,
    predict_body,
    predict_result,
)
from providers.vertex.translate import (
    GOOGLE,
    SHARED_REQUEST_TYPE,
    gemini_body,
    gemini_count_body,
    reference_part,
    shared_request_type,
)
from proxy.config import ProviderConfig
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import ChatRequest
from proxy.schemas.common import BilledUsage
from proxy.schemas.embeddings import EmbeddingRequest, EmbeddingUsage

__all__ = ["VertexGemini"]

# At most this many ``:embedContent`` requests of one embeddings call run at once.
_PARALLEL_EMBEDS = 8
_encode = msgspec.json.Encoder().encode


class VertexGemini(OnVertex, GeminiProvider):
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

    def model_url(self, model: str, method: str) -> str:
        return self.site.url(GOOGLE, model, method)

    async def auth_headers(self, key: int | None) -> Mapping[str, str]:
        return await self.site.auth_headers()

    def by_reference(self, url: str) -> Part | None:
        return reference_part(url)

    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared:
        check_request(req, self.name)
        media = await self.resolve_media(req)
        body = gemini_body(req, model=model, media=media)
        # The token first: with Application Default Credentials it names the project.
        headers = await self.auth_headers(key)
        tier = shared_request_type(req)
        if tier is not None:
            headers = {**headers, SHARED_REQUEST_TYPE: tier}
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return Prepared(url=self.model_url(model, method), headers=headers, body=_encode(body))

    async def prepare_count(self, req: ChatRequest, model: str, key: int | None) -> Prepared:
        check_request(req, self.name)
        media = await self.resolve_media(req)
        body = gemini_count_body(gemini_body(req, model=model, media=media))
        headers = await self.auth_headers(key)
        return Prepared(
            url=self.model_url(model, "countTokens"), headers=headers, body=_encode(body)
        )

    # --- embeddings ------------------------------------------------------------------------

    def _texts(self, req: EmbeddingRequest) -> list[str]:
        texts = embedding_inputs(req, self.name)
        if not texts:
            raise InvalidRequestError("`input` must not be empty.", param="input")
        return texts

    async def prepare_embedding(
        self, req: EmbeddingRequest, model: str, key: int | None
    ) -> Prepared:
        """Every input in one ``:predict`` (the text-embedding models)."""
        texts = self._texts(req)
        headers = await self.auth_headers(key)
        dims = req.dimensions if req.dimensions is not UNSET else None
        return Prepared(
            url=self.model_url(model, "predict"), headers=headers, body=predict_body(texts, dims)
        )

    def embedding_response(self, body: bytes, req: EmbeddingRequest) -> EmbeddingResult:
        expected = 1 if isinstance(req.input, str) else len(req.input)
        result = predict_result(body, expected)
        if result is None:
            raise self.bad_response("embeddings response")
        return result

    async def _embed(
        self, req: EmbeddingRequest, model: str, key: int | None, cap: float | None
    ) -> JSONReply:
        """Gemini embedding models take one input per request: one ``:embedContent`` each,
        a few at a time, answered together in input order."""
        if not one_per_request(model):
            return await super()._embed(req, model, key, cap)
        texts = self._texts(req)
        headers = await self.auth_headers(key)
        url = self.model_url(model, "embedContent")
        dims = req.dimensions if req.dimensions is not UNSET else None
        limit = asyncio.Semaphore(_PARALLEL_EMBEDS)

        async def one(text: str) -> tuple[bytes, dict[str, str]]:
            async with limit:
                body = embed_content_body(text, dims)
                return await self.fetch(Prepared(url=url, headers=headers, body=body), cap)

        tasks = [asyncio.ensure_future(one(t)) for t in texts]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        bodies = [body for body, _ in answers]
        try:
            result = embed_content_result(bodies)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.bad_response("embeddings response") from exc
        if result is None:
            raise self.bad_response("embeddings response")
        usage = EmbeddingUsage(
            prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
        )
        encoding = req.encoding_format if req.encoding_format is not UNSET else "float"
        name = req.model.partition("/")[2] or model
        return JSONReply(
            body=embedding_body(result.vectors, name, usage, encoding),
            usage=BilledUsage(prompt_tokens=usage.prompt_tokens, total_tokens=usage.total_tokens),
            headers=answers[-1][1],
            raw=b"[" + b",".join(bodies) + b"]",
        )
