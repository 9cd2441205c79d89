"""The Google GenAI API under ``/genai`` (``generateContent``, ``streamGenerateContent``,
``embedContent``, ``batchEmbedContents``, ``countTokens``), so the google-genai SDK works against
the gateway unchanged, for any provider.

A ``gemini`` provider gets the client's body as it came (its native operations: nothing is
lost); any other provider gets the unified chat (or embeddings) request translated from it, and
its answer is rendered back in Gemini's shape, streams included. The model in the path is a
bare Gemini model (served by the gateway's Gemini provider), ``provider/model`` or a configured
route. Errors are Google's error body; after a stream began, an error event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec
import structlog
from aiohttp import web
from msgspec import UNSET

from middlewares.decode import decode_body
from providers._counting import estimate_input_tokens
from providers.base import CountsTokens, EventStream, JSONReply, Provider
from providers.gemini.answer import (
    ChunkReader,
    embed_answer,
    error_body,
    error_event,
    from_completion,
)
from providers.gemini.inbound import (
    BatchEmbedRequest,
    CountRequest,
    EmbedRequest,
    GenerateRequest,
    decode_native,
    embed_texts,
    to_chat,
)
from providers.gemini.native import NATIVE_COUNT, NATIVE_EMBED, NATIVE_GENERATE, NativeBody
from providers.registry import PROVIDERS
from proxy.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    UnsupportedCapabilityError,
    UpstreamError,
)
from proxy.keys import BODY, CONFIG, LIMITS, OUTCOME, REQUEST_ID, TARGET, Outcome
from proxy.metrics import METRICS
from proxy.native.served import call_for, gateway_headers, send
from proxy.operations import CHAT, EMBEDDING, RESPONSES, Inbound, Operation
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from proxy.schemas.embeddings import EmbeddingList, EmbeddingRequest
from proxy.sse import KeepAlive, open_event_stream

__all__ = [
    "GENAI_BATCH_EMBED",
    "GENAI_COUNT_TOKENS",
    "GENAI_EMBED",
    "GENAI_GENERATE",
    "GENAI_STREAM",
    "count_tokens",
    "embed",
    "family_model",
    "generate",
]

log = structlog.get_logger("thruway.genai")
_encode = msgspec.json.Encoder().encode
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_FALLBACKS = msgspec.json.Decoder(list[str])
_CHAT = msgspec.json.Decoder(ChatCompletion)
_CHUNK = msgspec.json.Decoder(ChatCompletionChunk)
_EMBEDDINGS = msgspec.json.Decoder(EmbeddingList)
# A blank line keeps the connection busy without being an event; the google-genai SDK reads
# any other line that is not ``data:`` (an SSE comment) as JSON and fails on it.
_KEEPALIVE = b"\r\n"
_FAMILY = "gemini"
# Who serves a bare Gemini model: a Gemini API provider, else Vertex AI (translated).
_FAMILY_TYPES = ("gemini", "vertex")
# What a Gemini request carries as content: never shown as parameters.
_CONTENT = frozenset(
    {"contents", "systemInstruction", "system_instruction", "tools", "requests", "content"}
    | {"generateContentRequest", "generate_content_request"}
)


# --- decoding -----------------------------------------------------------------------------


def family_model(request: web.Request, model: str) -> str:
    """The path's model as the gateway routes it: a configured route or ``provider/model`` as
    it is; a bare Gemini model on the gateway's Gemini provider (the one named ``gemini``, else
    the only provider of that type, else the only Vertex AI provider)."""
    config = request.app[CONFIG]
    head, sep, _ = model.partition("/")
    if model in config.routes or (sep and head in config.providers):
        return model
    if sep:
        return model  # the fallback middleware says which providers exist
    if _FAMILY in config.providers:
        return f"{_FAMILY}/{model}"
    for kind in _FAMILY_TYPES:
        family = [n for n, p in config.providers.items() if (p.type or n) == kind]
        if len(family) == 1:
            return f"{family[0]}/{model}"
        if family:
            break
    names = ", ".join(sorted(config.providers)) or "none"
    raise NotFoundError(
        f"Model `{model}` names no provider, and the gateway has "
        f"{'several' if family else 'no'} Gemini provider{'s' if family else ''} to serve it: "
        f"name it as `provider/model`. Configured providers: {names}.",
        param="model",
        code="model_not_found",
    )


def _decode(request: web.Request, body: bytes, op: Operation, method: str, stream: bool) -> Inbound:
    raw = decode_body(_RAW.decode, body)
    fallbacks: list[str] = []
    if "fallbacks" in raw:
        # The gateway's own field (sent with ``http_options.extra_body``): never forwarded.
        try:
            fallbacks = _FALLBACKS.decode(raw.pop("fallbacks"))
        except msgspec.ValidationError:
            raise InvalidRequestError(
                "`fallbacks` must be a list of `provider/model` names.", param="fallbacks"
            ) from None
        body = _encode(raw)
    alt = request.query.get("alt", "json")
    if stream and alt not in ("sse", "json"):
        raise InvalidRequestError(
            f"`alt` must be `sse` (server-sent events) or `json` (a JSON array), not `{alt}`.",
            param="alt",
        )
    return Inbound(
        op=op,
        typed=NativeBody(method=method, body=body),
        model=family_model(request, request.match_info["model"]),
        fallbacks=fallbacks,
        stream=stream,
        wants_usage=True,
        raw=raw,
    )


def _op(name: str, method: str, *, stream: bool = False) -> Operation:
    def decode(request: web.Request, body: bytes) -> Inbound:
        return _decode(request, body, op, method, stream)

    op = Operation(name, "json", content_fields=_CONTENT, decode=decode, render_error=error_body)
    return op


GENAI_GENERATE = _op(NATIVE_GENERATE, "generateContent")
GENAI_STREAM = _op(NATIVE_GENERATE, "streamGenerateContent", stream=True)
GENAI_EMBED = _op(NATIVE_EMBED, "embedContent")
GENAI_BATCH_EMBED = _op(NATIVE_EMBED, "batchEmbedContents")
GENAI_COUNT_TOKENS = _op(NATIVE_COUNT, "countTokens")


# --- sending ------------------------------------------------------------------------------


def _native(request: web.Request) -> NativeBody:
    native: NativeBody = request[BODY].typed
    return native


def _translated(request: web.Request, provider: Provider, op: Operation, typed: object) -> Inbound:
    """The unified request ``typed`` for ``provider``, which does not speak Gemini's API."""
    if op.name not in provider.operations:
        raise UnsupportedCapabilityError(provider.name, op.name.replace("_", " "))
    inbound = request[BODY]
    return Inbound(
        op=op,
        typed=typed,
        model=inbound.model,
        fallbacks=[],
        stream=inbound.stream,
        wants_usage=True,
        raw=_RAW.decode(_encode(typed)),
    )


def _chat(request: web.Request, provider: Provider, *, count: bool = False) -> ChatRequest:
    """The request as a unified chat request for ``provider`` (``count``: a ``countTokens``
    body, whose ``contents`` or ``generateContentRequest`` is counted)."""
    inbound = request[BODY]
    body = _native(request).body
    if count:
        counted: CountRequest = decode_native(body, CountRequest)
        got = counted.generate_content_request
        req = got if isinstance(got, GenerateRequest) else GenerateRequest(counted.contents)
    else:
        req = decode_native(body, GenerateRequest)
    return to_chat(req, model=inbound.model, provider=provider.name, stream=inbound.stream)


def _json(body: bytes, headers: dict[str, str]) -> web.Response:
    return web.Response(body=body, headers={**headers, "Content-Type": "application/json"})


def _bad_reply(provider: Provider, what: str) -> UpstreamError:
    return UpstreamError(
        f"{provider.name}: the upstream's {what} could not be read.",
        status=502,
        provider=provider.name,
    )


# --- generateContent, streamGenerateContent -------------------------------------------------


async def generate(request: web.Request) -> web.StreamResponse:
    target = request[TARGET]
    outcome = request[OUTCOME]
    provider = request.app[PROVIDERS][target.provider]
    inbound = request[BODY]
    native = NATIVE_GENERATE in provider.operations
    call = call_for(
        request,
        inbound if native else _translated(request, provider, CHAT, _chat(request, provider)),
    )
    async with request.app[LIMITS].slot(target.provider):
        reply = await send(request, provider, call)
        if isinstance(reply, EventStream):
            events = (
                aiter(reply)
                if native
                else _translate_events(reply, provider, target.model, request[REQUEST_ID])
            )
            return await _write_events(request, reply, events, outcome)
    if not isinstance(reply, JSONReply):
        raise _bad_reply(provider, "answer")
    outcome.usage = reply.usage
    body = reply.body
    if not native:
        try:
            completion = _CHAT.decode(reply.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise _bad_reply(provider, "answer") from None
        body = _encode(from_completion(completion, model=target.model))
    return _json(body, {**reply.headers, **gateway_headers(request, request[TARGET])})


async def _translate_events(
    stream: EventStream, provider: Provider, model: str, request_id: str
) -> AsyncGenerator[list[bytes], None]:
    """Chat chunks as Gemini events, batch by batch; the last event (tool calls, finish
    reasons, usage) once the upstream is done."""
    reader = ChunkReader(model=model, response_id=request_id)
    async for batch in stream:
        out: list[bytes] = []
        for payload in batch:
            try:
                chunk = _CHUNK.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise _bad_reply(provider, "stream event") from None
            out += reader.feed(chunk)
        if out:
            yield out
    tail = reader.finish()
    if tail:
        yield tail


class _Framing:
    """How a stream's events go out: SSE ``data:`` events (``alt=sse``, what the SDKs ask
    for), or, as Google answers without it, one JSON array written element by element."""

    __slots__ = ("_open", "sse")

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._open = False

    def frames(self, payloads: list[bytes]) -> bytes:
        if self.sse:
            return b"data: " + b"\r\n\r\ndata: ".join(payloads) + b"\r\n\r\n"
        head = b",\r\n" if self._open else b"["
        self._open = True
        return head + b",\r\n".join(payloads)

    def end(self) -> bytes:
        if self.sse:
            return b""
        return b"]" if self._open else b"[]"

    async def prepare(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        if self.sse:
            return await open_event_stream(request, headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
        await response.prepare(request)
        return response


async def _close(events: AsyncIterator[list[bytes]], stream: EventStream) -> None:
    """The translating generator (if any) and then the upstream stream."""
    try:
        if isinstance(events, AsyncGenerator):
            await events.aclose()
    finally:
        await stream.aclose()


async def _write_events(
    request: web.Request,
    stream: EventStream,
    events: AsyncIterator[list[bytes]],
    outcome: Outcome,
) -> web.StreamResponse:
    """The events as SSE (or a JSON array, see :class:`_Framing`). The response is committed
    once the first batch is in, so a failure before it may still fall back; after it, a failure
    is an error event (the array's last element)."""
    framing = _Framing(request.query.get("alt") == "sse")
    try:
        first: list[bytes] | None = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(events, stream)
        outcome.usage = stream.usage
        raise
    outcome.ttfb_ms = outcome.elapsed_ms()
    try:
        response = await framing.prepare(
            request, {**stream.headers, **gateway_headers(request, request[TARGET])}
        )
    except BaseException:
        await _close(events, stream)
        outcome.usage = stream.usage
        raise
    request.app[METRICS].stream_opened(request)
    keepalive = KeepAlive(
        response, request.app[CONFIG].streaming.keepalive_interval_s, payload=_KEEPALIVE
    )
    try:
        batch = first
        while batch is not None:
            await response.write(framing.frames(batch))
            keepalive.touch()
            batch = await anext(events, None)
    except GatewayError as exc:
        log.warning("stream_failed", status=exc.status, error_type=exc.type, error=exc.message)
        outcome.failures.append(f"{request[TARGET].label}: {exc.status} {exc.type} mid-stream")
        with contextlib.suppress(ConnectionError):
            await response.write(framing.frames([error_event(exc)]))
    except ConnectionError:
        outcome.client_disconnected = True
        return response
    finally:
        keepalive.stop()
        await _close(events, stream)
        outcome.usage = stream.usage
    try:
        await response.write_eof(framing.end())
    except ConnectionError:
        outcome.client_disconnected = True
    return response


# --- countTokens --------------------------------------------------------------------------


class _Count(msgspec.Struct, rename="camel"):
    total_tokens: int


async def count_tokens(request: web.Request) -> web.Response:
    target = request[TARGET]
    provider = request.app[PROVIDERS][target.provider]
    headers = gateway_headers(request, target)
    if NATIVE_COUNT in provider.operations:
        reply = await send(request, provider, call_for(request, request[BODY]))
        if not isinstance(reply, JSONReply):
            raise _bad_reply(provider, "token count")
        headers["x-thruway-token-count"] = "provider"
        return _json(reply.body, {**reply.headers, **headers})
    chat = _chat(request, provider, count=True)
    counted: int | None = None
    # OpenAI's count takes a Responses request, not a chat one: those providers get the
    # estimate.
    if isinstance(provider, CountsTokens) and RESPONSES.name not in provider.operations:
        chat.stream = UNSET
        chat.stream_options = UNSET
        call = call_for(request, _translated(request, provider, CHAT, chat))
        with contextlib.suppress(UnsupportedCapabilityError):
            counted = await provider.count_tokens(call)
    headers["x-thruway-token-count"] = "provider" if counted is not None else "estimated"
    if counted is None:
        counted = estimate_input_tokens(chat)
    return _json(_encode(_Count(counted)), headers)


# --- embedContent, batchEmbedContents -------------------------------------------------------


def _embedding_request(request: web.Request) -> tuple[EmbeddingRequest, bool]:
    native = _native(request)
    single = native.method == "embedContent"
    if single:
        requests = [decode_native(native.body, EmbedRequest)]
    else:
        requests = decode_native(native.body, BatchEmbedRequest).requests
    if not requests:
        raise InvalidRequestError("`requests` must not be empty.", param="requests")
    dims = {r.output_dimensionality for r in requests}
    if len(dims) > 1:
        raise InvalidRequestError(
            "Every request of a batch must ask for the same `outputDimensionality` when a "
            "provider other than Gemini embeds it.",
            param="requests",
        )
    texts: list[str | int | list[int]] = list(embed_texts(requests))
    req = EmbeddingRequest(model=request[BODY].model, input=texts, dimensions=dims.pop())
    return req, single


async def embed(request: web.Request) -> web.Response:
    target = request[TARGET]
    outcome = request[OUTCOME]
    provider = request.app[PROVIDERS][target.provider]
    native = NATIVE_EMBED in provider.operations
    if native:
        call = call_for(request, request[BODY])
    else:
        req, single = _embedding_request(request)
        call = call_for(request, _translated(request, provider, EMBEDDING, req))
    async with request.app[LIMITS].slot(target.provider):
        reply = await send(request, provider, call)
    if not isinstance(reply, JSONReply):
        raise _bad_reply(provider, "embeddings")
    outcome.usage = reply.usage
    body = reply.body
    if not native:
        try:
            got = _EMBEDDINGS.decode(reply.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise _bad_reply(provider, "embeddings") from None
        vectors = [e.embedding for e in sorted(got.data, key=lambda e: e.index)]
        if not all(isinstance(v, list) for v in vectors) or len(vectors) != len(req.input):
            raise _bad_reply(provider, "embeddings")
        body = embed_answer(vectors, reply.usage, single=single)  # type: ignore[arg-type]
    return _json(body, {**reply.headers, **gateway_headers(request, request[TARGET])})
