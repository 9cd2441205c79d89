"""The one error hierarchy of the gateway.

Everything that goes wrong on a request is raised as a :class:`GatewayError`; only the ``errors``
middleware turns it into a response body, in OpenAI's shape:
``{"error": {message, type, param, code}}``.

    GatewayError                      500 api_error
    ├── InvalidRequestError           400 invalid_request_error (param: JSON path of the culprit)
    │   ├── UnsupportedCapabilityError 400 unsupported_capability
    │   └── PayloadTooLargeError      413
    ├── AuthenticationError           401 authentication_error
    ├── NotFoundError                 404 invalid_request_error (unknown route)
    ├── MethodNotAllowedError         405 invalid_request_error
    ├── UpstreamError                 the upstream's status, type and message
    ├── UpstreamTimeoutError          504 timeout_error        (retryable)
    ├── UpstreamConnectionError       502 api_connection_error (retryable)
    └── OverloadedError               503 overloaded           (retryable; a provider's
                                      ``max_in_flight`` and queue are full)

``retryable`` says another attempt at the same or another target may succeed; ``allow_fallback``
says the fallback chain may move on (false for the caller's own mistakes).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "ConflictError",
    "GatewayError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "StateUnavailableError",
    "UnsupportedCapabilityError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamTimeoutError",
]

_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None
    retryable: bool = False
    # An upstream's own error details (JSON), rendered as ``error.innererror`` (Azure's
    # content-filter verdicts).
    innererror: bytes | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: Mapping[str, str] = headers or {}

    @property
    def allow_fallback(self) -> bool:
        return self.retryable


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnsupportedCapabilityError(InvalidRequestError):
    code = "unsupported_capability"

    def __init__(self, provider: str, capability: str) -> None:
        super().__init__(f"Provider `{provider}` does not support {capability}.", param="model")
        self.type = "unsupported_capability"


class PayloadTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    """A valid key asking for what it may not use (a model, a provider, the admin API)."""

    status = 403
    type = "permission_error"


class ConflictError(GatewayError):
    status = 409
    type = "conflict_error"


class RateLimitedError(GatewayError):
    """A key's or team's own rate limit (not an upstream's): ``Retry-After`` says when."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class BudgetExceededError(GatewayError):
    """402, not 429: SDKs retry a 429, and waiting does not refill a budget before its period
    ends."""

    status = 402
    type = "budget_exceeded"
    code = "budget_exceeded"


class StateUnavailableError(GatewayError):
    """The shared rate-limit and budget counters cannot be reached (``state.fail_open`` off)."""

    status = 503
    type = "service_unavailable"
    code = "state_unavailable"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "unknown_url"


class MethodNotAllowedError(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamError(GatewayError):
    """An error answered by a provider: its status, type, code and message are kept."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        provider: str,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
        innererror: bytes | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.status = status
        self.innererror = innererror
        self.provider = provider
        self.type = type or _type_for_status(status)
        # A provider may know better than the status (a throttling error sent as 400).
        self.retryable = status in _RETRYABLE_STATUSES if retryable is None else retryable


class UpstreamTimeoutError(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
    retryable = True


class UpstreamConnectionError(GatewayError):
    status = 502
    type = "api_connection_error"
    code = "upstream_unreachable"
    retryable = True


class OverloadedError(GatewayError):
    """A provider at its ``max_in_flight`` with a full queue, or a queued request that waited
    past ``queue_timeout_ms``: the next target may serve it; ``Retry-After`` says when this one
    may have room."""

    status = 503
    type = "overloaded"
    code = "provider_overloaded"
    retryable = True

    def __init__(self, message: str, *, provider: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.provider = provider
        self.retry_after_s = retry_after_s


def _type_for_status(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")
