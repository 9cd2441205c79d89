"""Innermost: resolves the model (``provider/model`` or a configured route) into targets, and
tries them in turn: retries of one target with backoff, then the next fallback. One handler
call per attempt.

For each target, in order:

- a provider that cannot serve (no key) or whose every circuit is open is skipped at once;
- otherwise it is attempted up to ``retry.max_retries`` + 1 times, while the failure is
  retryable (connection error, timeout, 408, 429, 5xx, 529, throttling): after exponential
  backoff with full jitter, or what the upstream's ``Retry-After`` asked (up to
  ``retry.max_after_s``; a longer wait moves on to the next target at once). A 429 makes the
  next attempt use another key; a 401/403 takes the key out of rotation for
  ``key_cooldown_s`` and tries another key once;
- every upstream failure counts against its provider+key+model circuit, every success for it.

A failure the caller caused (400, 404, 422...) stops at once. Only failures before the first
byte reach this loop: the terminal handler commits a stream only once its first event is in.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.config import RetryConfig, RouteConfig
from proxy.errors import (
    GatewayError,
    InvalidRequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from proxy.keys import (
    ATTEMPT,
    BODY,
    CONFIG,
    DIRECTORY,
    OUTCOME,
    RELIABILITY,
    TARGET,
    AttemptState,
    Directory,
    Outcome,
)
from proxy.operations import Target
from proxy.reliability import Reliability, backoff_s, retry_after_s

__all__ = [
    "CircuitOpenError",
    "ProviderUnavailableError",
    "fallback_middleware",
    "resolve_targets",
    "with_fallbacks",
]

log = structlog.get_logger("thruway.fallback")
_T = TypeVar("_T")
_NO_RETRY = RetryConfig(max_retries=0)
_UPSTREAM_FAILURES = (UpstreamError, UpstreamTimeoutError, UpstreamConnectionError)
TIMEOUT_HEADER = "x-thruway-timeout-ms"


class ProviderUnavailableError(GatewayError):
    """A configured provider that cannot serve (no key); the next fallback may."""

    status = 503
    type = "provider_unavailable"
    code = "provider_unavailable"
    retryable = True


class CircuitOpenError(GatewayError):
    """Every circuit of a target is open: it is skipped until one lets a probe through."""

    status = 503
    type = "provider_unavailable"
    code = "circuit_open"
    retryable = True


# --- targets ----------------------------------------------------------------------------------


def _parse(name: str, index: int, directory: Directory, param: str) -> Target:
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        raise InvalidRequestError(
            f"Model `{name}` must name its provider as `provider/model` "
            f"(for example `openai/gpt-4o-mini`) or a configured route. {_configured(directory)}",
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


def _route_order(route: RouteConfig, reliability: Reliability | None) -> list[str]:
    """The route's targets in the order its strategy prefers for this request."""
    names = [t.model for t in route.targets]
    if route.strategy == "ordered" or len(names) < 2:
        return names
    if route.strategy == "weighted" or reliability is None:
        # Weighted sampling without replacement: the first is the weighted choice, the rest
        # its fallbacks in the same spirit.
        keys = [random.random() ** (1 / t.weight) for t in route.targets]  # noqa: S311
        return [n for _, n in sorted(zip(keys, names, strict=True), reverse=True)]

    def stats(name: str) -> tuple[float, int]:
        provider, _, model = name.partition("/")
        got = reliability.stats(provider, model)
        if route.strategy == "least-busy":
            return float(got.in_flight), 0
        # Unmeasured targets first, so that each gets measured.
        return (-1.0 if got.ewma_ms is None else got.ewma_ms), 0

    return sorted(names, key=stats)


def resolve_targets(
    model: str,
    fallbacks: list[str],
    directory: Directory,
    routes: Mapping[str, RouteConfig] | None = None,
    reliability: Reliability | None = None,
) -> list[Target]:
    """The primary target and then each fallback, checked up front so a typo fails fast. A
    route's targets (in its strategy's order) and its own fallbacks come before the request's."""
    route = routes.get(model) if routes else None
    if route is None:
        targets = [_parse(model, 0, directory, "model")]
    else:
        names = [*_route_order(route, reliability), *route.fallbacks]
        targets = [_parse(name, i, directory, "model") for i, name in enumerate(names)]
    start = len(targets)
    for i, name in enumerate(fallbacks):
        targets.append(_parse(name, start + i, directory, f"fallbacks[{i}]"))
    return targets


# --- attempts ---------------------------------------------------------------------------------


async def with_fallbacks(
    targets: list[Target],
    directory: Directory,
    outcome: Outcome,
    attempt: Callable[[Target, AttemptState], Awaitable[_T]],
    *,
    reliability: Reliability | None = None,
    timeout_s: float | None = None,
    hedge: Callable[[Target], tuple[float, Target] | None] | None = None,
) -> _T:
    """``attempt`` each target (with its retries) until one succeeds or an error does not allow
    moving on; ``outcome`` records each. See the module docstring for the rules. ``hedge``
    gives a target's hedge (delay, second target) for its first try, if it has one."""
    first_error: GatewayError | None = None
    last = targets[-1]
    hedged: set[int] = set()
    for target in targets:
        if target.index in hedged:
            continue  # already raced, and lost, by an earlier target's hedge
        error = _skipped(target, directory, reliability)
        if error is not None:
            outcome.failures.append(f"{target.label}: {error.status} {error.code}")
        else:
            try:
                return await _retrying(
                    target, outcome, attempt, reliability, timeout_s, hedge, hedged
                )
            except GatewayError as exc:
                error = exc
        if first_error is None:
            first_error = error
        if not error.allow_fallback or target is last or last.index in hedged:
            raise _final(first_error, error, outcome.failures, targets[0]) from None
        log.warning(
            "attempt_failed",
            target=target.label,
            status=error.status,
            error_type=error.type,
            next=targets[target.index + 1].label,
        )
    raise AssertionError("unreachable: the last target re-raises")


def _skipped(
    target: Target, directory: Directory, reliability: Reliability | None
) -> GatewayError | None:
    """Why a target is not even tried (no key; every circuit open), or None."""
    if target.provider not in directory.available:
        reason = directory.unavailable.get(target.provider, "it is not configured")
        return ProviderUnavailableError(
            f"Provider `{target.provider}` cannot serve requests: {reason}."
        )
    if reliability is not None and reliability.blocked(target.provider, target.model):
        wait = reliability.reopens_in(target.provider, target.model)
        return CircuitOpenError(
            f"`{target.label}` is failing: its circuit is open for {wait:.1f} s more.",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return None


async def _retrying(
    target: Target,
    outcome: Outcome,
    attempt: Callable[[Target, AttemptState], Awaitable[_T]],
    reliability: Reliability | None,
    timeout_s: float | None,
    hedge: Callable[[Target], tuple[float, Target] | None] | None = None,
    hedged: set[int] | None = None,
) -> _T:
    provider, model = target.provider, target.model
    settings = reliability.settings(provider) if reliability is not None else None
    retry = settings.retry if settings is not None else _NO_RETRY
    avoided: set[int] = set()
    retries = 0
    # With one key (or none) there is nothing to choose between.
    keyed = settings is not None and settings.keys is not None and len(settings.keys) > 1
    while True:
        state = AttemptState(
            avoid_key=reliability.avoid(provider, model, avoided)
            if keyed and reliability
            else None,
            timeout_s=timeout_s,
            hedge=hedge(target) if hedge is not None and retries == 0 else None,
        )
        outcome.attempts += 1
        outcome.fallback_index = target.index
        outcome.provider, outcome.model = provider, model
        stats = reliability.stats(provider, model) if reliability is not None else None
        started = outcome.elapsed_ms()
        ttfb_before = outcome.ttfb_ms
        if stats is not None:
            stats.in_flight += 1
        try:
            result = await attempt(target, state)
        except GatewayError as exc:
            outcome.failures.append(f"{target.label}: {exc.status} {exc.type}")
            if state.hedged is not None and hedged is not None:
                hedged.add(state.hedged.index)
            if stats is not None and isinstance(exc, _UPSTREAM_FAILURES) and exc.retryable:
                # A failing target is slow for least-latency's purposes.
                stats.observe(outcome.elapsed_ms() - started + _FAILURE_PENALTY_MS)
            again = _after_failure(exc, target, state, avoided, reliability)
            if again is _OTHER_KEY:
                continue  # a revoked key: another key right away, not counted as a retry
            if not again or retries >= retry.max_retries:
                raise
            delay = _delay(exc, retries, retry)
            if delay is None:
                raise
            retries += 1
            log.info(
                "retrying",
                target=target.label,
                status=exc.status,
                error_type=exc.type,
                retry=retries,
                delay_ms=round(delay * 1000, 1),
            )
            await asyncio.sleep(delay)
            continue
        finally:
            if stats is not None:
                stats.in_flight -= 1
        if reliability is not None:
            if reliability.succeeded(provider, state.key, model):
                log.info("circuit_closed", target=target.label, key_index=state.key)
            if stats is not None:
                ttfb = outcome.ttfb_ms if outcome.ttfb_ms is not ttfb_before else None
                stats.observe((ttfb if ttfb is not None else outcome.elapsed_ms()) - started)
        return result


_OTHER_KEY = object()
_FAILURE_PENALTY_MS = 1000.0


def _after_failure(
    exc: GatewayError,
    target: Target,
    state: AttemptState,
    avoided: set[int],
    reliability: Reliability | None,
) -> bool | object:
    """Learn from a failed attempt; whether the same target may be tried again (``_OTHER_KEY``:
    at once, with another key)."""
    upstream = isinstance(exc, _UPSTREAM_FAILURES) and exc.retryable
    if reliability is not None and upstream:
        opened = reliability.failed(target.provider, state.key, target.model)
        if opened:
            log.warning(
                "circuit_opened", target=target.label, key_index=state.key, status=exc.status
            )
    key = state.key
    if isinstance(exc, UpstreamError) and exc.status in (401, 403) and key is not None:
        if reliability is not None:
            reliability.cool_down(target.provider, key)
        log.warning("key_cooled_down", provider=target.provider, key_index=key, status=exc.status)
        keys = reliability.settings(target.provider).keys if reliability is not None else None
        if key in avoided or not keys or len(keys) < 2:
            return False
        # Another key of the same provider may work: once.
        avoided.add(key)
        return _OTHER_KEY
    if exc.status == 429 and key is not None:
        avoided.add(key)
    if exc.type == "overloaded":
        # The gateway's own queue for this provider is full: the next target, at once.
        return False
    return exc.retryable


def _delay(exc: GatewayError, retries: int, retry: RetryConfig) -> float | None:
    """How long to wait before the next try of the same target; None: do not wait for it."""
    asked = retry_after_s(exc.headers) if exc.headers else None
    if asked is not None:
        return asked if asked <= retry.max_after_s else None
    if exc.status in (401, 403):
        return 0.0
    return backoff_s(retries, retry)


def _client_timeout(request: web.Request) -> float | None:
    text = request.headers.get(TIMEOUT_HEADER)
    if text is None:
        return None
    try:
        ms = int(text)
    except ValueError:
        ms = 0
    if ms <= 0:
        raise InvalidRequestError(
            f"`{TIMEOUT_HEADER}` must be a positive whole number of milliseconds, got `{text}`.",
            param=TIMEOUT_HEADER,
        )
    return ms / 1000


def fallback_middleware() -> Middleware:
    @web.middleware
    async def fallback(request: web.Request, handler: Handler) -> web.StreamResponse:
        inbound = request.get(BODY)
        if inbound is None:
            return await handler(request)
        app = request.app
        directory = app[DIRECTORY]
        reliability = app[RELIABILITY]
        routes = app[CONFIG].routes
        targets = resolve_targets(inbound.model, inbound.fallbacks, directory, routes, reliability)
        route = routes.get(inbound.model) if routes else None

        async def attempt(target: Target, state: AttemptState) -> web.StreamResponse:
            request[TARGET] = target
            request[ATTEMPT] = state
            return await handler(request)

        return await with_fallbacks(
            targets,
            directory,
            request[OUTCOME],
            attempt,
            reliability=reliability,
            timeout_s=_client_timeout(request),
            hedge=_hedger(route, targets, reliability) if route is not None else None,
        )

    return fallback


def _hedger(
    route: RouteConfig, targets: list[Target], reliability: Reliability
) -> Callable[[Target], tuple[float, Target] | None] | None:
    """A route's hedge for each of its targets: the delay, and the next target to race."""
    if route.hedge_after_ms is None and route.hedge is None:
        return None

    def hedge(target: Target) -> tuple[float, Target] | None:
        if target.index + 1 >= len(targets):
            return None
        if route.hedge_after_ms is not None:
            after_ms: float | None = route.hedge_after_ms
        else:
            after_ms = reliability.stats(target.provider, target.model).p95_ms()
        if after_ms is None:
            return None
        return after_ms / 1000, targets[target.index + 1]

    return hedge


def _final(
    first: GatewayError, last: GatewayError, failures: list[str], primary: Target
) -> GatewayError:
    """The primary's error, saying what the fallbacks answered; or the error that stopped the
    chain when it was the caller's own mistake."""
    if first is last:
        return first
    if not last.allow_fallback:
        return last
    others = [f for f in failures if not f.startswith(primary.label + ":")]
    if others:
        first.message = f"{first.message} (fallbacks also failed: {'; '.join(others)})"
    return first
