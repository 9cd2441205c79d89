"""Gemini's error answers as the gateway's errors (pure).

Google APIs answer ``{"error": {"code", "message", "status", "details"}}``: ``status`` is the
``google.rpc.Code`` name, ``details`` typed messages such as ``RetryInfo`` (how long to wait
after RESOURCE_EXHAUSTED) and ``ErrorInfo`` (a machine-readable reason).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import msgspec

from providers.gemini.wire import ErrorBody, ErrorEnvelope
from proxy.errors import UpstreamError
from proxy.redact import Redactor

__all__ = ["error_from_body", "map_error"]

# google.rpc.Code name -> (unified type, retryable). A status Google does not list keeps the
# HTTP status's defaults.
_KINDS: dict[str, tuple[str, bool]] = {
    "INVALID_ARGUMENT": ("invalid_request_error", False),
    "FAILED_PRECONDITION": ("invalid_request_error", False),
    "OUT_OF_RANGE": ("invalid_request_error", False),
    "UNAUTHENTICATED": ("authentication_error", False),
    "PERMISSION_DENIED": ("permission_error", False),
    "NOT_FOUND": ("not_found_error", False),
    "RESOURCE_EXHAUSTED": ("rate_limit_error", True),
    "UNAVAILABLE": ("overloaded_error", True),
    "INTERNAL": ("api_error", True),
    "DEADLINE_EXCEEDED": ("timeout_error", True),
    "CANCELLED": ("api_error", True),
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
_envelope = msgspec.json.Decoder(ErrorEnvelope).decode


def _retry_after(body: ErrorBody) -> str | None:
    """``RetryInfo.retryDelay`` (a Duration, ``"23s"`` or ``"0.5s"``) in whole seconds."""
    for detail in body.details:
        if detail.type.endswith("google.rpc.RetryInfo") and detail.retry_delay:
            m = _DURATION.match(detail.retry_delay)
            if m:
                return str(max(1, math.ceil(float(m.group(1)))))
    return None


def _reason(body: ErrorBody) -> str | None:
    for detail in body.details:
        if detail.type.endswith("google.rpc.ErrorInfo") and detail.reason:
            return detail.reason
    return None


def error_from_body(
    body: ErrorBody,
    provider: str,
    scrub: Redactor,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> UpstreamError:
    """One Google error object as the gateway's error; also used for an error event in a
    stream, whose HTTP status was already 200 (``code`` says the real one)."""
    http = status if status and status >= 400 else body.code or 500
    kind, retryable = _KINDS.get(body.status, (None, http >= 500 or http == 429))
    reason = _reason(body)
    if reason == "API_KEY_INVALID":
        # Gemini answers a wrong key with 400 INVALID_ARGUMENT ("API key not valid. Please pass a
        # valid API key."); it is the gateway's credential that is wrong, not the caller's input.
        http, kind = 401, "authentication_error"
    keep: dict[str, str] = {}
    retry_after = (headers or {}).get("retry-after") or _retry_after(body)
    if retry_after:
        keep["retry-after"] = retry_after
    message = body.message or body.status or f"HTTP {http}"
    return UpstreamError(
        f"{provider}: {scrub(message)}",
        status=http,
        provider=provider,
        type=kind,
        code=reason or body.status or None,
        headers=keep,
        retryable=retryable,
    )


def map_error(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, scrub: Redactor
) -> UpstreamError:
    """An error answer of the Gemini API (its JSON error, or whatever a proxy in front sent)."""
    try:
        envelope = _envelope(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:300].decode("utf-8", "replace").strip()
        return UpstreamError(
            f"{provider}: HTTP {status}" + (f": {scrub(text)}" if text else ""),
            status=status,
            provider=provider,
            headers={"retry-after": headers["retry-after"]} if "retry-after" in headers else None,
        )
    return error_from_body(envelope.error, provider, scrub, status=status, headers=headers)
