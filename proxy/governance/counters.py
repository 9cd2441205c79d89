"""Rate-limit and budget counters: admission and settlement, atomic per request.

A request is admitted against every scope it counts toward (its key, its key's team) at once:
either all of them count it or none does. Admission counts one request and the request's token
estimate in each scope's sliding minute, and reserves its estimated cost in each budget;
settlement, when the response has ended, replaces the estimates with what the upstream billed.
So concurrent requests cannot overrun a budget: each sees the reservations of the others.

Rates are kept in one-second buckets over the last 60 seconds; money in whole nano-dollars, so
sums are exact. :class:`MemoryCounters` serves one process; :mod:`.redis_counters` shares the
same counters between instances.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import msgspec

from proxy.governance.model import Budget, Scope, period_bounds

__all__ = [
    "NANO",
    "RESERVATION_TTL_S",
    "WINDOW_S",
    "Ask",
    "Counters",
    "CountersUnavailable",
    "Decision",
    "MemoryCounters",
    "Seed",
    "Settlement",
    "Spend",
    "Window",
    "budget_key",
]

NANO = 1_000_000_000  # nano-dollars per dollar
WINDOW_S = 60
# A reservation whose request never settles (its instance died) is released after this long.
RESERVATION_TTL_S = 3600

# Spend of a scope in a budget period before this instance counted it (nano-dollars): read
# from the usage records, so a restart does not forget what was spent.
Seed = Callable[[Scope, int], Awaitable[int]]


class CountersUnavailable(Exception):
    """The shared counters cannot be reached."""


class Ask(msgspec.Struct, frozen=True, gc=False):
    request_id: str
    scopes: tuple[Scope, ...]
    tokens: int  # the request's token estimate (input, and its output limit when given)
    cost_nusd: int  # its estimated cost


class Window(msgspec.Struct, frozen=True, gc=False):
    """One limit as the ``x-ratelimit-*`` headers show it."""

    limit: int
    remaining: int
    reset_s: float


class Decision(msgspec.Struct, frozen=True, gc=False):
    ok: bool
    refused: Literal["rpm", "tpm", "budget"] | None = None
    scope: Scope | None = None
    retry_after_s: float = 0.0
    requests: Window | None = None
    tokens: Window | None = None
    # The second the request was counted in (its token bucket, corrected at settlement).
    second: int = 0


class Settlement(msgspec.Struct, frozen=True, gc=False):
    request_id: str
    scopes: tuple[Scope, ...]
    second: int
    token_delta: int  # billed tokens minus the estimate
    cost_nusd: int  # billed cost


class Spend(msgspec.Struct, frozen=True):
    """A budget's state for the admin API."""

    period_start: int
    period_end: int | None
    spent_usd: float
    reserved_usd: float


class Counters(Protocol):
    async def admit(self, ask: Ask) -> Decision: ...

    async def settle(self, done: Settlement) -> None: ...

    async def spend(self, scope: Scope) -> Spend | None: ...

    async def close(self) -> None: ...


def budget_key(scope: Scope, budget: Budget, now: float) -> tuple[str, int, int | None]:
    """The name of a scope's counters for the budget period containing ``now``."""
    start, end = period_bounds(budget.period, now)
    return f"{scope.label}:{budget.period}:{start}", start, end


def nusd(usd: float) -> int:
    """Dollars in whole nano-dollars, rounded up (after float noise below a thousandth of one
    is dropped: 0.07 dollars is 70000000, not 70000001)."""
    return math.ceil(round(usd * NANO, 3))


class _Rate:
    """One scope's sliding minute: requests and tokens per second."""

    __slots__ = ("requests", "tokens")

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.tokens: dict[int, int] = {}


def _live(buckets: dict[int, int], second: int) -> tuple[int, int | None]:
    """The sum of the buckets of the last minute (older ones dropped), and the oldest second."""
    for old in [s for s in buckets if s <= second - WINDOW_S]:
        del buckets[old]
    return sum(buckets.values()), min(buckets, default=None)


class _Budget:
    __slots__ = ("reservations", "reserved", "spent")

    def __init__(self, spent: int) -> None:
        self.spent = spent
        self.reserved = 0
        self.reservations: dict[str, tuple[int, float]] = {}

    def expire(self, now: float) -> None:
        for rid in [r for r, (_, until) in self.reservations.items() if until <= now]:
            self.reserved -= self.reservations.pop(rid)[0]


class MemoryCounters:
    """The counters of one gateway process (no ``state.url``)."""

    def __init__(self, seed: Seed | None = None, clock: Callable[[], float] = time.time) -> None:
        self._seed = seed
        self._clock = clock
        self._rates: dict[str, _Rate] = {}
        self._budgets: dict[str, _Budget] = {}

    async def close(self) -> None:
        return None

    async def _budget(self, scope: Scope, budget: Budget, now: float) -> _Budget:
        name, start, _ = budget_key(scope, budget, now)
        got = self._budgets.get(name)
        if got is None:
            spent = await self._seed(scope, start) if self._seed is not None else 0
            # Another request may have seeded it while this one waited.
            got = self._budgets.setdefault(name, _Budget(spent))
        return got

    async def admit(self, ask: Ask) -> Decision:
        now = self._clock()
        budgets = [
            await self._budget(s, s.budget, now) if s.budget is not None else None
            for s in ask.scopes
        ]
        # From here on nothing awaits: the checks and the counting are one step.
        second = int(now)
        views: list[tuple[Window | None, Window | None]] = []
        for scope, budget in zip(ask.scopes, budgets, strict=True):
            refused = self._check(ask, scope, budget, now, views)
            if refused is not None:
                return refused
        for scope, budget in zip(ask.scopes, budgets, strict=True):
            if scope.rate_limit is not None:
                rate = self._rates.setdefault(scope.label, _Rate())
                rate.requests[second] = rate.requests.get(second, 0) + 1
                rate.tokens[second] = rate.tokens.get(second, 0) + ask.tokens
            if budget is not None:
                budget.reserved += ask.cost_nusd
                budget.reservations[ask.request_id] = (ask.cost_nusd, now + RESERVATION_TTL_S)
        requests, tokens = _tightest(views)
        return Decision(ok=True, requests=requests, tokens=tokens, second=second)

    def _check(
        self,
        ask: Ask,
        scope: Scope,
        budget: _Budget | None,
        now: float,
        views: list[tuple[Window | None, Window | None]],
    ) -> Decision | None:
        second = int(now)
        limit = scope.rate_limit
        requests = tokens = None
        if limit is not None:
            rate = self._rates.setdefault(scope.label, _Rate())
            count, oldest = _live(rate.requests, second)
            used, oldest_t = _live(rate.tokens, second)
            if limit.rpm is not None:
                reset = _reset(oldest, now)
                if count >= limit.rpm:
                    return _refused("rpm", scope, reset, limit.rpm, count, limit.tpm, used, now)
                requests = Window(limit.rpm, limit.rpm - count - 1, reset)
            if limit.tpm is not None:
                reset = _reset(oldest_t, now)
                # A request larger than the whole limit is let through an empty minute.
                if used > 0 and used + ask.tokens > limit.tpm:
                    return _refused("tpm", scope, reset, limit.rpm, count, limit.tpm, used, now)
                tokens = Window(limit.tpm, max(0, limit.tpm - used - ask.tokens), reset)
        if budget is not None and scope.budget is not None:
            budget.expire(now)
            most = nusd(scope.budget.max_usd)
            if budget.spent >= most or budget.spent + budget.reserved + ask.cost_nusd > most:
                return Decision(ok=False, refused="budget", scope=scope)
        views.append((requests, tokens))
        return None

    async def settle(self, done: Settlement) -> None:
        now = self._clock()
        for scope in done.scopes:
            if scope.rate_limit is not None and done.token_delta:
                rate = self._rates.get(scope.label)
                if rate is not None and done.second in rate.tokens:
                    rate.tokens[done.second] += done.token_delta
            if scope.budget is not None:
                budget = await self._budget(scope, scope.budget, now)
                held = budget.reservations.pop(done.request_id, None)
                if held is not None:
                    budget.reserved -= held[0]
                budget.spent += done.cost_nusd

    async def spend(self, scope: Scope) -> Spend | None:
        if scope.budget is None:
            return None
        now = self._clock()
        budget = await self._budget(scope, scope.budget, now)
        budget.expire(now)
        _, start, end = budget_key(scope, scope.budget, now)
        return Spend(
            period_start=start,
            period_end=end,
            spent_usd=budget.spent / NANO,
            reserved_usd=budget.reserved / NANO,
        )


def _reset(oldest: int | None, now: float) -> float:
    """Seconds until the oldest counted second leaves the window (a full minute when none)."""
    if oldest is None:
        return float(WINDOW_S)
    return max(0.001, round(oldest + WINDOW_S - now, 3))


def _refused(
    what: Literal["rpm", "tpm"],
    scope: Scope,
    reset: float,
    rpm: int | None,
    count: int,
    tpm: int | None,
    used: int,
    now: float,
) -> Decision:
    return Decision(
        ok=False,
        refused=what,
        scope=scope,
        retry_after_s=reset,
        requests=Window(rpm, max(0, rpm - count), reset) if rpm is not None else None,
        tokens=Window(tpm, max(0, tpm - used), reset) if tpm is not None else None,
        second=int(now),
    )


def _tightest(
    views: list[tuple[Window | None, Window | None]],
) -> tuple[Window | None, Window | None]:
    """The windows with the least remaining across scopes, for the headers."""
    requests = [r for r, _ in views if r is not None]
    tokens = [t for _, t in views if t is not None]
    return (
        min(requests, key=lambda w: w.remaining, default=None),
        min(tokens, key=lambda w: w.remaining, default=None),
    )
