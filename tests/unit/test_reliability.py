"""The reliability core: backoff, Retry-After, circuit breakers, key cooldowns, key choice and
the per-target latency statistics, each driven by a seeded random source or a fake clock."""

from __future__ import annotations

import email.utils
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from providers._keys import KeyRing
from proxy.config import BreakerConfig, GatewayConfig, KeyConfig, RetryConfig, build_config
from proxy.reliability import Breaker, Reliability, TargetStats, backoff_s, retry_after_s


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def seeded() -> Iterator[None]:
    """The global ``random`` (what ``KeyRing`` draws from) seeded, and restored afterwards."""
    state = random.getstate()
    random.seed(20240611)
    yield
    random.setstate(state)


def _config(**provider: Any) -> GatewayConfig:
    settings = {"type": "openai", "keys": [{"value": "k0"}, {"value": "k1"}], **provider}
    return build_config({"providers": {"p": settings}}, source="<test>")


# --- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4, 8])
def test_backoff_is_full_jitter_within_the_exponential_ceiling(attempt: int) -> None:
    """Each delay is uniform in [0, min(max, initial * 2^attempt)] and spreads over that range."""
    retry = RetryConfig(initial_ms=100, max_ms=1000)
    ceiling = min(1.0, 0.1 * 2**attempt)
    rng = random.Random(attempt)
    delays = [backoff_s(attempt, retry, rng) for _ in range(2000)]
    assert all(0 <= d <= ceiling for d in delays)
    # Full jitter, not "ceiling minus a little": both ends of the range are reached.
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling
    assert 0.45 * ceiling < sum(delays) / len(delays) < 0.55 * ceiling


def test_backoff_never_exceeds_max() -> None:
    """However many attempts, the delay never goes above ``max_ms``."""
    retry = RetryConfig(initial_ms=200, max_ms=750)
    rng = random.Random(7)
    delays = [backoff_s(attempt, retry, rng) for attempt in range(11) for _ in range(500)]
    assert max(delays) <= 0.75
    assert max(delays) > 0.7


def test_backoff_is_repeatable_with_a_seed() -> None:
    """The same seed gives the same delays (the jitter comes only from the given source)."""
    retry = RetryConfig(initial_ms=10, max_ms=100)
    first = [backoff_s(n, retry, random.Random(3)) for n in range(5)]
    again = [backoff_s(n, retry, random.Random(3)) for n in range(5)]
    assert first == again


# --- Retry-After --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "40"}, 0.04),
        # The millisecond header is the more precise one and wins.
        ({"retry-after": "30", "retry-after-ms": "120"}, 0.12),
        # An unusable millisecond header leaves the seconds header in charge.
        ({"retry-after": "3", "retry-after-ms": "soon"}, 3.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after-ms": "-100"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"x-ratelimit-reset-requests": "1s"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Seconds, milliseconds (winning), negatives as zero, and garbage as nothing."""
    assert expected == retry_after_s(headers)


def test_retry_after_http_date() -> None:
    """An HTTP date means the seconds from now until then; a date in the past means now."""
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 120, usegmt=True)
    earlier = email.utils.formatdate(now - 120, usegmt=True)
    assert 120.0 == retry_after_s({"Retry-After": later}, now=now)
    assert 0.0 == retry_after_s({"Retry-After": earlier}, now=now)
    assert retry_after_s({"Retry-After": "Someday, 99 Foo 20xx"}, now=now) is None


# --- breaker ------------------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures() -> None:
    """N failures in a row open the circuit; the N-th failure reports that it opened it."""
    breaker = Breaker(BreakerConfig(failures=3, min_requests=100))
    assert [False, False, True] == [breaker.failure(10.0) for _ in range(3)]
    assert "open" == breaker.state
    assert breaker.is_open(10.5)


def test_breaker_success_resets_the_consecutive_count() -> None:
    """Failures interrupted by a success do not count as consecutive."""
    breaker = Breaker(BreakerConfig(failures=3, min_requests=100))
    for _ in range(5):
        breaker.failure(10.0)
        breaker.failure(10.0)
        breaker.success(10.0)
    assert "closed" == breaker.state
    assert not breaker.is_open(10.0)


def test_breaker_opens_on_error_rate_over_the_window() -> None:
    """With ``min_requests`` seen in the window and a failure rate at the threshold, it opens."""
    breaker = Breaker(
        BreakerConfig(failures=100, error_rate=0.5, min_requests=10, window_s=10, cooldown_s=5)
    )
    opened = []
    for i in range(5):
        breaker.success(100.0 + i)
        opened.append(breaker.failure(100.0 + i))
    assert [False] * 4 + [True] == opened
    assert "open" == breaker.state


def test_breaker_stays_closed_below_the_error_rate() -> None:
    """A failure rate under the threshold keeps it closed, however many requests."""
    breaker = Breaker(BreakerConfig(failures=100, error_rate=0.5, min_requests=10, window_s=10))
    for i in range(40):
        now = 100.0 + i * 0.2
        breaker.success(now)
        breaker.success(now)
        assert not breaker.failure(now)  # one in three
    assert "closed" == breaker.state


def test_breaker_needs_min_requests_for_the_rate() -> None:
    """Below ``min_requests`` even a 100% failure rate does not open it."""
    breaker = Breaker(BreakerConfig(failures=100, error_rate=0.5, min_requests=10, window_s=10))
    assert not any(breaker.failure(100.0) for _ in range(9))
    assert "closed" == breaker.state
    assert breaker.failure(100.0)


def test_breaker_window_expires() -> None:
    """Failures older than the window no longer count towards the error rate."""
    config = BreakerConfig(failures=100, error_rate=0.5, min_requests=4, window_s=10)
    expired = Breaker(config)
    for _ in range(3):
        expired.failure(100.0)
    assert not expired.failure(111.0)  # the three at t=100 have left the window
    assert "closed" == expired.state
    # The same four failures within the window open it.
    recent = Breaker(config)
    for _ in range(3):
        recent.failure(100.0)
    assert recent.failure(105.0)


def test_breaker_half_open_after_cooldown_and_success_closes() -> None:
    """Open for ``cooldown_s``; then half-open, and a successful probe closes it."""
    breaker = Breaker(BreakerConfig(failures=2, cooldown_s=5))
    breaker.failure(50.0)
    breaker.failure(50.0)
    assert breaker.is_open(54.9)
    assert not breaker.is_open(55.0)
    assert "half_open" == breaker.state
    breaker.success(55.1)
    assert ("closed", 0) == (breaker.state, breaker.consecutive)
    # Closed afresh: it takes the full count of failures again to open it.
    assert not breaker.failure(56.0)
    assert breaker.failure(56.0)


def test_breaker_half_open_failure_reopens() -> None:
    """A failed probe opens the circuit again for a new cooldown."""
    breaker = Breaker(BreakerConfig(failures=2, cooldown_s=5))
    breaker.failure(50.0)
    breaker.failure(50.0)
    assert not breaker.is_open(56.0)
    assert breaker.failure(56.0)
    assert "open" == breaker.state
    assert breaker.is_open(60.9)
    assert not breaker.is_open(61.0)


# --- Reliability --------------------------------------------------------------------------------


def test_blocked_only_when_the_target_circuit_is_open() -> None:
    """A target never tried is not blocked; after its failures it is, until the cooldown."""
    clock = FakeClock()
    rel = Reliability(_config(keys=[{"value": "k0"}], breaker={"failures": 2}), clock)
    assert not rel.blocked("p", "m")
    assert not rel.failed("p", 0, "m")
    assert not rel.blocked("p", "m")
    assert rel.failed("p", 0, "m")
    assert rel.blocked("p", "m")
    assert not rel.blocked("p", "other-model")
    assert 15.0 == rel.reopens_in("p", "m")
    clock.now += 15
    assert not rel.blocked("p", "m")  # half-open: a probe may go
    rel.succeeded("p", 0, "m")
    assert "closed" == rel.breaker("p", 0, "m").state


def test_blocked_never_when_the_breaker_is_disabled() -> None:
    """``breaker.enabled: false`` keeps every target in play whatever it answers."""
    rel = Reliability(_config(breaker={"enabled": False, "failures": 1}), FakeClock())
    assert not any(rel.failed("p", 0, "m") for _ in range(10))
    assert not rel.blocked("p", "m")


def test_one_keys_open_circuit_does_not_block_the_others() -> None:
    """With two keys, one key's open circuit leaves the target usable through the other."""
    rel = Reliability(_config(breaker={"failures": 2}), FakeClock())
    rel.failed("p", 0, "m")
    rel.failed("p", 0, "m")
    assert rel.avoid("p", "m", set())(0)
    assert not rel.avoid("p", "m", set())(1)
    assert not rel.blocked("p", "m")


def test_half_open_lets_one_probe_at_a_time() -> None:
    """Past the cooldown a single probe goes; the others stay blocked until its result."""
    clock = FakeClock()
    rel = Reliability(_config(keys=[{"value": "k0"}], breaker={"failures": 1}), clock)
    rel.failed("p", 0, "m")
    clock.now += 15
    assert not rel.blocked("p", "m")  # the probe
    assert rel.blocked("p", "m")  # while the probe is out


def test_avoid_tried_cooling_and_open_keys() -> None:
    """Keys tried in this request, cooling down after a 401/403, or with an open circuit are
    avoided; a cooldown ends after ``key_cooldown_s``."""
    clock = FakeClock()
    keys = [{"value": f"k{i}"} for i in range(4)]
    rel = Reliability(_config(keys=keys, key_cooldown_s=30, breaker={"failures": 1}), clock)
    rel.cool_down("p", 1)
    rel.failed("p", 2, "m")
    avoid = rel.avoid("p", "m", {3})
    assert [False, True, True, True] == [avoid(i) for i in range(4)]
    # Key 2's circuit is per model: for another model it is fine.
    assert not rel.avoid("p", "other", set())(2)
    clock.now += 30
    avoid = rel.avoid("p", "m", set())
    assert [False, False, False, False] == [avoid(i) for i in range(4)]


def test_zero_key_cooldown_keeps_the_key() -> None:
    """``key_cooldown_s: 0`` never takes a key out of rotation."""
    rel = Reliability(_config(key_cooldown_s=0), FakeClock())
    rel.cool_down("p", 0)
    assert not rel.avoid("p", "m", set())(0)


def test_view_shows_breakers_and_cooling_keys() -> None:
    """The health view lists each circuit's state and failures, the seconds until an open one
    probes, and keys still cooling down; providers with nothing to show are listed empty."""
    clock = FakeClock()
    rel = Reliability(_config(key_cooldown_s=60, breaker={"failures": 2, "cooldown_s": 10}), clock)
    rel.failed("p", 0, "m")
    rel.failed("p", 0, "m")
    rel.failed("p", 1, "m")
    rel.cool_down("p", 1)
    clock.now += 4
    view = rel.view(["p", "q"])
    assert ["p", "q"] == sorted(view.providers)
    q = view.providers["q"]
    assert ([], []) == (q.breakers, q.keys_cooling_down)
    p = view.providers["p"]
    got = [(b.key, b.model, b.state, b.failures, b.retry_in_s) for b in p.breakers]
    assert [(0, "m", "open", 2, 6.0), (1, "m", "closed", 1, None)] == got
    assert [(1, 56.0)] == [(k.key, k.cooling_down_s) for k in p.keys_cooling_down]
    clock.now += 60
    assert [] == rel.view(["p"]).providers["p"].keys_cooling_down


# --- key choice ---------------------------------------------------------------------------------


def _ring(*keys: KeyConfig) -> KeyRing:
    return KeyRing(keys)


def test_keyless_ring_chooses_none() -> None:
    """A provider without keys uses none."""
    assert _ring().choose("m") is None


def test_choose_skips_avoided_keys(seeded: None) -> None:
    """Avoided keys are never chosen while another allowed key is left."""
    ring = _ring(*(KeyConfig(value=f"k{i}") for i in range(4)))
    picks = Counter(ring.choose("m", lambda i: i in (0, 2)) for _ in range(2000))
    assert {1, 3} == set(picks)


def test_choose_among_all_when_every_key_is_avoided(seeded: None) -> None:
    """When every allowed key is to be avoided, the choice is among all of them."""
    ring = _ring(*(KeyConfig(value=f"k{i}") for i in range(3)))
    picks = Counter(ring.choose("m", lambda i: True) for _ in range(3000))
    assert {0, 1, 2} == set(picks)
    assert all(800 < n < 1200 for n in picks.values())


def test_weighted_choice_distribution(seeded: None) -> None:
    """Over 20,000 draws each key is chosen in proportion to its weight (within 1.5 points)."""
    ring = _ring(
        KeyConfig(value="a", weight=1), KeyConfig(value="b", weight=3), KeyConfig(value="c")
    )
    draws = 20_000
    picks = Counter(ring.choose("m") for _ in range(draws))
    for index, share in ((0, 0.2), (1, 0.6), (2, 0.2)):
        assert abs(picks[index] / draws - share) < 0.015, picks


def test_weighted_choice_among_the_keys_not_avoided(seeded: None) -> None:
    """Avoiding a key renormalises the weights of the others."""
    ring = _ring(
        KeyConfig(value="a", weight=1), KeyConfig(value="b", weight=3), KeyConfig(value="c")
    )
    draws = 20_000
    picks = Counter(ring.choose("m", lambda i: i == 1) for _ in range(draws))
    assert {0, 2} == set(picks)
    assert abs(picks[0] / draws - 0.5) < 0.015, picks


def test_models_allow_list(seeded: None) -> None:
    """Only keys whose ``models`` patterns match are chosen; no match is a LookupError."""
    ring = _ring(
        KeyConfig(value="mini", models=("gpt-4o-mini",)),
        KeyConfig(value="gpt", models=("gpt-4o*", "o1")),
        KeyConfig(value="embed", models=("text-embedding-*",)),
    )
    assert {0, 1} == {ring.choose("gpt-4o-mini") for _ in range(200)}
    assert {1} == {ring.choose("gpt-4o") for _ in range(50)}
    assert {1} == {ring.choose("o1") for _ in range(50)}
    assert {2} == {ring.choose("text-embedding-3-small") for _ in range(50)}
    with pytest.raises(LookupError):
        ring.choose("claude-3")
    # Avoiding the only allowed key never reaches for a key the model is not allowed on.
    assert {1} == {ring.choose("gpt-4o", lambda i: i == 1) for _ in range(50)}


# --- target statistics --------------------------------------------------------------------------


def test_ewma_of_time_to_first_byte() -> None:
    """The first sample sets the average; later ones move it by a fifth of the difference."""
    stats = TargetStats()
    assert stats.ewma_ms is None
    stats.observe(100)
    assert 100 == stats.ewma_ms
    stats.observe(200)
    assert 120 == pytest.approx(stats.ewma_ms)
    stats.observe(20)
    assert 100 == pytest.approx(stats.ewma_ms)


def test_p95_needs_twenty_samples() -> None:
    """No percentile from fewer than 20 samples; then the 95th of the recent ones."""
    stats = TargetStats()
    for ms in range(1, 20):
        stats.observe(ms)
    assert stats.p95_ms() is None
    stats.observe(20)
    assert 19 == stats.p95_ms()
    for ms in range(21, 101):
        stats.observe(ms)
    assert 95 == stats.p95_ms()


def test_p95_forgets_old_samples() -> None:
    """Only the last 200 samples count: a slow past does not weigh on a fast present."""
    stats = TargetStats()
    for _ in range(200):
        stats.observe(5000)
    for _ in range(200):
        stats.observe(10)
    assert 10 == stats.p95_ms()
