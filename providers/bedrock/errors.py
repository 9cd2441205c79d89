"""Bedrock's errors as the gateway's.

An HTTP error is ``{"message": ...}`` with the exception's name in the ``x-amzn-ErrorType`` header
(``ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/``); botocore reads the
name from the header's part before ``:``, else from a ``code``/``__type`` body field. Inside a
stream, an exception is an event-stream message whose ``:exception-type`` header names the
ConverseStream member (``throttlingException``) and whose payload is the same JSON body.

Statuses, and which errors a retry may cure, follow botocore's model of each exception
(``ModelNotReadyException`` is 429 and retried by the AWS SDKs; ``ModelErrorException`` is 424).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from providers.bedrock.wire import ErrorBody
from proxy.errors import UpstreamError

__all__ = ["PassedOnError", "error_from_body", "map_error"]

_body = msgspec.json.Decoder(ErrorBody).decode


class _Kind(msgspec.Struct, frozen=True):
    status: int
    type: str
    retryable: bool


_KINDS: dict[str, _Kind] = {
    "ValidationException": _Kind(400, "invalid_request_error", False),
    "ConflictException": _Kind(400, "invalid_request_error", False),
    # An account quota: the same target will refuse again, another one may not.
    "ServiceQuotaExceededException": _Kind(400, "rate_limit_error", True),
    "AccessDeniedException": _Kind(403, "permission_error", False),
    "UnrecognizedClientException": _Kind(403, "authentication_error", False),
    "InvalidSignatureException": _Kind(403, "authentication_error", False),
    "MissingAuthenticationTokenException": _Kind(403, "authentication_error", False),
    "ExpiredTokenException": _Kind(403, "authentication_error", False),
    "ResourceNotFoundException": _Kind(404, "not_found_error", False),
    "ModelTimeoutException": _Kind(408, "timeout_error", True),
    "ThrottlingException": _Kind(429, "rate_limit_error", True),
    "ModelNotReadyException": _Kind(429, "overloaded_error", True),
    "ModelErrorException": _Kind(424, "api_error", False),
    "ModelStreamErrorException": _Kind(424, "api_error", False),
    "InternalServerException": _Kind(500, "api_error", True),
    "ServiceUnavailableException": _Kind(503, "overloaded_error", True),
}


class PassedOnError(UpstreamError):
    """An exception Bedrock sent mid-stream that already reached the client as Bedrock sent it
    (a ``/bedrock`` stream passed on byte for byte): the stream ends, nothing more is sent."""


def _name(raw: str | None) -> str | None:
    """``ThrottlingException:http://...`` or ``com.amazon...#ThrottlingException`` as the name."""
    if not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1] or None


def _decode(body: bytes) -> ErrorBody:
    try:
        return _body(body) if body else ErrorBody()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ErrorBody()


def error_from_body(
    code: str | None,
    status: int,
    body: bytes,
    *,
    provider: str,
    scrub: Callable[[str], str],
    headers: Mapping[str, str] | None = None,
) -> UpstreamError:
    """The error for exception ``code`` (``ThrottlingException``, or the stream's
    ``throttlingException``) with Bedrock's JSON ``body``; ``status`` when the code is unknown."""
    doc = _decode(body)
    message = doc.message or doc.Message
    if message is None:
        text = body[:300].decode("utf-8", "replace").strip()
        message = text or f"HTTP {status}"
    name = code[:1].upper() + code[1:] if code else None
    kind = _KINDS.get(name or "")
    retryable: bool | None = None
    if kind is not None:
        status, retryable = kind.status, kind.retryable
        # The model's own failure: a retry may help only when the model's endpoint said 5xx.
        if name in ("ModelErrorException", "ModelStreamErrorException"):
            retryable = (doc.original_status_code or 0) >= 500
    keep = {k: v for k, v in (headers or {}).items() if k.lower() == "retry-after"}
    return UpstreamError(
        f"{provider}: {scrub(message)}" + (f" ({name})" if name else ""),
        status=status,
        provider=provider,
        type=kind.type if kind is not None else None,
        code=name,
        headers=keep,
        retryable=retryable,
    )


def map_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    provider: str,
    scrub: Callable[[str], str],
) -> UpstreamError:
    """An HTTP error answer of Bedrock Runtime."""
    code = _name(headers.get("x-amzn-ErrorType") or headers.get("x-amzn-errortype"))
    if code is None:
        doc = _decode(body)
        code = _name(doc.type or doc.code)
    return error_from_body(code, status, body, provider=provider, scrub=scrub, headers=headers)
