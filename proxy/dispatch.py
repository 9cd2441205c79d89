"""The terminal handler: the only caller of providers.

It sends one attempt to ``request[TARGET]`` and renders the provider's reply. A JSON reply gets
``extra_fields`` appended; an event stream is committed (status and headers sent) only once its
first event has arrived, so a failure before that still raises and lets ``fallback`` move on;
after it, a failure ends the stream with an error event and ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import structlog
from aiohttp import web

from providers.base import ByteStream, Call, EventStream, JSONReply, Reply
from providers.registry import PROVIDERS
from proxy.errors import GatewayError, UnsupportedCapabilityError
from proxy.keys import (
    ATTEMPT,
    BODY,
    CONFIG,
    LIMITS,
    OUTCOME,
    PRICING,
    REQUEST_ID,
    TARGET,
    AttemptState,
    Outcome,
)
from proxy.metrics import METRICS
from proxy.operations import OPERATIONS, Inbound, Target
from proxy.pricing import Pricing
from proxy.schemas.common import BilledUsage, ExtraFields
from proxy.schemas.errors import ErrorBody, ErrorEnvelope
from proxy.sse import DONE, KeepAlive, event, event_batch, open_event_stream
from proxy.usage import STREAM_CAPTURE

__all__ = ["dispatch", "error_envelope", "extra_fields", "splice_extra_fields"]

log = structlog.get_logger("thruway.dispatch")
_encode = msgspec.json.Encoder().encode
_EMPTY = msgspec.Raw(b"{}")
_NOT_PARAMS = {op.name: op.not_params for op in OPERATIONS}


class _Unread:
    """The first batch of a stream not read yet."""


_UNREAD = _Unread()


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
    skip = _NOT_PARAMS.get(inbound.op.name) or inbound.op.not_params
    if inbound.raw is not None:
        params = {k: v for k, v in inbound.raw.items() if k not in skip}
        return msgspec.Raw(_encode(params)) if params else _EMPTY
    fields = {k: v for k, v in inbound.fields or () if k not in skip}
    return msgspec.Raw(_encode(fields)) if fields else _EMPTY


async def dispatch(request: web.Request) -> web.StreamResponse:
    inbound = request[BODY]
    target = request[TARGET]
    outcome = request[OUTCOME]
    attempt = request.get(ATTEMPT)
    if attempt is not None and attempt.hedge is not None:
        return await _hedged(request, attempt)
    provider = request.app[PROVIDERS][target.provider]
    if inbound.op.name not in provider.operations:
        raise UnsupportedCapabilityError(provider.name, inbound.op.name.replace("_", " "))
    call = _call(request, target, attempt)
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
        headers = _headers(call, outcome)
        if isinstance(reply, JSONReply):
            return _json_response(call, reply, headers, outcome, request.app[PRICING])
        if isinstance(reply, EventStream):
            return await _event_stream(request, call, reply, headers, outcome)
        return await _byte_stream(request, reply, headers, outcome)
    finally:
        limiter.leave(since)


def _call(request: web.Request, target: Target, attempt: AttemptState | None) -> Call:
    return Call(
        inbound=request[BODY],
        target=target,
        request_id=request[REQUEST_ID],
        raw_response=request.headers.get("x-thruway-raw-response", "").lower() == "true",
        client_headers=request.headers,
        avoid_key=attempt.avoid_key if attempt is not None else None,
        timeout_s=attempt.timeout_s if attempt is not None else None,
    )


def _headers(call: Call, outcome: Outcome) -> dict[str, str]:
    return {
        "x-request-id": call.request_id,
        "x-thruway-provider": call.target.provider,
        "x-thruway-model": call.target.model,
        "x-thruway-attempts": str(outcome.attempts),
        "x-thruway-fallback-index": str(call.target.index),
    }


# --- hedging ----------------------------------------------------------------------------------


class _Started:
    """One hedged attempt that has its reply (and, for a stream, its first batch)."""

    def __init__(self, call: Call, reply: Reply, since: float, first: list[bytes] | None) -> None:
        self.call = call
        self.reply = reply
        self.since = since
        self.first = first

    async def discard(self, request: web.Request, outcome: Outcome) -> None:
        """The loser: its reply closed, its usage (as far as it is known) accounted."""
        reply = self.reply
        usage = None
        if isinstance(reply, JSONReply):
            usage = reply.usage
        else:
            await reply.aclose()
            if isinstance(reply, EventStream):
                usage = reply.usage
        if usage is not None:
            fields = outcome.log_fields
            fields["hedge_loser_input_tokens"] = usage.prompt_tokens
            fields["hedge_loser_output_tokens"] = usage.completion_tokens
        request.app[LIMITS][self.call.target.provider].leave(self.since)


async def _start(request: web.Request, target: Target, attempt: AttemptState) -> _Started:
    provider = request.app[PROVIDERS][target.provider]
    if request[BODY].op.name not in provider.operations:
        raise UnsupportedCapabilityError(provider.name, request[BODY].op.name.replace("_", " "))
    call = _call(request, target, attempt)
    limiter = request.app[LIMITS][target.provider]
    since = limiter.enter()
    if since is None:
        since = await limiter.wait()
    try:
        reply = await provider.send(call)
        first: list[bytes] | None = None
        if isinstance(reply, EventStream):
            try:
                first = await anext(aiter(reply))
            except StopAsyncIteration:
                first = None
            except BaseException:
                await reply.aclose()
                raise
        return _Started(call, reply, since, first)
    except BaseException:
        limiter.leave(since)
        raise


async def _hedged(request: web.Request, attempt: AttemptState) -> web.StreamResponse:
    """The attempt, and, if it has sent nothing by the hedge delay, a second one on the next
    target: the first to have its reply (a stream: its first event) is served, the other
    cancelled (or, if it finished too, closed with its usage logged)."""
    assert attempt.hedge is not None
    after_s, second = attempt.hedge
    outcome = request[OUTCOME]
    primary = asyncio.ensure_future(_start(request, request[TARGET], attempt))
    tasks = {primary}
    done, _ = await asyncio.wait(tasks, timeout=after_s)
    if not done:
        log.info("hedged", after_ms=round(after_s * 1000, 1), second=second.label)
        outcome.attempts += 1
        attempt.hedged = second
        tasks.add(asyncio.ensure_future(_start(request, second, AttemptState())))
    winner: _Started | None = None
    errors: dict[asyncio.Future[_Started], BaseException] = {}
    pending = set(tasks)
    try:
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    errors[task] = exc
                elif winner is None:
                    winner = task.result()
                else:
                    await task.result().discard(request, outcome)
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                late = await task
                await late.discard(request, outcome)
    if winner is None:
        # Both failed: the primary's error, which the fallback middleware judges.
        raise errors.get(primary) or next(iter(errors.values()))
    call = winner.call
    if call.target is not request[TARGET]:
        request[TARGET] = call.target
        outcome.provider, outcome.model = call.target.provider, call.target.model
        outcome.fallback_index = call.target.index
    try:
        headers = _headers(call, outcome)
        reply = winner.reply
        if isinstance(reply, JSONReply):
            return _json_response(call, reply, headers, outcome, request.app[PRICING])
        if isinstance(reply, EventStream):
            return await _event_stream(request, call, reply, headers, outcome, first=winner.first)
        return await _byte_stream(request, reply, headers, outcome)
    finally:
        request.app[LIMITS][call.target.provider].leave(winner.since)


def extra_fields(
    inbound: Inbound,
    target: Target,
    usage: BilledUsage | None,
    latency: float,
    attempts: int = 1,
    cost_usd: float | None = None,
) -> ExtraFields:
    """What a response says of how the gateway served it (``extra_fields``)."""
    return ExtraFields(
        cost_usd=msgspec.UNSET if cost_usd is None else cost_usd,
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
    call: Call, usage: BilledUsage | None, latency: float, outcome: Outcome, pricing: Pricing
) -> ExtraFields:
    target = call.target
    cost = None if usage is None else pricing.cost_usd(target.provider, target.model, usage)
    return extra_fields(call.inbound, target, usage, latency, outcome.attempts, cost)


def error_envelope(exc: GatewayError) -> ErrorEnvelope:
    """The unified error body of ``exc`` (sent as an event once a stream has begun)."""
    inner = msgspec.Raw(exc.innererror) if exc.innererror else msgspec.UNSET
    return ErrorEnvelope(ErrorBody(exc.message, exc.type, exc.param, exc.code, inner))


def _json_response(
    call: Call, reply: JSONReply, headers: dict[str, str], outcome: Outcome, pricing: Pricing
) -> web.Response:
    outcome.usage = reply.usage
    latency = outcome.elapsed_ms()
    extra = _extra_fields(call, reply.usage, latency, outcome, pricing)
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
    *,
    first: list[bytes] | _Unread | None = _UNREAD,
) -> web.StreamResponse:
    """Forward events as they arrive; the usage chunk (sent when the client asked for usage)
    also carries ``extra_fields``. ``first``: the first batch, when a hedge already read it."""
    events = aiter(stream)
    if isinstance(first, _Unread):
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await stream.aclose()
            outcome.usage = stream.usage
            raise
    outcome.ttfb_ms = outcome.elapsed_ms()
    headers["x-thruway-latency-ms"] = f"{outcome.ttfb_ms:.3f}"
    try:
        response = await open_event_stream(request, {**stream.headers, **headers})
    except BaseException:
        # The client left before the headers went out: the upstream is released all the same.
        await stream.aclose()
        outcome.usage = stream.usage
        raise
    request.app[METRICS].stream_opened(request)
    keepalive = KeepAlive(response, request.app[CONFIG].streaming.keepalive_interval_s)
    # Only a client that asked for usage gets the usage chunk, and extra_fields with it.
    spliced = not call.inbound.wants_usage
    # With ``usage.log_content``, the events sent, for the usage record's completion text.
    capture = request.get(STREAM_CAPTURE)
    try:
        batch = first
        while batch is not None:
            if capture is not None:
                capture.extend(batch)
            if not spliced and stream.usage is not None:
                # The usage arrived with this batch: it ends with the usage chunk.
                extra = _extra_fields(
                    call, stream.usage, outcome.elapsed_ms(), outcome, request.app[PRICING]
                )
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
    try:
        await response.prepare(request)
    except BaseException:
        await stream.aclose()
        raise
    request.app[METRICS].stream_opened(request)
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
