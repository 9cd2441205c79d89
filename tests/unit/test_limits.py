"""The per-provider limiter: slots, the FIFO queue, its timeout, and no leak on cancellation."""

from __future__ import annotations

import asyncio

import pytest

from proxy.config import build_config
from proxy.errors import OverloadedError
from proxy.limits import Limiter, Limits


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_without_a_limit_every_request_enters_and_is_counted() -> None:
    """A provider without ``max_in_flight`` never waits, but its requests in flight are counted."""
    limiter = Limiter("p")
    taken = [limiter.enter() for _ in range(1000)]
    assert [0.0] * 1000 == taken
    assert 1000 == limiter.in_flight
    for since in taken:
        limiter.leave(since)
    assert 0 == limiter.in_flight


async def test_queue_is_served_first_in_first_out() -> None:
    """Waiters get the slot in the order they queued, each as the holder leaves."""
    limiter = Limiter("p", 1, max_queue=3, queue_timeout_s=5)
    since = limiter.enter()
    assert since is not None
    order: list[int] = []

    async def queued(i: int) -> None:
        got = await limiter.wait()
        order.append(i)
        await asyncio.sleep(0.01)
        limiter.leave(got)

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(queued(i)))
        await _settle()
    assert 3 == limiter.queued
    # A newcomer does not overtake the queue even as the slot is freed.
    limiter.leave(since)
    assert limiter.enter() is None
    await asyncio.gather(*tasks)
    assert [0, 1, 2] == order
    assert (0, 0) == (limiter.in_flight, limiter.queued)


async def test_full_queue_is_refused_at_once() -> None:
    """With every slot taken and the queue full, a request gets ``overloaded`` without waiting."""
    limiter = Limiter("p", 2, max_queue=1, queue_timeout_s=30)
    held = [limiter.enter(), limiter.enter()]
    waiter = asyncio.create_task(limiter.wait())
    await _settle()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(OverloadedError) as info:
        await limiter.wait()
    assert loop.time() - start < 0.1
    err = info.value
    assert (503, "overloaded", "provider_overloaded", True) == (
        err.status,
        err.type,
        err.code,
        err.retryable,
    )
    assert "`max_queue`" in err.message
    assert int(err.headers["Retry-After"]) >= 1
    for since in held:
        assert since is not None
        limiter.leave(since)
    limiter.leave(await waiter)
    assert 0 == limiter.in_flight


async def test_no_queue_refuses_when_busy() -> None:
    """``max_queue: 0`` refuses the request over ``max_in_flight`` at once."""
    limiter = Limiter("p", 1)
    assert limiter.enter() is not None
    assert limiter.enter() is None
    with pytest.raises(OverloadedError):
        await limiter.wait()
    assert 0 == limiter.queued


async def test_queue_timeout_is_overloaded_and_leaves_the_queue() -> None:
    """A request that waits past ``queue_timeout_ms`` gets ``overloaded`` and leaves the queue."""
    limiter = Limiter("p", 1, max_queue=1, queue_timeout_s=0.05)
    since = limiter.enter()
    assert since is not None
    with pytest.raises(OverloadedError) as info:
        await limiter.wait()
    assert "`queue_timeout_ms` (50)" in info.value.message
    assert (1, 0) == (limiter.in_flight, limiter.queued)
    limiter.leave(since)
    assert 0 == limiter.in_flight


async def test_retry_after_follows_the_observed_hold_time() -> None:
    """``Retry-After`` estimates the wait from how long slots were held and how many queue."""
    limiter = Limiter("p", 1, max_queue=1, queue_timeout_s=30)
    taken = limiter.enter()
    assert taken is not None
    limiter.leave(taken - 3.0)  # a slot held for 3 s
    assert 3 == limiter.retry_after_s()
    since = limiter.enter()
    waiter = asyncio.create_task(limiter.wait())
    await _settle()
    with pytest.raises(OverloadedError) as info:
        await limiter.wait()
    # One queued ahead and this one: two releases of ~3 s each.
    assert "6" == info.value.headers["Retry-After"]
    assert since is not None
    limiter.leave(since)
    limiter.leave(await waiter)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """A queued request that is cancelled (client gone) frees its place; the next gets the slot."""
    limiter = Limiter("p", 1, max_queue=2, queue_timeout_s=5)
    since = limiter.enter()
    assert since is not None
    first = asyncio.create_task(limiter.wait())
    second = asyncio.create_task(limiter.wait())
    await _settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert 1 == limiter.queued
    limiter.leave(since)
    limiter.leave(await second)
    assert (0, 0) == (limiter.in_flight, limiter.queued)


async def test_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """A waiter cancelled just after it was handed the slot passes the slot to the next."""
    limiter = Limiter("p", 1, max_queue=2, queue_timeout_s=5)
    since = limiter.enter()
    assert since is not None
    first = asyncio.create_task(limiter.wait())
    second = asyncio.create_task(limiter.wait())
    await _settle()
    limiter.leave(since)  # hands the slot to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    got = await asyncio.wait_for(second, 1)
    assert (1, 0) == (limiter.in_flight, limiter.queued)
    limiter.leave(got)
    assert 0 == limiter.in_flight


async def test_no_leak_after_many_cancellations() -> None:
    """Hundreds of holders and waiters cancelled at random moments leave nothing in flight."""
    limiter = Limiter("p", 3, max_queue=50, queue_timeout_s=5)

    async def use(hold: float) -> None:
        async with limiter.slot():
            await asyncio.sleep(hold)

    for round_ in range(10):
        tasks = [asyncio.create_task(use(0.001 * (i % 4))) for i in range(50)]
        await asyncio.sleep(0.001 * round_)
        for i, task in enumerate(tasks):
            if i % 3 != 0:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert (0, 0) == (limiter.in_flight, limiter.queued)
    # Still works afterwards, up to the limit at once.
    assert all(limiter.enter() is not None for _ in range(3))
    assert limiter.enter() is None


async def test_limits_are_built_per_provider_from_config() -> None:
    """Each configured provider gets its own limiter; ``in_flight`` reads its count."""
    config = build_config(
        {
            "providers": {
                "a": {"type": "openai", "max_in_flight": 1, "max_queue": 2},
                "b": {"type": "openai"},
            }
        },
        source="<test>",
    )
    limits = Limits.from_config(config.providers)
    assert (1, 2, None) == (limits["a"].limit, limits["a"].max_queue, limits["b"].limit)
    async with limits.slot("a"), limits.slot("b"), limits.slot("b"):
        assert (1, 2, 0) == (limits.in_flight("a"), limits.in_flight("b"), limits.queued("a"))
    assert (0, 0, 0) == (limits.in_flight("a"), limits.in_flight("b"), limits.in_flight("c"))
