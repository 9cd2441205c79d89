"""Outermost: the one place where exceptions become the unified error body."""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import (
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
)
from proxy.keys import REQUEST_ID
from proxy.operations import operation_of
from proxy.schemas.errors import ErrorBody, ErrorEnvelope

__all__ = ["errors_middleware", "render_error"]

log = structlog.get_logger("thruway.errors")
_encode = msgspec.json.Encoder().encode


def render_error(
    error: GatewayError, request_id: str | None = None, request: web.Request | None = None
) -> web.Response:
    """The unified error body, or the route's own dialect when its operation renders errors."""
    op = operation_of(request) if request is not None else None
    if op is not None and op.render_error is not None:
        body = op.render_error(error)
    else:
        body = _unified(error)
    response = web.Response(
        status=error.status,
        body=body,
        content_type="application/json",
        headers=error.headers,
    )
    if op is not None and op.error_headers is not None:
        response.headers.update(op.error_headers(error))
    if request_id is not None:
        response.headers["x-request-id"] = request_id
    return response


def _unified(error: GatewayError) -> bytes:
    return _encode(
        ErrorEnvelope(
            ErrorBody(
                message=error.message,
                type=error.type,
                param=error.param,
                code=error.code,
                innererror=msgspec.Raw(error.innererror) if error.innererror else msgspec.UNSET,
            )
        )
    )


def _from_http(exc: web.HTTPException, request: web.Request, limit: int) -> GatewayError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFoundError(f"Invalid URL ({request.method} {request.path})")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.path}; use {allowed}.",
            headers={"Allow": allowed},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
    error = InvalidRequestError(exc.reason or f"HTTP {exc.status}")
    error.status = exc.status
    return error


def errors_middleware(*, max_body_bytes: int, debug: bool = False) -> Middleware:
    """Render ``GatewayError``s, aiohttp's HTTP errors and unexpected exceptions.

    An unexpected exception is a 500 with a fixed message; its log line names the exception and
    where it was raised, with the whole traceback only when ``debug`` is set.
    """

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            return render_error(exc, request.get(REQUEST_ID), request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return render_error(
                _from_http(exc, request, max_body_bytes), request.get(REQUEST_ID), request
            )
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
            log.error(
                "internal_error",
                error=type(exc).__name__,
                where=where,
                exc_info=exc if debug else None,
            )
            return render_error(
                GatewayError("The gateway failed to handle the request."),
                request.get(REQUEST_ID),
                request,
            )

    return errors
