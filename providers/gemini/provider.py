"""The Gemini API provider: URLs, the API key, media downloads, embeddings, input-token counts
(``countTokens``) and the model list.

The body translation lives in ``request``/``response``/``stream`` and knows nothing of URLs or
credentials, so Vertex AI (same ``generateContent`` body, another URL and OAuth) can reuse it by
overriding :meth:`GeminiProvider.model_url` and :meth:`GeminiProvider.auth_headers`.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import msgspec

from providers._counting import CountingProvider
from providers._keys import KeyRing
from providers._translated import EmbeddingResult, Prepared, embedding_inputs
from providers._types import BuildContext, KeyedType, ProviderType, resolve_keys
from providers._upstream import StreamAttempt, Upstream, forwardable_headers
from providers.base import Call, EventStream, JSONReply, ModelInfo, Provider, Reply
from providers.gemini.errors import error_from_body, map_error
from providers.gemini.native import (
    NATIVE_EMBED,
    NATIVE_GENERATE,
    NATIVE_OPERATIONS,
    NativeBody,
    billed,
    embed_usage,
    for_model,
    generate_usage,
    stream_meta,
)
from providers.gemini.request import (
    check_request,
    data_url_part,
    image_urls,
    reference_part,
    to_native,
)
from providers.gemini.response import from_native
from providers.gemini.stream import EventReader, GeminiStream
from providers.gemini.wire import (
    BatchEmbedContentsRequest,
    Blob,
    Content,
    CountTokensRequest,
    CountTokensResponse,
    EmbedContentRequest,
    EmbedResponse,
    GenerateContentResponse,
    ModelList,
    Part,
)
from proxy.config import ProviderConfig
from proxy.errors import InvalidRequestError, UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatRequest
from proxy.schemas.embeddings import EmbeddingRequest

__all__ = ["BASE_URL", "TYPES", "GeminiProvider", "GeminiType"]

BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
KEY_ENV = "GEMINI_API_KEY"
# The google-genai SDK reads this one too; it is used when GEMINI_API_KEY is not set.
ALT_KEY_ENV = "GOOGLE_API_KEY"
_MAX_MODEL_PAGES = 20

_encode = msgspec.json.Encoder().encode
_response = msgspec.json.Decoder(GenerateContentResponse).decode
_embedded = msgspec.json.Decoder(EmbedResponse).decode
_model_page = msgspec.json.Decoder(ModelList).decode
_token_count = msgspec.json.Decoder(CountTokensResponse).decode


def _resource(model: str) -> str:
    """``models/{id}`` (or a tuned model's own name) for a model named with or without it."""
    if model.startswith(("models/", "tunedModels/")):
        return quote(model, safe="/")
    return "models/" + quote(model, safe="")


class GeminiProvider(CountingProvider):
    """Google's Gemini API (``generativelanguage.googleapis.com``), keyed by ``x-goog-api-key``.

    The key goes in a header, never in the URL (``?key=``), so it cannot reach a log.
    """

    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        upstream: Upstream,
        keys: KeyRing,
        *,
        proxy: str | None = None,
    ) -> None:
        super().__init__(
            name,
            settings,
            upstream,
            keys,
            operations=frozenset({"chat_completion", "embedding"}) | NATIVE_OPERATIONS,
            proxy=proxy,
        )
        self._root = (settings.base_url or BASE_URL).rstrip("/")
        self._version = settings.api_version or API_VERSION
        static = {**settings.headers, "Content-Type": "application/json"}
        self._headers = [{**static, "x-goog-api-key": v} for v in keys.values] or [static]

    # --- where and how (what Vertex AI overrides) ------------------------------------------

    def model_url(self, model: str, method: str) -> str:
        return f"{self._root}/{self._version}/{_resource(model)}:{method}"

    async def auth_headers(self, key: int | None) -> Mapping[str, str]:
        return self._headers[key or 0]

    def by_reference(self, url: str) -> Part | None:
        """The part for a URL the upstream downloads itself; ``None``: the gateway downloads."""
        return reference_part(url)

    # --- chat ---------------------------------------------------------------------------

    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared:
        check_request(req, self.name)
        media = await self.resolve_media(req)
        body = to_native(req, model=model, media=media)
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return Prepared(
            url=self.model_url(model, method),
            headers=await self.auth_headers(key),
            body=_encode(body),
        )

    async def prepare_count(self, req: ChatRequest, model: str, key: int | None) -> Prepared:
        check_request(req, self.name)
        media = await self.resolve_media(req)
        body = to_native(req, model=model, media=media)
        body.model = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        return Prepared(
            url=self.model_url(model, "countTokens"),
            headers=await self.auth_headers(key),
            body=_encode(CountTokensRequest(generate_content_request=body)),
        )

    def count_response(self, body: bytes) -> int:
        return _token_count(body).total_tokens

    async def resolve_media(self, req: ChatRequest) -> dict[str, Part]:
        """Every image URL of the request as a part: inline data for ``data:`` URLs, a reference
        for URLs the API reads itself, else downloaded (concurrently) and sent inline."""
        media: dict[str, Part] = {}
        downloads: list[str] = []
        for url in image_urls(req):
            if url in media or url in downloads:
                continue
            if url.startswith("data:"):
                media[url] = data_url_part(url)
            else:
                part = self.by_reference(url)
                if part is None:
                    downloads.append(url)
                else:
                    media[url] = part
        fetched = await asyncio.gather(*(self.fetch_media(url) for url in downloads))
        for url, (media_type, data) in zip(downloads, fetched, strict=True):
            encoded = base64.b64encode(data).decode()
            media[url] = Part(inline_data=Blob(mime_type=media_type, data=encoded))
        return media

    def chat_response(self, body: bytes, model: str) -> ChatCompletion:
        return from_native(
            _response(body),
            model=model,
            created=int(time.time()),
            fallback_id=f"chatcmpl-{uuid.uuid4().hex}",
        )

    def stream_translator(self, model: str, request_id: str) -> GeminiStream:
        return GeminiStream(
            model=model,
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            provider=self.name,
            scrub=self.scrub,
        )

    async def read_stream(
        self, resp: aiohttp.ClientResponse, guard: StreamAttempt
    ) -> AsyncIterator[list[bytes]]:
        reader = EventReader()
        read = resp.content.readany
        while True:
            with guard:
                chunk = await read()
            events = reader.feed(chunk) if chunk else reader.close()
            if events:
                yield events
            if not chunk:
                return

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return map_error(status, body, headers, provider=self.name, scrub=self.scrub)

    # --- the native /genai routes: the client's own body, forwarded -------------------------

    async def send(self, call: Call) -> Reply:
        if call.inbound.op.name in NATIVE_OPERATIONS:
            return await self._native(call)
        return await super().send(call)

    async def _native(self, call: Call) -> Reply:
        native: NativeBody = call.inbound.typed
        key = self._key_index(call)
        model = self.upstream_model(call.target.model)
        stream = call.inbound.stream
        method = native.method + ("?alt=sse" if stream else "")
        prepared = Prepared(
            url=self.model_url(model, method),
            headers=await self.auth_headers(key),
            body=for_model(native, model),
        )
        if stream:
            return await self._native_stream(call, prepared)
        data, headers = await self.fetch(prepared, call.timeout_s)
        op = call.inbound.op.name
        if op == NATIVE_GENERATE:
            usage = generate_usage(data)
        else:
            usage = embed_usage(data) if op == NATIVE_EMBED else None
        return JSONReply(body=data, usage=usage, headers=headers)

    async def _native_stream(self, call: Call, prepared: Prepared) -> EventStream:
        """The upstream's events as they arrive, each ``data`` payload unchanged; the usage
        from the last ``usageMetadata``; an error event raised (before the first event, the
        request may still fall back)."""
        guard = self.timeouts.stream(call.timeout_s)
        resp = await self.open(prepared, guard)
        if resp.content_type not in self.stream_content_types:
            guard.stop()
            resp.release()
            raise UpstreamError(
                f"{self.name}: expected an event stream, got `{resp.content_type}`.",
                status=502,
                provider=self.name,
            )

        async def events(stream: EventStream) -> AsyncGenerator[list[bytes], None]:
            started = False
            async for payloads in self.read_stream(resp, guard):
                for i, payload in enumerate(payloads):
                    try:
                        meta = stream_meta(payload)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        raise self.bad_response("stream event") from None
                    if meta.error is not None:
                        if started and i:
                            yield payloads[:i]
                        raise error_from_body(meta.error, self.name, self.scrub)
                    if meta.usage_metadata is not None:
                        stream.usage = billed(meta.usage_metadata)
                if payloads:
                    if not started:
                        guard.first_event()
                        started = True
                    yield payloads

        return EventStream(events, close=guard.close, headers=forwardable_headers(resp.headers))

    # --- embeddings ---------------------------------------------------------------------

    async def prepare_embedding(
        self, req: EmbeddingRequest, model: str, key: int | None
    ) -> Prepared:
        """One input: ``embedContent``; several: ``batchEmbedContents`` (one request each)."""
        texts = embedding_inputs(req, self.name)
        if not texts:
            raise InvalidRequestError("`input` must not be empty.", param="input")
        dims = req.dimensions
        requests = [
            EmbedContentRequest(content=Content(parts=[Part(text=t)]), output_dimensionality=dims)
            for t in texts
        ]
        if len(requests) == 1:
            url, body = self.model_url(model, "embedContent"), _encode(requests[0])
        else:
            for r in requests:
                r.model = _resource(model)
            url = self.model_url(model, "batchEmbedContents")
            body = _encode(BatchEmbedContentsRequest(requests=requests))
        return Prepared(url=url, headers=await self.auth_headers(key), body=body)

    def embedding_response(self, body: bytes, req: EmbeddingRequest) -> EmbeddingResult:
        """The vectors, and the prompt tokens where the API reports them (``usageMetadata`` is
        recent; older versions report none, and then 0 is reported rather than a guess)."""
        got = _embedded(body)
        vectors = [e.values for e in got.embeddings or ([got.embedding] if got.embedding else [])]
        expected = 1 if isinstance(req.input, str) else len(req.input)
        if len(vectors) != expected:
            raise self.bad_response("embeddings response")
        tokens = got.usage_metadata.prompt_token_count if got.usage_metadata else 0
        return EmbeddingResult(vectors=vectors, prompt_tokens=tokens)

    # --- models -------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """The configured models, then the API's own list (all pages), ids without
        ``models/``."""
        listed = await super().list_models()
        seen = {m.id for m in listed}
        headers = await self.auth_headers(self.keys.any_key())
        token: str | None = None
        for _ in range(_MAX_MODEL_PAGES):
            url = f"{self._root}/{self._version}/models?pageSize=1000"
            if token:
                url += "&pageToken=" + quote(token, safe="")
            data, _ = await self.fetch(Prepared(url=url, headers=headers, body=b"", method="GET"))
            try:
                page = _model_page(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise self.bad_response("model list") from exc
            for entry in page.models:
                model_id = entry.name.removeprefix("models/")
                if model_id not in seen:
                    seen.add(model_id)
                    listed.append(ModelInfo(id=model_id, owned_by=self.name))
            token = page.next_page_token
            if not token:
                break
        return listed


class GeminiType(KeyedType):
    """The ``gemini`` provider type: keys from the config, else ``GEMINI_API_KEY``, else
    ``GOOGLE_API_KEY`` (Google's SDKs read both)."""

    __slots__ = ()

    def create(self, name: str, settings: ProviderConfig, ctx: BuildContext) -> Provider | str:
        variable = self.key_env
        if settings.keys is None and not ctx.env.get(KEY_ENV) and ctx.env.get(ALT_KEY_ENV):
            variable = ALT_KEY_ENV
        keys = resolve_keys(name, settings, key_env=variable, env=ctx.env)
        if isinstance(keys, str):
            return keys
        return self._factory(name, settings, ctx, KeyRing(keys))


def _build(name: str, settings: ProviderConfig, ctx: BuildContext, keys: KeyRing) -> GeminiProvider:
    base = settings.base_url or BASE_URL
    return GeminiProvider(name, settings, ctx.upstream, keys, proxy=ctx.proxy_for(base))


TYPES: dict[str, ProviderType] = {"gemini": GeminiType(_build, base_url=BASE_URL, key_env=KEY_ENV)}
