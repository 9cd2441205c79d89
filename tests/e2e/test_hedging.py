"""Hedged routes: a slow first attempt is raced by a second on the next target; the first to
answer is served, the other cancelled, and what happened is visible to the caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from providers.base import Call, JSONReply
from proxy.config import ProviderConfig
from proxy.dispatch import _Started
from proxy.keys import LIMITS, Outcome
from proxy.limits import Limits
from proxy.logging import CanonicalLine
from proxy.operations import CHAT, Inbound, Target
from proxy.schemas.common import BilledUsage
from tests.conftest import Gateway, MakeGateway
from tests.fakes.openai import Behavior, FakeOpenAI

USER: list[Any] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI, FakeOpenAI]]:
    made = [await FakeOpenAI(api_key=f"sk-{n}").start() for n in ("a", "b", "c")]
    try:
        yield made[0], made[1], made[2]
    finally:
        for fake in made:
            await fake.close()


async def start(make_gateway: MakeGateway, fakes: tuple[FakeOpenAI, ...], **route: Any) -> Gateway:
    providers = {
        name: {"type": "openai", "base_url": fake.base_url, "keys": [{"value": fake.api_key}]}
        for name, fake in zip(("a", "b", "c"), fakes, strict=True)
    }
    document = {
        "providers": providers,
        "routes": {
            "fast": {
                "targets": [{"model": "a/gpt-4o-mini"}, {"model": "b/gpt-4o-mini"}],
                "strategy": "ordered",
                "fallbacks": ["c/gpt-4o-mini"],
                **route,
            }
        },
    }
    return await make_gateway(document)


async def test_a_slow_first_attempt_is_raced_and_cancelled(
    make_gateway: MakeGateway, fakes: tuple[FakeOpenAI, FakeOpenAI, FakeOpenAI]
) -> None:
    a, b, c = fakes
    gateway = await start(make_gateway, fakes, hedge_after_ms=50)
    a.enqueue(Behavior(delay_s=2, content="slow"))
    b.enqueue(Behavior(content="fast"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    raw = await gateway.sdk().chat.completions.with_raw_response.create(model="fast", messages=USER)
    elapsed = loop.time() - started
    reply = raw.parse()
    assert reply.choices[0].message.content == "fast"
    assert elapsed < 1.0  # not the slow attempt's 2 s
    assert raw.headers["x-thruway-provider"] == "b"
    assert raw.headers["x-thruway-attempts"] == "2"
    assert raw.headers["x-thruway-fallback-index"] == "1"
    extra = (reply.model_extra or {})["extra_fields"]
    assert (extra["provider"], extra["fallback_index"], extra["attempts"]) == ("b", 1, 2)
    # The loser was cancelled: the gateway hung up on it.
    await asyncio.wait_for(a.disconnected.wait(), 2)
    assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 1, 0)


async def test_a_fast_first_attempt_is_not_hedged(
    make_gateway: MakeGateway, fakes: tuple[FakeOpenAI, FakeOpenAI, FakeOpenAI]
) -> None:
    a, b, _ = fakes
    gateway = await start(make_gateway, fakes, hedge_after_ms=500)
    raw = await gateway.sdk().chat.completions.with_raw_response.create(model="fast", messages=USER)
    assert raw.headers["x-thruway-provider"] == "a"
    assert raw.headers["x-thruway-attempts"] == "1"
    assert (len(a.requests), len(b.requests)) == (1, 0)


async def test_a_hedged_stream_is_served_by_the_first_event(
    make_gateway: MakeGateway, fakes: tuple[FakeOpenAI, FakeOpenAI, FakeOpenAI]
) -> None:
    a, b, _ = fakes
    gateway = await start(make_gateway, fakes, hedge_after_ms=50)
    a.enqueue(Behavior(stall_after_headers_s=2, content="slow"))
    b.enqueue(Behavior(content="fast stream"))
    stream = await gateway.sdk().chat.completions.create(model="fast", messages=USER, stream=True)
    text = ""
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == "fast stream"
    assert stream.response.headers["x-thruway-provider"] == "b"
    await asyncio.wait_for(a.disconnected.wait(), 2)


async def test_when_both_racers_fail_the_route_fallback_answers(
    make_gateway: MakeGateway, fakes: tuple[FakeOpenAI, FakeOpenAI, FakeOpenAI]
) -> None:
    a, b, c = fakes
    gateway = await start(make_gateway, fakes, hedge_after_ms=50)
    a.enqueue(Behavior(delay_s=0.2, status=503))
    b.enqueue(Behavior(status=500))
    raw = await gateway.sdk().chat.completions.with_raw_response.create(model="fast", messages=USER)
    assert raw.headers["x-thruway-provider"] == "c"
    # b lost its race: it is not tried a second time as a fallback.
    assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 1, 1)


async def test_a_finished_losers_usage_goes_to_the_log_line() -> None:
    """A loser that had finished with usage is closed and its tokens logged: fields the
    canonical line has (an unknown one would break the line, and the request with it)."""
    call = Call(
        inbound=Inbound(op=CHAT, typed=None, model="a/m", fallbacks=[]),
        target=Target("a", "m"),
        request_id="r",
    )
    reply = JSONReply(body=b"{}", usage=BilledUsage(prompt_tokens=12, completion_tokens=5))
    limits = Limits.from_config({"a": ProviderConfig()})
    since = limits["a"].enter()
    assert since is not None
    request = SimpleNamespace(app={LIMITS: limits})
    outcome = Outcome()
    await _Started(call, reply, since, None).discard(request, outcome)  # type: ignore[arg-type]
    line = CanonicalLine(
        request_id="r", method="POST", path="/", status=200, level="info", **outcome.log_fields
    )
    assert (line.hedge_loser_input_tokens, line.hedge_loser_output_tokens) == (12, 5)
    assert limits.in_flight("a") == 0
