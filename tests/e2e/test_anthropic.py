"""Anthropic through the official openai SDK: what the conformance scenarios do not cover."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from providers.anthropic.translate import JSON_TOOL
from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.anthropic import AnthropicTurn, FakeAnthropic, Model
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

KEY = "sk-ant-fake-e2e"
MODEL = "anthropic/claude-sonnet-4-6"
USER: list[Any] = [{"role": "user", "content": "Hi"}]
WITH_FALLBACK = {"fallbacks": ["backup/gpt-4o-mini"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@dataclass
class Env:
    fake: FakeAnthropic
    backup: FakeOpenAI
    gateway: Gateway
    sdk: openai.AsyncOpenAI

    def sent(self) -> Any:
        return self.fake.requests[-1].json

    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.fake.requests[-1].headers.items()}


def anthropic_config(fake: FakeAnthropic, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.base_url, "keys": [{"value": KEY}], **extra}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = await FakeAnthropic(api_key=KEY).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def env(make_gateway: MakeGateway, fake: FakeAnthropic, fake_backup: FakeOpenAI) -> Env:
    gateway = await make_gateway(
        {
            "providers": {
                "anthropic": anthropic_config(fake),
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )
    return Env(fake, fake_backup, gateway, gateway.sdk())


async def collect(stream: Any) -> tuple[str, str | None, list[Any]]:
    """A stream's text, its finish reason, and its chunks."""
    text, finish, chunks = "", None, []
    async for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish, chunks


# --- request translation --------------------------------------------------------------------


async def test_tool_choice_forms(env: Env) -> None:
    """auto, none, required and a named function become Anthropic's tool_choice types, and
    parallel_tool_calls=false disables parallel tool use."""
    forms: list[tuple[Any, dict[str, Any]]] = [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ]
    for choice, want in forms:
        await env.sdk.chat.completions.create(
            model=MODEL, messages=USER, tools=[WEATHER], tool_choice=choice
        )
        sent = env.sent()
        if choice == "auto":
            assert "tool_choice" not in sent  # Anthropic's default
        else:
            assert sent["tool_choice"] == want
        assert sent["tools"] == [
            {
                "name": "get_weather",
                "input_schema": WEATHER["function"]["parameters"],
                "description": "Current weather for a city.",
            }
        ]
    await env.sdk.chat.completions.create(
        model=MODEL,
        messages=USER,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert env.sent()["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


async def test_sampling_stop_and_max_tokens(env: Env) -> None:
    """stop, temperature and top_p are passed on; max_tokens defaults per model family, and
    max_completion_tokens wins over max_tokens."""
    await env.sdk.chat.completions.create(
        model=MODEL, messages=USER, stop="END", temperature=0.2, top_p=0.9
    )
    sent = env.sent()
    assert (sent["stop_sequences"], sent["temperature"], sent["top_p"]) == (["END"], 0.2, 0.9)
    assert sent["max_tokens"] == 32000
    await env.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku-20241022", messages=USER
    )
    assert env.sent()["max_tokens"] == 8192
    await env.sdk.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=10, max_completion_tokens=300
    )
    assert env.sent()["max_tokens"] == 300


async def test_stop_sequence_and_refusal(env: Env) -> None:
    """A matched stop sequence finishes as ``stop``, a refusal as ``content_filter``."""
    env.fake.script(AnthropicTurn(stop_sequence="END"), Turn(finish="content_filter"))
    first = await env.sdk.chat.completions.create(model=MODEL, messages=USER, stop=["END"])
    assert first.choices[0].finish_reason == "stop"
    second = await env.sdk.chat.completions.create(model=MODEL, messages=USER)
    assert second.choices[0].finish_reason == "content_filter"


async def test_unsupported_parameters_are_refused_up_front(env: Env) -> None:
    """n > 1 and logprobs are 400 unsupported_parameter, and Anthropic is not called."""
    for extra in ({"n": 2}, {"logprobs": True}):
        with pytest.raises(openai.BadRequestError) as info:
            await env.sdk.chat.completions.create(model=MODEL, messages=USER, **extra)
        assert info.value.code == "unsupported_parameter"
        assert info.value.param == next(iter(extra))
    assert env.fake.requests == []


async def test_json_schema_response_format(env: Env) -> None:
    """json_schema uses Anthropic's structured outputs (output_config.format)."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    env.fake.script(Turn(text='{"city": "Paris"}'))
    resp = await env.sdk.chat.completions.create(
        model=MODEL,
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}
    assert env.sent()["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_json_object_response_format(env: Env) -> None:
    """json_object is a forced tool whose input is returned as the message text, whole and
    streamed, finishing as ``stop``."""
    answer = ToolCallSpec("toolu_j", JSON_TOOL, '{"answer": 42}')
    env.fake.script(Turn(text="", tool_calls=[answer]), Turn(text="", tool_calls=[answer]))
    fmt: Any = {"type": "json_object"}
    resp = await env.sdk.chat.completions.create(model=MODEL, messages=USER, response_format=fmt)
    message = resp.choices[0].message
    assert json.loads(message.content or "") == {"answer": 42}
    assert (message.tool_calls, resp.choices[0].finish_reason) == (None, "stop")
    assert env.sent()["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    stream = await env.sdk.chat.completions.create(
        model=MODEL, messages=USER, response_format=fmt, stream=True
    )
    text, finish, chunks = await collect(stream)
    assert (json.loads(text), finish) == ({"answer": 42}, "stop")
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)


async def test_user_becomes_metadata(env: Env) -> None:
    """The end-user id goes to Anthropic as metadata.user_id."""
    await env.sdk.chat.completions.create(model=MODEL, messages=USER, user="user-42")
    assert env.sent()["metadata"] == {"user_id": "user-42"}


# --- headers --------------------------------------------------------------------------------


async def test_auth_and_version_headers(
    make_gateway: MakeGateway, fake: FakeAnthropic, env: Env
) -> None:
    """The key goes in x-api-key with anthropic-version 2023-06-01, or the configured version."""
    await env.sdk.chat.completions.create(model=MODEL, messages=USER)
    headers = env.headers()
    assert (headers["x-api-key"], headers["anthropic-version"]) == (KEY, "2023-06-01")
    assert "authorization" not in headers
    gateway = await make_gateway(
        {"providers": {"anthropic": anthropic_config(fake, api_version="2026-10-21")}}
    )
    await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert env.headers()["anthropic-version"] == "2026-10-21"
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER, temperature=0.5)
    assert info.value.param == "temperature"


async def test_anthropic_beta_passes_through(
    make_gateway: MakeGateway, fake: FakeAnthropic
) -> None:
    """The client's anthropic-beta header reaches Anthropic, merged with the configured betas."""
    config = anthropic_config(fake, headers={"Anthropic-Beta": "context-1m-2025-08-07"})
    gateway = await make_gateway({"providers": {"anthropic": config}})
    sdk = gateway.sdk()
    await sdk.chat.completions.create(model=MODEL, messages=USER)
    assert fake.requests[-1].headers["anthropic-beta"] == "context-1m-2025-08-07"
    await sdk.chat.completions.create(
        model=MODEL,
        messages=USER,
        extra_headers={"anthropic-beta": "files-api-2025-04-14,context-1m-2025-08-07"},
        stream=True,
    )
    sent = {k.lower(): v for k, v in fake.requests[-1].headers.items()}
    assert sent["anthropic-beta"] == "context-1m-2025-08-07,files-api-2025-04-14"


async def test_key_from_environment(make_gateway: MakeGateway, fake: FakeAnthropic) -> None:
    """With no keys configured, ANTHROPIC_API_KEY is used; without it the provider is
    unavailable, and says which variable to set."""
    config = {"providers": {"anthropic": {"base_url": fake.base_url}}}
    gateway = await make_gateway(config, env={"ANTHROPIC_API_KEY": KEY})
    await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert fake.requests[-1].headers["x-api-key"] == KEY
    keyless = await make_gateway(config, env={})
    with pytest.raises(openai.APIStatusError) as info:
        await keyless.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert info.value.status_code == 503
    assert "ANTHROPIC_API_KEY" in info.value.message


# --- prompt caching -------------------------------------------------------------------------


async def test_cache_control_reaches_anthropic(env: Env) -> None:
    """cache_control marks on system, user and tool text parts reach Anthropic as sent, and
    usage counts cache reads and writes in prompt_tokens."""
    mark = {"type": "ephemeral"}
    hour = {"type": "ephemeral", "ttl": "1h"}
    env.fake.script(Turn(prompt_tokens=1000, cached_tokens=800, cache_creation_tokens=150))
    messages: Any = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "Long rules", "cache_control": hour}],
        },
        {"role": "user", "content": [{"type": "text", "text": "Long doc", "cache_control": mark}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "toolu_1",
            "content": [{"type": "text", "text": "result", "cache_control": mark}],
        },
    ]
    resp = await env.sdk.chat.completions.create(model=MODEL, messages=messages)
    sent = env.sent()
    assert sent["system"] == [{"type": "text", "text": "Long rules", "cache_control": hour}]
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Long doc", "cache_control": mark}
    ]
    assert sent["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "result", "cache_control": mark}],
        }
    ]
    usage = resp.usage
    assert usage is not None
    assert usage.prompt_tokens == 1000
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 800


# --- reasoning ------------------------------------------------------------------------------


async def test_thinking_signature_round_trips_in_tool_use(env: Env) -> None:
    """A thinking turn that calls a tool returns its signed thinking blocks (streamed too);
    sent back with the tool result they reach Anthropic first and unchanged, which it
    requires; a turn sent back without them is refused."""
    call = ToolCallSpec("toolu_w", "get_weather", '{"city": "Paris"}')
    thinking = AnthropicTurn(
        text="",
        reasoning="The user wants Paris.",
        reasoning_signature="sig-round-trip",
        redacted="EmwKAhgBEgy3va3pzix",
        tool_calls=[call],
        reasoning_tokens=7,
    )
    env.fake.script(thinking)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    stream = await env.sdk.chat.completions.create(
        model="anthropic/claude-haiku-4-5",
        messages=messages,
        tools=[WEATHER],
        reasoning_effort="low",
        max_tokens=4000,
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, blocks, calls = "", [], {}
    async for chunk in stream:
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            reasoning += extra.get("reasoning_content") or ""
            blocks += extra.get("thinking_blocks") or []
            for tc in choice.delta.tool_calls or []:
                calls.setdefault(tc.index, {"id": tc.id, "arguments": ""})
                calls[tc.index]["arguments"] += tc.function.arguments or ""
        if chunk.usage is not None:
            assert chunk.usage.completion_tokens_details is not None
            assert chunk.usage.completion_tokens_details.reasoning_tokens == 7
    assert reasoning == "The user wants Paris."
    assert blocks == [
        {"type": "thinking", "thinking": "The user wants Paris.", "signature": "sig-round-trip"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
    ]
    assert env.sent()["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": calls[0]["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": calls[0]["arguments"]},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"}
    follow_up: dict[str, Any] = {
        "model": "anthropic/claude-haiku-4-5",
        "tools": [WEATHER],
        "reasoning_effort": "low",
        "max_tokens": 4000,
    }
    with pytest.raises(openai.BadRequestError) as info:
        await env.sdk.chat.completions.create(messages=[*messages, assistant, result], **follow_up)
    assert "thinking" in info.value.message
    assistant["thinking_blocks"] = blocks
    resp = await env.sdk.chat.completions.create(
        messages=[*messages, assistant, result], **follow_up
    )
    assert resp.choices[0].message.content == "Hello from the fake!"
    sent = env.sent()["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["thinking", "redacted_thinking", "tool_use"]
    assert sent[0]["signature"] == "sig-round-trip"


async def test_reasoning_on_adaptive_models(env: Env) -> None:
    """On Claude 4.6 and later reasoning_effort is adaptive thinking with an effort level."""
    env.fake.script(Turn(text="42", reasoning="6 x 7"))
    resp = await env.sdk.chat.completions.create(
        model="anthropic/claude-opus-4-7", messages=USER, reasoning_effort="high"
    )
    extra = resp.choices[0].message.model_extra or {}
    assert extra["reasoning_content"] == "6 x 7"
    assert extra["thinking_blocks"][0]["signature"] == "sig-fake-0001"
    sent = env.sent()
    assert sent["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert sent["output_config"] == {"effort": "high"}


# --- errors and fallbacks -------------------------------------------------------------------


async def test_overloaded_falls_back(env: Env) -> None:
    """Anthropic's 529 overloaded_error moves the request to the fallback."""
    env.fake.script(Turn(error="overloaded"))
    env.backup.enqueue(Behavior(content="from the backup"))
    resp = await env.sdk.chat.completions.create(
        model=MODEL, messages=USER, extra_body=WITH_FALLBACK
    )
    assert resp.choices[0].message.content == "from the backup"
    assert (resp.model_extra or {})["extra_fields"]["fallback_index"] == 1
    assert len(env.fake.requests) == 1


async def test_overloaded_event_at_stream_start_falls_back(env: Env) -> None:
    """An overloaded_error event before any content still falls back: nothing was sent yet."""
    env.fake.script(AnthropicTurn(stream_error="overloaded_error", stream_error_after=1))
    env.backup.enqueue(Behavior(content="from the backup"))
    stream = await env.sdk.chat.completions.create(
        model=MODEL, messages=USER, stream=True, extra_body=WITH_FALLBACK
    )
    text, finish, _ = await collect(stream)
    assert (text, finish) == ("from the backup", "stop")


async def test_error_event_mid_stream_ends_the_stream(env: Env) -> None:
    """An error event after content ends the client's stream with an error."""
    # The gap lets the content reach the client before the error event is read.
    turn = AnthropicTurn(text="abcdef", stream_error="api_error", stream_error_after=5, gap_s=0.05)
    env.fake.script(turn)
    stream = await env.sdk.chat.completions.create(
        model=MODEL, messages=USER, stream=True, extra_body=WITH_FALLBACK
    )
    got: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as info:
        await read()
    assert "".join(got) == "abcd"
    assert "anthropic" in str(info.value)
    assert env.backup.requests == []


async def test_rate_limit_keeps_retry_after(env: Env) -> None:
    """A 429 comes back as a rate_limit_error with Anthropic's retry-after header."""
    env.fake.script(Turn(error="rate_limit"))
    with pytest.raises(openai.RateLimitError) as info:
        await env.sdk.chat.completions.create(model=MODEL, messages=USER)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("turn", "status", "type_"),
    [
        (Turn(error="auth"), 401, "authentication_error"),
        (Turn(error="invalid", error_param="messages.0"), 400, "invalid_request_error"),
        (
            AnthropicTurn(native_error=(413, "request_too_large", "Request exceeds the maximum")),
            413,
            "invalid_request_error",
        ),
        (AnthropicTurn(native_error=(404, "not_found_error", "model: x")), 404, "not_found_error"),
    ],
)
async def test_caller_errors(env: Env, turn: Turn, status: int, type_: str) -> None:
    """Anthropic's 4xx errors keep their status and message and do not fall back."""
    env.fake.script(turn)
    with pytest.raises(openai.APIStatusError) as info:
        await env.sdk.chat.completions.create(model=MODEL, messages=USER, extra_body=WITH_FALLBACK)
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == type_
    assert body["message"].startswith("anthropic: ")
    assert env.backup.requests == []


# --- models ---------------------------------------------------------------------------------


async def test_models_list_pages(make_gateway: MakeGateway) -> None:
    """/v1/models lists the configured models, then every page of Anthropic's list."""
    models = [
        Model(f"claude-test-{i}", f"Test {i}", f"2025-01-0{i + 1}T00:00:00Z") for i in range(5)
    ]
    async with FakeAnthropic(api_key=KEY, models=models, page_cap=2) as fake:
        config = anthropic_config(fake, models=["claude-custom"])
        gateway = await make_gateway({"providers": {"anthropic": config}})
        listed = await gateway.sdk().models.list()
        ids = [m.id for m in listed.data]
        assert ids == ["anthropic/claude-custom", *(f"anthropic/claude-test-{i}" for i in range(5))]
        assert listed.data[1].created == 1735689600
        assert [r.query.get("after_id") for r in fake.requests] == [
            None,
            "claude-test-1",
            "claude-test-3",
        ]
        assert fake.requests[0].query["limit"] == "1000"
