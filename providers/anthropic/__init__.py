"""Anthropic's Messages API (``POST /v1/messages``) behind the unified chat schema.

Requests carry ``x-api-key``, ``anthropic-version`` (``2023-06-01`` unless the provider's
``api_version`` says otherwise: under ``2026-10-21`` ``temperature`` and ``top_p`` are refused,
as that version removed them) and ``anthropic-beta``: the betas of the provider's ``headers``
and those of the client's own ``anthropic-beta`` header, merged. Chat (streamed or not), the
model list (``GET /v1/models``, every page) and input-token counts (``POST
/v1/messages/count_tokens``, the chat translation without what that endpoint refuses) are
served; Anthropic has no embeddings or audio.

The ``/anthropic`` route's own requests (``anthropic_messages``, ``anthropic_count_tokens``) are
forwarded natively, body and stream as they are (:mod:`.native`), with the same headers, keys,
timeouts and error mapping.

The translation lives in :mod:`.translate` (request), :mod:`.response` (answer),
:mod:`.stream` (events) and :mod:`.errors`; :mod:`.models` holds what differs by model version
(the default ``max_tokens``, how thinking is asked for).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from urllib.parse import quote

import msgspec

from providers._counting import CountingProvider
from providers._keys import KeyRing
from providers._translated import Prepared, StreamTranslator
from providers._types import BuildContext, KeyedType, ProviderType
from providers._upstream import Upstream, forwardable_headers
from providers.anthropic.errors import map_error
from providers.anthropic.native import (
    NATIVE_COUNT,
    NATIVE_MESSAGES,
    NativeStream,
    message_usage,
    native_body,
)
from providers.anthropic.response import from_native
from providers.anthropic.stream import AnthropicStream
from providers.anthropic.translate import count_body, to_native
from providers.anthropic.wire import Message, ModelPage, TokenCount
from providers.base import Call, EventStream, JSONReply, ModelInfo, Reply
from proxy.config import ProviderConfig
from proxy.errors import UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatRequest

__all__ = ["BASE_URL", "DEFAULT_API_VERSION", "TYPES", "AnthropicProvider"]

BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"
_BETA = "anthropic-beta"
# ``limit`` is at most 1,000 per page; a bound on pages keeps a looping upstream finite.
_MODELS_PAGE = 1000
_MAX_MODEL_PAGES = 20

_encode = msgspec.json.Encoder().encode
_message = msgspec.json.Decoder(Message).decode
_model_page = msgspec.json.Decoder(ModelPage).decode
_token_count = msgspec.json.Decoder(TokenCount).decode


def merge_betas(*values: str | None) -> str:
    """``anthropic-beta`` values (each comma-separated) as one, in order, without repeats."""
    seen: dict[str, None] = {}
    for value in values:
        for beta in (value or "").split(","):
            if beta.strip():
                seen.setdefault(beta.strip(), None)
    return ",".join(seen)


class AnthropicProvider(CountingProvider):
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
            operations=frozenset({"chat_completion", NATIVE_MESSAGES, NATIVE_COUNT}),
            proxy=proxy,
        )
        self._base = (settings.base_url or BASE_URL).rstrip("/")
        static = {k: v for k, v in settings.headers.items() if k.lower() != _BETA}
        # Configured betas are merged with the client's, so they are kept apart.
        self._betas = merge_betas(*(v for k, v in settings.headers.items() if k.lower() == _BETA))
        if self._betas:
            static[_BETA] = self._betas
        self._api_version = version = settings.api_version or DEFAULT_API_VERSION
        self._get_headers = [
            {**static, "x-api-key": key, "anthropic-version": version, "accept": "application/json"}
            for key in keys.values
        ]
        self._post_headers = [{**h, "content-type": "application/json"} for h in self._get_headers]

    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared:
        native = to_native(
            req, model, stream=stream, provider=self.name, api_version=self._api_version
        )
        return Prepared(
            url=f"{self._base}/v1/messages",
            headers=self._post_headers[key or 0],
            body=_encode(native),
        )

    async def prepare_count(self, req: ChatRequest, model: str, key: int | None) -> Prepared:
        native = to_native(
            req, model, stream=False, provider=self.name, api_version=self._api_version
        )
        return Prepared(
            url=f"{self._base}/v1/messages/count_tokens",
            headers=self._post_headers[key or 0],
            body=_encode(count_body(native, model)),
        )

    def count_response(self, body: bytes) -> int:
        return _token_count(body).input_tokens

    # --- the /anthropic route's requests, forwarded as they are ----------------------------

    def _native(self, call: Call, path: str) -> Prepared:
        key = self._key_index(call)
        model = self.upstream_model(call.target.model)
        headers = self._post_headers[key or 0]
        passed = self.client_headers(call.client_headers)
        return Prepared(
            url=f"{self._base}{path}",
            headers={**headers, **passed} if passed else headers,
            body=native_body(call.inbound.raw or {}, model),
        )

    async def send(self, call: Call) -> Reply:
        if call.inbound.op.name != NATIVE_MESSAGES:
            return await super().send(call)
        prepared = self._native(call, "/v1/messages")
        if call.inbound.stream:
            return await self._native_stream(call, prepared)
        body, headers = await self.fetch(prepared, call.timeout_s)
        try:
            usage = message_usage(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.bad_response("response") from exc
        return JSONReply(body=body, usage=usage, headers=headers)

    async def _native_stream(self, call: Call, prepared: Prepared) -> EventStream:
        """Anthropic's events as they arrive, one batch per read (SSE bytes, whole events)."""
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
        native = NativeStream(provider=self.name, scrub=self.scrub)

        async def events(stream: EventStream) -> AsyncGenerator[list[bytes], None]:
            try:
                async for batch in self.read_stream(resp, guard):
                    out, error = native.feed(batch)
                    stream.usage = native.usage
                    if out:
                        # The first-event limit is met; the idle one applies now.
                        guard.first_event()
                        yield [out]
                    if error is not None:
                        raise error
                tail = native.finish()
                if tail:
                    yield [tail]
            finally:
                stream.usage = native.usage

        return EventStream(events, close=guard.close, headers=forwardable_headers(resp.headers))

    async def count_tokens(self, call: Call) -> int:
        if call.inbound.op.name != NATIVE_COUNT:
            return await super().count_tokens(call)
        body, _ = await self.fetch(self._native(call, "/v1/messages/count_tokens"), call.timeout_s)
        try:
            return self.count_response(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.bad_response("token count") from exc

    def client_headers(self, sent: Mapping[str, str]) -> Mapping[str, str]:
        client = sent.get(_BETA)
        if not client:
            return {}
        return {_BETA: merge_betas(self._betas, client)}

    def chat_response(self, body: bytes, model: str) -> ChatCompletion:
        return from_native(_message(body), model)

    def stream_translator(self, model: str, request_id: str) -> StreamTranslator:
        return AnthropicStream(
            provider=self.name, model=model, request_id=request_id, scrub=self.scrub
        )

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return map_error(status, body, headers, provider=self.name, scrub=self.scrub)

    async def list_models(self) -> list[ModelInfo]:
        """The configured models, then every page of Anthropic's list."""
        listed = await super().list_models()
        seen = {m.id for m in listed}
        headers = self._get_headers[self.keys.any_key() or 0]
        after = ""
        for _ in range(_MAX_MODEL_PAGES):
            url = f"{self._base}/v1/models?limit={_MODELS_PAGE}"
            if after:
                url += f"&after_id={quote(after, safe='')}"
            body, _ = await self.fetch(Prepared(url=url, headers=headers, body=b"", method="GET"))
            try:
                page = _model_page(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise self.bad_response("model list") from exc
            for entry in page.data:
                if entry.id not in seen:
                    seen.add(entry.id)
                    created = int(entry.created_at.timestamp()) if entry.created_at else 0
                    listed.append(ModelInfo(id=entry.id, created=created, owned_by=self.name))
            if not page.has_more or not page.last_id:
                break
            after = page.last_id
        return listed


def _build(
    name: str, settings: ProviderConfig, ctx: BuildContext, keys: KeyRing
) -> AnthropicProvider:
    base = settings.base_url or BASE_URL
    return AnthropicProvider(name, settings, ctx.upstream, keys, proxy=ctx.proxy_for(base))


TYPES: dict[str, ProviderType] = {
    "anthropic": KeyedType(_build, base_url=BASE_URL, key_env="ANTHROPIC_API_KEY"),
}
