"""``POST /bedrock/model/{modelId}/converse`` and ``/converse-stream``: Bedrock's Converse API,
so that boto3's ``bedrock-runtime`` client (``endpoint_url=<gateway>/bedrock``) works unchanged.

The model id names a Bedrock model (served by the gateway's Bedrock provider: the one named
``bedrock``, else the only provider of type ``bedrock``), ``provider/model`` (any provider), or
a configured route. A Bedrock provider gets the client's body as it came, re-signed; another
provider gets the unified translation (``providers.bedrock.inbound``) and its answer comes back
in Converse's shape (``providers.bedrock.outbound``): a JSON body, or AWS event-stream messages.
Errors are Bedrock's: ``{"message": ...}`` naming the exception (``ValidationException``,
``ThrottlingException``...) in ``x-amzn-ErrorType`` and in the body's ``__type``; past the first
event, an exception message ends the stream.

The gateway does not check SigV4 signatures: with a master key set, the key comes as
``x-api-key`` (or ``Authorization: Bearer``), which a boto3 event hook can add.
"""

from __future__ import annotations

import contextlib
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web

from middlewares.decode import decode_body
from providers.base import EventStream, JSONReply
from providers.bedrock.errors import PassedOnError
from providers.bedrock.eventstream import CONTENT_TYPE
from providers.bedrock.inbound import CONVERSE, ConverseInput, NativeConverse, to_chat
from providers.bedrock.outbound import (
    StreamWriter,
    converse_reply,
    error_body,
    error_name,
    stream_exception,
)
from providers.registry import PROVIDERS
from proxy.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    UnsupportedCapabilityError,
    UpstreamError,
)
from proxy.keys import BODY, CONFIG, DIRECTORY, LIMITS, OUTCOME, TARGET, Outcome
from proxy.metrics import METRICS
from proxy.native.served import call_for, gateway_headers, send
from proxy.operations import CHAT, Inbound, Operation
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk

__all__ = ["BEDROCK_CONVERSE", "converse"]

log = structlog.get_logger("thruway.bedrock")
_encode = msgspec.json.Encoder().encode
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_INPUT = msgspec.json.Decoder(ConverseInput)
_COMPLETION = msgspec.json.Decoder(ChatCompletion)
_CHUNK = msgspec.json.Decoder(ChatCompletionChunk)
_ERROR_TYPE = "x-amzn-ErrorType"
_E = TypeVar("_E", bound=GatewayError)


def _bedrock_error(error: _E) -> _E:
    """``error`` with Bedrock's ``x-amzn-ErrorType`` header (botocore reads the name there)."""
    error.headers = {**error.headers, _ERROR_TYPE: error_name(error)}
    return error


# --- the request -------------------------------------------------------------------------------


def _family_provider(request: web.Request) -> str | None:
    """The provider a bare Bedrock model id means: the one named ``bedrock``, else the only
    provider of type ``bedrock``."""
    providers = request.app[CONFIG].providers
    bedrock = [n for n, s in providers.items() if (s.type or n) == "bedrock"]
    if "bedrock" in bedrock:
        return "bedrock"
    return bedrock[0] if len(bedrock) == 1 else None


def _model(request: web.Request, model_id: str) -> str:
    """``provider/model`` (or a route name) for the path's model id."""
    if model_id in request.app[CONFIG].routes:
        return model_id
    directory = request.app[DIRECTORY]
    prefix, sep, rest = model_id.partition("/")
    if sep and rest and (prefix in directory.available or prefix in directory.unavailable):
        return model_id
    family = _family_provider(request)
    if family is None:
        names = ", ".join(sorted(directory.available)) or "none"
        raise _bedrock_error(
            NotFoundError(
                f"No Bedrock provider is configured to serve model `{model_id}`: configure a "
                f"provider of type `bedrock`, or name another provider as `provider/model`. "
                f"Configured providers: {names}.",
                param="modelId",
                code="model_not_found",
            )
        )
    return f"{family}/{model_id}"


def decode_converse(request: web.Request, body: bytes) -> Inbound:
    """The Converse body (kept as sent, for Bedrock) and the model id of the path."""
    try:
        decode_body(_RAW.decode, body)
    except InvalidRequestError as exc:
        raise _bedrock_error(exc) from None
    typed: ConverseInput | None = None
    problem: InvalidRequestError | None = None
    try:
        typed = decode_body(_INPUT.decode, body)
    except InvalidRequestError as exc:
        problem = _bedrock_error(exc)
    return Inbound(
        op=BEDROCK_CONVERSE,
        typed=NativeConverse(body=body, request=typed, problem=problem),
        model=_model(request, request.match_info["model_id"]),
        fallbacks=[],
        stream=request.match_info["action"] == "converse-stream",
        wants_usage=True,
    )


BEDROCK_CONVERSE = Operation(
    CONVERSE,
    "json",
    content_fields=frozenset({"messages", "system", "toolConfig"}),
    decode=decode_converse,
    render_error=error_body,
    # Every error, those raised before this module's handler (auth, limits) included.
    error_headers=lambda error: {_ERROR_TYPE: error_name(error)},
)


# --- the answer --------------------------------------------------------------------------------


async def converse(request: web.Request) -> web.StreamResponse:
    """One attempt: natively to a Bedrock provider, else through the unified translation."""
    try:
        return await _converse(request)
    except GatewayError as exc:
        raise _bedrock_error(exc) from None


async def _converse(request: web.Request) -> web.StreamResponse:
    inbound = request[BODY]
    target = request[TARGET]
    provider = request.app[PROVIDERS][target.provider]
    native = CONVERSE in provider.operations
    if native:
        call = call_for(request, inbound)
    else:
        if CHAT.name not in provider.operations:
            raise UnsupportedCapabilityError(provider.name, "chat")
        typed = inbound.typed
        assert isinstance(typed, NativeConverse)
        chat = to_chat(
            typed.decoded(), model=target.label, provider=provider.name, stream=inbound.stream
        )
        unified = Inbound(
            op=CHAT,
            typed=chat,
            model=inbound.model,
            fallbacks=[],
            stream=inbound.stream,
            wants_usage=True,
            raw=_RAW.decode(_encode(chat)),
        )
        call = call_for(request, unified)
    outcome = request[OUTCOME]
    async with request.app[LIMITS].slot(target.provider):
        reply = await send(request, provider, call)
        if isinstance(reply, JSONReply):
            outcome.usage = reply.usage
            body = reply.body if native else _translated_body(reply.body, provider.name, outcome)
            headers = {**reply.headers, **gateway_headers(request, target)}
            headers["Content-Type"] = "application/json"
            return web.Response(body=body, headers=headers)
        if isinstance(reply, EventStream):
            return await _stream(request, reply, None if native else StreamWriter())
        await reply.aclose()
        raise _unreadable(provider.name)


def _unreadable(provider: str) -> UpstreamError:
    return UpstreamError(
        f"{provider}: the upstream's answer is not a chat answer.", status=502, provider=provider
    )


def _translated_body(body: bytes, provider: str, outcome: Outcome) -> bytes:
    try:
        completion = _COMPLETION.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _unreadable(provider) from None
    return converse_reply(completion, latency_ms=outcome.elapsed_ms())


def _frames(batch: list[bytes], writer: StreamWriter | None, provider: str) -> bytes:
    """A batch from the provider as event-stream bytes: passed on (native), or translated."""
    if writer is None:
        return b"".join(batch)
    out: list[bytes] = []
    for payload in batch:
        try:
            chunk = _CHUNK.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise _unreadable(provider) from None
        out.extend(writer.feed(chunk))
    return b"".join(out)


async def _first(stream: EventStream, writer: StreamWriter | None, provider: str) -> bytes:
    """The stream's first bytes for the client (batches that translate to nothing are read
    past); an error before them is raised, so the request may still fall back."""
    while True:
        batch = await anext(aiter(stream), None)
        if batch is None:
            return b""
        data = _frames(batch, writer, provider)
        if data:
            return data


async def _stream(
    request: web.Request, stream: EventStream, writer: StreamWriter | None
) -> web.StreamResponse:
    """Commit the answer once its first event is in; past it, a failure is an exception
    message, and a client that leaves is accounted like one that stayed."""
    outcome = request[OUTCOME]
    target = request[TARGET]
    try:
        first = await _first(stream, writer, target.provider)
        outcome.ttfb_ms = outcome.elapsed_ms()
        headers = {**stream.headers, **gateway_headers(request, target)}
        response = web.StreamResponse(headers={**headers, "Content-Type": CONTENT_TYPE})
        await response.prepare(request)
    except BaseException:
        await stream.aclose()
        outcome.usage = stream.usage
        raise
    request.app[METRICS].stream_opened(request)
    try:
        data = first
        events = aiter(stream)
        while True:
            if data:
                await response.write(data)
            batch = await anext(events, None)
            if batch is None:
                break
            data = _frames(batch, writer, target.provider)
        if writer is not None:
            await response.write(b"".join(writer.finish(latency_ms=outcome.elapsed_ms())))
    except GatewayError as exc:
        log.warning("stream_failed", status=exc.status, error_type=exc.type, error=exc.message)
        outcome.failures.append(f"{target.label}: {exc.status} {exc.type} mid-stream")
        if not isinstance(exc, PassedOnError):
            with contextlib.suppress(ConnectionError):
                await response.write(stream_exception(exc))
    except ConnectionError:
        outcome.client_disconnected = True
        return response
    finally:
        await stream.aclose()
        outcome.usage = stream.usage
    try:
        await response.write_eof()
    except ConnectionError:
        outcome.client_disconnected = True
    return response
