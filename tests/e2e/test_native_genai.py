"""The ``/genai`` routes through the official google-genai SDK: Gemini natively (the client's
body forwarded as it came), Anthropic and OpenAI through the unified translation; requests,
streams, embeddings, counts, errors, keys, versions and the model list."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from google.genai import errors, types

from tests.conftest import MakeGateway, provider_for
from tests.e2e.genai_support import CLAUDE, GEMINI, GPT, MODELS, Env, genai_env, sdk
from tests.fakes.gemini import API_KEY, MidStreamError
from tests.fakes.openai import FakeOpenAI
from tests.fakes.script import Turn

# The SDK's async transport subclasses aiohttp's ClientSession, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@pytest.fixture
async def env(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> AsyncIterator[Env]:
    async with genai_env(make_gateway, fake_openai) as got:
        yield got


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
        assert body["system"] == "Be brief."
        assert body["messages"] == [{"role": "user", "content": "Hi"}]
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


@pytest.mark.parametrize("model", [GEMINI, GPT])
async def test_stream_without_alt_sse_is_a_json_array(env: Env, model: str) -> None:
    """streamGenerateContent without ``alt=sse`` answers as Google does: one JSON array of
    responses, written element by element."""
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{model}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with env.gateway.client.session.post(url, json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        raw = await resp.read()
    assert raw.startswith(b"[{")
    assert raw.endswith(b"}]")
    got = msgspec.json.decode(raw)
    parts = [
        p
        for r in got
        for c in r.get("candidates", [])
        for p in c.get("content", {}).get("parts", [])
    ]
    text = "".join(p.get("text", "") for p in parts)
    assert text == "Hello from the fake!"
    assert got[-1]["candidates"][0]["finishReason"] == "STOP"
    async with env.gateway.client.session.post(url, params={"alt": "xml"}, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["details"][0]["metadata"]["param"] == "alt"


async def test_json_array_stream_ends_with_the_error(env: Env) -> None:
    """A failure after the array began is its last element, Google's error object."""
    env.gemini.script(Turn(text="The quick brown fox", pieces=4, gap_s=0.05))
    env.gemini.stream_errors.append(MidStreamError(after=2))
    url = env.gateway.client.make_url(f"/genai/v1beta/models/{GEMINI}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with env.gateway.client.session.post(url, json=body) as resp:
        got = msgspec.json.decode(await resp.read())
    assert got[-1]["error"]["code"] == 503
    assert got[-1]["error"]["status"] == "UNAVAILABLE"
    assert len(got) == 3


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
