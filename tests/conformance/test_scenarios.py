"""One scenario list, run through the official ``openai`` SDK against every provider's fake.

Each scenario scripts the provider's fake with a neutral :class:`Turn`, sends an OpenAI-shaped
request through the gateway, and checks both what the SDK got back and (through the case's
normaliser) what the provider received, so a translation bug on either side fails here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.conformance.case_openai import ScriptedOpenAI
from tests.conformance.cases import ProviderCase
from tests.conformance.registry import CASES
from tests.conftest import Gateway, MakeGateway
from tests.fakes.script import ToolCallSpec, Turn

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}


@dataclass
class Env:
    case: ProviderCase
    fake: Any
    backup: ScriptedOpenAI
    gateway: Gateway
    sdk: openai.AsyncOpenAI
    image_url: str

    @property
    def model(self) -> str:
        return f"{self.case.type}/{self.case.model}"

    def last(self) -> Any:
        return self.case.received(self.fake.requests[-1])


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
async def env(request: pytest.FixtureRequest, make_gateway: MakeGateway) -> AsyncIterator[Env]:
    case: ProviderCase = request.param
    fake = await case.start()
    backup = await ScriptedOpenAI(api_key="sk-fake-backup").start()

    async def cat(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    images = web.Application()
    images.router.add_get("/cat.png", cat)
    runner = web.AppRunner(images, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        providers = {
            case.type: case.config(fake),
            "backup": {
                "type": "openai",
                "base_url": backup.base_url,
                "keys": [{"value": "sk-fake-backup"}],
            },
        }
        gateway = await make_gateway({"providers": providers}, env=case.env)
        yield Env(case, fake, backup, gateway, gateway.sdk(), f"http://127.0.0.1:{port}/cat.png")
    finally:
        await runner.cleanup()
        await backup.close()
        await fake.close()


async def test_simple_chat(env: Env) -> None:
    """A one-message chat comes back as OpenAI's chat completion with its usage."""
    resp = await env.sdk.chat.completions.create(
        model=env.model, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert resp.choices[0].message.content == "Hello from the fake!"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (12, 5)
    assert resp.usage.total_tokens == 17
    assert resp.model
    assert env.last().messages == [("user", "Say hello")]


async def test_multi_turn_with_system_and_developer(env: Env) -> None:
    """System and developer messages become the provider's system prompt; turns keep order."""
    await env.sdk.chat.completions.create(
        model=env.model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
        max_tokens=50,
        temperature=0.2,
        stop=["END"],
    )
    got = env.last()
    assert got.messages == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "How are you?"),
    ]
    assert got.max_tokens == 50
    await env.sdk.chat.completions.create(
        model=env.model,
        messages=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
        ],
    )
    assert env.last().messages == [("system", "Answer in French."), ("user", "Hi")]


async def test_image_input(env: Env) -> None:
    """Images by URL and inline base64 both reach the provider."""
    inline = "data:image/png;base64," + base64.b64encode(PNG).decode()
    await env.sdk.chat.completions.create(
        model=env.model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": env.image_url}},
                    {"type": "image_url", "image_url": {"url": inline}},
                ],
            }
        ],
    )
    got = env.last()
    data = f"data:image/png:{base64.b64encode(PNG).decode()}"
    first = f"url:{env.image_url}" if env.case.image_urls else data
    assert got.images == [first, data]
    assert got.messages == [("user", "What is in these?")]


async def test_tool_call_and_result(env: Env) -> None:
    """A tool call comes back with id, name and arguments; its result goes back paired."""
    call = ToolCallSpec("call_w1", "get_weather", '{"city": "Paris"}')
    env.fake.script(Turn(text="", tool_calls=[call]))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    resp = await env.sdk.chat.completions.create(
        model=env.model, messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    got = choice.message.tool_calls[0]
    assert got.type == "function"
    assert got.function.name == "get_weather"
    assert json.loads(got.function.arguments) == {"city": "Paris"}
    if env.case.tool_ids_kept:
        assert got.id == "call_w1"
    assert got.id
    assert env.last().tools == ["get_weather"]

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": got.id, "content": "18C and sunny"},
    ]
    resp = await env.sdk.chat.completions.create(
        model=env.model, messages=messages, tools=[WEATHER_TOOL]
    )
    assert resp.choices[0].message.content == "Hello from the fake!"
    results = env.last().tool_results
    assert len(results) == 1
    assert results[0][0] in (got.id, "get_weather")
    assert results[0][1] == "18C and sunny"


async def test_streamed_parallel_tool_calls(env: Env) -> None:
    """Streamed tool calls keep a stable index, id and name first, arguments after."""
    calls = [
        ToolCallSpec("call_a", "get_weather", '{"city": "Paris, France"}'),
        ToolCallSpec("call_b", "get_time", '{"tz": "Europe/Paris"}'),
    ]
    env.fake.script(Turn(text="", tool_calls=calls, arg_pieces=6))
    stream = await env.sdk.chat.completions.create(
        model=env.model,
        messages=[{"role": "user", "content": "Weather and time in Paris?"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        stream=True,
    )
    per_index: dict[int, list[Any]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                per_index.setdefault(tc.index, []).append(tc)
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert sorted(per_index) == [0, 1]
    for index, spec in enumerate(calls):
        deltas = per_index[index]
        assert deltas[0].id
        assert deltas[0].function.name == spec.name
        if env.case.tool_ids_kept:
            assert deltas[0].id == spec.id
        assert all(d.id is None and (d.function.name is None) for d in deltas[1:])
        arguments = "".join(d.function.arguments or "" for d in deltas)
        assert json.loads(arguments) == json.loads(spec.arguments)
        if env.case.streams_arguments:
            assert sum(1 for d in deltas if d.function.arguments) > 1


async def test_streamed_text(env: Env) -> None:
    """Text streams delta by delta, as the provider sent it, and ends with a finish reason."""
    env.fake.script(Turn(text="The quick brown fox jumps", pieces=5))
    stream = await env.sdk.chat.completions.create(
        model=env.model, messages=[{"role": "user", "content": "Go"}], stream=True
    )
    pieces, finish, roles = [], None, 0
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            roles += choice.delta.role == "assistant"
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "The quick brown fox jumps"
    assert len(pieces) == 5
    assert roles == 1
    assert finish == "stop"
    assert env.last().stream


async def test_usage_present(env: Env) -> None:
    """Usage, cached tokens included, is in the response and in the stream's last chunk."""
    turn = Turn(prompt_tokens=120, completion_tokens=7, cached_tokens=100)
    env.fake.script(turn, turn)
    resp = await env.sdk.chat.completions.create(
        model=env.model, messages=[{"role": "user", "content": "Hi"}]
    )
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (120, 7)
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 100
    extra = (resp.model_extra or {})["extra_fields"]
    assert extra["billed_usage"]["cached_tokens"] == 100

    stream = await env.sdk.chat.completions.create(
        model=env.model,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (120, 7)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 100
    assert all(c.usage is None for c in chunks[:-1])
    assert (last.model_extra or {})["extra_fields"]["provider"] == env.case.type


async def test_rate_limit_error(env: Env) -> None:
    """The provider's rate-limit answer is a 429 the SDK raises as RateLimitError."""
    env.fake.script(*[Turn(error="rate_limit")] * 4)
    with pytest.raises(openai.RateLimitError) as info:
        await env.sdk.chat.completions.create(
            model=env.model, messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.status_code == 429
    body = info.value.body
    # OpenAI's own type is "requests" or "tokens"; translated providers say rate_limit_error.
    assert isinstance(body, dict)
    assert body["type"] in ("rate_limit_error", "requests", "tokens")
    assert env.case.type in body["message"]


async def test_server_error_falls_back(env: Env) -> None:
    """A 5xx from the provider moves the request to the fallback, whose answer comes back."""
    env.fake.script(*[Turn(error="server")] * 4)
    env.backup.script(Turn(text="from the backup"))
    resp = await env.sdk.chat.completions.create(
        model=env.model,
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
    )
    assert resp.choices[0].message.content == "from the backup"
    extra = (resp.model_extra or {})["extra_fields"]
    assert extra["provider"] == "backup"
    assert extra["fallback_index"] == 1
    assert env.fake.requests


async def test_client_disconnect_mid_stream(env: Env) -> None:
    """A client that leaves mid-stream makes the gateway close the provider's stream."""
    env.fake.script(Turn(text="x" * 40, pieces=40, gap_s=0.05))
    stream = await env.sdk.chat.completions.create(
        model=env.model, messages=[{"role": "user", "content": "Go"}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    await asyncio.wait_for(env.fake.disconnected.wait(), 5)
    assert env.fake.disconnects == 1


async def test_stream_cut_ends_with_an_error(env: Env) -> None:
    """A provider stream cut before its end is an error for the client, not a short answer."""
    env.fake.script(Turn(text="The quick brown fox jumps", pieces=5, cut_after=3))
    stream = await env.sdk.chat.completions.create(
        model=env.model, messages=[{"role": "user", "content": "Go"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_completions_through_chat(env: Env) -> None:
    """/v1/completions works for every provider (through chat where there is no native one)."""
    resp = await env.sdk.completions.create(model=env.model, prompt="Say hello", max_tokens=20)
    assert resp.choices[0].text == "Hello from the fake!"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 5
    stream = await env.sdk.completions.create(model=env.model, prompt="Say hello", stream=True)
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text == "Hello from the fake!"


async def test_reasoning(env: Env) -> None:
    """Reasoning comes back as reasoning_content, whole and streamed."""
    if not env.case.reasoning:
        pytest.skip(f"{env.case.id} returns no reasoning text")
    env.fake.script(Turn(text="42", reasoning="Six times seven.", reasoning_tokens=3))
    resp = await env.sdk.chat.completions.create(
        model=env.model,
        messages=[{"role": "user", "content": "6*7?"}],
        reasoning_effort="low",
        max_tokens=4000,
    )
    message = resp.choices[0].message
    assert message.content == "42"
    assert (message.model_extra or {}).get("reasoning_content") == "Six times seven."
    env.fake.script(Turn(text="42", reasoning="Six times seven.", reasoning_tokens=3))
    stream = await env.sdk.chat.completions.create(
        model=env.model,
        messages=[{"role": "user", "content": "6*7?"}],
        reasoning_effort="low",
        max_tokens=4000,
        stream=True,
    )
    reasoning, content = "", ""
    async for chunk in stream:
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            content += choice.delta.content or ""
    assert (reasoning, content) == ("Six times seven.", "42")


async def test_embeddings_or_unsupported(env: Env) -> None:
    """Embeddings work where the provider has them, else a 400 unsupported_capability."""
    if not env.case.embeddings:
        with pytest.raises(openai.BadRequestError) as info:
            await env.sdk.embeddings.create(model=env.model, input="hi")
        body = info.value.body
        assert isinstance(body, dict)
        assert body["type"] == "unsupported_capability"
        assert env.case.type in body["message"]
        assert "embedding" in body["message"]
        return
    model = f"{env.case.type}/{env.case.embedding_model}"
    resp = await env.sdk.embeddings.create(model=model, input=["first", "second"])
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) > 1 for d in resp.data)
    assert resp.usage.prompt_tokens > 0
    encoded = await env.sdk.embeddings.create(model=model, input="first", encoding_format="base64")
    # Asked explicitly, the SDK hands the base64 text over as it came: float32, little-endian.
    packed = base64.b64decode(encoded.data[0].embedding)  # type: ignore[arg-type]
    floats = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert floats == pytest.approx(resp.data[0].embedding, rel=1e-6)
