"""The client's limit for one attempt (``Call.timeout_s``) against a provider's own limits, at
``provider.send`` over real sockets to the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from providers._upstream import Upstream
from providers.base import Call, EventStream, Provider
from providers.registry import build_registry
from proxy.config import build_config
from proxy.errors import UpstreamTimeoutError
from proxy.operations import CHAT, SCHEMAS, Inbound, Target
from tests.fakes import openai as openai_fakes
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import Turn

fake_openai = openai_fakes.fake_openai  # the fixture, visible here without a conftest

_raw_body = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
ANTHROPIC_KEY = "sk-ant-fake-unit"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with aiohttp.ClientSession() as session:
        yield Upstream(session)


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    server = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    try:
        yield server
    finally:
        await server.close()


def build(upstream: Upstream, name: str, settings: dict[str, Any]) -> Provider:
    config = build_config({"providers": {name: settings}}, source="test.yaml")
    return build_registry(config, upstream, env={})[name]


def openai_provider(upstream: Upstream, fake: FakeOpenAI, **limits: float) -> Provider:
    settings = {"base_url": fake.base_url, "keys": [{"value": "sk-fake-upstream"}], **limits}
    return build(upstream, "openai", settings)


def chat_call(provider: str, model: str, *, stream: bool, timeout_s: float | None) -> Call:
    body = {"model": f"{provider}/{model}", "messages": [{"role": "user", "content": "Hi"}]}
    encoded = msgspec.json.encode({**body, "stream": stream})
    inbound = Inbound(
        op=CHAT,
        typed=msgspec.json.decode(encoded, type=SCHEMAS["chat_completion"]),
        model=f"{provider}/{model}",
        fallbacks=[],
        stream=stream,
        wants_usage=False,
        raw=_raw_body(encoded),
    )
    return Call(
        inbound=inbound, target=Target(provider, model), request_id="req-t", timeout_s=timeout_s
    )


async def first_batch(stream: EventStream) -> list[bytes]:
    try:
        return await anext(aiter(stream))
    finally:
        await stream.aclose()


async def test_client_limit_caps_a_json_answer(upstream: Upstream, fake_openai: FakeOpenAI) -> None:
    """A JSON attempt ends at the client's limit, far shorter than ``timeout_s``, and the
    error names the client's header; the upstream request is dropped."""
    provider = openai_provider(upstream, fake_openai)
    fake_openai.enqueue(Behavior(delay_s=3))
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeoutError) as info:
        await provider.send(chat_call("openai", "gpt-4o-mini", stream=False, timeout_s=0.2))
    assert asyncio.get_running_loop().time() - started < 1
    assert "openai: no complete answer within 0.2 s (x-thruway-timeout-ms)" == info.value.message
    assert (504, True) == (info.value.status, info.value.allow_fallback)
    await asyncio.wait_for(fake_openai.disconnected.wait(), 2)


async def test_client_limit_caps_the_first_event(
    upstream: Upstream, fake_openai: FakeOpenAI
) -> None:
    """A stream with no first event within the client's limit fails at its first read (so
    the attempt can still fall back), even with no ``first_token_timeout_s`` configured."""
    provider = openai_provider(upstream, fake_openai)
    fake_openai.enqueue(Behavior(stall_after_headers_s=3))
    reply = await provider.send(chat_call("openai", "gpt-4o-mini", stream=True, timeout_s=0.2))
    assert isinstance(reply, EventStream)
    with pytest.raises(UpstreamTimeoutError) as info:
        await first_batch(reply)
    assert "openai: no first event within 0.2 s (x-thruway-timeout-ms)" == info.value.message
    await asyncio.wait_for(fake_openai.disconnected.wait(), 2)


async def test_shorter_provider_limit_wins_over_the_client_limit(
    upstream: Upstream, fake_openai: FakeOpenAI
) -> None:
    """When the provider's own limit is the shorter, it fires and is the one named."""
    provider = openai_provider(upstream, fake_openai, first_token_timeout_s=0.2)
    fake_openai.enqueue(Behavior(stall_after_headers_s=3))
    reply = await provider.send(chat_call("openai", "gpt-4o-mini", stream=True, timeout_s=5))
    assert isinstance(reply, EventStream)
    with pytest.raises(UpstreamTimeoutError) as info:
        await first_batch(reply)
    assert "openai: no first event within 0.2 s (first_token_timeout_s)" == info.value.message


async def test_client_limit_does_not_cut_a_stream_after_its_first_event(
    upstream: Upstream, fake_openai: FakeOpenAI
) -> None:
    """The client's limit is per attempt: a stream whose first event came in time runs on
    past it, within the provider's idle limit."""
    provider = openai_provider(upstream, fake_openai)
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c"], gap_s=0.15))
    reply = await provider.send(chat_call("openai", "gpt-4o-mini", stream=True, timeout_s=0.2))
    assert isinstance(reply, EventStream)
    payloads: list[bytes] = []
    try:
        async for batch in reply:
            payloads.extend(batch)
    finally:
        await reply.aclose()
    assert b"".join(payloads).count(b'"content":') == 4  # the role chunk's "" and a, b, c
    assert 0 == fake_openai.disconnects


async def test_client_limit_caps_a_translated_provider(
    upstream: Upstream, fake_anthropic: FakeAnthropic
) -> None:
    """A translated provider honours the client's limit too, for JSON and for a stream."""
    settings = {"base_url": fake_anthropic.base_url, "keys": [{"value": ANTHROPIC_KEY}]}
    provider = build(upstream, "anthropic", settings)
    fake_anthropic.script(Turn(delay_s=3), Turn(stall_after_headers_s=3))
    with pytest.raises(UpstreamTimeoutError) as info:
        await provider.send(
            chat_call("anthropic", "claude-sonnet-4-6", stream=False, timeout_s=0.2)
        )
    assert "anthropic: no complete answer within 0.2 s (x-thruway-timeout-ms)" == str(info.value)
    reply = await provider.send(
        chat_call("anthropic", "claude-sonnet-4-6", stream=True, timeout_s=0.2)
    )
    assert isinstance(reply, EventStream)
    with pytest.raises(UpstreamTimeoutError) as info:
        await first_batch(reply)
    assert "anthropic: no first event within 0.2 s (x-thruway-timeout-ms)" == str(info.value)
    await asyncio.wait_for(fake_anthropic.disconnected.wait(), 2)
