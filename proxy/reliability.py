"""What the gateway learns about its upstreams while serving, and the choices made from it.

One :class:`Reliability` per app (``RELIABILITY`` in :mod:`proxy.keys`):

- a circuit breaker per provider + key + model (:class:`Breaker`): open after consecutive
  failures or a high error rate in a window, half-open after a cooldown (one probe at a time),
  closed again by a success;
- keys cooling down after a 401/403 (out of rotation for ``key_cooldown_s``);
- per target (provider/model): requests in flight, and a moving average and recent samples of
  the time to first byte, for the ``least-busy`` and ``least-latency`` strategies and ``hedge:
  p95``;
- the backoff before a retry: exponential with full jitter, or the upstream's ``Retry-After``.

State is per gateway process (each worker and instance learns on its own), like the connection
pools it describes.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from proxy.config import BreakerConfig, GatewayConfig, ProviderConfig, RetryConfig

__all__ = [
    "Breaker",
    "BreakerState",
    "Reliability",
    "TargetStats",
    "backoff_s",
    "retry_after_s",
]

BreakerState = Literal["closed", "open", "half_open"]


class Breaker:
    """One provider+key+model's circuit; times are ``time.monotonic()`` seconds.

    Closed: every attempt goes. Open: none, for ``cooldown_s``. Then half-open: one probe at a
    time is let through (:meth:`claim_probe`); its success closes the circuit, its failure
    opens it again. A probe that never reports is given up after another ``cooldown_s``. The
    error rate is counted in one-second buckets over ``window_s`` (a success costs a few
    integer updates).
    """

    __slots__ = (
        "_config",
        "_fail",
        "_req",
        "_second",
        "consecutive",
        "opened_at",
        "probe_since",
        "state",
    )

    def __init__(self, config: BreakerConfig) -> None:
        self._config = config
        self.state: BreakerState = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self.probe_since: float | None = None
        slots = max(1, math.ceil(config.window_s))
        self._req = [0] * slots
        self._fail = [0] * slots
        self._second = 0

    def is_open(self, now: float) -> bool:
        """No attempt may go now: open and cooling down, or half-open with its probe out."""
        if self.state == "closed":
            return False
        if self.state == "open":
            if now - self.opened_at < self._config.cooldown_s:
                return True
            self.state = "half_open"
            self.probe_since = None
        since = self.probe_since
        return since is not None and now - since < self._config.cooldown_s

    def claim_probe(self, now: float) -> bool:
        """Half-open and no probe out: this attempt is the probe."""
        if self.is_open(now) or self.state != "half_open":
            return False
        self.probe_since = now
        return True

    def success(self, now: float) -> None:
        self.consecutive = 0
        self.probe_since = None
        if self.state != "closed":
            self.state = "closed"
            self._req = [0] * len(self._req)
            self._fail = [0] * len(self._fail)
            return
        self._req[self._slot(now)] += 1

    def failure(self, now: float) -> bool:
        """Count a failure; True when it opened the circuit."""
        self.probe_since = None
        if self.state == "open":
            return False
        if self.state == "half_open":
            self._open(now)
            return True
        self.consecutive += 1
        slot = self._slot(now)
        self._req[slot] += 1
        self._fail[slot] += 1
        if self._tripped():
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self.state = "open"
        self.opened_at = now

    def _slot(self, now: float) -> int:
        second = int(now)
        size = len(self._req)
        if second != self._second:
            # Clear the buckets of the seconds that passed since the last event.
            for s in range(self._second + 1, min(second, self._second + size) + 1):
                self._req[s % size] = self._fail[s % size] = 0
            self._second = second
        return second % size

    def _tripped(self) -> bool:
        config = self._config
        if self.consecutive >= config.failures:
            return True
        total = sum(self._req)
        return total >= config.min_requests and sum(self._fail) / total >= config.error_rate


class TargetStats:
    """A provider/model's load and speed, as this process has seen them."""

    __slots__ = ("_samples", "ewma_ms", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self.ewma_ms: float | None = None
        self._samples: deque[float] = deque(maxlen=200)

    def observe(self, ttfb_ms: float) -> None:
        self.ewma_ms = ttfb_ms if self.ewma_ms is None else 0.8 * self.ewma_ms + 0.2 * ttfb_ms
        self._samples.append(ttfb_ms)

    def p95_ms(self) -> float | None:
        """The 95th percentile of recent times to first byte (None until 20 are known)."""
        if len(self._samples) < 20:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class _BreakerView(msgspec.Struct):
    key: int | None
    model: str
    state: BreakerState
    failures: int
    retry_in_s: float | None = None


class _KeyView(msgspec.Struct):
    key: int
    cooling_down_s: float


class _ProviderView(msgspec.Struct):
    breakers: list[_BreakerView]
    keys_cooling_down: list[_KeyView]
    in_flight: int = 0
    queued: int = 0


class HealthView(msgspec.Struct):
    providers: dict[str, _ProviderView]


def backoff_s(attempt: int, retry: RetryConfig, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(max, initial * 2^attempt)], in seconds (attempt from 0)."""
    ceiling = min(retry.max_ms, retry.initial_ms * (2**attempt))
    return (rng or random).uniform(0, ceiling) / 1000


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """What an upstream asked to wait: ``retry-after-ms``, else ``Retry-After`` in seconds or
    as an HTTP date; None when it said nothing usable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Reliability:
    def __init__(self, config: GatewayConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._providers: Mapping[str, ProviderConfig] = config.providers
        self._default = ProviderConfig()
        self._clock = clock
        self._breakers: dict[tuple[str, int | None, str], Breaker] = {}
        self._by_target: dict[tuple[str, str], list[Breaker]] = {}
        self._cooldowns: dict[tuple[str, int], float] = {}
        self._targets: dict[tuple[str, str], TargetStats] = {}

    def settings(self, provider: str) -> ProviderConfig:
        return self._providers.get(provider, self._default)

    # --- breakers ---------------------------------------------------------------------------

    def breaker(self, provider: str, key: int | None, model: str) -> Breaker:
        got = self._breakers.get((provider, key, model))
        if got is None:
            got = self._breakers[provider, key, model] = Breaker(self.settings(provider).breaker)
            self._by_target.setdefault((provider, model), []).append(got)
        return got

    def blocked(self, provider: str, model: str) -> bool:
        """Whether no attempt may go to this target now: each of its keys (or, keyless, its
        one circuit) has an open circuit. A half-open circuit with no probe out lets this
        request be its probe (one at a time)."""
        settings = self.settings(provider)
        if not settings.breaker.enabled:
            return False
        mine = self._by_target.get((provider, model))
        if not mine:
            return False
        now = self._clock()
        open_ = 0
        for breaker in mine:
            if breaker.is_open(now):
                open_ += 1
            elif breaker.state == "half_open" and len(mine) == 1:
                breaker.claim_probe(now)
        # A key never tried has no circuit yet: it is closed.
        return open_ >= max(1, len(settings.keys or ()), len(mine))

    def reopens_in(self, provider: str, model: str) -> float:
        """Seconds until the first of this target's open circuits lets a probe through."""
        now = self._clock()
        mine = self._by_target.get((provider, model)) or []
        waits = [b.opened_at + b._config.cooldown_s - now for b in mine if b.state == "open"]
        return max(0.0, min(waits, default=0.0))

    def succeeded(self, provider: str, key: int | None, model: str) -> bool:
        """Count a success; True when it closed an open (half-open) circuit."""
        if not self.settings(provider).breaker.enabled:
            return False
        breaker = self.breaker(provider, key, model)
        was_closed = breaker.state == "closed"
        breaker.success(self._clock())
        return not was_closed

    def failed(self, provider: str, key: int | None, model: str) -> bool:
        """Count a failure; True when it opened the circuit."""
        if not self.settings(provider).breaker.enabled:
            return False
        return self.breaker(provider, key, model).failure(self._clock())

    # --- keys -------------------------------------------------------------------------------

    def cool_down(self, provider: str, key: int) -> None:
        seconds = self.settings(provider).key_cooldown_s
        if seconds > 0:
            self._cooldowns[provider, key] = self._clock() + seconds

    def avoid(self, provider: str, model: str, tried: set[int]) -> Callable[[int], bool]:
        """Which keys an attempt should not use: those rate-limited earlier in the request,
        cooling down, or behind an open breaker."""
        now = self._clock()
        cooldowns = self._cooldowns
        breakers = self._breakers

        def avoid_key(key: int) -> bool:
            if key in tried:
                return True
            until = cooldowns.get((provider, key))
            if until is not None and until > now:
                return True
            breaker = breakers.get((provider, key, model))
            return breaker is not None and breaker.is_open(now)

        return avoid_key

    # --- load and speed ---------------------------------------------------------------------

    def stats(self, provider: str, model: str) -> TargetStats:
        got = self._targets.get((provider, model))
        if got is None:
            got = self._targets[provider, model] = TargetStats()
        return got

    # --- what /api/health/providers shows ---------------------------------------------------

    def view(self, providers: list[str]) -> HealthView:
        now = self._clock()
        out = {name: _ProviderView(breakers=[], keys_cooling_down=[]) for name in providers}
        for (provider, key, model), b in sorted(
            self._breakers.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1] or -1)
        ):
            view = out.setdefault(provider, _ProviderView(breakers=[], keys_cooling_down=[]))
            retry_in = None
            if b.state == "open":
                retry_in = round(max(0.0, b.opened_at + b._config.cooldown_s - now), 3)
            view.breakers.append(_BreakerView(key, model, b.state, b.consecutive, retry_in))
        for (provider, key), until in sorted(self._cooldowns.items()):
            if until > now:
                view = out.setdefault(provider, _ProviderView(breakers=[], keys_cooling_down=[]))
                view.keys_cooling_down.append(_KeyView(key, round(until - now, 3)))
        return HealthView(out)
