"""The terminal handler: the only caller of providers.

It sends one attempt to ``request[TARGET]`` and renders the provider's reply. A JSON reply gets
``extra_fields`` appended; an event stream is committed (status and headers sent) only once its
first event has arrived, so a failure before that still raises and lets ``fallback`` move on;
after it, a failure ends the stream with an error event and ``[DONE]``.
"""

from __future__ import annotations

import contextlib

import msgspec
import structlog
from aiohttp import web

from providers.base import ByteStream, Call, EventStream, JSONReply
from providers.registry import PROVIDERS
from proxy.errors import GatewayError, UnsupportedCapabilityError
from proxy.keys import ATTEMPT, BODY, CONFIG, LIMITS, OUTCOME, REQUEST_ID, TARGET, Outcome
from proxy.operations import OPERATIONS, Inbound, Target
from proxy.schemas.common import BilledUsage, ExtraFields
from proxy.schemas.errors import ErrorBody, ErrorEnvelope
from proxy.sse import DONE, KeepAlive, event, event_batch, open_event_stream

__all__ = ["dispatch", "error_envelope", "extra_fields", "splice_extra_fields"]

log = structlog.get_logger("thruway.dispatch")
_encode = msgspec.json.Encoder().encode
_EMPTY = msgspec.Raw(b"{}")
_NOT_PARAMS = {op.name: op.not_params for op in OPERATIONS}


def splice_extra_fields(body: bytes, extra: bytes) -> bytes:
    """Append ``"extra_fields": extra`` to a JSON object without decoding it.

    A body that is not an object is returned unchanged.
    """
    end = body.rstrip()
    if not end.endswith(b"}"):
        return body
    head = end[:-1].rstrip()
    sep = b"" if head.endswith(b"{") else b","
    return b"".join((head, sep, b'"extra_fields":', extra, b"}"))


def _model_params(inbound: Inbound) -> msgspec.Raw:
    skip = _NOT_PARAMS[inbound.op.name]
    if inbound.raw is not None:
        params = {k: v for k, v in inbound.raw.items() if k not in skip}
        return msgspec.Raw(_encode(params)) if params else _EMPTY
    fields = {k: v for k, v in inbound.fields or () if k not in skip}
    return msgspec.Raw(_encode(fields)) if fields else _EMPTY


async def dispatch(request: web.Request) -> web.StreamResponse:
    inbound = request[BODY]
    target = request[TARGET]
    outcome = request[OUTCOME]
    provider = request.app[PROVIDERS][target.provider]
    if inbound.op.name not in provider.operations:
        raise UnsupportedCapabilityError(provider.name, inbound.op.name.replace("_", " "))
    attempt = request.get(ATTEMPT)
    call = Call(
        inbound=inbound,
        target=target,
        request_id=request[REQUEST_ID],
        raw_response=request.headers.get("x-thruway-raw-response", "").lower() == "true",
        client_headers=request.headers,
        avoid_key=attempt.avoid_key if attempt is not None else None,
        timeout_s=attempt.timeout_s if attempt is not None else None,
    )
    # The provider's slot is held until the reply is consumed: a stream is forwarded (or cut)
    # before the helpers below return.
    limiter = request.app[LIMITS][target.provider]
    since = limiter.enter()
    if since is None:
        since = await limiter.wait()
    try:
        try:
            reply = await provider.send(call)
        finally:
            if attempt is not None:
                attempt.key = call.key
        headers = {
            "x-request-id": call.request_id,
            "x-thruway-provider": target.provider,
            "x-thruway-model": target.model,
            "x-thruway-attempts": str(outcome.attempts),
            "x-thruway-fallback-index": str(target.index),
        }
        if isinstance(reply, JSONReply):
            return _json_response(call, reply, headers, outcome)
        if isinstance(reply, EventStream):
            return await _event_stream(request, call, reply, headers, outcome)
        return await _byte_stream(request, reply, headers, outcome)
    finally:
        limiter.leave(since)


def extra_fields(
    inbound: Inbound,
    target: Target,
    usage: BilledUsage | None,
    latency: float,
    attempts: int = 1,
) -> ExtraFields:
    """What a response says of how the gateway served it (``extra_fields``)."""
    return ExtraFields(
        attempts=attempts,
        provider=target.provider,
        request_type=inbound.op.name,
        model_requested=inbound.model,
        model_params=_model_params(inbound),
        latency=latency,
        billed_usage=usage,
        fallback_index=target.index,
    )


def _extra_fields(
    call: Call, usage: BilledUsage | None, latency: float, outcome: Outcome
) -> ExtraFields:
    return extra_fields(call.inbound, call.target, usage, latency, outcome.attempts)


def error_envelope(exc: GatewayError) -> ErrorEnvelope:
    """The unified error body of ``exc`` (sent as an event once a stream has begun)."""
    inner = msgspec.Raw(exc.innererror) if exc.innererror else msgspec.UNSET
    return ErrorEnvelope(ErrorBody(exc.message, exc.type, exc.param, exc.code, inner))


def _json_response(
    call: Call, reply: JSONReply, headers: dict[str, str], outcome: Outcome
) -> web.Response:
    outcome.usage = reply.usage
    latency = outcome.elapsed_ms()
    extra = _extra_fields(call, reply.usage, latency, outcome)
    if call.raw_response:
        extra.raw_response = msgspec.Raw(reply.raw if reply.raw is not None else reply.body)
    headers["x-thruway-latency-ms"] = f"{latency:.3f}"
    # Content-Type as a plain header: aiohttp's ``content_type=`` goes through a parsing setter.
    headers["Content-Type"] = "application/json"
    return web.Response(
        body=splice_extra_fields(reply.body, _encode(extra)),
        headers={**reply.headers, **headers} if reply.headers else headers,
    )


async def _event_stream(
    request: web.Request,
    call: Call,
    stream: EventStream,
    headers: dict[str, str],
    outcome: Outcome,
) -> web.StreamResponse:
    """Forward events as they arrive; the usage chunk (sent when the client asked for usage)
    also carries ``extra_fields``."""
    events = aiter(stream)
    try:
        first: list[bytes] | None = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        outcome.usage = stream.usage
        raise
    outcome.ttfb_ms = outcome.elapsed_ms()
    headers["x-thruway-latency-ms"] = f"{outcome.ttfb_ms:.3f}"
    response = await open_event_stream(request, {**stream.headers, **headers})
    keepalive = KeepAlive(response, request.app[CONFIG].streaming.keepalive_interval_s)
    # Only a client that asked for usage gets the usage chunk, and extra_fields with it.
    spliced = not call.inbound.wants_usage
    try:
        batch = first
        while batch is not None:
            if not spliced and stream.usage is not None:
                # The usage arrived with this batch: it ends with the usage chunk.
                extra = _extra_fields(call, stream.usage, outcome.elapsed_ms(), outcome)
                batch[-1] = splice_extra_fields(batch[-1], _encode(extra))
                spliced = True
            await response.write(event_batch(batch))
            keepalive.touch()
            try:
                batch = await events.__anext__()
            except StopAsyncIteration:
                batch = None
    except GatewayError as exc:
        # Past the first byte there is no status to change: the error travels as an event.
        log.warning("stream_failed", status=exc.status, error_type=exc.type, error=exc.message)
        outcome.failures.append(f"{request[TARGET].label}: {exc.status} {exc.type} mid-stream")
        with contextlib.suppress(ConnectionError):
            await response.write(event(_encode(error_envelope(exc))))
    except ConnectionError:
        # The client went away between two events: nothing more to send, nobody to tell.
        outcome.client_disconnected = True
        return response
    finally:
        keepalive.stop()
        # Closed first: a stream cut short settles its usage as it closes.
        await stream.aclose()
        outcome.usage = stream.usage
    try:
        # The last event and the end of the body in one write.
        await response.write_eof(DONE)
    except ConnectionError:
        outcome.client_disconnected = True
    return response


async def _byte_stream(
    request: web.Request, stream: ByteStream, headers: dict[str, str], outcome: Outcome
) -> web.StreamResponse:
    headers["x-thruway-latency-ms"] = f"{outcome.elapsed_ms():.3f}"
    response = web.StreamResponse(
        headers={**stream.headers, **headers, "Content-Type": stream.content_type}
    )
    await response.prepare(request)
    try:
        async for chunk in stream.chunks:
            if outcome.ttfb_ms is None:
                outcome.ttfb_ms = outcome.elapsed_ms()
            await response.write(chunk)
    except GatewayError as exc:
        # A binary body cannot carry an error: cut the connection so the client sees a failure
        # rather than a short file that looks complete.
        log.warning("stream_failed", status=exc.status, error_type=exc.type, error=exc.message)
        outcome.failures.append(f"{request[TARGET].label}: {exc.status} {exc.type} mid-stream")
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionError:
        outcome.client_disconnected = True
        return response
    finally:
        await stream.aclose()
    try:
        await response.write_eof()
    except ConnectionError:
        outcome.client_disconnected = True
    return response
