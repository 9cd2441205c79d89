"""Anthropic's errors as the gateway's.

Anthropic answers ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with the
statuses 400 ``invalid_request_error``, 401 ``authentication_error``, 402 ``billing_error``,
403 ``permission_error``, 404 ``not_found_error``, 413 ``request_too_large``, 429
``rate_limit_error``, 500 ``api_error``, 504 ``timeout_error`` and 529 ``overloaded_error``; a
stream that already started reports the same object as an ``error`` event.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from providers.anthropic.wire import ErrorBody, ErrorEnvelope
from proxy.errors import UpstreamError
from proxy.redact import Redactor

__all__ = ["event_error", "map_error"]

_envelope = msgspec.json.Decoder(ErrorEnvelope).decode

# Anthropic's error type -> (the gateway's type, the status an error event stands for).
_TYPES: dict[str, tuple[str, int]] = {
    "invalid_request_error": ("invalid_request_error", 400),
    "authentication_error": ("authentication_error", 401),
    "billing_error": ("billing_error", 402),
    "permission_error": ("permission_error", 403),
    "not_found_error": ("not_found_error", 404),
    "request_too_large": ("invalid_request_error", 413),
    "rate_limit_error": ("rate_limit_error", 429),
    "api_error": ("api_error", 500),
    "timeout_error": ("timeout_error", 504),
    "overloaded_error": ("overloaded_error", 529),
}
# Response headers an error keeps: when to retry, and Anthropic's id for support requests.
_KEPT = ("retry-after", "request-id")


def map_error(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, scrub: Redactor
) -> UpstreamError:
    """An error answer (any status >= 400) as an :class:`UpstreamError` keeping its status."""
    error: ErrorBody | None = None
    try:
        error = _envelope(body).error if body else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = None
    if error is None:
        # Not Anthropic's JSON (a proxy's or load balancer's page): say what came back.
        text = body[:300].decode("utf-8", "replace").strip()
        error = ErrorBody(type="", message=f"HTTP {status}" + (f": {text}" if text else ""))
    kept = {name: headers[name] for name in _KEPT if name in headers}
    return _upstream_error(error, status, provider, scrub, kept)


def event_error(error: ErrorBody, *, provider: str, scrub: Redactor) -> UpstreamError:
    """An ``error`` event inside a stream: the status its type stands for (529 for
    ``overloaded_error``), so overload and rate limits stay retryable."""
    status = _TYPES.get(error.type, ("", 500))[1]
    return _upstream_error(error, status, provider, scrub, {})


def _upstream_error(
    error: ErrorBody, status: int, provider: str, scrub: Redactor, headers: dict[str, str]
) -> UpstreamError:
    known = _TYPES.get(error.type)
    return UpstreamError(
        f"{provider}: {scrub(error.message or error.type or f'HTTP {status}')}",
        status=status,
        provider=provider,
        type=known[0] if known else None,
        # The unified type is coarser for a few (``request_too_large``): keep Anthropic's.
        code=error.type if known and known[0] != error.type else None,
        headers=headers,
    )
