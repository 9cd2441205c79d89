"""The request id, the per-request log context, and one canonical log line per request."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import GatewayError
from proxy.keys import BODY, DRAINING, OUTCOME, PRINCIPAL, REQUEST_ID, Outcome
from proxy.logging import CanonicalLine, RequestLine
from proxy.metrics import Metrics
from proxy.operations import Operation, operation_of
from proxy.store import UsageRecord
from proxy.usage import STREAM_CAPTURE, USAGE_WRITER, stream_text, usage_content

__all__ = ["new_request_id", "request_context_middleware"]

# A caller's id is echoed only when it is short and printable; anything else gets a fresh one.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class _RequestIds:
    """Fresh request ids: 32 hex digits, a random per-process prefix and a counter.

    Unique across processes and restarts (the prefix is 80 random bits) without a ``getrandom``
    system call per request; ids identify requests, they are not secrets.
    """

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


new_request_id = _RequestIds()
# A forked worker must not repeat its parent's ids.
os.register_at_fork(after_in_child=new_request_id.reset)


def request_context_middleware(
    request_line: RequestLine | None = None, metrics: Metrics | None = None
) -> Middleware:
    """``metrics``, when given, is updated from the same values as the canonical line."""
    write_line = request_line or RequestLine()

    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("x-request-id", "")
        request_id = given if given and _SAFE_ID.fullmatch(given) else new_request_id()
        request[REQUEST_ID] = request_id
        outcome = request[OUTCOME] = Outcome()
        op = operation_of(request)
        if metrics is not None and op is not None:
            metrics.started()
        writer = request.app.get(USAGE_WRITER) if op is not None and not op.admin else None
        if writer is not None and writer.log_content:
            request[STREAM_CAPTURE] = []
        # aiohttp runs each request in a copy of the context, so nothing leaks between requests.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        error_type: str | None = None
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            if not response.prepared:  # a stream sent its headers already, the id with them
                response.headers["x-request-id"] = request_id
            # A stream whose client left midway ends quietly, but is logged as what it was.
            status = 499 if outcome.client_disconnected else response.status
            if outcome.client_disconnected:
                error_type = "client_disconnected"
            return response
        except GatewayError as exc:
            status, error_type = exc.status, exc.type
            raise
        except web.HTTPException as exc:
            status, error_type = exc.status, "http_error"
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            if request.app[DRAINING].is_set():
                # Cut by a shutdown whose drain time ran out, not by the client.
                status, error_type = 503, "gateway_shutdown"
            else:
                # nginx's convention for "client closed the request".
                status, error_type = 499, "client_disconnected"
                outcome.client_disconnected = True
            raise
        except Exception:
            error_type = "internal_error"
            raise
        finally:
            _canonical_line(
                write_line, request, op=op, outcome=outcome, status=status, error_type=error_type
            )
            if metrics is not None:
                if op is not None:
                    metrics.finished(request, op.name, outcome, status, error_type)
                else:
                    metrics.finished_other(request, error_type)
            if writer is not None and op is not None:
                content = _content(request, op, response) if writer.log_content else None
                writer.submit(usage_record(request, op, outcome, status, error_type, content))

    return request_context


def usage_record(
    request: web.Request,
    op: Operation,
    outcome: Outcome,
    status: int,
    error_type: str | None,
    content: bytes | None = None,
) -> UsageRecord:
    """The usage record of a request, from the values of its canonical line."""
    principal = request.get(PRINCIPAL)
    billed = outcome.usage
    cost = outcome.log_fields.get("cost_usd")
    latency_ms = outcome.elapsed_ms()
    return UsageRecord(
        id=new_request_id(),
        created_at=time.time() - latency_ms / 1000,
        request_id=request[REQUEST_ID],
        key_id=principal.key_id if principal is not None else None,
        team_id=principal.team_id if principal is not None else None,
        provider=outcome.provider or None,
        model=outcome.model or None,
        model_requested=outcome.model_requested or None,
        route=request.path,
        request_type=op.name,
        status=status,
        error_type=error_type,
        input_tokens=billed.prompt_tokens if billed is not None else 0,
        output_tokens=billed.completion_tokens if billed is not None else 0,
        cached_tokens=billed.cached_tokens if billed is not None else 0,
        reasoning_tokens=billed.reasoning_tokens if billed is not None else 0,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        latency_ms=latency_ms,
        ttfb_ms=outcome.ttfb_ms,
        attempts=outcome.attempts,
        fallback_index=outcome.fallback_index,
        stream=outcome.stream,
        content=content,
    )


def _content(
    request: web.Request, op: Operation, response: web.StreamResponse | None
) -> bytes | None:
    """With ``usage.log_content``: the request's content fields (``messages``, ``input``, ...
    as sent; a multipart form's text fields), a JSON answer's body, and a chat or completions
    stream's text. Uploaded files, error bodies (the errors middleware renders them, further
    out) and other replies (audio, a Responses stream) are not kept."""
    inbound = request.get(BODY)
    fields: dict[str, msgspec.Raw | str] = {}
    if inbound is not None and inbound.raw is not None:
        fields = {k: v for k, v in inbound.raw.items() if k in op.content_fields}
    elif inbound is not None and inbound.fields is not None:
        fields = {k: v for k, v in inbound.fields if k in op.content_fields}
    reply = None
    if (
        isinstance(response, web.Response)
        and response.content_type == "application/json"
        and isinstance(response.body, bytes)
    ):
        reply = response.body
    events = request.get(STREAM_CAPTURE)
    return usage_content(fields, reply, stream_text(events) if events else None)


def _canonical_line(
    write_line: RequestLine,
    request: web.Request,
    *,
    op: Operation | None,
    outcome: Outcome,
    status: int,
    error_type: str | None,
) -> None:
    if op is None and status < 400:
        write_line(
            CanonicalLine(
                request_id=request[REQUEST_ID],
                method=request.method,
                path=request.path,
                status=status,
                level="debug",
            )
        )
        return
    write_line(
        CanonicalLine(
            request_id=request[REQUEST_ID],
            method=request.method,
            path=request.path,
            status=status,
            request_type=op.name if op else None,
            model_requested=outcome.model_requested or None,
            provider=outcome.provider or None,
            model=outcome.model or None,
            stream=outcome.stream,
            attempts=outcome.attempts,
            fallback_index=outcome.fallback_index,
            latency_ms=outcome.elapsed_ms(),
            ttfb_ms=outcome.ttfb_ms,
            error_type=error_type,
            failures=outcome.failures or None,
            **outcome.log_fields,  # type: ignore[arg-type]
            level="info",
        )
    )
