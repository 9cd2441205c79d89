"""Vertex AI's error answers as the gateway's errors (pure).

Vertex itself (authentication, IAM, quotas, an unknown model, a body it cannot parse) answers in
Google's shape, ``{"error": {"code", "message", "status", "details"}}``, sometimes wrapped in a
one-element list; a Claude model's own errors come in Anthropic's shape, ``{"type": "error",
"error": {"type", "message"}}`` (529 ``overloaded_error``...). Both are mapped as the Gemini and
Anthropic providers map them, so RESOURCE_EXHAUSTED and overload stay retryable.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from providers.anthropic.errors import map_error as anthropic_error
from providers.gemini.errors import error_from_body
from providers.gemini.errors import map_error as google_error
from providers.gemini.wire import ErrorEnvelope
from providers.vertex.wire import ErrorProbe
from proxy.errors import UpstreamError
from proxy.redact import Redactor

__all__ = ["map_error"]

_probe = msgspec.json.Decoder(ErrorProbe).decode
_listed = msgspec.json.Decoder(list[ErrorEnvelope]).decode


def _is_anthropic(body: bytes) -> bool:
    try:
        probe = _probe(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if probe.type == "error":
        return True
    return probe.error is not None and bool(probe.error.type) and not probe.error.status


def map_error(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, scrub: Redactor
) -> UpstreamError:
    """An error answer of Vertex AI, in whichever of its shapes it came."""
    if body.lstrip().startswith(b"["):
        try:
            listed = _listed(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            listed = []
        if listed:
            return error_from_body(listed[0].error, provider, scrub, status=status, headers=headers)
    if _is_anthropic(body):
        return anthropic_error(status, body, headers, provider=provider, scrub=scrub)
    return google_error(status, body, headers, provider=provider, scrub=scrub)
