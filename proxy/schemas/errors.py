"""The error envelope every error response carries: ``{"error": {message, type, param, code}}``,
plus ``innererror`` when the upstream gave details (Azure's content-filter verdicts)."""

from __future__ import annotations

import msgspec

__all__ = ["ErrorBody", "ErrorEnvelope"]


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    innererror: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody
