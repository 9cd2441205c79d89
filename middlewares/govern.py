"""Governance of virtual keys: allow-lists (403), rate limits (429) and budgets (402).

Runs after ``decode`` (it needs the model and the body) and outside ``usage`` (whose ``finally``
has priced the request by the time this one settles it). A request with a key that has limits
is admitted against its key's and team's counters in one step, with its estimated tokens and
cost; when it ends, however it ends, the estimates are settled to what was billed.
"""

from __future__ import annotations

import math

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import (
    BudgetExceededError,
    PermissionDeniedError,
    RateLimitedError,
    StateUnavailableError,
)
from proxy.governance.counters import (
    Ask,
    CountersUnavailable,
    Decision,
    Settlement,
    Window,
    nusd,
)
from proxy.governance.model import Grant, Scope, allowed
from proxy.keys import (
    BODY,
    DEFER_SETTLEMENT,
    GOVERNANCE,
    GRANT,
    OUTCOME,
    PRICING,
    RATE_HEADERS,
    REQUEST_ID,
)
from proxy.operations import Inbound, operation_of
from proxy.pricing import Pricing
from proxy.schemas.common import BilledUsage

__all__ = ["add_rate_headers", "admit", "govern_middleware"]

log = structlog.get_logger("thruway.govern")
# The admission to settle, once the request has been priced.
_ADMITTED = web.RequestKey[tuple[Ask, Decision]]("governance_admitted")
# A token is about four characters of English; three keeps the estimate on the safe side.
_BYTES_PER_TOKEN = 3
_OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def govern_middleware(pricing: Pricing) -> Middleware:
    """Routed operations are admitted here; a handler that learns its model itself (the
    ``/openai`` forward) calls :func:`admit`. Either way the admission is settled here, outside
    ``usage``, once the request has been priced."""

    @web.middleware
    async def govern(request: web.Request, handler: Handler) -> web.StreamResponse:
        if GRANT not in request:
            return await handler(request)
        op = operation_of(request)
        if op is not None and op.routed:
            inbound = request[BODY]
            tokens_in, output_limit = _estimate(inbound)
            names = [inbound.model, *inbound.fallbacks]
            await _admit(request, names, pricing, tokens_in, output_limit)
        try:
            return await handler(request)
        finally:
            admitted = request.get(_ADMITTED)
            if admitted is not None and not request.get(DEFER_SETTLEMENT, False):
                _settle(request, *admitted)

    return govern


async def admit(request: web.Request, model: str, *, tokens_in: int = 0) -> None:
    """Hold a request whose model only its handler knows to its key's allow-lists and limits
    (``model``: ``provider/model``, or ``provider/*`` for an endpoint without one); a refusal
    raises. The ``govern`` middleware settles it."""
    if GRANT in request and _ADMITTED not in request:
        await _admit(request, [model], request.app[PRICING], tokens_in, 0)


async def _admit(
    request: web.Request,
    names: list[str],
    pricing: Pricing,
    tokens_in: int,
    output_limit: int,
) -> None:
    grant = request[GRANT]
    governance = request.app[GOVERNANCE]
    routes = governance.routes
    _check_allowed(grant, names, routes)
    if not grant.scopes:
        return
    output = output_limit or governance.default_output_tokens
    ask = Ask(
        request_id=request[REQUEST_ID],
        scopes=grant.scopes,
        tokens=tokens_in + output_limit,
        cost_nusd=_cost_estimate(names, routes, pricing, tokens_in, output),
    )
    try:
        decision = await governance.counters.admit(ask)
    except CountersUnavailable as exc:
        log.warning("limits_unavailable", error=str(exc), fail_open=governance.fail_open)
        if not governance.fail_open:
            raise StateUnavailableError(
                "The rate-limit and budget counters cannot be reached; try again shortly.",
                headers={"Retry-After": "1"},
            ) from None
        return
    headers = _headers(decision)
    if headers:
        request[RATE_HEADERS] = headers
    if not decision.ok:
        raise _refusal(decision)
    request[_ADMITTED] = (ask, decision)


def _settle(request: web.Request, ask: Ask, decision: Decision) -> None:
    """The estimates become what was billed (the usage middleware has priced it by now). A
    request counted only against `rpm` limits has nothing to settle: no second round trip."""
    if not any(_estimated(scope) for scope in ask.scopes):
        return
    outcome = request[OUTCOME]
    billed = outcome.usage.total_tokens if outcome.usage is not None else 0
    cost = outcome.log_fields.get("cost_usd", 0.0)
    request.app[GOVERNANCE].settle_later(
        Settlement(
            request_id=ask.request_id,
            scopes=ask.scopes,
            second=decision.second,
            token_delta=billed - ask.tokens,
            cost_nusd=nusd(float(cost)),
        )
    )


def _estimated(scope: Scope) -> bool:
    """Whether the scope counted an estimate (tokens, a budget reservation) to settle."""
    limit = scope.rate_limit
    return scope.budget is not None or (limit is not None and limit.tpm is not None)


async def add_rate_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the limit headers on every response of a limited key, streams
    and errors included."""
    if isinstance(request, web.Request):
        headers = request.get(RATE_HEADERS)
        if headers:
            response.headers.update(headers)


def _permitted(
    name: str, models: list[str] | None, providers: list[str] | None, routes: dict[str, list[str]]
) -> bool:
    if allowed(name, models, providers):
        return True
    targets = routes.get(name)
    return bool(targets) and all(allowed(t, models, providers) for t in targets or ())


def _check_allowed(grant: Grant, names: list[str], routes: dict[str, list[str]]) -> None:
    for name in names:
        for models, providers, whose in grant.allow_lists:
            if not _permitted(name, models, providers, routes):
                may = []
                if models is not None:
                    may.append(f"models {', '.join(models) or '(none)'}")
                if providers is not None:
                    may.append(f"providers {', '.join(providers) or '(none)'}")
                raise PermissionDeniedError(
                    f"This {whose} may not use `{name}`; it may use {' and '.join(may)}.",
                    param="fallbacks" if name != names[0] else "model",
                    code="model_not_allowed",
                )


def _estimate(inbound: Inbound) -> tuple[int, int]:
    """The request's input tokens (from the size of its content fields) and its output limit
    (0 when it sets none)."""
    size = 0
    if inbound.raw is not None:
        fields = inbound.op.content_fields
        size = sum(len(value) for name, value in inbound.raw.items() if name in fields)
    output = 0
    for name in _OUTPUT_LIMITS:
        got = getattr(inbound.typed, name, None)
        if isinstance(got, int) and got > 0:
            output = got
            break
    return math.ceil(size / _BYTES_PER_TOKEN), output


def _cost_estimate(
    names: list[str],
    routes: dict[str, list[str]],
    pricing: Pricing,
    tokens_in: int,
    tokens_out: int,
) -> int:
    """The most the request may cost on any of its targets (nano-dollars)."""
    usage = BilledUsage(
        prompt_tokens=tokens_in, completion_tokens=tokens_out, total_tokens=tokens_in + tokens_out
    )
    most = 0.0
    for name in names:
        for target in routes.get(name) or [name]:
            provider, _, model = target.partition("/")
            cost = pricing.cost_usd(provider, model, usage)
            if cost is not None:
                most = max(most, cost)
    return nusd(most)


def _headers(decision: Decision) -> dict[str, str]:
    headers: dict[str, str] = {}
    for suffix, window in (("requests", decision.requests), ("tokens", decision.tokens)):
        if window is not None:
            headers[f"x-ratelimit-limit-{suffix}"] = str(window.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(window.remaining)
            headers[f"x-ratelimit-reset-{suffix}"] = _duration(window)
    return headers


def _duration(window: Window) -> str:
    """OpenAI's style: ``1s``, ``6m0s``, ``250ms``."""
    seconds = window.reset_s
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _refusal(decision: Decision) -> BudgetExceededError | RateLimitedError:
    scope = decision.scope
    assert scope is not None
    headers = _headers(decision)
    if decision.refused == "budget":
        budget = scope.budget
        assert budget is not None
        return BudgetExceededError(
            f"The {_who(scope)} budget of ${budget.max_usd:g} {_period(budget.period)} "
            "is spent, or this request could exceed it.",
        )
    limit = scope.rate_limit
    assert limit is not None
    what = (
        f"{limit.rpm} requests per minute"
        if decision.refused == "rpm"
        else f"{limit.tpm} tokens per minute"
    )
    headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return RateLimitedError(
        f"Rate limit reached for the {_who(scope)}: {what}. "
        f"Try again in {decision.retry_after_s:.1f} s.",
        headers=headers,
    )


def _who(scope: Scope) -> str:
    return "key's" if scope.kind == "key" else "team's"


def _period(period: str) -> str:
    return {
        "1h": "per hour",
        "1d": "per day",
        "1w": "per week",
        "1mo": "per month",
        "total": "in all",
    }[period]
