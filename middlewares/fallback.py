"""Innermost: resolves ``provider/model`` and the fallback chain; one handler call per attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import GatewayError, InvalidRequestError
from proxy.keys import BODY, DIRECTORY, OUTCOME, TARGET, Directory, Outcome
from proxy.operations import Target

__all__ = [
    "ProviderUnavailableError",
    "fallback_middleware",
    "resolve_targets",
    "with_fallbacks",
]

log = structlog.get_logger("thruway.fallback")
_T = TypeVar("_T")


class ProviderUnavailableError(GatewayError):
    """A configured provider that cannot serve (no key); the next fallback may."""

    status = 503
    type = "provider_unavailable"
    code = "provider_unavailable"
    retryable = True


def _parse(name: str, index: int, directory: Directory, param: str) -> Target:
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        raise InvalidRequestError(
            f"Model `{name}` must name its provider as `provider/model` "
            f"(for example `openai/gpt-4o-mini`). {_configured(directory)}",
            param=param,
            code="model_not_found",
        )
    if provider not in directory.available and provider not in directory.unavailable:
        raise InvalidRequestError(
            f"Unknown provider `{provider}` in model `{name}`. {_configured(directory)}",
            param=param,
            code="model_not_found",
        )
    return Target(provider=provider, model=model, index=index)


def _configured(directory: Directory) -> str:
    names = sorted(directory.available)
    if not names:
        return "No provider is configured: add one under `providers:` or set its API key variable."
    return "Configured providers: " + ", ".join(names) + "."


def resolve_targets(model: str, fallbacks: list[str], directory: Directory) -> list[Target]:
    """The primary target and then each fallback, checked up front so a typo fails fast."""
    targets = [_parse(model, 0, directory, "model")]
    for i, name in enumerate(fallbacks, start=1):
        targets.append(_parse(name, i, directory, f"fallbacks[{i - 1}]"))
    return targets


async def with_fallbacks(
    targets: list[Target],
    directory: Directory,
    outcome: Outcome,
    attempt: Callable[[Target], Awaitable[_T]],
) -> _T:
    """``attempt`` each target in turn until one succeeds or an error does not allow moving on
    (the caller's own mistake, or a failure after the first byte); ``outcome`` records each."""
    first_error: GatewayError | None = None
    for target in targets:
        outcome.attempts += 1
        outcome.fallback_index = target.index
        outcome.provider, outcome.model = target.provider, target.model
        try:
            if target.provider not in directory.available:
                reason = directory.unavailable.get(target.provider, "it is not configured")
                raise ProviderUnavailableError(
                    f"Provider `{target.provider}` cannot serve requests: {reason}."
                )
            return await attempt(target)
        except GatewayError as exc:
            outcome.failures.append(f"{target.label}: {exc.status} {exc.type}")
            if first_error is None:
                first_error = exc
            if not exc.allow_fallback or target is targets[-1]:
                raise _final(first_error, exc, outcome.failures) from None
            log.warning(
                "attempt_failed",
                target=target.label,
                status=exc.status,
                error_type=exc.type,
                next=targets[target.index + 1].label,
            )
    raise AssertionError("unreachable: the last target re-raises")


def fallback_middleware() -> Middleware:
    @web.middleware
    async def fallback(request: web.Request, handler: Handler) -> web.StreamResponse:
        inbound = request.get(BODY)
        if inbound is None:
            return await handler(request)
        directory = request.app[DIRECTORY]
        targets = resolve_targets(inbound.model, inbound.fallbacks, directory)

        async def attempt(target: Target) -> web.StreamResponse:
            request[TARGET] = target
            return await handler(request)

        return await with_fallbacks(targets, directory, request[OUTCOME], attempt)

    return fallback


def _final(first: GatewayError, last: GatewayError, failures: list[str]) -> GatewayError:
    """The primary's error, saying what the fallbacks answered; or the error that stopped the
    chain when it was the caller's own mistake."""
    if first is last:
        return first
    if not last.allow_fallback:
        return last
    first.message = f"{first.message} (fallbacks also failed: {'; '.join(failures[1:])})"
    return first
