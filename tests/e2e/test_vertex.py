"""The Vertex AI provider through the official ``openai`` SDK, against ``FakeVertex`` and its
token endpoint: what the conformance scenarios do not cover."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from providers.registry import check_providers
from proxy.config import ConfigError, build_config
from tests.conftest import Gateway, MakeGateway
from tests.fakes.google_oauth import key_json, service_account_key
from tests.fakes.openai import FakeOpenAI
from tests.fakes.script import Turn
from tests.fakes.vertex import FakeVertex

GEMINI = "vertex/gemini-2.5-flash"
CLAUDE = "vertex/claude-sonnet-4-5@20250929"
USER = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    server = await FakeVertex().start()
    try:
        yield server
    finally:
        await server.close()


def _provider(fake: FakeVertex, **extra: Any) -> dict[str, Any]:
    return {
        "type": "vertex",
        "base_url": fake.base_url,
        "credentials": {"service_account_json": fake.key_json},
        **extra,
    }


@pytest.fixture
async def gw(make_gateway: MakeGateway, fake: FakeVertex) -> Gateway:
    return await make_gateway({"providers": {"vertex": _provider(fake)}})


def _last(fake: FakeVertex) -> Any:
    return fake.requests[-1]


# --- where requests go --------------------------------------------------------------------


async def test_regional_url_from_region_and_key_project(
    make_gateway: MakeGateway, fake: FakeVertex
) -> None:
    """The path names the key's project and the configured region, for each publisher."""
    gw = await make_gateway({"providers": {"vertex": _provider(fake, region="europe-west4")}})
    sdk = gw.sdk()
    await sdk.chat.completions.create(model=GEMINI, messages=USER)
    base = "/v1/projects/fake-project/locations/europe-west4/publishers"
    assert _last(fake).path == f"{base}/google/models/gemini-2.5-flash:generateContent"
    await sdk.chat.completions.create(model=CLAUDE, messages=USER)
    assert _last(fake).path == f"{base}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    stream = await sdk.chat.completions.create(model=CLAUDE, messages=USER, stream=True)
    assert [c async for c in stream]
    assert _last(fake).path.endswith(":streamRawPredict")


async def test_global_location(make_gateway: MakeGateway, fake: FakeVertex) -> None:
    """``region: global`` is the global location in the path."""
    gw = await make_gateway({"providers": {"vertex": _provider(fake, region="global")}})
    stream = await gw.sdk().chat.completions.create(model=GEMINI, messages=USER, stream=True)
    assert [c async for c in stream]
    assert _last(fake).path == (
        "/v1/projects/fake-project/locations/global/publishers/google/models/"
        "gemini-2.5-flash:streamGenerateContent"
    )
    assert _last(fake).query == {"alt": "sse"}


async def test_configured_project_wins(make_gateway: MakeGateway, fake: FakeVertex) -> None:
    """``project`` replaces the key's own; a project the account may not use is Vertex's 403."""
    gw = await make_gateway({"providers": {"vertex": _provider(fake, project="other-proj")}})
    with pytest.raises(openai.PermissionDeniedError) as info:
        await gw.sdk().chat.completions.create(model=GEMINI, messages=USER)
    assert "/projects/other-proj/" in _last(fake).path
    assert "aiplatform.endpoints.predict" in info.value.message


async def test_publisher_prefixes_and_deployments(
    make_gateway: MakeGateway, fake: FakeVertex
) -> None:
    """``google/`` and ``anthropic/`` prefixes and deployment aliases pick the publisher."""
    deployments = {"fast": "gemini-2.5-flash", "smart": "anthropic/claude-opus-4-1@20250805"}
    gw = await make_gateway({"providers": {"vertex": _provider(fake, deployments=deployments)}})
    sdk = gw.sdk()
    resp = await sdk.chat.completions.create(model="vertex/smart", messages=USER)
    assert resp.choices[0].message.content == "Hello from the fake!"
    assert _last(fake).path.endswith("/anthropic/models/claude-opus-4-1@20250805:rawPredict")
    await sdk.chat.completions.create(model="vertex/fast", messages=USER)
    assert _last(fake).path.endswith("/google/models/gemini-2.5-flash:generateContent")
    await sdk.chat.completions.create(model="vertex/google/gemini-2.5-pro", messages=USER)
    assert _last(fake).path.endswith("/google/models/gemini-2.5-pro:generateContent")


async def test_other_publishers_are_refused(gw: Gateway, fake: FakeVertex) -> None:
    """A model of another publisher is a 400 naming it, before any upstream request."""
    with pytest.raises(openai.BadRequestError) as info:
        await gw.sdk().chat.completions.create(model="vertex/meta/llama-4-scout", messages=USER)
    assert "meta/llama-4-scout" in info.value.message
    assert not fake.requests


# --- credentials --------------------------------------------------------------------------


async def test_token_fetched_once_and_reused(gw: Gateway, fake: FakeVertex) -> None:
    """One token serves many requests, sent as a bearer token to both publishers."""
    sdk = gw.sdk()
    for model in (GEMINI, CLAUDE, GEMINI):
        await sdk.chat.completions.create(model=model, messages=USER)
    assert len(fake.oauth.requests) == 1
    auth = {r.headers["Authorization"] for r in fake.requests}
    assert auth == {"Bearer ya29.fake-1"}
    grant = fake.oauth.requests[0].body.decode()
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in grant


async def test_token_renewed_near_expiry(make_gateway: MakeGateway) -> None:
    """A token within minutes of expiry is replaced before it is sent."""
    async with FakeVertex(expires_in=200) as fake:
        gw = await make_gateway({"providers": {"vertex": _provider(fake)}})
        sdk = gw.sdk()
        await sdk.chat.completions.create(model=GEMINI, messages=USER)
        await sdk.chat.completions.create(model=CLAUDE, messages=USER)
        assert len(fake.oauth.requests) == 2
        sent = [r.headers["Authorization"] for r in fake.requests]
        assert sent == ["Bearer ya29.fake-1", "Bearer ya29.fake-2"]


async def test_refused_token_is_dropped(gw: Gateway, fake: FakeVertex) -> None:
    """A token Vertex refuses (expired early) is a 401, and the next request gets a new one."""
    sdk = gw.sdk()
    await sdk.chat.completions.create(model=GEMINI, messages=USER)
    fake.oauth.expire()
    with pytest.raises(openai.AuthenticationError) as info:
        await sdk.chat.completions.create(model=GEMINI, messages=USER)
    assert "invalid authentication credentials" in info.value.message
    resp = await sdk.chat.completions.create(model=GEMINI, messages=USER)
    assert resp.choices[0].message.content == "Hello from the fake!"
    assert _last(fake).headers["Authorization"] == "Bearer ya29.fake-2"


async def test_refused_key_is_a_clear_gateway_error(
    make_gateway: MakeGateway, fake: FakeVertex
) -> None:
    """A key the token endpoint refuses is a 500 naming the grant error, without key text."""
    other, _ = service_account_key(fake.oauth.token_uri)  # signed by a key Google never saw
    config = _provider(fake, credentials={"service_account_json": key_json(other)})
    gw = await make_gateway({"providers": {"vertex": config}})
    with pytest.raises(openai.InternalServerError) as info:
        await gw.sdk().chat.completions.create(model=GEMINI, messages=USER)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "provider_auth_error"
    assert "invalid_grant" in body["message"]
    text = json.dumps(body)
    assert "PRIVATE KEY" not in text
    assert other["private_key"].splitlines()[1] not in text
    assert not fake.requests


async def test_key_file_without_adc(
    make_gateway: MakeGateway, fake: FakeVertex, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configured key file is used as is: Application Default Credentials are never read."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-adc.json"))
    key = tmp_path / "sa.json"
    key.write_text(fake.key_json)
    config = _provider(fake, credentials={"service_account_file": str(key)})
    gw = await make_gateway({"providers": {"vertex": config}})
    resp = await gw.sdk().chat.completions.create(model=CLAUDE, messages=USER)
    assert resp.choices[0].message.content == "Hello from the fake!"
    assert len(fake.oauth.requests) == 1


async def test_key_without_project_leaves_the_provider_unavailable(
    make_gateway: MakeGateway, fake: FakeVertex
) -> None:
    """A key naming no project, with no ``project`` set, makes the provider unavailable (503)."""
    key = {k: v for k, v in fake.key.items() if k != "project_id"}
    config = _provider(fake, credentials={"service_account_json": key_json(key)})
    gw = await make_gateway({"providers": {"vertex": config}})
    with pytest.raises(openai.APIStatusError) as info:
        await gw.sdk().chat.completions.create(model=GEMINI, messages=USER)
    assert info.value.status_code == 503
    assert "names no project" in info.value.message


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"keys": [{"value": "AIza-not-for-vertex"}]}, "keys"),
        ({"region": "us central1"}, "region"),
        ({"api_version": "v2"}, "api_version"),
        ({"credentials": {"service_account_json": '{"type": "authorized_user"}'}}, "credentials"),
        ({"credentials": {"api_key": "x"}}, "credentials.api_key"),
    ],
)
def test_bad_settings_stop_start_up(extra: dict[str, Any], where: str) -> None:
    """API keys, a malformed region or version, or a document that is not a service-account key
    are configuration errors naming the field."""
    doc = {"providers": {"vertex": {"credentials": {}, **extra}}}
    with pytest.raises(ConfigError, match=rf"\$\.providers\.vertex\.{where}"):
        check_providers(build_config(doc, source="<test>"))


# --- Claude on Vertex ---------------------------------------------------------------------


async def test_claude_body_has_version_and_no_model(gw: Gateway, fake: FakeVertex) -> None:
    """Claude's body carries anthropic_version vertex-2023-10-16 and no model, stream or not;
    max_tokens defaults as on Anthropic (32,000 for Claude 4.5)."""
    sdk = gw.sdk()
    await sdk.chat.completions.create(model=CLAUDE, messages=USER)
    body = _last(fake).json
    assert body["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in body
    assert body["max_tokens"] == 32000
    assert "stream" not in body
    assert "anthropic-version" not in _last(fake).headers
    stream = await sdk.chat.completions.create(model=CLAUDE, messages=USER, stream=True)
    assert [c async for c in stream]
    body = _last(fake).json
    assert (body["anthropic_version"], body["stream"], "model" in body) == (
        "vertex-2023-10-16",
        True,
        False,
    )


async def test_claude_sampling_settings(gw: Gateway, fake: FakeVertex) -> None:
    """temperature, top_p, stop and max_tokens reach Claude as Anthropic's fields."""
    await gw.sdk().chat.completions.create(
        model=CLAUDE, messages=USER, temperature=0.3, top_p=0.8, stop="END", max_tokens=99
    )
    body = _last(fake).json
    assert (body["temperature"], body["top_p"], body["stop_sequences"], body["max_tokens"]) == (
        0.3,
        0.8,
        ["END"],
        99,
    )


async def test_anthropic_beta_passes_through(make_gateway: MakeGateway, fake: FakeVertex) -> None:
    """A client's anthropic-beta header reaches Claude, merged with the configured betas;
    other configured headers go to both publishers, the betas only to Claude."""
    headers = {"anthropic-beta": "context-1m-2025-08-07", "X-Vertex-AI-LLM-Request-Type": "shared"}
    gw = await make_gateway({"providers": {"vertex": _provider(fake, headers=headers)}})
    sdk = gw.sdk()
    await sdk.chat.completions.create(
        model=CLAUDE,
        messages=USER,
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    sent = _last(fake).headers
    assert sent["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    assert sent["X-Vertex-AI-LLM-Request-Type"] == "shared"
    await sdk.chat.completions.create(model=GEMINI, messages=USER)
    assert "anthropic-beta" not in _last(fake).headers
    assert _last(fake).headers["X-Vertex-AI-LLM-Request-Type"] == "shared"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "tool", "name": "get_time"},
        ),
    ],
)
async def test_claude_tool_choice_forms(
    gw: Gateway, fake: FakeVertex, choice: Any, expected: dict[str, Any]
) -> None:
    """Each tool_choice form becomes Claude's, with both tools declared."""
    await gw.sdk().chat.completions.create(
        model=CLAUDE, messages=USER, tools=[WEATHER, TIME], tool_choice=choice
    )
    body = _last(fake).json
    assert body.get("tool_choice", {"type": "auto"}) == expected
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]


async def test_claude_json_schema(gw: Gateway, fake: FakeVertex) -> None:
    """json_schema is Claude's structured output on Vertex too."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    await gw.sdk().chat.completions.create(
        model=CLAUDE,
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    fmt = _last(fake).json["output_config"]["format"]
    assert (fmt["type"], fmt["schema"]) == ("json_schema", schema)


async def test_claude_quota_and_overload(
    make_gateway: MakeGateway, fake: FakeVertex, fake_backup: FakeOpenAI
) -> None:
    """Vertex's quota error (Google's shape) is a 429; the model's overload (Anthropic's 529)
    moves to the fallback."""
    key = [{"value": "sk-fake-backup"}]
    backup = {"type": "openai", "base_url": fake_backup.base_url, "keys": key}
    gw = await make_gateway({"providers": {"vertex": _provider(fake), "backup": backup}})
    sdk = gw.sdk()
    fake.script(Turn(error="rate_limit"), Turn(error="overloaded"))
    with pytest.raises(openai.RateLimitError) as info:
        await sdk.chat.completions.create(model=CLAUDE, messages=USER)
    assert "Quota exceeded" in info.value.message
    resp = await sdk.chat.completions.create(
        model=CLAUDE, messages=USER, extra_body={"fallbacks": ["backup/gpt-4o-mini"]}
    )
    assert (resp.model_extra or {})["extra_fields"]["provider"] == "backup"


# --- Gemini on Vertex ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
async def test_gemini_tool_choice_forms(
    gw: Gateway, fake: FakeVertex, choice: Any, expected: dict[str, Any]
) -> None:
    """Each tool_choice form becomes Gemini's function-calling mode on Vertex."""
    await gw.sdk().chat.completions.create(
        model=GEMINI, messages=USER, tools=[WEATHER, TIME], tool_choice=choice
    )
    body = _last(fake).json
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    declared = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["get_weather", "get_time"]


async def test_gemini_response_format_and_sampling(gw: Gateway, fake: FakeVertex) -> None:
    """json_schema is responseJsonSchema; sampling settings and the limit are generationConfig;
    nothing is sent that the caller did not set."""
    sdk = gw.sdk()
    await sdk.chat.completions.create(model=GEMINI, messages=USER)
    assert "generationConfig" not in _last(fake).json
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    await sdk.chat.completions.create(
        model=GEMINI,
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        temperature=0.2,
        top_p=0.5,
        max_tokens=64,
        stop=["END"],
    )
    assert _last(fake).json["generationConfig"] == {
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
        "maxOutputTokens": 64,
        "temperature": 0.2,
        "topP": 0.5,
    }


async def test_tool_results_go_back_without_ids(gw: Gateway, fake: FakeVertex) -> None:
    """A tool round trip works: Vertex's v1 takes calls and results without ids (paired by
    name), which the fake refuses otherwise."""
    messages: list[Any] = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    resp = await gw.sdk().chat.completions.create(model=GEMINI, messages=messages, tools=[WEATHER])
    assert resp.choices[0].message.content == "Hello from the fake!"
    parts = [p for c in _last(fake).json["contents"] for p in c["parts"]]
    assert parts[1] == {"functionCall": {"name": "get_weather", "args": {}}}
    result = {"name": "get_weather", "response": {"output": "sunny"}}
    assert parts[2] == {"functionResponse": result}


async def test_service_tier_and_labels(gw: Gateway, fake: FakeVertex) -> None:
    """service_tier priority is Vertex's Priority PayGo header, not a body field; metadata
    that makes valid labels goes as labels."""
    await gw.sdk().chat.completions.create(
        model=GEMINI,
        messages=USER,
        service_tier="priority",
        metadata={"team": "search", "Owner": "Ann"},
    )
    rec = _last(fake)
    assert rec.headers["X-Vertex-AI-LLM-Shared-Request-Type"] == "priority"
    assert "serviceTier" not in rec.json
    assert rec.json["labels"] == {"team": "search"}


async def test_cloud_storage_images_go_by_reference(gw: Gateway, fake: FakeVertex) -> None:
    """A gs:// image is sent as fileData with its media type, for Vertex to read itself."""
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.webp"}},
    ]
    await gw.sdk().chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": content}]
    )
    part = _last(fake).json["contents"][0]["parts"][1]
    assert part == {"fileData": {"fileUri": "gs://bucket/cat.webp", "mimeType": "image/webp"}}


async def test_gemini_quota_error(gw: Gateway, fake: FakeVertex) -> None:
    """Vertex's 429 RESOURCE_EXHAUSTED is a rate-limit error naming the provider."""
    fake.script(Turn(error="rate_limit"))
    with pytest.raises(openai.RateLimitError) as info:
        await gw.sdk().chat.completions.create(model=GEMINI, messages=USER)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "rate_limit_error"
    assert body["message"].startswith("vertex: Resource exhausted.")


# --- embeddings and models ----------------------------------------------------------------


async def test_text_embedding_models_use_predict(gw: Gateway, fake: FakeVertex) -> None:
    """text-embedding models get every input in one :predict; usage sums the token counts."""
    resp = await gw.sdk().embeddings.create(
        model="vertex/text-embedding-005", input=["first text", "second text"], dimensions=16
    )
    assert [len(d.embedding) for d in resp.data] == [16, 16]
    assert len(fake.requests) == 1
    rec = _last(fake)
    assert rec.path.endswith("/publishers/google/models/text-embedding-005:predict")
    assert rec.json == {
        "instances": [{"content": "first text"}, {"content": "second text"}],
        "parameters": {"outputDimensionality": 16},
    }
    assert resp.usage.prompt_tokens == 4


async def test_gemini_embedding_models_take_one_input_each(gw: Gateway, fake: FakeVertex) -> None:
    """Gemini embedding models get one :embedContent per input, answered in input order."""
    texts = ["alpha", "a much longer second text", "c"]
    many = await gw.sdk().embeddings.create(model="vertex/gemini-embedding-001", input=texts)
    assert len(fake.requests) == 3
    assert all(r.path.endswith("/gemini-embedding-001:embedContent") for r in fake.requests)
    assert sorted(r.json["content"]["parts"][0]["text"] for r in fake.requests) == sorted(texts)
    for text, data in zip(texts, many.data, strict=True):
        one = await gw.sdk().embeddings.create(model="vertex/gemini-embedding-001", input=text)
        assert one.data[0].embedding == data.embedding
    assert many.usage.prompt_tokens == 1 + 6 + 1


async def test_models_are_the_configured_ones(make_gateway: MakeGateway, fake: FakeVertex) -> None:
    """/v1/models lists the configured models (Vertex's publisher list is another API)."""
    models = ["gemini-2.5-flash", "claude-sonnet-4-5@20250929"]
    gw = await make_gateway({"providers": {"vertex": _provider(fake, models=models)}})
    listed = [m.id async for m in gw.sdk().models.list()]
    assert listed == ["vertex/gemini-2.5-flash", "vertex/claude-sonnet-4-5@20250929"]
    assert not fake.requests
