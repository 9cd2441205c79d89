"""Bounded load per provider: at most ``max_in_flight`` requests at once, ``max_queue`` more
waiting in order, each at most ``queue_timeout_ms``; past that, :class:`OverloadedError`.

A slot is held from before the upstream call until its reply is consumed (a JSON body read, a
stream ended or closed). A provider without ``max_in_flight`` still counts its requests in flight
(``Limits.in_flight``, read by the ``least-busy`` routing strategy), and that is all it costs: one
increment and one decrement, no clock, no await.

Slots pass from hand to hand: a release with someone waiting gives the slot to the first waiter
rather than freeing it, so a newcomer cannot overtake the queue, and a waiter that gives up at the
moment it was handed a slot passes it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType

from proxy.config import ProviderConfig
from proxy.errors import OverloadedError

__all__ = ["Limiter", "Limits", "Slot"]

# Weight of the newest hold time in the moving average behind the ``Retry-After`` estimate.
_ALPHA = 0.2


class Limiter:
    """One provider's slots. :meth:`enter`/:meth:`wait` take one, :meth:`leave` gives it back::

        since = limiter.enter()
        if since is None:
            since = await limiter.wait()
        try:
            ...
        finally:
            limiter.leave(since)

    :meth:`slot` wraps the same in an async context manager.
    """

    __slots__ = ("_hold_s", "_timeout_s", "_waiters", "in_flight", "limit", "max_queue", "name")

    def __init__(
        self,
        name: str,
        limit: int | None = None,
        *,
        max_queue: int = 0,
        queue_timeout_s: float = 1.0,
    ) -> None:
        self.name = name
        self.limit = limit
        self.max_queue = max_queue
        self.in_flight = 0
        self._timeout_s = queue_timeout_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Moving average of how long a slot is held; None until one was released.
        self._hold_s: float | None = None

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def enter(self) -> float | None:
        """Take a slot if one is free now (O(1)): the time it was taken, to pass to
        :meth:`leave` (``0.0`` without a limit: nothing is timed); None when the caller must
        :meth:`wait` for one."""
        if self.limit is None:
            self.in_flight += 1
            return 0.0
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return time.monotonic()
        return None

    async def wait(self) -> float:
        """Queue for a slot (first come, first served): the time it was taken.

        Raises :class:`OverloadedError` at once when the queue is full, or when no slot came
        within ``queue_timeout_ms``; a cancelled wait leaves the queue (or passes on the slot it
        was just handed).
        """
        since = self.enter()
        if since is not None:
            return since
        if len(self._waiters) >= self.max_queue:
            raise self._overloaded("full")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(self._timeout_s):
                await fut
        except TimeoutError:
            if not self._handed(fut):
                raise self._overloaded("timeout") from None
            # The slot came as the time ran out: it is ours.
        except BaseException:
            if self._handed(fut):
                # Cancelled as a slot came: it goes to the next in line.
                self._release()
            raise
        return time.monotonic()

    def leave(self, since: float) -> None:
        """Give back the slot taken at ``since`` (what :meth:`enter` or :meth:`wait` returned)."""
        if self.limit is not None:
            held = time.monotonic() - since
            avg = self._hold_s
            self._hold_s = held if avg is None else avg + _ALPHA * (held - avg)
        self._release()

    def slot(self) -> Slot:
        return Slot(self)

    def retry_after_s(self) -> int:
        """Seconds until a new request may find room: the releases needed to serve the queue
        and one more, at the observed pace (a slot held for the average time, ``limit`` at
        once); at least 1."""
        if not self.limit:
            return 1
        hold = self._hold_s if self._hold_s is not None else 1.0
        wait = hold * (len(self._waiters) + 1) / self.limit
        # Rounded to a tenth first: 3.0001 s of measured noise is 3, not 4.
        return max(1, math.ceil(round(wait, 1)))

    def _handed(self, fut: asyncio.Future[None]) -> bool:
        """Whether a wait that ended early was handed its slot; if not, it leaves the queue."""
        if fut.done() and not fut.cancelled():
            return True
        fut.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)
        return False

    def _release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.in_flight -= 1

    def _overloaded(self, why: str) -> OverloadedError:
        after = self.retry_after_s()
        busy = f"Provider `{self.name}` has {self.limit} requests in flight (its `max_in_flight`)"
        if why == "full":
            detail = f"and {len(self._waiters)} queued (its `max_queue`)"
        else:
            detail = f"and none finished within its `queue_timeout_ms` ({self._timeout_s * 1000:g})"
        return OverloadedError(
            f"{busy} {detail}. Retry in {after} s, or raise these limits.",
            provider=self.name,
            retry_after_s=after,
        )


class Slot:
    """``async with limiter.slot():`` holds one slot for the block."""

    __slots__ = ("_limiter", "_since")

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._since = 0.0

    async def __aenter__(self) -> None:
        since = self._limiter.enter()
        self._since = since if since is not None else await self._limiter.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.leave(self._since)


class Limits:
    """Every provider's :class:`Limiter`, built once at start-up from the configuration."""

    __slots__ = ("_limiters",)

    def __init__(self, limiters: Mapping[str, Limiter]) -> None:
        self._limiters = dict(limiters)

    @classmethod
    def from_config(cls, providers: Mapping[str, ProviderConfig]) -> Limits:
        return cls(
            {
                name: Limiter(
                    name,
                    p.max_in_flight,
                    max_queue=p.max_queue,
                    queue_timeout_s=p.queue_timeout_ms / 1000,
                )
                for name, p in providers.items()
            }
        )

    def __getitem__(self, provider: str) -> Limiter:
        limiter = self._limiters.get(provider)
        if limiter is None:
            # Not configured (only in tests that build providers by hand): counted, unlimited.
            limiter = self._limiters[provider] = Limiter(provider)
        return limiter

    def slot(self, provider: str) -> Slot:
        return Slot(self[provider])

    def in_flight(self, provider: str) -> int:
        """Requests to ``provider`` holding a slot now (queued ones not included)."""
        limiter = self._limiters.get(provider)
        return 0 if limiter is None else limiter.in_flight

    def queued(self, provider: str) -> int:
        limiter = self._limiters.get(provider)
        return 0 if limiter is None else limiter.queued
