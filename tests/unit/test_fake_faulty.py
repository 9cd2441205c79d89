"""Self-tests of the fault-injecting fake: each fault looks like the real thing on the wire, and
one seed gives one sequence of faults."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import openai
import pytest

from tests.fakes.faulty import RETRY_HINTS, Fault, FaultPlan, FaultyOpenAI, Injection

KEY = "sk-fake-upstream"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
STREAM = {**CHAT, "stream": True}
FULL_TEXT = "Hello from the fake!"


@pytest.fixture
async def fake() -> AsyncIterator[FaultyOpenAI]:
    async with FaultyOpenAI() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def only(fault: Fault, **kw: Any) -> FaultPlan:
    return FaultPlan.spread(1.0, seed=7, only=[fault], **kw)


async def post(
    session: aiohttp.ClientSession, fake: FaultyOpenAI, body: dict[str, Any], **kw: Any
) -> aiohttp.ClientResponse:
    return await session.post(
        fake.base_url + "/chat/completions",
        data=msgspec.json.encode(body),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        **kw,
    )


async def read_all(
    resp: aiohttp.ClientResponse, *, timeout_s: float
) -> tuple[bytes, Exception | None]:
    """What the body delivered, and the error (a timeout or a cut) that ended it, if any."""
    received = b""
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await resp.content.readany():
                received += chunk
    except (TimeoutError, aiohttp.ClientPayloadError) as exc:
        return received, exc
    return received, None


async def settled(fake: FaultyOpenAI) -> None:
    """Wait until the fake's handlers have all returned (or been cancelled)."""
    for _ in range(200):
        if fake.in_progress == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{fake.in_progress} requests still in progress")


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "sdk_error"),
    [
        (Fault.RATE_LIMIT, 429, "requests", openai.RateLimitError),
        (Fault.SERVER_ERROR, 500, "server_error", openai.InternalServerError),
        (Fault.UNAVAILABLE, 503, "server_error", openai.InternalServerError),
        (Fault.OVERLOADED, 529, "overloaded_error", openai.InternalServerError),
    ],
)
async def test_status_faults_are_openai_errors(
    fake: FaultyOpenAI,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    error_type: str,
    sdk_error: type[openai.APIStatusError],
) -> None:
    """A status fault answers OpenAI's error body and headers, for JSON and stream requests
    alike, and the SDK raises its own error class for it."""
    fake.plan = only(fault)
    for body in (CHAT, STREAM):
        async with await post(session, fake, body) as resp:
            assert status == resp.status
            assert "application/json" == resp.content_type
            assert resp.headers["x-request-id"].startswith("req_")
            error = msgspec.json.decode(await resp.read())["error"]
        assert {"message", "type", "param", "code"} == set(error)
        assert error_type == error["type"]
        assert error["message"]
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        with pytest.raises(sdk_error) as info:
            await sdk.chat.completions.create(**CHAT)
    assert status == info.value.status_code
    assert [fault] * 3 == [i.fault for i in fake.history]


async def test_rate_limits_carry_each_retry_hint(
    fake: FaultyOpenAI, session: aiohttp.ClientSession
) -> None:
    """429s come with ``retry-after``, ``retry-after-ms``, both or neither, as drawn."""
    fake.plan = only(Fault.RATE_LIMIT)
    seen = []
    for _ in range(24):
        async with await post(session, fake, CHAT) as resp:
            assert "0" == resp.headers["x-ratelimit-remaining-requests"]
            seen.append((resp.headers.get("retry-after"), resp.headers.get("retry-after-ms")))
    assert seen == [i.retry_hint for i in fake.history]
    assert set(RETRY_HINTS) == set(seen)


async def test_reset_before_any_response(
    fake: FaultyOpenAI, session: aiohttp.ClientSession
) -> None:
    """A reset drops the connection with a TCP RST before any response byte."""
    fake.plan = only(Fault.RESET)
    with pytest.raises(aiohttp.ClientOSError) as info:
        await post(session, fake, CHAT)
    assert errno.ECONNRESET == info.value.errno
    await settled(fake)
    assert 0 == fake.disconnects  # the fake's own doing, not a client going away
    assert {Fault.RESET: 1} == fake.injected


async def test_stall_before_headers(fake: FaultyOpenAI, session: aiohttp.ClientSession) -> None:
    """A stall sends nothing until the client gives up; its handler then ends."""
    fake.plan = only(Fault.STALL_HEADERS, stall_s=30)
    with pytest.raises(TimeoutError):
        await post(session, fake, CHAT, timeout=aiohttp.ClientTimeout(total=0.2))
    await settled(fake)
    assert 1 == fake.disconnects


async def test_stall_mid_stream(fake: FaultyOpenAI, session: aiohttp.ClientSession) -> None:
    """A stream stalls after its first events; a JSON answer after half its body."""
    fake.plan = only(Fault.STALL_MID, stall_s=30, events_before_fault=2)
    async with await post(session, fake, STREAM) as resp:
        assert 200 == resp.status
        assert "text/event-stream" == resp.content_type
        received, error = await read_all(resp, timeout_s=0.5)
    assert isinstance(error, TimeoutError)
    events = received.split(b"\n\n")
    assert 3 == len(events)  # two complete events, then silence
    assert b"" == events[-1]
    assert all(e.startswith(b"data: {") for e in events[:2])
    async with await post(session, fake, CHAT) as resp:
        assert 200 == resp.status
        length = int(resp.headers["Content-Length"])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await resp.read()
        assert 0 < resp.content.total_bytes < length
    await settled(fake)


async def test_malformed_json(fake: FaultyOpenAI, session: aiohttp.ClientSession) -> None:
    """A malformed answer is a complete 200 whose JSON is cut; in a stream, the first event's."""
    fake.plan = only(Fault.MALFORMED)
    async with await post(session, fake, CHAT) as resp:
        assert 200 == resp.status
        assert "application/json" == resp.content_type
        body = await resp.read()
    assert body.startswith(b'{"id":"chatcmpl-')
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)
    async with await post(session, fake, STREAM) as resp:
        assert 200 == resp.status
        events = (await resp.read()).split(b"\n\n")
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(events[0].removeprefix(b"data: "))
    for event in events[1:-2]:
        msgspec.json.decode(event.removeprefix(b"data: "))
    assert [b"data: [DONE]", b""] == events[-2:]


async def test_truncated(fake: FaultyOpenAI, session: aiohttp.ClientSession) -> None:
    """A truncated stream is cut inside the event after the complete ones, without [DONE];
    a truncated JSON answer is cut short of its Content-Length."""
    fake.plan = only(Fault.TRUNCATED, events_before_fault=1)
    async with await post(session, fake, STREAM) as resp:
        assert 200 == resp.status
        received, error = await read_all(resp, timeout_s=5)
    assert isinstance(error, aiohttp.ClientPayloadError)
    first, rest = received.split(b"\n\n", 1)
    assert first.startswith(b"data: {")
    assert first.endswith(b"}")
    assert rest.startswith(b"data: {")
    assert b"\n\n" not in rest
    async with await post(session, fake, CHAT) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    await settled(fake)
    assert 0 == fake.disconnects


async def test_same_seed_same_faults(session: aiohttp.ClientSession) -> None:
    """Two fakes with one seed inject the same faults in the same order; another seed differs."""
    fast = [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.MALFORMED]
    histories: list[list[Injection]] = []
    for seed in (11, 11, 12):
        async with FaultyOpenAI(FaultPlan.spread(0.6, seed=seed, only=fast)) as fake:
            for i in range(40):
                async with await post(session, fake, STREAM if i % 3 else CHAT) as resp:
                    await resp.read()
            histories.append(fake.history)
    assert histories[0] == histories[1]
    assert histories[0] != histories[2]
    assert {Fault.NONE, *fast} == {i.fault for i in histories[0]}


async def test_plan_switches_at_run_time(
    fake: FaultyOpenAI, session: aiohttp.ClientSession
) -> None:
    """Setting ``plan`` changes the faults from the next request on; counters keep counting."""
    fake.plan = only(Fault.UNAVAILABLE)
    async with await post(session, fake, CHAT) as resp:
        assert 503 == resp.status
    fake.plan = FaultPlan()
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        result = await sdk.chat.completions.create(**CHAT)
        stream = await sdk.chat.completions.create(**STREAM)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert FULL_TEXT == result.choices[0].message.content == text
    assert [Fault.UNAVAILABLE, Fault.NONE, Fault.NONE] == [i.fault for i in fake.history]
    assert {Fault.UNAVAILABLE: 1} == fake.injected
    assert 3 == fake.received


async def test_connections_are_counted_and_closed(
    fake: FaultyOpenAI, session: aiohttp.ClientSession
) -> None:
    """The fake counts its open connections and can close them (idle kept-alive ones here)."""
    async with await post(session, fake, CHAT) as resp:
        await resp.read()
    assert 1 == fake.open_connections()
    assert 0 == fake.in_progress
    assert 1 == fake.peak_in_progress
    assert 1 == await fake.close_connections()
    for _ in range(100):
        if not fake.open_connections():
            break
        await asyncio.sleep(0.01)
    assert 0 == fake.open_connections()
