"""The ``/genai`` routes through the official google-genai SDK: Gemini natively (the client's
body forwarded as it came), Anthropic and OpenAI through the unified translation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from structlog.testing import capture_logs

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import API_KEY, FakeGemini, MidStreamError
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

ANTHROPIC_KEY = "sk-ant-fake"
GEMINI = "gemini-2.5-flash"
CLAUDE = "anthropic/claude-sonnet-4-5-20250929"
GPT = "openai/gpt-4o-mini"
MODELS = [GEMINI, CLAUDE, GPT]
# The SDK's async transport subclasses aiohttp's ClientSession, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@dataclass
class Env:
    gemini: FakeGemini
    anthropic: FakeAnthropic
    openai: FakeOpenAI
    gateway: Gateway
    client: genai.Client

    def last(self, model: str) -> Any:
        """The body the upstream serving ``model`` received last."""
        if model.startswith("anthropic/"):
            return self.anthropic.requests[-1].json
        if model.startswith("openai/"):
            return self.openai.requests[-1].json
        return self.gemini.requests[-1].json


def sdk(gateway: Gateway, version: str = "v1beta", key: str = "sk-anything") -> genai.Client:
    root = str(gateway.client.make_url("/genai"))
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=root, api_version=version)
    )


@pytest.fixture
async def env(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> AsyncIterator[Env]:
    gemini = await FakeGemini().start()
    anthropic = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    gateway = await make_gateway(
        {
            "providers": {
                "gemini": {"base_url": gemini.base_url, "keys": [{"value": API_KEY}]},
                "anthropic": {
                    "base_url": anthropic.base_url,
                    "keys": [{"value": ANTHROPIC_KEY}],
                },
                "openai": provider_for(fake_openai),
            }
        }
    )
    client = sdk(gateway)
    try:
        yield Env(gemini, anthropic, fake_openai, gateway, client)
    finally:
        await client.aio.aclose()
        await gemini.close()
        await anthropic.close()


# --- generateContent ------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_generate_content(env: Env, model: str) -> None:
    """generate_content answers in Gemini's shape from every provider, with the usage."""
    resp = await env.client.aio.models.generate_content(model=model, contents="Hi there")
    assert resp.text == "Hello from the fake!"
    assert resp.candidates is not None
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.usage_metadata is not None
    assert resp.usage_metadata.prompt_token_count == 12
    assert resp.usage_metadata.total_token_count == 17


async def test_native_body_reaches_gemini_unchanged(env: Env) -> None:
    """A bare Gemini model goes to the gemini provider with the client's body as it was sent,
    safety settings and snake_case fields included."""
    config = types.GenerateContentConfig(
        system_instruction="Be brief.",
        temperature=0.2,
        safety_settings=[
            types.SafetySetting(
                category=types.HarmCategory.HARM_CATEGORY_HARASSMENT,
                threshold=types.HarmBlockThreshold.BLOCK_NONE,
            )
        ],
        thinking_config=types.ThinkingConfig(thinking_budget=128, include_thoughts=True),
    )
    await env.client.aio.models.generate_content(model=GEMINI, contents="Hi", config=config)
    sent = env.gemini.requests[-1]
    assert sent.path == f"/v1beta/models/{GEMINI}:generateContent"
    assert sent.json["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
    ]
    assert sent.json["generationConfig"]["thinkingConfig"] == {
        "include_thoughts": True,
        "thinking_budget": 128,
    }
    assert sent.headers["x-goog-api-key"] == API_KEY


@pytest.mark.parametrize("model", [CLAUDE, GPT])
async def test_translated_request(env: Env, model: str) -> None:
    """System instruction, sampling settings and stop sequences reach another provider in its
    own shape."""
    config = types.GenerateContentConfig(
        system_instruction="Be brief.",
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=64,
        stop_sequences=["END"],
    )
    await env.client.aio.models.generate_content(model=model, contents="Hi", config=config)
    body = env.last(model)
    if model == GPT:
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ]
        assert body["max_completion_tokens"] == 64
        assert body["stop"] == ["END"]
    else:
        assert body["system"] == "Be brief." or body["system"][0]["text"] == "Be brief."
        assert (
            body["messages"] == [{"role": "user", "content": "Hi"}]
            or body["messages"][0]["content"][0]["text"] == "Hi"
        )
        assert body["max_tokens"] == 64
        assert body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_stream(env: Env, model: str) -> None:
    """generate_content_stream yields the text in pieces, the last with the finish reason and
    the usage."""
    chunks = [
        c
        async for c in await env.client.aio.models.generate_content_stream(
            model=model, contents="Hi"
        )
    ]
    assert "".join(c.text or "" for c in chunks) == "Hello from the fake!"
    assert len(chunks) >= 2
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.prompt_token_count == 12


async def test_native_stream_bytes_pass_through(env: Env) -> None:
    """Gemini's own stream events reach the client byte for byte, as SSE events."""
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{GEMINI}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with env.gateway.client.session.post(
        url, params={"alt": "sse"}, json=body, headers={"x-goog-api-key": "k"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    events = [e for e in raw.split(b"\r\n\r\n") if e]
    assert all(e.startswith(b"data: {") for e in events)
    assert b'"modelVersion": "gemini-2.5-flash"' in events[0]  # Google's own spacing, kept


@pytest.mark.parametrize("bare", [False, True])
async def test_stream_error_mid_stream(env: Env, bare: bool) -> None:
    """An upstream failure after the stream began (an SSE error event, or Google's bare JSON
    error lines) reaches the SDK as an APIError with its code, after the text before it."""
    # Apart, so that the text is sent before the error arrives.
    env.gemini.script(Turn(text="The quick brown fox", pieces=4, gap_s=0.05))
    env.gemini.stream_errors.append(MidStreamError(after=2, bare=bare))
    got: list[str] = []

    async def read() -> None:
        async for chunk in await env.client.aio.models.generate_content_stream(
            model=GEMINI, contents="Hi"
        ):
            got.append(chunk.text or "")

    with pytest.raises(errors.APIError) as caught:
        await read()
    assert "".join(got) == "The quick "
    assert caught.value.code == 503
    assert caught.value.status == "UNAVAILABLE"


async def test_stream_error_before_first_event_is_a_status(env: Env) -> None:
    """An error event that arrives before anything was sent fails the request with its
    status (so a fallback may still serve it)."""
    env.gemini.stream_errors.append(MidStreamError(after=0))

    async def read() -> None:
        async for _ in await env.client.aio.models.generate_content_stream(
            model=GEMINI, contents="Hi"
        ):
            pass

    with pytest.raises(errors.ServerError) as caught:
        await read()
    assert caught.value.code == 503


# --- tools ------------------------------------------------------------------------------------

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)


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


# --- embeddings and counts ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gemini-embedding-001", "openai/text-embedding-3-small"])
async def test_embed_content(env: Env, model: str) -> None:
    """embed_content returns one vector per text, natively or through /v1/embeddings."""
    resp = await env.client.aio.models.embed_content(
        model=model,
        contents=["first", "second"],
        config=types.EmbedContentConfig(output_dimensionality=8),
    )
    assert resp.embeddings is not None
    assert len(resp.embeddings) == 2
    assert all(e.values is not None and len(e.values) == 8 for e in resp.embeddings)
    if model.startswith("openai/"):
        assert env.openai.requests[-1].json["input"] == ["first", "second"]
    else:
        sent = env.gemini.requests[-1].json
        assert [r["model"] for r in sent["requests"]] == ["models/gemini-embedding-001"] * 2


@pytest.mark.parametrize(
    ("model", "source", "count"),
    [(GEMINI, "provider", 6), (CLAUDE, "provider", 6), (GPT, "estimated", None)],
)
async def test_count_tokens(env: Env, model: str, source: str, count: int | None) -> None:
    """count_tokens answers the provider's own count where it has one (Gemini natively,
    Anthropic's count_tokens), else an estimate, and says which in a header."""
    resp = await env.client.aio.models.count_tokens(model=model, contents="one two three")
    assert resp.sdk_http_response is not None
    assert resp.sdk_http_response.headers is not None
    assert resp.sdk_http_response.headers["x-thruway-token-count"] == source
    assert resp.total_tokens is not None
    if count is None:
        assert resp.total_tokens >= 1
    else:
        # The fakes count words and 3 per message.
        assert resp.total_tokens == count


@pytest.mark.parametrize("model", ["gemini-embedding-001", "openai/text-embedding-3-small"])
async def test_single_embed_content(env: Env, model: str) -> None:
    """``:embedContent`` (one content, as curl and older SDKs send it) answers ``embedding``."""
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{model}:embedContent")
    body = {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}
    async with env.gateway.client.session.post(url, json=body) as resp:
        assert resp.status == 200
        got = await resp.json()
    assert len(got["embedding"]["values"]) == 4
    assert got["usageMetadata"]["promptTokenCount"] > 0


# --- errors -----------------------------------------------------------------------------------


async def test_unknown_provider_is_a_google_error(env: Env) -> None:
    """A model naming no configured provider is a 400 INVALID_ARGUMENT saying which exist."""
    with pytest.raises(errors.ClientError) as caught:
        await env.client.aio.models.generate_content(model="nope/model-x", contents="Hi")
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert "anthropic, gemini, openai" in (caught.value.message or "")


async def test_upstream_rate_limit_keeps_its_status(env: Env) -> None:
    """An upstream's 429 reaches the SDK as 429 RESOURCE_EXHAUSTED."""
    env.gemini.script(Turn(error="rate_limit"))
    with pytest.raises(errors.ClientError) as caught:
        await env.client.aio.models.generate_content(model=GEMINI, contents="Hi")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"


async def test_unknown_method_is_a_google_404(env: Env) -> None:
    """A /genai path the gateway does not serve is a 404 NOT_FOUND in Google's shape."""
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{GEMINI}:predict")
    async with env.gateway.client.session.post(url, json={}) as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["error"]["code"] == 404
    assert body["error"]["status"] == "NOT_FOUND"
    assert body["error"]["message"].startswith("Invalid URL (POST /genai/v1beta/models/")


async def test_bad_body_is_invalid_argument(env: Env) -> None:
    """A body that is not JSON is a 400 INVALID_ARGUMENT before any provider is asked."""
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{CLAUDE}:generateContent")
    async with env.gateway.client.session.post(url, data=b"{not json") as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert "not valid JSON" in body["error"]["message"]
    assert env.anthropic.requests == []


async def test_stream_without_alt_sse_is_refused(env: Env) -> None:
    """streamGenerateContent without ``alt=sse`` is a 400 naming ``alt``."""
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{GEMINI}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with env.gateway.client.session.post(url, json=body) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["details"][0]["metadata"]["param"] == "alt"


async def test_untranslatable_tool_is_refused_for_other_providers(env: Env) -> None:
    """Google's built-in tools reach Gemini, and are a 400 naming them for other providers."""
    config = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
    await env.client.aio.models.generate_content(model=GEMINI, contents="Hi", config=config)
    assert env.gemini.requests[-1].json["tools"] == [{"googleSearch": {}}]
    with pytest.raises(errors.ClientError) as caught:
        await env.client.aio.models.generate_content(model=GPT, contents="Hi", config=config)
    assert caught.value.code == 400
    assert "googleSearch" in (caught.value.message or "")
    assert env.openai.requests == []


# --- authentication, versions, models -----------------------------------------------------------


async def test_gateway_key_in_x_goog_api_key(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With a master key the SDK's x-goog-api-key is the gateway key; a wrong one is 401
    UNAUTHENTICATED in Google's shape."""
    gateway = await make_gateway(
        {"auth": {"master_key": "sk-master"}, "providers": {"openai": provider_for(fake_openai)}}
    )
    good, bad = sdk(gateway, key="sk-master"), sdk(gateway, key="sk-wrong")
    try:
        resp = await good.aio.models.generate_content(model=GPT, contents="Hi")
        assert resp.text == "Hello from the fake!"
        with pytest.raises(errors.ClientError) as caught:
            await bad.aio.models.generate_content(model=GPT, contents="Hi")
    finally:
        await good.aio.aclose()
        await bad.aio.aclose()
    assert caught.value.code == 401
    assert caught.value.status == "UNAUTHENTICATED"
    headers = {k.lower(): v for k, v in fake_openai.requests[-1].headers.items()}
    assert headers["authorization"] == "Bearer sk-fake-upstream"


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_other_api_versions(env: Env, version: str) -> None:
    """The SDK's default v1 (and v1alpha) paths are served too; Gemini is asked on the
    provider's own version."""
    client = sdk(env.gateway, version=version)
    try:
        resp = await client.aio.models.generate_content(model=GEMINI, contents="Hi")
    finally:
        await client.aio.aclose()
    assert resp.text == "Hello from the fake!"
    assert env.gemini.requests[-1].path == f"/v1beta/models/{GEMINI}:generateContent"


async def test_model_list_and_get(env: Env) -> None:
    """models.list pages through every provider's models as ``models/provider/id``, and
    models.get finds one of them."""
    pager = await env.client.aio.models.list(config=types.ListModelsConfig(page_size=3))
    names = [m.name async for m in pager]
    assert "models/openai/gpt-4o-mini" in names
    assert "models/gemini/gemini-2.5-flash" in names
    assert "models/anthropic/claude-sonnet-4-5-20250929" in names
    assert len(names) == len(set(names))
    model = await env.client.aio.models.get(model="openai/gpt-4o-mini")
    assert model.name == "models/openai/gpt-4o-mini"
    assert model.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    bare = await env.client.aio.models.get(model=GEMINI)
    assert bare.name == f"models/gemini/{GEMINI}"
    with pytest.raises(errors.ClientError) as caught:
        await env.client.aio.models.get(model="openai/no-such-model")
    assert caught.value.code == 404


async def test_bare_model_without_gemini_provider(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A bare model name with no Gemini provider configured is a 404 saying to name the
    provider, and which exist."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    client = sdk(gateway)
    try:
        with pytest.raises(errors.ClientError) as caught:
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    finally:
        await client.aio.aclose()
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"
    assert "Configured providers: openai." in (caught.value.message or "")


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


async def test_usage_is_accounted(env: Env) -> None:
    """The canonical log line has the provider, the request type and the tokens of a
    translated stream."""
    with capture_logs() as logs:
        async for _ in await env.client.aio.models.generate_content_stream(
            model=CLAUDE, contents="Hi"
        ):
            pass
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["provider"] == "anthropic"
    assert line["request_type"] == "genai_generate"
    assert line["stream"] is True
    assert (line["input_tokens"], line["output_tokens"]) == (12, 5)


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
