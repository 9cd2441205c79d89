"""The ``/genai`` routes' translation in depth, through the official google-genai SDK: function
calling and thinking across turns, schemas, streamed tool calls, streams on the wire (keep-alives,
failures, disconnects), fallbacks and routes, accounting."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
from google.genai import errors, types
from structlog.testing import capture_logs

from tests.conftest import MakeGateway, provider_for
from tests.e2e.genai_support import CLAUDE, GEMINI, GPT, WEATHER, Env, genai_env, sdk
from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn
from tests.fakes.vertex import FakeVertex

# The SDK's async transport subclasses aiohttp's ClientSession, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@pytest.fixture
async def env(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> AsyncIterator[Env]:
    async with genai_env(make_gateway, fake_openai) as got:
        yield got


# --- tools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [CLAUDE, GPT])
async def test_function_calling_round_trip(env: Env, model: str) -> None:
    """A function call comes back as a functionCall part, and its result, sent back as a
    functionResponse, reaches the provider paired with the call."""
    call = ToolCallSpec(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    if model == GPT:
        env.openai.enqueue(
            Behavior(
                tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": call.arguments}]
            )
        )
    else:
        env.anthropic.script(Turn(tool_calls=[call]))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    first = await env.client.aio.models.generate_content(
        model=model, contents="Weather in Paris?", config=config
    )
    assert first.function_calls is not None
    fc = first.function_calls[0]
    assert (fc.name, fc.args) == ("get_weather", {"city": "Paris"})
    assert first.candidates is not None
    assert first.candidates[0].content is not None
    history = [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"t": 21})],
        ),
    ]
    second = await env.client.aio.models.generate_content(
        model=model, contents=history, config=config
    )
    assert second.text == "Hello from the fake!"
    body = env.last(model)
    if model == GPT:
        assert body["tools"][0]["function"]["parameters"] == {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }
        assert body["messages"][1]["tool_calls"][0]["id"] == "call_1"
        assert body["messages"][2] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"t":21}',
        }
    else:
        assert body["messages"][1]["content"][-1]["type"] == "tool_use"
        result = body["messages"][2]["content"][0]
        assert result["type"] == "tool_result"
        assert result["tool_use_id"] == body["messages"][1]["content"][-1]["id"]


# --- translation in depth -----------------------------------------------------------------------


async def test_response_schema_becomes_json_schema(env: Env) -> None:
    """responseSchema (Google's schema, in capitals) reaches OpenAI as a JSON Schema
    response_format."""
    schema = types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "rain": types.Schema(type=types.Type.BOOLEAN, nullable=True),
        },
        required=["city"],
    )
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=schema
    )
    await env.client.aio.models.generate_content(model=GPT, contents="Hi", config=config)
    fmt = env.openai.requests[-1].json["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "rain": {"type": ["boolean", "null"]}},
        "required": ["city"],
    }


@pytest.mark.parametrize("model", [CLAUDE, GPT])
async def test_automatic_function_calling(env: Env, model: str) -> None:
    """The SDK's automatic function calling (it runs the Python function and sends its result
    back) completes against a translated provider."""
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return "sunny"

    arguments = '{"city": "Paris"}'
    if model == GPT:
        env.openai.enqueue(
            Behavior(tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": arguments}])
        )
    else:
        env.anthropic.script(
            Turn(tool_calls=[ToolCallSpec(id="toolu_1", name="get_weather", arguments=arguments)])
        )
    resp = await env.client.aio.models.generate_content(
        model=model,
        contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[get_weather]),
    )
    assert calls == ["Paris"]
    assert resp.text == "Hello from the fake!"
    result = env.last(model)["messages"][-1]
    if model == GPT:
        assert result == {"role": "tool", "tool_call_id": "call_1", "content": '{"result":"sunny"}'}
    else:
        block = result["content"][0]
        assert (block["type"], block["tool_use_id"]) == ("tool_result", "toolu_1")


@pytest.mark.parametrize("model", [CLAUDE, GPT])
async def test_inline_image(env: Env, model: str) -> None:
    """An inlineData image reaches another provider as its own image input, bytes unchanged."""
    png = b"\x89PNG\r\n\x1a\n-not-really"
    contents = [
        types.Content(
            role="user",
            parts=[
                types.Part(text="What is this?"),
                types.Part.from_bytes(data=png, mime_type="image/png"),
            ],
        )
    ]
    await env.client.aio.models.generate_content(model=model, contents=contents)
    parts = env.last(model)["messages"][0]["content"]
    encoded = base64.b64encode(png).decode()
    if model == GPT:
        assert parts[1] == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{encoded}"},
        }
    else:
        assert parts[1]["source"] == {"type": "base64", "media_type": "image/png", "data": encoded}


async def test_stream_tool_call_translated(env: Env) -> None:
    """A tool call streamed by OpenAI in pieces reaches the SDK whole, as Gemini sends it."""
    env.openai.enqueue(
        Behavior(
            content="",
            tool_calls=[{"id": "call_9", "name": "get_weather", "arguments": '{"city":"Oslo"}'}],
        )
    )
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    chunks = [
        c
        async for c in await env.client.aio.models.generate_content_stream(
            model=GPT, contents="Weather?", config=config
        )
    ]
    calls = [fc for c in chunks for fc in c.function_calls or ()]
    assert [(fc.id, fc.name, fc.args) for fc in calls] == [
        ("call_9", "get_weather", {"city": "Oslo"})
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_and_tools_across_turns_with_anthropic(env: Env, stream: bool) -> None:
    """Claude's thinking comes back as thought parts carrying its signature; sent back with the
    function result, it reaches Anthropic as the signed thinking block it requires."""
    call = ToolCallSpec(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}')
    env.anthropic.script(
        Turn(reasoning="Need the weather.", tool_calls=[call]), Turn(text="It is 21 C.")
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
        max_output_tokens=4096,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    ask = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    if stream:
        parts = [
            p
            async for c in await env.client.aio.models.generate_content_stream(
                model=CLAUDE, contents=[ask], config=config
            )
            for p in (
                c.candidates[0].content.parts or []
                if c.candidates and c.candidates[0].content
                else []
            )
        ]
    else:
        first = await env.client.aio.models.generate_content(
            model=CLAUDE, contents=[ask], config=config
        )
        assert first.candidates is not None
        assert first.candidates[0].content is not None
        parts = first.candidates[0].content.parts or []
    thoughts = [p for p in parts if p.thought]
    assert "".join(p.text or "" for p in thoughts) == "Need the weather."
    # Gemini's signatures are bytes: Claude's travels as its text's bytes.
    assert [p.thought_signature for p in thoughts if p.thought_signature] == [b"sig-fake-0001"]
    answer = types.Part.from_function_response(name="get_weather", response={"temp": 21})
    history = [
        ask,
        types.Content(role="model", parts=parts),
        types.Content(role="user", parts=[answer]),
    ]
    second = await env.client.aio.models.generate_content(
        model=CLAUDE, contents=history, config=config
    )
    assert second.text == "It is 21 C."
    turn = env.anthropic.requests[-1].json["messages"][1]["content"]
    assert turn[0] == {
        "type": "thinking",
        "thinking": "Need the weather.",
        "signature": "sig-fake-0001",
    }
    assert [block["type"] for block in turn[1:]] == ["text", "tool_use"]


@pytest.mark.parametrize("model", [GEMINI, CLAUDE, GPT])
@pytest.mark.parametrize("stream", [False, True])
async def test_usage_is_accounted(env: Env, model: str, stream: bool) -> None:
    """The canonical log line has the provider, the request type, the tokens (natively from
    Gemini's usageMetadata, thinking included) and the cost, streamed or not."""
    if model == GEMINI:
        # Gemini's signatures are base64 (the SDK decodes them).
        env.gemini.script(
            Turn(
                reasoning="Hm.",
                reasoning_signature="c2lnLTE=",
                completion_tokens=9,
                reasoning_tokens=4,
            )
        )
    with capture_logs() as logs:
        if stream:
            async for _ in await env.client.aio.models.generate_content_stream(
                model=model, contents="Hi"
            ):
                pass
        else:
            await env.client.aio.models.generate_content(model=model, contents="Hi")
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["provider"] == (model.partition("/")[0] if "/" in model else "gemini")
    assert line["request_type"] == "genai_generate"
    assert line["stream"] is stream
    if model == GEMINI:
        assert (line["input_tokens"], line["output_tokens"], line["reasoning_tokens"]) == (12, 9, 4)
        assert line["cost_usd"] > 0
    else:
        assert (line["input_tokens"], line["output_tokens"]) == (12, 5)


@pytest.mark.parametrize("model", ["gemini-embedding-001", "openai/text-embedding-3-small"])
async def test_embedding_usage_is_accounted(env: Env, model: str) -> None:
    """Embeddings are accounted with their input tokens, natively or translated."""
    with capture_logs() as logs:
        await env.client.aio.models.embed_content(model=model, contents=["a", "b"])
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["request_type"] == "genai_embed"
    assert line["input_tokens"] == 12


# --- streams on the wire ----------------------------------------------------------------------


async def test_keepalive_is_a_blank_line_the_sdk_skips(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A silent upstream mid-stream gets blank lines (not SSE comments, which the SDK would
    read as JSON), and the SDK reads the stream to its end."""
    gateway = await make_gateway(
        {
            "providers": {"openai": provider_for(fake_openai)},
            "streaming": {"keepalive_interval_s": 0.05},
        }
    )
    fake_openai.enqueue(Behavior(deltas=["a", "b"], content="ab", gap_s=0.3))
    url = gateway.client.make_url(f"/genai/v1beta/models/{GPT}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with gateway.client.session.post(url, params={"alt": "sse"}, json=body) as resp:
        raw = await resp.read()
    assert b"\r\n\r\n\r\n" in raw
    assert [line for line in raw.split(b"\r\n") if line and not line.startswith(b"data: ")] == []
    client = sdk(gateway)
    fake_openai.enqueue(Behavior(deltas=["x", "y"], content="xy", gap_s=0.2))
    try:
        chunks = [
            c
            async for c in await client.aio.models.generate_content_stream(model=GPT, contents="Hi")
        ]
    finally:
        await client.aio.aclose()
    assert "".join(c.text or "" for c in chunks) == "xy"


async def test_translated_failure_mid_stream(env: Env) -> None:
    """An upstream cut after the first event ends the stream with Google's error event, which
    the SDK raises as an APIError, after the text that came first."""
    env.openai.enqueue(Behavior(deltas=["a", "b", "c", "d"], content="abcd", cut_after=3))
    got: list[str] = []

    async def read() -> None:
        async for chunk in await env.client.aio.models.generate_content_stream(
            model=GPT, contents="Hi"
        ):
            got.append(chunk.text or "")

    with pytest.raises(errors.ServerError) as caught:
        await read()
    assert "".join(got) == "ab"
    assert caught.value.code == 502
    assert caught.value.status == "UNAVAILABLE"
    assert "closed the connection" in (caught.value.message or "")


async def test_client_disconnect_closes_the_upstream(env: Env) -> None:
    """A client leaving mid-stream drops the upstream, and the request is logged as 499."""
    env.openai.enqueue(
        Behavior(deltas=[str(i % 10) * 2000 for i in range(3000)], content="", gap_s=0.001)
    )
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{GPT}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    with capture_logs() as logs:
        resp = await env.gateway.client.session.post(url, params={"alt": "sse"}, json=body)
        await resp.content.readuntil(b"\r\n\r\n")
        resp.close()
        await asyncio.wait_for(env.openai.disconnected.wait(), timeout=2)
        for _ in range(50):
            if any(entry["event"] == "request" for entry in logs):
                break
            await asyncio.sleep(0.02)
    assert env.openai.disconnects == 1
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert (line["status"], line["error_type"]) == (499, "client_disconnected")


async def test_fallback_to_another_provider(env: Env) -> None:
    """A Gemini failure before the first byte falls back to the request's ``fallbacks``
    (sent in the body with the SDK's extra_body), translated for that provider; the gateway's
    field never reaches Gemini."""
    env.gemini.script(Turn(error="overloaded"))
    config = types.GenerateContentConfig(
        http_options=types.HttpOptions(extra_body={"fallbacks": [GPT]})
    )
    resp = await env.client.aio.models.generate_content(model=GEMINI, contents="Hi", config=config)
    assert resp.text == "Hello from the fake!"
    assert "fallbacks" not in env.gemini.requests[-1].json
    assert env.openai.requests[-1].json["messages"] == [{"role": "user", "content": "Hi"}]
    assert resp.sdk_http_response is not None
    assert resp.sdk_http_response.headers is not None
    assert resp.sdk_http_response.headers["x-thruway-provider"] == "openai"
    assert resp.sdk_http_response.headers["x-thruway-fallback-index"] == "1"


async def test_configured_route_mixes_native_and_translated(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A configured route name works as the model; when its Gemini target fails, its next
    target serves the same request translated."""
    gemini = await FakeGemini().start()
    gateway = await make_gateway(
        {
            "providers": {
                "gemini": {"base_url": gemini.base_url, "keys": [{"value": API_KEY}]},
                "openai": provider_for(fake_openai),
            },
            "routes": {
                "mix": {
                    "targets": [{"model": f"gemini/{GEMINI}"}, {"model": GPT}],
                    "strategy": "ordered",
                }
            },
        }
    )
    client = sdk(gateway)
    try:
        first = await client.aio.models.generate_content(model="mix", contents="Hi")
        gemini.script(Turn(error="server"))
        second = await client.aio.models.generate_content(model="mix", contents="Hi")
    finally:
        await client.aio.aclose()
        await gemini.close()
    assert first.text == second.text == "Hello from the fake!"
    assert first.model_version == GEMINI
    assert second.model_version == "gpt-4o-mini"
    assert len(gemini.requests) == 2
    assert len(fake_openai.requests) == 1


async def test_bare_gemini_model_on_vertex(make_gateway: MakeGateway) -> None:
    """Without a Gemini API provider, a bare Gemini model goes to the only Vertex AI provider,
    through the translation, streams included."""
    fake = await FakeVertex().start()
    gateway = await make_gateway(
        {
            "providers": {
                "cloud": {
                    "type": "vertex",
                    "base_url": fake.base_url,
                    "credentials": {"service_account_json": fake.key_json},
                }
            }
        }
    )
    client = sdk(gateway)
    try:
        whole = await client.aio.models.generate_content(model=GEMINI, contents="Hi")
        chunks = [
            c
            async for c in await client.aio.models.generate_content_stream(
                model=GEMINI, contents="Hi"
            )
        ]
    finally:
        await client.aio.aclose()
        await fake.close()
    assert whole.text == "Hello from the fake!"
    assert "".join(c.text or "" for c in chunks) == "Hello from the fake!"
    assert [r.path.rsplit(":", 1)[-1] for r in fake.requests if ":" in r.path] == [
        "generateContent",
        "streamGenerateContent",
    ]


async def test_sync_client(env: Env) -> None:
    """The SDK's synchronous client (its other HTTP transport) reads answers, streams and
    errors the same way."""
    client = sdk(env.gateway)
    try:
        whole = await asyncio.to_thread(client.models.generate_content, model=CLAUDE, contents="Hi")

        def stream() -> str:
            got = client.models.generate_content_stream(model=GPT, contents="Hi")
            return "".join(c.text or "" for c in got)

        text = await asyncio.to_thread(stream)
        with pytest.raises(errors.ClientError) as caught:
            await asyncio.to_thread(client.models.generate_content, model="x/y", contents="Hi")
    finally:
        client.close()
    assert whole.text == text == "Hello from the fake!"
    assert caught.value.code == 400
