"""Bounded load per provider: ``max_in_flight`` at once, ``max_queue`` waiting, the rest refused
with 503 ``overloaded`` and ``Retry-After`` (or served by the fallback)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from proxy.keys import LIMITS
from proxy.limits import Limits
from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import Behavior, FakeOpenAI

USER = [{"role": "user", "content": "Hi"}]
SLOW_S = 1.0


def _limits(gateway: Gateway) -> Limits:
    app = gateway.client.app
    assert app is not None
    return app[LIMITS]


async def _limited(
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    fake_backup: FakeOpenAI,
    **limits: Any,
) -> Gateway:
    return await make_gateway(
        {
            "providers": {
                "openai": provider_for(fake_openai, **limits),
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )


async def _until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _concurrently(
    calls: list[Callable[[], Awaitable[Any]]],
) -> tuple[list[Any], list[int]]:
    """Each call's result (or exception), and the order in which they finished."""
    finished: list[int] = []

    async def run(i: int) -> Any:
        try:
            return await calls[i]()
        finally:
            finished.append(i)

    results = await asyncio.gather(*(run(i) for i in range(len(calls))), return_exceptions=True)
    return list(results), finished


async def test_over_the_limit_is_queued_then_refused(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """With two in flight and one queued, a fourth request gets 503 ``overloaded`` at once with
    ``Retry-After``; the queued one is served when a slot frees, never a third at once."""
    gateway = await _limited(
        make_gateway, fake_openai, fake_backup, max_in_flight=2, max_queue=1, queue_timeout_ms=5000
    )
    fake_openai.enqueue(*[Behavior(delay_s=SLOW_S)] * 3)
    sdk = gateway.sdk()
    limits = _limits(gateway)

    def chat() -> Awaitable[Any]:
        return sdk.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=USER
        )

    gathered = asyncio.ensure_future(_concurrently([chat, chat, chat, chat]))
    await _until(lambda: len(fake_openai.requests) == 2 and limits.queued("openai") == 1)
    await asyncio.sleep(0.1)
    # Still only two at the upstream: the third waits in the gateway.
    assert (2, 2, 1) == (
        len(fake_openai.requests),
        limits.in_flight("openai"),
        limits.queued("openai"),
    )
    results, finished = await gathered

    errors = [r for r in results if isinstance(r, Exception)]
    assert 1 == len(errors), errors
    (error,) = errors
    assert isinstance(error, openai.APIStatusError)
    assert 503 == error.status_code
    body: Any = error.body
    assert ("overloaded", "provider_overloaded") == (body["type"], body["code"])
    assert "`max_in_flight`" in body["message"]
    assert int(error.response.headers["retry-after"]) >= 1
    # Refused at once, before any upstream answer came back.
    assert results.index(error) == finished[0]
    served = [r.parse() for r in results if not isinstance(r, Exception)]
    assert ["openai"] * 3 == [c.model_extra["extra_fields"]["provider"] for c in served]
    assert 3 == len(fake_openai.requests)
    assert (0, 0) == (limits.in_flight("openai"), limits.queued("openai"))


async def test_overloaded_request_is_served_by_the_fallback(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """``overloaded`` allows the fallback: the request over the limit goes to the next target."""
    gateway = await _limited(
        make_gateway, fake_openai, fake_backup, max_in_flight=2, max_queue=1, queue_timeout_ms=5000
    )
    fake_openai.enqueue(*[Behavior(delay_s=SLOW_S)] * 3)
    fake_backup.enqueue(Behavior(content="from backup"))
    sdk = gateway.sdk()

    def chat() -> Awaitable[Any]:
        return sdk.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=USER,
            extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
        )

    results, _ = await _concurrently([chat, chat, chat, chat])
    assert not [r for r in results if isinstance(r, Exception)]
    providers = sorted(r.model_extra["extra_fields"]["provider"] for r in results)
    assert ["backup", "openai", "openai", "openai"] == providers
    (from_backup,) = [r for r in results if r.model_extra["extra_fields"]["provider"] == "backup"]
    assert "from backup" == from_backup.choices[0].message.content
    assert 1 == from_backup.model_extra["extra_fields"]["fallback_index"]


async def test_queue_timeout_answers_overloaded(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A queued request that waits past ``queue_timeout_ms`` gets 503 ``overloaded``."""
    gateway = await _limited(
        make_gateway, fake_openai, fake_backup, max_in_flight=1, max_queue=1, queue_timeout_ms=100
    )
    fake_openai.enqueue(Behavior(delay_s=SLOW_S))
    sdk = gateway.sdk()
    slow = asyncio.ensure_future(
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    )
    await _until(lambda: len(fake_openai.requests) == 1)
    with pytest.raises(openai.APIStatusError) as info:
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    body: Any = info.value.body
    assert (503, "overloaded") == (info.value.status_code, body["type"])
    assert "`queue_timeout_ms` (100)" in body["message"]
    assert "retry-after" in info.value.response.headers
    await slow
    assert 1 == len(fake_openai.requests)


async def test_stream_holds_its_slot_until_it_ends(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A stream keeps its slot while it is forwarded: the next request is refused until it
    ends, then served."""
    gateway = await _limited(make_gateway, fake_openai, fake_backup, max_in_flight=1)
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c", "d"], gap_s=0.2))
    sdk = gateway.sdk()
    stream = await sdk.chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, stream=True
    )
    pieces = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) == 1:
                # Mid-stream: the provider is at its limit.
                assert 1 == _limits(gateway).in_flight("openai")
                with pytest.raises(openai.APIStatusError) as info:
                    await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
                assert 503 == info.value.status_code
    assert ["a", "b", "c", "d"] == pieces
    await _until(lambda: _limits(gateway).in_flight("openai") == 0)
    done = await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert "Hello from the fake!" == done.choices[0].message.content


async def test_client_disconnect_releases_the_slot(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A client leaving mid-stream frees the provider's slot for the next request."""
    gateway = await _limited(make_gateway, fake_openai, fake_backup, max_in_flight=1)
    fake_openai.enqueue(Behavior(deltas=[str(i % 10) * 2000 for i in range(3000)], gap_s=0.01))
    resp = await gateway.client.post(
        "/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": USER, "stream": True},
    )
    await resp.content.readuntil(b"\n\n")
    assert 1 == _limits(gateway).in_flight("openai")
    resp.close()
    await asyncio.wait_for(fake_openai.disconnected.wait(), timeout=3)
    await _until(lambda: _limits(gateway).in_flight("openai") == 0)
    done = await gateway.sdk().chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert "Hello from the fake!" == done.choices[0].message.content


async def test_client_gone_while_queued_leaves_the_queue(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A queued request whose client disconnects is cancelled and gives up its place."""
    gateway = await _limited(
        make_gateway, fake_openai, fake_backup, max_in_flight=1, max_queue=1, queue_timeout_ms=5000
    )
    fake_openai.enqueue(Behavior(delay_s=SLOW_S))
    limits = _limits(gateway)
    sdk = gateway.sdk()
    slow = asyncio.ensure_future(
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    )
    await _until(lambda: limits.in_flight("openai") == 1)
    body = {"model": "openai/gpt-4o-mini", "messages": USER}
    queued = asyncio.ensure_future(gateway.client.post("/v1/chat/completions", json=body))
    await _until(lambda: limits.queued("openai") == 1)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await _until(lambda: limits.queued("openai") == 0)
    await slow
    assert (0, 1) == (limits.in_flight("openai"), len(fake_openai.requests))


async def test_responses_attempts_share_the_provider_limit(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """``/v1/responses`` takes the same provider slots as chat: refused while chat holds them,
    and a streamed response holds its slot until it ends."""
    gateway = await _limited(make_gateway, fake_openai, fake_backup, max_in_flight=1)
    limits = _limits(gateway)
    sdk = gateway.sdk()
    fake_openai.enqueue(Behavior(delay_s=SLOW_S))
    slow = asyncio.ensure_future(
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    )
    await _until(lambda: limits.in_flight("openai") == 1)
    with pytest.raises(openai.APIStatusError) as info:
        await sdk.responses.create(model="openai/gpt-4o-mini", input="Hi")
    body: Any = info.value.body
    assert (503, "overloaded") == (info.value.status_code, body["type"])
    await slow

    fake_openai.enqueue(Behavior(gap_s=0.05))
    stream = await sdk.responses.create(model="openai/gpt-4o-mini", input="Hi", stream=True)
    kinds = []
    async for ev in stream:
        kinds.append(ev.type)
        if len(kinds) == 1:
            assert 1 == limits.in_flight("openai")
    assert "response.completed" == kinds[-1]
    await _until(lambda: limits.in_flight("openai") == 0)
    answered = await sdk.responses.create(model="openai/gpt-4o-mini", input="Hi")
    assert "completed" == answered.status
