"""The error envelope every error response carries: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

import msgspec

__all__ = ["ErrorBody", "ErrorEnvelope"]


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody
