"""Cohere's error answers as the gateway's errors (pure).

Cohere answers an error with ``{"id": ..., "message": ...}`` (some only ``message``) and one
of the statuses its API reference lists: 400, 401, 402 (billing limit), 403, 404, 422, 429,
498 (a deny-listed token in the request or answer), 499 (request cancelled: "try the request
again"), 500, 501, 503, 504. A generation that fails after a 200 says so in its finish reason
(``ERROR``, with ``delta.error`` in a stream, or ``TIMEOUT``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from providers.cohere.wire import ErrorBody
from proxy.errors import UpstreamError
from proxy.redact import Redactor

__all__ = ["generation_failed", "map_error"]

_decode = msgspec.json.Decoder(ErrorBody).decode

# status -> (unified type, code, retryable); statuses not listed keep the defaults of
# UpstreamError (type from the status, retryable for 408/429/5xx but 501).
_KINDS: dict[int, tuple[str, str | None, bool | None]] = {
    402: ("permission_error", "payment_required", False),
    498: ("invalid_request_error", "blocked_token", False),
    499: ("api_error", "request_cancelled", True),
    503: ("overloaded_error", None, None),
    504: ("timeout_error", None, None),
}


def _message(status: int, body: bytes) -> str:
    try:
        message = _decode(body).message if body else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = None
    if message:
        return message
    text = body[:300].decode("utf-8", "replace").strip()
    return f"HTTP {status}" + (f": {text}" if text else "")


def map_error(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, scrub: Redactor
) -> UpstreamError:
    """Cohere's error answer, its status kept, ``retry-after`` kept when Cohere sends one."""
    kind, code, retryable = _KINDS.get(status, (None, None, None))
    keep = {name: headers[name] for name in ("retry-after",) if name in headers}
    return UpstreamError(
        f"{provider}: {scrub(_message(status, body))}",
        status=status,
        provider=provider,
        type=kind,
        code=code,
        headers=keep,
        retryable=retryable,
    )


def generation_failed(
    reason: str, detail: str | None, *, provider: str, scrub: Redactor
) -> UpstreamError:
    """A 200 whose generation Cohere reports as failed: ``ERROR`` ("the generation failed due
    to an internal error") or ``TIMEOUT`` ("exceeded the allowed time limit"). Both are
    Cohere's failures, so another attempt may succeed."""
    if reason == "TIMEOUT":
        text = detail or "the generation exceeded Cohere's time limit"
        return UpstreamError(
            f"{provider}: {scrub(text)}",
            status=504,
            provider=provider,
            type="timeout_error",
            code="generation_timeout",
        )
    text = detail or "the generation failed with an internal error"
    return UpstreamError(
        f"{provider}: {scrub(text)}", status=502, provider=provider, code="generation_error"
    )
