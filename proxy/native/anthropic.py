"""The ``/anthropic`` routes' terminal handlers: Anthropic's Messages API in, any provider out.

A request to a provider of type ``anthropic`` is sent as it came (the provider's native
operations, :mod:`providers.anthropic.native`); to any other it is translated to the unified
chat request (:mod:`providers.anthropic.inbound`) and the answer rendered back in Anthropic's
shape (:mod:`providers.anthropic.outbound`).

The model is ``provider/model``, a configured route, or a bare model name, which means the
Anthropic family's provider: the one named ``anthropic`` if configured, else the only provider
of type ``anthropic``.

A stream is committed (status and headers sent) only once its first event is in, so a failure
before that still lets the fallback middleware move on; after it, a failure ends the stream
with Anthropic's ``error`` event. While the upstream is silent, ``ping`` events keep the
connection alive.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web

from middlewares.decode import decode_body
from providers.anthropic.inbound import (
    CountHead,
    CountRequest,
    MessagesHead,
    MessagesIn,
    to_chat,
    without_cache_control,
)
from providers.anthropic.native import NATIVE_COUNT, NATIVE_MESSAGES
from providers.anthropic.outbound import PING, MessageEvents, error_body, error_event
from providers.anthropic.outbound import message_body as render_message
from providers.base import CountsTokens, EventStream, JSONReply, Provider, Reply
from providers.registry import PROVIDERS
from proxy.config import GatewayConfig
from proxy.errors import (
    GatewayError,
    InvalidRequestError,
    UnsupportedCapabilityError,
    UpstreamError,
)
from proxy.keys import BODY, CONFIG, LIMITS, OUTCOME, REQUEST_ID, TARGET
from proxy.metrics import METRICS
from proxy.native.served import call_for, gateway_headers, keyed
from proxy.operations import CHAT, RESPONSES, Inbound, Operation
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from proxy.sse import KeepAlive, open_event_stream

__all__ = [
    "ANTHROPIC_COUNT_TOKENS",
    "ANTHROPIC_MESSAGES",
    "ANTHROPIC_MODELS",
    "ANTHROPIC_OTHER",
    "count_tokens",
    "family_provider",
    "messages",
]

log = structlog.get_logger("thruway.anthropic")
_T = TypeVar("_T")
_encode = msgspec.json.Encoder().encode
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_MESSAGES_HEAD = msgspec.json.Decoder(MessagesHead)
_COUNT_HEAD = msgspec.json.Decoder(CountHead)
# Whole requests, read only to translate them.
_MESSAGES = msgspec.json.Decoder(MessagesIn)
_COUNT = msgspec.json.Decoder(CountRequest)
_CHAT = msgspec.json.Decoder(ChatCompletion)
_CHUNK = msgspec.json.Decoder(ChatCompletionChunk)
_FAMILY = "anthropic"
# What a Messages request says, not how it is to be answered: never shown as ``model_params``.
_CONTENT = frozenset({"messages", "system", "tools", "tool_choice", "fallbacks"})


# --- models ---------------------------------------------------------------------------------


def family_provider(config: GatewayConfig) -> str | None:
    """The provider a bare model name means: ``anthropic`` if configured, else the only
    provider of type ``anthropic``."""
    if _FAMILY in config.providers:
        return _FAMILY
    found = [n for n, p in config.providers.items() if (p.type or n) == _FAMILY]
    return found[0] if len(found) == 1 else None


def _resolve(config: GatewayConfig, name: str, param: str) -> str:
    if "/" in name or name in config.routes:
        return name
    family = family_provider(config)
    if family is not None:
        return f"{family}/{name}"
    configured = ", ".join(sorted(config.providers)) or "none"
    error = InvalidRequestError(
        f"Model `{name}` names no provider and no single provider of type `anthropic` is "
        f"configured to serve it: name it as `provider/model` (for example "
        f"`openai/gpt-4o-mini`) or a configured route. Configured providers: {configured}.",
        param=param,
        code="model_not_found",
    )
    error.status = 404
    raise error


def _decode(
    request: web.Request,
    body: bytes,
    op: Operation,
    decode: Callable[[bytes], MessagesHead | CountHead],
) -> Inbound:
    typed = decode_body(decode, body)
    raw = _RAW.decode(body)
    config = request.app[CONFIG]
    return Inbound(
        op=op,
        typed=typed,
        model=_resolve(config, typed.model, "model"),
        fallbacks=[
            _resolve(config, name, f"fallbacks[{i}]") for i, name in enumerate(typed.fallbacks)
        ],
        stream=isinstance(typed, MessagesHead) and typed.stream,
        wants_usage=True,
        raw=raw,
    )


def _decode_messages(request: web.Request, body: bytes) -> Inbound:
    return _decode(request, body, ANTHROPIC_MESSAGES, _MESSAGES_HEAD.decode)


def _decode_count(request: web.Request, body: bytes) -> Inbound:
    return _decode(request, body, ANTHROPIC_COUNT_TOKENS, _COUNT_HEAD.decode)


ANTHROPIC_MESSAGES = Operation(
    NATIVE_MESSAGES,
    "json",
    content_fields=_CONTENT,
    decode=_decode_messages,
    render_error=error_body,
)
ANTHROPIC_COUNT_TOKENS = Operation(
    NATIVE_COUNT,
    "json",
    content_fields=_CONTENT,
    decode=_decode_count,
    render_error=error_body,
)
ANTHROPIC_MODELS = Operation("anthropic_models", "none", routed=False, render_error=error_body)
# Any other path under /anthropic: Anthropic's 404, behind the gateway key like the rest.
ANTHROPIC_OTHER = Operation("anthropic_unknown", "none", routed=False, render_error=error_body)


# --- calls ----------------------------------------------------------------------------------


def _chat_inbound(request: web.Request, provider: Provider) -> Inbound:
    """The request as the unified chat request, for a provider of another family."""
    inbound = request[BODY]
    if CHAT.name not in provider.operations:
        raise UnsupportedCapabilityError(provider.name, "Anthropic's Messages API")
    # Read whole only now: the native path leaves the checks of the rest to Anthropic.
    body = _encode(inbound.raw)
    whole: MessagesIn | CountRequest
    if inbound.op.name == NATIVE_MESSAGES:
        whole = decode_body(_MESSAGES.decode, body)
    else:
        whole = decode_body(_COUNT.decode, body)
    chat: ChatRequest = to_chat(whole, inbound.model, stream=inbound.stream)
    return Inbound(
        op=CHAT,
        typed=chat,
        model=inbound.model,
        fallbacks=[],
        stream=inbound.stream,
        wants_usage=True,
        # What OpenAI-compatible upstreams get field for field.
        raw=_RAW.decode(_encode(without_cache_control(chat))),
    )


def _headers(request: web.Request, upstream: Mapping[str, str]) -> dict[str, str]:
    """The upstream's headers worth passing on, and the gateway's: ``request-id`` (which the
    SDKs read) is the gateway's, Anthropic's own kept as ``x-thruway-upstream-request-id``."""
    own = {"request-id": request[REQUEST_ID], **gateway_headers(request, request[TARGET])}
    out: dict[str, str] = {}
    for name, value in upstream.items():
        lower = name.lower()
        if lower == "request-id":
            out["x-thruway-upstream-request-id"] = value
        elif lower not in own:
            out[name] = value
    out.update(own)
    return out


def _bad_reply(provider: str, what: str) -> UpstreamError:
    return UpstreamError(
        f"{provider}: the upstream's {what} could not be read.", status=502, provider=provider
    )


# --- POST /anthropic/v1/messages --------------------------------------------------------------


async def messages(request: web.Request) -> web.StreamResponse:
    target = request[TARGET]
    provider = request.app[PROVIDERS][target.provider]
    native = NATIVE_MESSAGES in provider.operations
    inbound = request[BODY] if native else _chat_inbound(request, provider)
    async with request.app[LIMITS].slot(target.provider):
        reply: Reply = await keyed(request, call_for(request, inbound), provider.send)
        if isinstance(reply, JSONReply):
            return _json(request, reply, native)
        if not isinstance(reply, EventStream):
            await reply.aclose()
            raise _bad_reply(provider.name, "stream")
        source = _native_events(reply) if native else _translated_events(request, reply)
        return await _stream(request, reply, source)


def _message_id(request: web.Request) -> str:
    return f"msg_{request[REQUEST_ID]}"


def _json(request: web.Request, reply: JSONReply, native: bool) -> web.Response:
    outcome = request[OUTCOME]
    outcome.usage = reply.usage
    body = reply.body
    if not native:
        try:
            completion = _CHAT.decode(reply.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise _bad_reply(request[TARGET].provider, "answer") from None
        model = request[BODY].typed.model
        body = render_message(completion, message_id=_message_id(request), model=model)
    headers = {**_headers(request, reply.headers), "Content-Type": "application/json"}
    return web.Response(body=body, headers=headers)


async def _native_events(stream: EventStream) -> AsyncGenerator[bytes, None]:
    async for batch in stream:
        yield b"".join(batch)


async def _translated_events(
    request: web.Request, stream: EventStream
) -> AsyncGenerator[bytes, None]:
    events = MessageEvents(message_id=_message_id(request), model=request[BODY].typed.model)
    provider = request[TARGET].provider
    async for payloads in stream:
        out = []
        for payload in payloads:
            try:
                chunk = _CHUNK.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise _bad_reply(provider, "stream event") from None
            out.append(events.feed(chunk))
        data = b"".join(out)
        if data:
            yield data
    yield events.finish()


async def _close(source: AsyncGenerator[bytes, None], stream: EventStream) -> None:
    try:
        await source.aclose()
    finally:
        await stream.aclose()


async def _stream(
    request: web.Request, stream: EventStream, source: AsyncGenerator[bytes, None]
) -> web.StreamResponse:
    """Forward ``source`` (SSE bytes) once its first batch is in; see the module docstring."""
    outcome = request[OUTCOME]
    first: bytes | None
    try:
        first = await anext(source)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(source, stream)
        outcome.usage = stream.usage
        raise
    outcome.ttfb_ms = outcome.elapsed_ms()
    try:
        response = await open_event_stream(request, _headers(request, stream.headers))
    except BaseException:
        await _close(source, stream)
        outcome.usage = stream.usage
        raise
    request.app[METRICS].stream_opened(request)
    interval = request.app[CONFIG].streaming.keepalive_interval_s
    keepalive = KeepAlive(response, interval, payload=PING)
    try:
        batch = first
        while batch is not None:
            await response.write(batch)
            keepalive.touch()
            batch = await anext(source, None)
    except GatewayError as exc:
        # Past the first byte there is no status to change: the error travels as an event.
        log.warning("stream_failed", status=exc.status, error_type=exc.type, error=exc.message)
        outcome.failures.append(f"{request[TARGET].label}: {exc.status} {exc.type} mid-stream")
        with contextlib.suppress(ConnectionError):
            await response.write(error_event(exc))
    except ConnectionError:
        outcome.client_disconnected = True
        return response
    finally:
        keepalive.stop()
        # Closed first: a stream cut short settles its usage as it closes.
        await _close(source, stream)
        outcome.usage = stream.usage
    try:
        await response.write_eof()
    except ConnectionError:
        outcome.client_disconnected = True
    return response


# --- POST /anthropic/v1/messages/count_tokens ---------------------------------------------------


class _Count(msgspec.Struct):
    input_tokens: int


async def count_tokens(request: web.Request) -> web.Response:
    """Anthropic counts natively; another provider counts the translated request if it can,
    else the gateway estimates (about four bytes of JSON per token), saying so in
    ``x-thruway-token-count``."""
    target = request[TARGET]
    provider = request.app[PROVIDERS][target.provider]
    counted: int | None = None
    if NATIVE_COUNT in provider.operations and isinstance(provider, CountsTokens):
        call = call_for(request, request[BODY])
        counted = await keyed(request, call, provider.count_tokens)
    else:
        inbound = _chat_inbound(request, provider)
        # OpenAI and Azure count Responses requests, not chat ones: for them, the estimate.
        if isinstance(provider, CountsTokens) and RESPONSES.name not in provider.operations:
            try:
                counted = await keyed(request, call_for(request, inbound), provider.count_tokens)
            except UnsupportedCapabilityError:
                counted = None  # no counting endpoint for this request
        if counted is None:
            chat = inbound.typed
            tools = chat.tools if isinstance(chat.tools, list) else []
            estimate = max(1, (len(_encode(chat.messages)) + len(_encode(tools))) // 4)
            headers = {**_headers(request, {}), "x-thruway-token-count": "estimated"}
            return _count_response(estimate, headers)
    headers = {**_headers(request, {}), "x-thruway-token-count": "provider"}
    return _count_response(counted, headers)


def _count_response(count: int, headers: dict[str, str]) -> web.Response:
    headers["Content-Type"] = "application/json"
    return web.Response(body=_encode(_Count(count)), headers=headers)
