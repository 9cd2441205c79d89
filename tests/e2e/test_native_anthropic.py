"""The ``/anthropic`` routes through the official anthropic SDK: Anthropic behind them
natively, and what every provider shares (errors, models, streams, accounting)."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from structlog.testing import capture_logs

from tests.conftest import MakeGateway, provider_for
from tests.e2e.native_anthropic_support import (
    ANT_KEY,
    CLAUDE,
    MASTER,
    USER,
    WEATHER,
    Env,
    config,
    env,
    event_names,
    fakes,
)
from tests.fakes.anthropic import AnthropicTurn, FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

__all__ = ["env", "fakes"]


# --- native -------------------------------------------------------------------------------


async def test_native_create_forwards_the_body_as_sent(env: Env) -> None:
    """A bare Claude model goes to Anthropic with the client's body field for field
    (cache_control, metadata, top_k), and the message comes back as Anthropic sent it."""
    env.ant.script(
        Turn(text="Hello there", prompt_tokens=50, cached_tokens=30, cache_creation_tokens=10)
    )
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    msg = await env.sdk.messages.create(
        model=CLAUDE,
        max_tokens=256,
        system=system,  # type: ignore[arg-type]
        messages=USER,
        metadata={"user_id": "u-1"},
        extra_body={"top_k": 5},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    sent = env.ant.requests[-1]
    assert sent.json == {
        "model": CLAUDE,
        "max_tokens": 256,
        "system": system,
        "messages": USER,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
    }
    assert sent.headers["x-api-key"] == ANT_KEY
    assert "prompt-caching-2024-07-31" in sent.headers["anthropic-beta"]
    # The request id the SDKs read is the gateway's; Anthropic's is kept beside it.
    raw = await env.gateway.client.post(
        "/anthropic/v1/messages",
        json={"model": CLAUDE, "max_tokens": 5, "messages": USER},
        headers={"x-api-key": MASTER, "x-request-id": "req-own-1"},
    )
    assert raw.headers.getall("request-id") == ["req-own-1"]
    assert raw.headers["x-thruway-upstream-request-id"].startswith("req_")
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Hello there"
    assert msg.usage.cache_read_input_tokens == 30
    assert msg.usage.cache_creation_input_tokens == 10
    assert msg.usage.input_tokens == 10
    assert msg.stop_reason == "end_turn"


async def test_native_body_the_gateway_does_not_model_passes_through(env: Env) -> None:
    """Blocks, tools and fields the gateway does not model (search results, an MCP toolset,
    automatic caching) reach Anthropic as sent; only their translation would refuse them."""
    body = {
        "model": CLAUDE,
        "max_tokens": 20,
        "cache_control": {"type": "ephemeral"},
        "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "search_result",
                        "source": "https://example.com/a",
                        "title": "A",
                        "content": [{"type": "text", "text": "result"}],
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ],
    }
    resp = await env.gateway.client.post(
        "/anthropic/v1/messages", json=body, headers={"x-api-key": MASTER}
    )
    assert resp.status == 200
    assert env.ant.requests[-1].json == body
    translated = await env.gateway.client.post(
        "/anthropic/v1/messages",
        json={**body, "model": "openai/gpt-4o", "tools": []},
        headers={"x-api-key": MASTER},
    )
    assert translated.status == 400
    error = (await translated.json())["error"]
    assert "`search_result` block" in error["message"]


async def test_native_stream_passes_events_through(env: Env) -> None:
    """A native stream reaches the SDK event for event: thinking with its signature, text, a
    tool call's input built from input_json_delta, and the usage of message_delta."""
    env.ant.script(
        Turn(
            text="Let me check.",
            reasoning="The user wants weather.",
            tool_calls=[ToolCallSpec("toolu_1", "get_weather", '{"city": "Paris"}')],
            completion_tokens=17,
        )
    )
    async with env.sdk.messages.stream(
        model=CLAUDE,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER],  # type: ignore[list-item]
        messages=USER,
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature == "sig-fake-0001"  # type: ignore[union-attr]
    assert final.content[2].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 17


async def test_native_stream_bytes_are_anthropics(env: Env) -> None:
    """The native stream's bytes are Anthropic's events (message_start first, its ping with
    it), whole and in order."""
    env.ant.script(Turn(text="abc", pieces=3))
    resp = await env.gateway.client.post(
        "/anthropic/v1/messages",
        json={"model": CLAUDE, "max_tokens": 10, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER},
    )
    raw = await resp.read()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["x-thruway-provider"] == "anthropic"
    assert event_names(raw) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' in raw


async def test_native_thinking_and_tools_across_turns(env: Env) -> None:
    """A tool-use turn with thinking, sent back with its signed thinking block and the tool's
    result, is accepted by Anthropic (which checks the signature) through the gateway."""
    call = ToolCallSpec("toolu_9", "get_weather", '{"city": "Oslo"}')
    env.ant.script(Turn(text="", reasoning="Need weather.", tool_calls=[call]), Turn(text="Cold."))
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = await env.sdk.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        thinking=thinking,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        messages=USER,
    )
    history = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "-3 C"}],
        },
    ]
    second = await env.sdk.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        thinking=thinking,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        messages=history,
    )
    assert second.content[-1].text == "Cold."  # type: ignore[union-attr]
    assert env.ant.requests[-1].json["messages"][1]["content"][0]["signature"] == "sig-fake-0001"


async def test_bearer_key_is_accepted(env: Env) -> None:
    """The gateway key may come as ``Authorization: Bearer`` (``auth_token`` in the SDK)."""
    sdk = anthropic.AsyncAnthropic(base_url=env.url("/anthropic"), auth_token=MASTER, max_retries=0)
    try:
        msg = await sdk.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    finally:
        await sdk.close()
    assert msg.content[0].type == "text"
    assert env.ant.requests[-1].headers["x-api-key"] == ANT_KEY


# --- models ---------------------------------------------------------------------------------


async def test_models_list_in_anthropics_shape(env: Env) -> None:
    """The model list pages in Anthropic's shape: Claude models by their bare ids, the
    others as provider/model."""
    page = await env.sdk.models.list(limit=2)
    assert [m.id for m in page.data] == ["claude-opus-4-7", "claude-sonnet-4-5-20250929"]
    assert page.has_more
    assert page.last_id == "claude-sonnet-4-5-20250929"
    every = [m.id async for m in await env.sdk.models.list(limit=3)]
    assert "claude-haiku-4-5-20251001" in every
    assert "gemini/gemini-2.5-flash" in every
    assert any(m.startswith("openai/") for m in every)
    before = await env.gateway.client.get(
        "/anthropic/v1/models?limit=1&before_id=claude-sonnet-4-5-20250929",
        headers={"x-api-key": MASTER},
    )
    assert await before.json() == {
        "data": [
            {
                "id": "claude-opus-4-7",
                "display_name": "claude-opus-4-7",
                "created_at": "2026-04-16T00:00:00Z",
                "type": "model",
            }
        ],
        "has_more": False,
        "first_id": "claude-opus-4-7",
        "last_id": "claude-opus-4-7",
    }
    bad = await env.gateway.client.get(
        "/anthropic/v1/models?limit=0", headers={"x-api-key": MASTER}
    )
    assert bad.status == 400
    assert (await bad.json())["error"]["type"] == "invalid_request_error"
    one = await env.sdk.models.retrieve("claude-opus-4-7")
    assert one.type == "model"
    assert one.id == "claude-opus-4-7"
    with pytest.raises(anthropic.NotFoundError):
        await env.sdk.models.retrieve("claude-nope")


# --- errors ---------------------------------------------------------------------------------


async def test_errors_are_the_sdks_exceptions(env: Env) -> None:
    """Errors come in Anthropic's shape, raised by the SDK as its own exception classes."""
    env.ant.script(
        Turn(error="rate_limit"),
        AnthropicTurn(native_error=(529, "overloaded_error", "Overloaded")),
    )
    with pytest.raises(anthropic.RateLimitError) as limited:
        await env.sdk.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    assert limited.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": limited.value.body["error"]["message"]},  # type: ignore[index]
    }
    with pytest.raises(anthropic.OverloadedError):
        await env.sdk.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    env.openai.enqueue(Behavior(status=429))
    with pytest.raises(anthropic.RateLimitError):
        await env.sdk.messages.create(model="openai/gpt-4o-mini", max_tokens=10, messages=USER)
    bad = anthropic.AsyncAnthropic(base_url=env.url("/anthropic"), api_key="wrong", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await bad.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    finally:
        await bad.close()
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_bad_requests_name_the_fault(env: Env) -> None:
    """A body that is not a Messages request, an unknown provider and a server tool for a
    translated provider are 400s in Anthropic's shape; nothing reaches an upstream."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": CLAUDE, "messages": USER}, "max_tokens"),
        ({"model": "nope/x", "max_tokens": 5, "messages": USER}, "Unknown provider `nope`"),
        (
            {
                "model": "openai/gpt-4o",
                "max_tokens": 5,
                "messages": USER,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "server tool",
        ),
    ]
    for body, words in cases:
        resp = await env.gateway.client.post(
            "/anthropic/v1/messages", json=body, headers={"x-api-key": MASTER}
        )
        assert resp.status == 400
        got = await resp.json()
        assert got["type"] == "error"
        assert got["error"]["type"] == "invalid_request_error"
        assert words in got["error"]["message"]
    assert env.ant.requests == []
    assert env.openai.requests == []


async def test_unknown_paths_are_anthropics_404(env: Env) -> None:
    """Another path under /anthropic is a 404 not_found_error in Anthropic's shape, behind the
    gateway key like the rest."""
    resp = await env.gateway.client.post(
        "/anthropic/v1/complete", json={}, headers={"x-api-key": MASTER}
    )
    assert resp.status == 404
    assert (await resp.json())["error"]["type"] == "not_found_error"
    denied = await env.gateway.client.get("/anthropic/v1/files")
    assert denied.status == 401
    assert (await denied.json())["error"]["type"] == "authentication_error"


async def test_bare_model_without_an_anthropic_provider(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A bare model name with no Anthropic provider configured is a 404 not_found_error that
    names the providers there are."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    sdk = anthropic.AsyncAnthropic(
        base_url=str(gateway.client.make_url("/anthropic")), api_key="x", max_retries=0
    )
    try:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await sdk.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    finally:
        await sdk.close()
    error = missing.value.body["error"]  # type: ignore[index]
    assert error["type"] == "not_found_error"
    assert "Configured providers: openai." in error["message"]


# --- streams: failures, fallbacks, keep-alives --------------------------------------------


async def _drain(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(model=CLAUDE, max_tokens=10, messages=USER) as stream:
        async for _ in stream:
            pass


async def test_error_event_mid_stream(env: Env) -> None:
    """An upstream failure after the first byte ends the stream with Anthropic's error
    event, which the SDK raises."""
    env.ant.script(
        AnthropicTurn(
            text="abcdef", pieces=6, stream_error="overloaded_error", stream_error_after=5
        )
    )
    resp = await env.gateway.client.post(
        "/anthropic/v1/messages",
        json={"model": CLAUDE, "max_tokens": 10, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER},
    )
    raw = await resp.read()
    assert raw.endswith(
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"anthropic: Overloaded"}}\n\n'
    )
    env.ant.script(
        AnthropicTurn(text="abcdef", pieces=6, stream_error="api_error", stream_error_after=5)
    )
    with pytest.raises(anthropic.APIStatusError) as failed:
        await _drain(env.sdk)
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_overload_at_stream_start_falls_back(env: Env) -> None:
    """Anthropic's overload error right after message_start is caught before the client has
    a byte, and the request falls back to the next model, here OpenAI's."""
    env.ant.script(AnthropicTurn(stream_error="overloaded_error", stream_error_after=1))
    env.openai.enqueue(Behavior(content="From the fallback"))
    async with env.sdk.messages.stream(
        model=CLAUDE,
        max_tokens=10,
        messages=USER,
        extra_body={"fallbacks": ["openai/gpt-4o-mini"]},
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "From the fallback"
    assert "fallbacks" not in env.openai.requests[-1].json
    assert len(env.ant.requests) == 1


async def test_fallbacks_never_reach_anthropic(env: Env) -> None:
    """The gateway's own ``fallbacks`` field is dropped from the native body."""
    await env.sdk.messages.create(
        model=CLAUDE, max_tokens=10, messages=USER, extra_body={"fallbacks": ["openai/gpt-4o"]}
    )
    assert "fallbacks" not in env.ant.requests[-1].json


async def test_ping_keepalives_while_upstream_is_silent(
    make_gateway: MakeGateway, fakes: tuple[FakeAnthropic, FakeGemini], fake_openai: FakeOpenAI
) -> None:
    """A silent upstream mid-stream gets Anthropic ``ping`` events to the client, between
    whole events, and the SDK reads through them."""
    ant, gemini = fakes
    gateway = await make_gateway(
        config(ant, gemini, fake_openai, streaming={"keepalive_interval_s": 0.05})
    )
    ant.script(Turn(text="slow", pieces=2, gap_s=0.3))
    resp = await gateway.client.post(
        "/anthropic/v1/messages",
        json={"model": CLAUDE, "max_tokens": 10, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER},
    )
    raw = await resp.read()
    pings = raw.count(b'event: ping\ndata: {"type":"ping"}\n\n')
    assert pings >= 2  # the upstream's own, and the gateway's
    assert all(chunk.startswith(b"event: ") for chunk in raw.split(b"\n\n") if chunk)
    fake_openai.enqueue(Behavior(deltas=["x", "y"], gap_s=0.2))
    sdk = anthropic.AsyncAnthropic(
        base_url=str(gateway.client.make_url("/anthropic")), api_key=MASTER, max_retries=0
    )
    try:
        async with sdk.messages.stream(
            model="openai/gpt-4o-mini", max_tokens=10, messages=USER
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
    finally:
        await sdk.close()
    assert text == "xy"


# --- accounting -----------------------------------------------------------------------------


async def test_usage_reaches_the_canonical_line(env: Env) -> None:
    """Native streams and translated answers are accounted: tokens (cache reads included) on
    the request's log line, with its request type."""
    env.ant.script(Turn(text="ok", prompt_tokens=50, cached_tokens=20, completion_tokens=7))
    env.openai.enqueue(Behavior(usage=(11, 3)))
    with capture_logs() as logs:
        async with env.sdk.messages.stream(model=CLAUDE, max_tokens=10, messages=USER) as stream:
            await stream.get_final_message()
        await env.sdk.messages.create(model="openai/gpt-4o-mini", max_tokens=10, messages=USER)
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert [line["request_type"] for line in lines] == ["anthropic_messages"] * 2
    native, translated = lines
    assert (native["input_tokens"], native["output_tokens"], native["cached_tokens"]) == (
        50,
        7,
        20,
    )
    assert (native["provider"], native["status"]) == ("anthropic", 200)
    assert (translated["input_tokens"], translated["output_tokens"]) == (11, 3)
    assert translated["provider"] == "openai"


async def test_client_disconnect_closes_the_native_upstream(env: Env) -> None:
    """A client leaving a native stream drops the upstream at once and is logged as 499."""
    env.ant.script(Turn(text="x" * 4000, pieces=2000, gap_s=0.01))
    with capture_logs() as logs:
        resp = await env.gateway.client.post(
            "/anthropic/v1/messages",
            json={"model": CLAUDE, "max_tokens": 10, "messages": USER, "stream": True},
            headers={"x-api-key": MASTER},
        )
        await resp.content.readuntil(b"content_block_delta")
        resp.close()
        await asyncio.wait_for(env.ant.disconnected.wait(), timeout=2)
        for _ in range(50):
            if any(entry["event"] == "request" for entry in logs):
                break
            await asyncio.sleep(0.02)
    assert env.ant.disconnects == 1
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == 499


async def test_a_route_named_like_a_claude_model(
    make_gateway: MakeGateway, fakes: tuple[FakeAnthropic, FakeGemini], fake_openai: FakeOpenAI
) -> None:
    """A configured route named like a Claude model serves it elsewhere (Claude Code's models
    on OpenAI), translated, while the SDK still sees the name it asked for."""
    ant, gemini = fakes
    routes = {CLAUDE: {"targets": [{"model": "openai/gpt-4o-mini"}]}}
    gateway = await make_gateway(config(ant, gemini, fake_openai, routes=routes))
    sdk = anthropic.AsyncAnthropic(
        base_url=str(gateway.client.make_url("/anthropic")), api_key=MASTER, max_retries=0
    )
    fake_openai.enqueue(Behavior(content="Routed"))
    try:
        msg = await sdk.messages.create(model=CLAUDE, max_tokens=5, messages=USER)
    finally:
        await sdk.close()
    assert msg.content[0].text == "Routed"  # type: ignore[union-attr]
    assert msg.model == CLAUDE
    assert fake_openai.requests[-1].json["model"] == "gpt-4o-mini"
    assert ant.requests == []


async def test_beta_messages_as_claude_code_sends_them(env: Env) -> None:
    """The SDK's beta surface (``?beta=true``, betas in ``anthropic-beta``), which Claude Code
    uses, works natively and translated, streams and counts included."""
    betas = ["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"]
    msg = await env.sdk.beta.messages.create(
        model=CLAUDE, max_tokens=10, messages=USER, betas=betas
    )
    assert msg.content[0].type == "text"
    sent = env.ant.requests[-1]
    assert sent.path == "/v1/messages"
    assert "interleaved-thinking-2025-05-14" in sent.headers["anthropic-beta"]
    counted = await env.sdk.beta.messages.count_tokens(model=CLAUDE, messages=USER, betas=betas)
    assert counted.input_tokens == 4
    env.openai.enqueue(Behavior(content="beta"))
    async with env.sdk.beta.messages.stream(
        model="openai/gpt-4o-mini", max_tokens=10, messages=USER, betas=betas
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "beta"


async def test_bare_model_goes_to_the_only_anthropic_typed_provider(
    make_gateway: MakeGateway, fakes: tuple[FakeAnthropic, FakeGemini]
) -> None:
    """With no provider named ``anthropic``, a bare Claude name means the one provider of type
    ``anthropic``, natively."""
    ant, _ = fakes
    gateway = await make_gateway(
        {
            "providers": {
                "claude": {
                    "type": "anthropic",
                    "base_url": ant.base_url,
                    "keys": [{"value": ANT_KEY}],
                }
            }
        }
    )
    resp = await gateway.client.post(
        "/anthropic/v1/messages", json={"model": CLAUDE, "max_tokens": 5, "messages": USER}
    )
    assert resp.status == 200
    assert resp.headers["x-thruway-provider"] == "claude"
    assert ant.requests[-1].json["model"] == CLAUDE
