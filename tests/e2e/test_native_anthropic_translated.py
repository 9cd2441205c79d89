"""The ``/anthropic`` routes through the official anthropic SDK with providers of other
families behind them (OpenAI, Gemini, Bedrock), translated both ways."""

from __future__ import annotations

import anthropic

from tests.conformance.case_bedrock import bedrock_config
from tests.conftest import MakeGateway, provider_for
from tests.e2e.native_anthropic_support import (
    CLAUDE,
    MASTER,
    USER,
    WEATHER,
    Env,
    env,
    event_names,
    fakes,
)
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

__all__ = ["env", "fakes"]


# --- translated -----------------------------------------------------------------------------


async def test_openai_create_translates_both_ways(env: Env) -> None:
    """An OpenAI model gets the unified chat request (system message, max_completion_tokens,
    stop, reasoning effort from the thinking budget) and the answer is Anthropic's message."""
    env.openai.enqueue(Behavior(content="Bonjour", usage=(21, 4), cached_tokens=5))
    msg = await env.sdk.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=300,
        # Cache marks as Claude Code sends them: OpenAI has no such field.
        system=[
            {"type": "text", "text": "Answer in French."},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},
        thinking={"type": "enabled", "budget_tokens": 8000},
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    )
    sent = env.openai.requests[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in French.\n\nBe brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    assert sent["model"] == "gpt-4o-mini"
    assert (sent["max_completion_tokens"], sent["stop"], sent["temperature"]) == (300, ["END"], 0.5)
    assert sent["reasoning_effort"] == "medium"
    assert msg.model == "openai/gpt-4o-mini"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Bonjour"
    assert msg.id.startswith("msg_")
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens) == (16, 5)
    assert msg.usage.output_tokens == 4
    assert msg.stop_reason == "end_turn"


async def test_openai_tool_use_across_turns(env: Env) -> None:
    """A tool call from OpenAI is a tool_use block; the tool_result sent back becomes a tool
    message right after the assistant's tool call."""
    env.openai.enqueue(
        Behavior(
            content="",
            tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Rome"}'}],
        ),
        Behavior(content="Sunny in Rome."),
    )
    first = await env.sdk.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=USER,
    )
    assert first.stop_reason == "tool_use"
    use = first.content[-1]
    assert use.type == "tool_use"
    assert use.input == {"city": "Rome"}
    assert use.id == "call_1"
    sent = env.openai.requests[-1].json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    history = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "25 C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    second = await env.sdk.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],
        messages=history,  # type: ignore[list-item]
    )
    assert second.content[0].text == "Sunny in Rome."  # type: ignore[union-attr]
    roles = [(m["role"], m.get("tool_call_id")) for m in env.openai.requests[-1].json["messages"]]
    assert roles == [("user", None), ("assistant", None), ("tool", "call_1"), ("user", None)]
    assistant = env.openai.requests[-1].json["messages"][1]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Rome"}',
    }


async def test_openai_stream_with_tool_calls(env: Env) -> None:
    """An OpenAI stream becomes Anthropic's event sequence: one tool_use block per call, fed
    by input_json_delta, then message_delta with the stop reason and usage."""
    env.openai.enqueue(
        Behavior(
            tool_calls=[
                {"id": "call_7", "name": "get_weather", "arguments": '{"city":"Lima"}'},
                {"id": "call_8", "name": "get_weather", "arguments": '{"city":"Quito"}'},
            ],
            usage=(30, 9),
        )
    )
    async with env.sdk.messages.stream(
        model="openai/gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=USER,
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert env.openai.requests[-1].json["stream_options"] == {"include_usage": True}
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert [(b.type, b.id, b.input) for b in final.content] == [  # type: ignore[union-attr]
        ("tool_use", "call_7", {"city": "Lima"}),
        ("tool_use", "call_8", {"city": "Quito"}),
    ]
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 9)


async def test_translated_stream_exact_bytes(env: Env) -> None:
    """The translated stream's bytes, event for event."""
    env.openai.enqueue(Behavior(content="Hey", deltas=["H", "ey"], usage=(3, 2)))
    resp = await env.gateway.client.post(
        "/anthropic/v1/messages",
        json={"model": "openai/gpt-4o-mini", "max_tokens": 5, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER, "x-request-id": "req-fixed-1"},
    )
    raw = await resp.read()
    assert raw == (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"type":"message","id":"msg_req-fixed-1",'
        b'"model":"openai/gpt-4o-mini","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,'
        b'"cache_read_input_tokens":0},"role":"assistant"}}\n\n'
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
        b"\n\n"
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"H"}}'
        b"\n\n"
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ey"}}'
        b"\n\n"
        b"event: content_block_stop\n"
        b'data: {"type":"content_block_stop","index":0}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"input_tokens":3,"output_tokens":2,"cache_creation_input_tokens":0,'
        b'"cache_read_input_tokens":0}}\n\n'
        b"event: message_stop\n"
        b'data: {"type":"message_stop"}\n\n'
    )


async def test_gemini_create_and_stream_with_thinking(env: Env) -> None:
    """A Gemini model answers through translation: its thoughts come back as a thinking block
    (whole and streamed), its text as text."""
    env.gemini.script(
        Turn(text="Blue.", reasoning="Sky color.", reasoning_tokens=3, completion_tokens=8),
        Turn(text="Blue again.", reasoning="Still sky.", reasoning_tokens=3, completion_tokens=8),
    )
    thinking = {"type": "enabled", "budget_tokens": 20000}
    msg = await env.sdk.messages.create(
        model="gemini/gemini-2.5-flash",
        max_tokens=3000,
        thinking=thinking,  # type: ignore[arg-type]
        messages=USER,
    )
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "Sky color."  # type: ignore[union-attr]
    assert msg.content[1].text == "Blue."  # type: ignore[union-attr]
    config = env.gemini.requests[-1].json["generationConfig"]
    assert config["maxOutputTokens"] == 3000
    async with env.sdk.messages.stream(
        model="gemini/gemini-2.5-flash",
        max_tokens=3000,
        thinking=thinking,  # type: ignore[arg-type]
        messages=USER,
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Blue again."
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "Still sky."


async def test_gemini_tool_use_across_turns(env: Env) -> None:
    """Gemini's function call is a tool_use block, streamed or not; its thought signature rides
    in a thinking block's signature and goes back with the call on the next turn, with the
    tool_result as its functionResponse."""
    call = ToolCallSpec("c1", "get_weather", '{"city":"Kyiv"}')
    env.gemini.script(
        Turn(text="", tool_calls=[call], reasoning_signature="sig-gem-1"),
        Turn(text="", tool_calls=[call], reasoning_signature="sig-gem-2"),
        Turn(text="Mild."),
    )
    model = "gemini/gemini-3-pro-preview"
    first = await env.sdk.messages.create(
        model=model, max_tokens=100, tools=[WEATHER], messages=USER
    )
    async with env.sdk.messages.stream(
        model=model, max_tokens=100, tools=[WEATHER], messages=USER
    ) as stream:
        streamed = await stream.get_final_message()
    for answer in (first, streamed):
        assert [b.type for b in answer.content] == ["thinking", "tool_use"]
        assert answer.content[0].thinking == ""  # type: ignore[union-attr]
        assert answer.content[1].input == {"city": "Kyiv"}  # type: ignore[union-attr]
    use = streamed.content[1]
    history = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in streamed.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "9 C"}],
        },
    ]
    second = await env.sdk.messages.create(
        model=model, max_tokens=100, tools=[WEATHER], messages=history
    )
    assert second.content[0].text == "Mild."  # type: ignore[union-attr]
    contents = env.gemini.requests[-1].json["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "sig-gem-2"
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    response = contents[-1]["parts"][0]["functionResponse"]
    assert response["name"] == "get_weather"


# --- count_tokens ---------------------------------------------------------------------------


async def test_count_tokens_each_way(env: Env) -> None:
    """Anthropic and Gemini count natively; OpenAI's count is the gateway's estimate, said to
    be one."""
    native = await env.sdk.messages.count_tokens(model=CLAUDE, messages=USER, system="Be kind")
    # The fake counts words (1 + 2) and 3 per message.
    assert native.input_tokens == 6
    sent = env.ant.requests[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.json == {"model": CLAUDE, "messages": USER, "system": "Be kind"}
    gemini = await env.sdk.messages.count_tokens(model="gemini/gemini-2.5-flash", messages=USER)
    assert gemini.input_tokens > 0
    assert ":countTokens" in env.gemini.requests[-1].path
    resp = await env.gateway.client.post(
        "/anthropic/v1/messages/count_tokens",
        json={"model": "openai/gpt-4o-mini", "messages": USER},
        headers={"x-api-key": MASTER},
    )
    assert resp.status == 200
    assert resp.headers["x-thruway-token-count"] == "estimated"
    assert (await resp.json())["input_tokens"] > 0


async def test_translated_stream_cut_ends_with_error_event(env: Env) -> None:
    """An OpenAI stream cut after its first events ends the Anthropic stream with an
    ``api_error`` event instead of a short answer that looks whole."""
    env.openai.enqueue(Behavior(deltas=["a", "b", "c", "d"], cut_after=3))
    resp = await env.gateway.client.post(
        "/anthropic/v1/messages",
        json={"model": "openai/gpt-4o-mini", "max_tokens": 5, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER},
    )
    raw = await resp.read()
    names = event_names(raw)
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert b'"type":"api_error"' in raw.rsplit(b"event: error", 1)[1]


async def test_claude_on_bedrock_through_translation(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Claude on Bedrock (a fourth provider, translated to Converse) answers the SDK, whole
    and streamed, with the system prompt's cache mark as a Converse cache point."""
    async with FakeBedrock() as bedrock:
        gateway = await make_gateway(
            {"providers": {"bedrock": bedrock_config(bedrock), "openai": provider_for(fake_openai)}}
        )
        sdk = anthropic.AsyncAnthropic(
            base_url=str(gateway.client.make_url("/anthropic")), api_key="x", max_retries=0
        )
        bedrock.script(Turn(text="From Bedrock"), Turn(text="Streamed", pieces=2))
        model = "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"
        system = [{"type": "text", "text": "Sys", "cache_control": {"type": "ephemeral"}}]
        try:
            msg = await sdk.messages.create(
                model=model, max_tokens=50, system=system, messages=USER
            )
            async with sdk.messages.stream(model=model, max_tokens=50, messages=USER) as stream:
                text = "".join([t async for t in stream.text_stream])
        finally:
            await sdk.close()
    assert msg.content[0].text == "From Bedrock"  # type: ignore[union-attr]
    assert text == "Streamed"
    first = bedrock.requests[0].json
    assert first["system"] == [{"text": "Sys"}, {"cachePoint": {"type": "default"}}]


async def test_a_conversation_that_moves_back_to_anthropic(env: Env) -> None:
    """A tool-use turn Gemini answered (its thought signature in the gateway's envelope) sent
    on to Claude with thinking on: Anthropic never sees the gateway's signature, which it would
    refuse as forged, and answers."""
    call = ToolCallSpec("c1", "get_weather", '{"city":"Kyiv"}')
    env.gemini.script(Turn(text="", tool_calls=[call], reasoning_signature="sig-gem-1"))
    env.ant.script(Turn(text="Mild."))
    first = await env.sdk.messages.create(
        model="gemini/gemini-3-pro-preview", max_tokens=100, tools=[WEATHER], messages=USER
    )
    use = first.content[1]
    history = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "9 C"}],
        },
    ]
    second = await env.sdk.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],  # type: ignore[list-item]
        messages=history,
    )
    assert second.content[-1].text == "Mild."  # type: ignore[union-attr]
    sent = env.ant.requests[-1].json
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use"]
    assert "thinking" not in sent
