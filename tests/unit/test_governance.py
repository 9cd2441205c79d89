"""The rules of virtual keys: allow-lists, budget periods, and the counters' arithmetic."""

from __future__ import annotations

import calendar
import secrets

import pytest

from proxy.governance.counters import (
    NANO,
    RESERVATION_TTL_S,
    Ask,
    MemoryCounters,
    Settlement,
    nusd,
)
from proxy.governance.model import Budget, RateLimit, Scope, allowed, period_bounds
from proxy.governance.redis_counters import RedisCounters


def _utc(*parts: int) -> int:
    return calendar.timegm((*parts, 0, 0, 0)[:6])


@pytest.mark.parametrize(
    ("models", "providers", "model", "ok"),
    [
        (None, None, "openai/gpt-4o", True),
        (["openai/gpt-4o"], None, "openai/gpt-4o", True),
        (["openai/gpt-4o"], None, "openai/gpt-4o-mini", False),
        (["openai/*"], None, "openai/gpt-4o-mini", True),
        (["openai/*"], None, "anthropic/claude", False),
        (["*"], ["openai"], "anthropic/claude", False),
        (None, ["openai", "anthropic"], "anthropic/claude", True),
        (["smart"], None, "smart", True),
        (None, ["openai"], "smart", False),
        ([], None, "openai/gpt-4o", False),
    ],
)
def test_allow_lists(
    models: list[str] | None, providers: list[str] | None, model: str, ok: bool
) -> None:
    """`provider/*` allows a provider's models, `*` anything, an empty list nothing."""
    assert allowed(model, models, providers) is ok


def test_budget_periods_are_utc_calendar_periods() -> None:
    """Hours, days, Monday-started weeks and months in UTC; `total` from the epoch, forever."""
    now = _utc(2026, 12, 31, 15, 42) + 7.5  # a Thursday
    assert period_bounds("1h", now) == (_utc(2026, 12, 31, 15), _utc(2026, 12, 31, 16))
    assert period_bounds("1d", now) == (_utc(2026, 12, 31), _utc(2027, 1, 1))
    assert period_bounds("1w", now) == (_utc(2026, 12, 28), _utc(2027, 1, 4))
    assert period_bounds("1mo", now) == (_utc(2026, 12, 1), _utc(2027, 1, 1))
    assert period_bounds("total", now) == (0, None)


def test_dollars_become_exact_nano_dollars() -> None:
    """Float noise does not add a nano-dollar to every price."""
    assert [nusd(0.07), nusd(0.01), nusd(1e-10), nusd(0)] == [70_000_000, 10_000_000, 1, 0]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _scope(rpm: int | None = None, tpm: int | None = None, usd: float | None = None) -> Scope:
    limit = RateLimit(rpm=rpm, tpm=tpm) if rpm or tpm else None
    budget = Budget(max_usd=usd, period="1d") if usd else None
    return Scope("key", secrets.token_hex(4), limit, budget)


def _ask(scope: Scope, tokens: int = 0, usd: float = 0.0) -> Ask:
    return Ask(secrets.token_hex(6), (scope,), tokens, nusd(usd))


async def test_requests_leave_the_window_after_a_minute() -> None:
    """A sliding minute: requests counted at 0 s still count at 59 s, and are gone at 60 s."""
    clock = Clock()
    counters = MemoryCounters(clock=clock)
    scope = _scope(rpm=2)
    assert (await counters.admit(_ask(scope))).ok
    clock.now += 30
    assert (await counters.admit(_ask(scope))).ok
    clock.now += 29
    refused = await counters.admit(_ask(scope))
    assert (refused.ok, refused.refused) == (False, "rpm")
    assert refused.retry_after_s == pytest.approx(1.0, abs=0.01)
    clock.now += 1
    assert (await counters.admit(_ask(scope))).ok


async def test_tokens_are_settled_to_what_was_billed() -> None:
    """Admission counts the estimate; settlement corrects it to the bill."""
    clock = Clock()
    counters = MemoryCounters(clock=clock)
    scope = _scope(tpm=100)
    first = await counters.admit(_ask(scope, tokens=90))
    assert first.tokens is not None
    assert first.tokens.remaining == 10
    await counters.settle(Settlement("r", (scope,), first.second, token_delta=-80, cost_nusd=0))
    second = await counters.admit(_ask(scope, tokens=80))
    assert second.ok
    assert second.tokens is not None
    assert second.tokens.remaining == 10


async def test_reservations_hold_the_budget_until_settled_or_expired() -> None:
    """Open reservations count against the budget; settlement turns one into spend; one that
    never settles is released after its time."""
    clock = Clock()
    counters = MemoryCounters(clock=clock)
    scope = _scope(usd=1.0)
    held = _ask(scope, usd=0.6)
    assert (await counters.admit(held)).ok
    assert not (await counters.admit(_ask(scope, usd=0.6))).ok
    await counters.settle(Settlement(held.request_id, (scope,), 0, 0, nusd(0.3)))
    assert (await counters.admit(_ask(scope, usd=0.6))).ok  # 0.3 spent + 0.6 reserved
    assert not (await counters.admit(_ask(scope, usd=0.2))).ok
    clock.now += RESERVATION_TTL_S
    spend = await counters.spend(scope)
    assert spend is not None
    assert (spend.spent_usd, spend.reserved_usd) == (pytest.approx(0.3), 0)
    assert (await counters.admit(_ask(scope, usd=0.7))).ok


async def test_all_scopes_or_none() -> None:
    """A request refused by its team's limit is not counted against its key either."""
    counters = MemoryCounters(clock=Clock())
    key, team = _scope(rpm=10), Scope("team", "t", RateLimit(rpm=1), None)
    assert (await counters.admit(Ask("a", (key, team), 0, 0))).ok
    refused = await counters.admit(Ask("b", (key, team), 0, 0))
    assert refused.scope == team
    alone = await counters.admit(Ask("c", (key,), 0, 0))
    assert alone.requests is not None
    assert alone.requests.remaining == 8  # a and c, not b


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_spend_is_seeded_from_the_records(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A period's spend starts from what the usage records say was spent (a restart, or a
    Redis that lost its data), read once."""
    seeded: list[int] = []

    async def seed(scope: Scope, start: int) -> int:
        seeded.append(start)
        return 9 * NANO // 10  # $0.90 spent already

    counters = (
        MemoryCounters(seed)
        if backend == "memory"
        else RedisCounters("redis://127.0.0.1:6379/0", seed)
    )
    try:
        scope = _scope(usd=1.0)
        assert not (await counters.admit(_ask(scope, usd=0.2))).ok
        assert (await counters.admit(_ask(scope, usd=0.1))).ok
        assert len(seeded) == 1
    finally:
        await counters.close()
