"""Per-attempt time limits of a provider: each one fires with a 504 naming it (before the first
event) or an error event (after it), falls back while it still can, and leaves no upstream
connection open."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from tests.conformance.case_bedrock import bedrock_config
from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import FakeServer
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import Turn

USER = [{"role": "user", "content": "Hi"}]
ANTHROPIC_KEY = "sk-ant-fake-timeouts"
BEDROCK_MODEL = "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"
# One attempt per target: these tests are about the limits, not about retries.
NO_RETRY = {"retry": {"max_retries": 0}}
DONE = b"data: [DONE]\n\n"


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    server = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def fake_bedrock() -> AsyncIterator[FakeBedrock]:
    server = await FakeBedrock().start()
    try:
        yield server
    finally:
        await server.close()


async def openai_gateway(make_gateway: MakeGateway, fake: FakeOpenAI, **limits: float) -> Gateway:
    return await make_gateway({"providers": {"openai": provider_for(fake, **NO_RETRY, **limits)}})


async def post(gateway: Gateway, model: str, *, stream: bool = False, **extra: Any) -> Any:
    return await gateway.client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": USER, "stream": stream, **extra},
    )


async def error_of(resp: Any) -> dict[str, Any]:
    """The unified error body of a JSON answer."""
    error: dict[str, Any] = msgspec.json.decode(await resp.read())["error"]
    return error


def stream_error(raw: bytes) -> dict[str, Any]:
    """The error event that ends a stream which failed after its first event."""
    assert raw.endswith(DONE)
    last = raw[: -len(DONE)].rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"data: ")
    error: dict[str, Any] = msgspec.json.decode(last[6:])["error"]
    return error


async def closed(fake: FakeOpenAI | FakeServer) -> int:
    """How many of the fake's answers the gateway abandoned (after the first has been)."""
    await asyncio.wait_for(fake.disconnected.wait(), 2)
    return fake.disconnects


# --- an OpenAI-compatible provider ---------------------------------------------------------------


async def test_headers_timeout_is_a_504_naming_the_limit(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """An upstream that sends no response headers in time is a 504 ``upstream_timeout``
    naming ``headers_timeout_s``, though the whole answer's limit is far away; the
    request is dropped upstream."""
    gateway = await openai_gateway(make_gateway, fake_openai, headers_timeout_s=0.2)
    fake_openai.enqueue(Behavior(delay_s=3))
    resp = await post(gateway, "openai/gpt-4o-mini")
    assert 504 == resp.status
    error = await error_of(resp)
    assert ("timeout_error", "upstream_timeout") == (error["type"], error["code"])
    assert "openai: no response headers within 0.2 s (headers_timeout_s)" == error["message"]
    assert 1 == await closed(fake_openai)


async def test_whole_answer_timeout_names_timeout_s(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A JSON answer not complete within ``timeout_s`` is a 504 naming it."""
    gateway = await openai_gateway(make_gateway, fake_openai, timeout_s=0.2)
    fake_openai.enqueue(Behavior(delay_s=3))
    resp = await post(gateway, "openai/gpt-4o-mini")
    assert 504 == resp.status
    assert (
        "openai: no complete answer within 0.2 s (timeout_s)" == (await error_of(resp))["message"]
    )
    assert 1 == await closed(fake_openai)


async def test_connect_timeout_names_connect_timeout_s(make_gateway: MakeGateway) -> None:
    """A connection that does not open in time is a 504 naming ``connect_timeout_s``.

    The upstream is a listening socket whose backlog is full (the kernel leaves further
    connection attempts unanswered), so connecting stalls rather than being refused.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        config = {"type": "vllm", "base_url": f"http://127.0.0.1:{port}/v1", **NO_RETRY}
        gateway = await make_gateway({"providers": {"slow": {**config, "connect_timeout_s": 0.2}}})
        resp = await post(gateway, "slow/m")
        error = await error_of(resp)
    finally:
        for sock in [*fillers, listener]:
            sock.close()
    assert 504 == resp.status, error
    assert "slow: no connection within 0.2 s (connect_timeout_s)" == error["message"]


async def test_first_event_timeout_before_the_first_event_is_a_504(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A stream whose headers came but whose first event does not within
    ``first_token_timeout_s`` (counted from the request) is a 504, not a started stream."""
    gateway = await openai_gateway(make_gateway, fake_openai, first_token_timeout_s=0.3)
    fake_openai.enqueue(Behavior(delay_s=0.1, stall_after_headers_s=3))
    started = asyncio.get_running_loop().time()
    resp = await post(gateway, "openai/gpt-4o-mini", stream=True)
    elapsed = asyncio.get_running_loop().time() - started
    assert 504 == resp.status
    error = await error_of(resp)
    assert "openai: no first event within 0.3 s (first_token_timeout_s)" == error["message"]
    assert 0.3 <= elapsed < 1.5
    assert 1 == await closed(fake_openai)


async def test_first_event_limit_governs_before_the_idle_one(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A first event slower than the idle limit but within ``first_token_timeout_s`` is
    fine; after it, a silence longer than ``idle_timeout_s`` ends the stream with an error
    event naming it, after the events already sent."""
    gateway = await openai_gateway(
        make_gateway, fake_openai, first_token_timeout_s=2.0, idle_timeout_s=0.25
    )
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c"], stall_after_headers_s=0.5, gap_s=0.2))
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c"], gap_s=1.0))
    ok = await post(gateway, "openai/gpt-4o-mini", stream=True)
    assert 200 == ok.status
    raw = await ok.read()
    assert b'"content":"c"' in raw
    assert b'"error"' not in raw

    resp = await post(gateway, "openai/gpt-4o-mini", stream=True)
    assert 200 == resp.status
    raw = await resp.read()
    # The first event (the role) went out; the next, a second later, never came.
    assert b'"role":"assistant"' in raw
    assert b'"content":"a"' not in raw
    error = stream_error(raw)
    assert ("upstream_timeout", "openai: no data for 0.25 s (idle_timeout_s)") == (
        error["code"],
        error["message"],
    )
    assert 1 == await closed(fake_openai)


async def test_idle_limit_defaults_to_timeout_s(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Without ``idle_timeout_s``, a stream's silences are held to ``timeout_s``."""
    gateway = await openai_gateway(make_gateway, fake_openai, timeout_s=0.25)
    fake_openai.enqueue(Behavior(deltas=["a", "b"], gap_s=1.0))
    raw = await (await post(gateway, "openai/gpt-4o-mini", stream=True)).read()
    assert "openai: no data for 0.25 s (timeout_s)" == stream_error(raw)["message"]
    assert 1 == await closed(fake_openai)


async def test_stream_timeout_ends_a_stream_that_keeps_talking(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A stream whose events keep coming but that runs past ``stream_timeout_s`` ends with an
    error event naming it."""
    gateway = await openai_gateway(
        make_gateway, fake_openai, stream_timeout_s=0.4, idle_timeout_s=1.0
    )
    fake_openai.enqueue(Behavior(deltas=list("abcdefghijklmnopqrst"), gap_s=0.05))
    raw = await (await post(gateway, "openai/gpt-4o-mini", stream=True)).read()
    assert b'"content":"a"' in raw
    assert b'"content":"t"' not in raw
    error = stream_error(raw)
    assert "openai: the stream did not end within 0.4 s (stream_timeout_s)" == error["message"]
    assert 1 == await closed(fake_openai)


async def test_timed_out_stream_falls_back_through_the_sdk(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A stream that times out before its first event moves to the ``fallbacks`` target, and
    the client gets one clean stream from it."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": provider_for(fake_openai, first_token_timeout_s=0.2, **NO_RETRY),
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )
    fake_openai.enqueue(Behavior(stall_after_headers_s=3))
    fake_backup.enqueue(Behavior(deltas=["from ", "backup"]))
    stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "from backup" == text
    assert 1 == len(fake_openai.requests) == len(fake_backup.requests)
    assert 1 == await closed(fake_openai)


async def test_timed_out_json_attempt_falls_back_through_the_sdk(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A JSON attempt past its headers limit falls back; ``extra_fields`` says so."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": provider_for(fake_openai, headers_timeout_s=0.2, **NO_RETRY),
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )
    fake_openai.enqueue(Behavior(delay_s=3))
    fake_backup.enqueue(Behavior(content="from backup"))
    result = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
    )
    assert "from backup" == result.choices[0].message.content
    assert 1 == result.model_extra["extra_fields"]["fallback_index"]  # type: ignore[index]
    assert 1 == await closed(fake_openai)


# --- a translated provider (Anthropic) and Bedrock ----------------------------------------------


async def anthropic_gateway(
    make_gateway: MakeGateway, fake: FakeAnthropic, **limits: float
) -> Gateway:
    config = {"base_url": fake.base_url, "keys": [{"value": ANTHROPIC_KEY}], **NO_RETRY}
    return await make_gateway({"providers": {"anthropic": {**config, **limits}}})


async def test_anthropic_first_event_timeout(
    make_gateway: MakeGateway, fake_anthropic: FakeAnthropic
) -> None:
    """Anthropic's stream that sends nothing after its headers is a 504 naming the limit."""
    gateway = await anthropic_gateway(make_gateway, fake_anthropic, first_token_timeout_s=0.2)
    fake_anthropic.script(Turn(stall_after_headers_s=3))
    resp = await post(gateway, "anthropic/claude-sonnet-4-6", stream=True)
    assert 504 == resp.status
    error = await error_of(resp)
    assert "anthropic: no first event within 0.2 s (first_token_timeout_s)" == error["message"]
    assert 1 == await closed(fake_anthropic)


async def test_anthropic_first_event_counts_content_not_preamble(
    make_gateway: MakeGateway, fake_anthropic: FakeAnthropic
) -> None:
    """Anthropic's ``message_start``, sent at once, carries nothing for the client: a first
    text delta later than ``first_token_timeout_s`` still times the attempt out."""
    gateway = await anthropic_gateway(
        make_gateway, fake_anthropic, first_token_timeout_s=0.3, idle_timeout_s=2.0
    )
    fake_anthropic.script(Turn(gap_s=0.6))
    resp = await post(gateway, "anthropic/claude-sonnet-4-6", stream=True)
    assert 504 == resp.status
    error = await error_of(resp)
    assert "anthropic: no first event within 0.3 s (first_token_timeout_s)" == error["message"]
    assert 1 == await closed(fake_anthropic)


async def test_anthropic_idle_timeout_mid_stream(
    make_gateway: MakeGateway, fake_anthropic: FakeAnthropic
) -> None:
    """Anthropic's stream silent past ``idle_timeout_s`` after content began ends with an
    error event, and the upstream request is dropped."""
    gateway = await anthropic_gateway(
        make_gateway, fake_anthropic, first_token_timeout_s=2.0, idle_timeout_s=0.3
    )
    fake_anthropic.script(Turn(text="abcdefghi", pieces=3, gap_s=0.1))
    ok = await (await post(gateway, "anthropic/claude-sonnet-4-6", stream=True)).read()
    assert b'"error"' not in ok
    assert b'"content":"ghi"' in ok
    fake_anthropic.script(Turn(text="abcdefghi", pieces=3, gap_s=0.6))
    resp = await post(gateway, "anthropic/claude-sonnet-4-6", stream=True)
    assert 200 == resp.status
    error = stream_error(await resp.read())
    assert ("upstream_timeout", "anthropic: no data for 0.3 s (idle_timeout_s)") == (
        error["code"],
        error["message"],
    )
    assert 1 == await closed(fake_anthropic)


async def test_anthropic_json_headers_timeout(
    make_gateway: MakeGateway, fake_anthropic: FakeAnthropic
) -> None:
    """Anthropic's JSON answer with no headers in time is a 504 naming the limit."""
    gateway = await anthropic_gateway(make_gateway, fake_anthropic, headers_timeout_s=0.2)
    fake_anthropic.script(Turn(delay_s=3))
    resp = await post(gateway, "anthropic/claude-sonnet-4-6")
    assert 504 == resp.status
    error = await error_of(resp)
    assert "anthropic: no response headers within 0.2 s (headers_timeout_s)" == error["message"]
    assert 1 == await closed(fake_anthropic)


async def test_bedrock_first_event_timeout(
    make_gateway: MakeGateway, fake_bedrock: FakeBedrock
) -> None:
    """Bedrock's event stream with nothing after its headers is a 504 naming the limit."""
    config = bedrock_config(fake_bedrock, first_token_timeout_s=0.2, **NO_RETRY)
    gateway = await make_gateway({"providers": {"bedrock": config}})
    fake_bedrock.script(Turn(stall_after_headers_s=3))
    resp = await post(gateway, BEDROCK_MODEL, stream=True)
    assert 504 == resp.status
    error = await error_of(resp)
    assert "bedrock: no first event within 0.2 s (first_token_timeout_s)" == error["message"]
    assert 1 == await closed(fake_bedrock)


async def test_bedrock_idle_timeout_mid_stream(
    make_gateway: MakeGateway, fake_bedrock: FakeBedrock
) -> None:
    """Bedrock's event stream silent past ``idle_timeout_s`` mid-stream ends with an error
    event naming it."""
    config = bedrock_config(fake_bedrock, first_token_timeout_s=2.0, idle_timeout_s=0.3, **NO_RETRY)
    gateway = await make_gateway({"providers": {"bedrock": config}})
    fake_bedrock.script(Turn(text="abcdefghi", pieces=3, gap_s=0.6))
    resp = await post(gateway, BEDROCK_MODEL, stream=True)
    assert 200 == resp.status
    raw = await resp.read()
    assert b'"content":"abc"' in raw
    assert b'"content":"ghi"' not in raw
    error = stream_error(raw)
    assert "bedrock: no data for 0.3 s (idle_timeout_s)" == error["message"]
    assert 1 == await closed(fake_bedrock)


async def test_bedrock_whole_answer_timeout(
    make_gateway: MakeGateway, fake_bedrock: FakeBedrock
) -> None:
    """Bedrock's Converse answer not complete within ``timeout_s`` is a 504 naming it."""
    config = bedrock_config(fake_bedrock, timeout_s=0.2, **NO_RETRY)
    gateway = await make_gateway({"providers": {"bedrock": config}})
    fake_bedrock.script(Turn(delay_s=3))
    resp = await post(gateway, BEDROCK_MODEL)
    assert 504 == resp.status
    assert (
        "bedrock: no complete answer within 0.2 s (timeout_s)" == (await error_of(resp))["message"]
    )
    assert 1 == await closed(fake_bedrock)
