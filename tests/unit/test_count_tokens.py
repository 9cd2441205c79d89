"""Input-token counts asked of the upstream (``CountsTokens``), each provider against its fake.

The fakes count deterministically (:func:`tests.fakes.script.prompt_tokens`: the words of every
text they received, 3 per message, 10 per tool), so the count returned says which texts reached
the counting endpoint. For the request below that is 5 (system) + 6 (user) + 3 + 10 = 24.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import msgspec
import pytest

from providers._upstream import Upstream
from providers.base import Call, CountsTokens, Provider
from providers.registry import build_registry
from proxy.config import build_config
from proxy.errors import UnsupportedCapabilityError, UpstreamError
from proxy.operations import CHAT, EMBEDDING, Inbound, Target
from proxy.schemas.chat import ChatRequest
from proxy.schemas.embeddings import EmbeddingRequest
from tests.conformance.case_bedrock import bedrock_config
from tests.fakes.anthropic import AnthropicTurn, FakeAnthropic
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.script import Turn
from tests.fakes.vertex import PROJECT, FakeVertex

SYSTEM = "You are a terse assistant."
QUESTION = "What is the weather in Paris?"
COUNT = 24
CLAUDE = "claude-sonnet-4-5-20250929"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"
BEDROCK_CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat(model: str, **extra: Any) -> ChatRequest:
    doc = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "tools": [TOOL],
        "max_tokens": 8000,
        "temperature": 0.5,
        **extra,
    }
    return msgspec.json.decode(msgspec.json.encode(doc), type=ChatRequest)


def call(
    provider: str, model: str, req: ChatRequest, headers: Mapping[str, str] | None = None
) -> Call:
    inbound = Inbound(op=CHAT, typed=req, model=f"{provider}/{model}", fallbacks=[], stream=False)
    return Call(
        inbound=inbound,
        target=Target(provider=provider, model=model),
        request_id="req-count-1",
        client_headers=headers or {},
    )


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with aiohttp.ClientSession() as session:
        yield Upstream(session)


def provider(upstream: Upstream, name: str, settings: dict[str, Any]) -> Provider:
    config = build_config({"providers": {name: settings}}, source="t.yaml")
    registry = build_registry(config, upstream, env={})
    assert name in registry.directory.available, registry.directory.unavailable
    return registry[name]


def counter(upstream: Upstream, name: str, settings: dict[str, Any]) -> CountsTokens:
    built = provider(upstream, name, settings)
    assert isinstance(built, CountsTokens)
    return built


# --- Anthropic -------------------------------------------------------------------------------


def _anthropic(fake: FakeAnthropic) -> dict[str, Any]:
    return {
        "type": "anthropic",
        "base_url": fake.base_url,
        "keys": [{"value": fake.api_key}],
        "headers": {"anthropic-beta": "configured-beta"},
    }


async def test_anthropic_counts_with_count_tokens(upstream: Upstream) -> None:
    """Anthropic counts by POST /v1/messages/count_tokens: the chat translation without
    max_tokens or sampling, the Messages headers (betas merged), the answer's input_tokens."""
    async with FakeAnthropic() as fake:
        anthropic = counter(upstream, "anthropic", _anthropic(fake))
        req = chat(CLAUDE, reasoning_effort="low")
        count = await anthropic.count_tokens(
            call("anthropic", CLAUDE, req, {"anthropic-beta": "client-beta"})
        )
    assert COUNT == count
    [rec] = fake.requests
    assert ("POST", "/v1/messages/count_tokens") == (rec.method, rec.path)
    assert fake.api_key == rec.headers["x-api-key"]
    assert "2023-06-01" == rec.headers["anthropic-version"]
    assert "configured-beta,client-beta" == rec.headers["anthropic-beta"]
    assert ["model", "messages", "system", "tools", "thinking"] == list(rec.json)
    assert CLAUDE == rec.json["model"]
    assert SYSTEM == rec.json["system"]
    assert "enabled" == rec.json["thinking"]["type"]
    assert ["get_weather"] == [t["name"] for t in rec.json["tools"]]


async def test_anthropic_count_error_keeps_the_status(upstream: Upstream) -> None:
    """An error answer from count_tokens is the upstream's error, status and type kept."""
    async with FakeAnthropic() as fake:
        anthropic = counter(upstream, "anthropic", _anthropic(fake))
        fake.script(AnthropicTurn(native_error=(529, "overloaded_error", "Overloaded")))
        with pytest.raises(UpstreamError) as caught:
            await anthropic.count_tokens(call("anthropic", CLAUDE, chat(CLAUDE)))
    assert (529, "overloaded_error") == (caught.value.status, caught.value.type)
    assert "Overloaded" in caught.value.message


# --- Gemini ----------------------------------------------------------------------------------


def _gemini(fake: FakeGemini) -> dict[str, Any]:
    return {"type": "gemini", "base_url": fake.base_url, "keys": [{"value": API_KEY}]}


async def test_gemini_counts_a_whole_generate_content_request(upstream: Upstream) -> None:
    """Gemini counts by :countTokens with the translated generateContent request (model
    named) as generateContentRequest, so system instruction and tools count; totalTokens."""
    async with FakeGemini() as fake:
        gemini = counter(upstream, "gemini", _gemini(fake))
        model = "gemini-2.5-flash"
        count = await gemini.count_tokens(call("gemini", model, chat(model)))
    assert COUNT == count
    [rec] = fake.requests
    assert "/v1beta/models/gemini-2.5-flash:countTokens" == rec.path
    assert API_KEY == rec.headers["x-goog-api-key"]
    assert ["generateContentRequest"] == list(rec.json)
    inner = rec.json["generateContentRequest"]
    assert "models/gemini-2.5-flash" == inner["model"]
    assert SYSTEM == inner["systemInstruction"]["parts"][0]["text"]
    assert [{"role": "user", "parts": [{"text": QUESTION}]}] == inner["contents"]
    assert ["get_weather"] == [f["name"] for f in inner["tools"][0]["functionDeclarations"]]


async def test_gemini_count_error_keeps_the_status(upstream: Upstream) -> None:
    """A quota error from :countTokens is a 429 with Google's message and retry delay."""
    async with FakeGemini() as fake:
        gemini = counter(upstream, "gemini", _gemini(fake))
        fake.script(Turn(error="rate_limit"))
        with pytest.raises(UpstreamError) as caught:
            await gemini.count_tokens(call("gemini", "gemini-2.5-flash", chat("gemini-2.5-flash")))
    assert 429 == caught.value.status
    assert "exceeded your current quota" in caught.value.message
    assert "23" == caught.value.headers["retry-after"]


# --- Vertex AI -------------------------------------------------------------------------------


def _vertex(fake: FakeVertex) -> dict[str, Any]:
    return {
        "type": "vertex",
        "base_url": fake.base_url,
        "region": "us-central1",
        "credentials": {"service_account_json": fake.key_json},
    }


_MODELS = f"/v1/projects/{PROJECT}/locations/us-central1/publishers"


async def test_vertex_gemini_counts_with_top_level_fields(upstream: Upstream) -> None:
    """A Gemini model on Vertex counts by :countTokens with contents, systemInstruction and
    tools at the top level, under an OAuth bearer token."""
    async with FakeVertex() as fake:
        vertex = counter(upstream, "vertex", _vertex(fake))
        model = "google/gemini-2.5-flash"
        count = await vertex.count_tokens(call("vertex", model, chat(model)))
    assert COUNT == count
    [rec] = fake.requests
    assert f"{_MODELS}/google/models/gemini-2.5-flash:countTokens" == rec.path
    assert rec.headers["Authorization"] == f"Bearer {fake.oauth.issued[0]}"
    assert ["contents", "systemInstruction", "tools"] == list(rec.json)


async def test_vertex_claude_counts_with_the_count_tokens_endpoint(upstream: Upstream) -> None:
    """A Claude model on Vertex counts by count-tokens:rawPredict, the model named in the body
    with Vertex's anthropic_version; the answer's input_tokens."""
    async with FakeVertex() as fake:
        vertex = counter(upstream, "vertex", _vertex(fake))
        count = await vertex.count_tokens(call("vertex", VERTEX_CLAUDE, chat(VERTEX_CLAUDE)))
    assert COUNT == count
    [rec] = fake.requests
    assert f"{_MODELS}/anthropic/models/count-tokens:rawPredict" == rec.path
    assert ["anthropic_version", "model", "messages", "system", "tools"] == list(rec.json)
    assert ("vertex-2023-10-16", VERTEX_CLAUDE) == (
        rec.json["anthropic_version"],
        rec.json["model"],
    )


@pytest.mark.parametrize(
    ("model", "turn", "status"),
    [
        ("gemini-2.5-flash", Turn(error="rate_limit"), 429),
        (VERTEX_CLAUDE, AnthropicTurn(native_error=(529, "overloaded_error", "Overloaded")), 529),
    ],
)
async def test_vertex_count_error_keeps_the_status(
    upstream: Upstream, model: str, turn: Turn, status: int
) -> None:
    """Errors of either counting endpoint keep their status (Google's shape or Anthropic's)."""
    async with FakeVertex() as fake:
        vertex = counter(upstream, "vertex", _vertex(fake))
        fake.script(turn)
        with pytest.raises(UpstreamError) as caught:
            await vertex.count_tokens(call("vertex", model, chat(model)))
    assert status == caught.value.status


# --- Bedrock ---------------------------------------------------------------------------------


async def test_bedrock_counts_a_signed_converse_input(upstream: Upstream) -> None:
    """Bedrock counts by a SigV4-signed POST /model/{id}/count-tokens whose input.converse holds
    the Converse body's messages, system and toolConfig (no inferenceConfig); inputTokens."""
    async with FakeBedrock() as fake:
        bedrock = counter(upstream, "bedrock", bedrock_config(fake))
        req = chat(BEDROCK_CLAUDE, reasoning_effort="low")
        count = await bedrock.count_tokens(call("bedrock", BEDROCK_CLAUDE, req))
    assert COUNT == count
    [rec] = fake.requests
    assert ["/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens"] == fake.raw_paths
    assert rec.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert ["input"] == list(rec.json)
    converse = rec.json["input"]["converse"]
    assert ["messages", "system", "toolConfig", "additionalModelRequestFields"] == list(converse)
    assert [{"text": SYSTEM}] == converse["system"]
    assert "enabled" == converse["additionalModelRequestFields"]["thinking"]["type"]


@pytest.mark.parametrize(
    ("model", "turn", "status", "words"),
    [
        (BEDROCK_CLAUDE, Turn(error="rate_limit"), 429, "Too many requests"),
        ("amazon.nova-pro-v1:0", Turn(), 400, "doesn't support counting tokens"),
    ],
)
async def test_bedrock_count_error_keeps_the_status(
    upstream: Upstream, model: str, turn: Turn, status: int, words: str
) -> None:
    """A throttled count and a model Bedrock cannot count for are errors with their status."""
    async with FakeBedrock() as fake:
        bedrock = counter(upstream, "bedrock", bedrock_config(fake))
        fake.script(turn)
        with pytest.raises(UpstreamError) as caught:
            await bedrock.count_tokens(call("bedrock", model, chat(model)))
    assert status == caught.value.status
    assert words in caught.value.message


async def test_only_chat_requests_are_counted(upstream: Upstream) -> None:
    """A request of another type is refused before anything is sent upstream."""
    async with FakeAnthropic() as fake:
        anthropic = counter(upstream, "anthropic", _anthropic(fake))
        embedding = msgspec.convert({"model": "m", "input": "hi"}, EmbeddingRequest)
        inbound = Inbound(op=EMBEDDING, typed=embedding, model="anthropic/m", fallbacks=[])
        wrong = Call(inbound=inbound, target=Target("anthropic", "m"), request_id="r")
        with pytest.raises(UnsupportedCapabilityError):
            await anthropic.count_tokens(wrong)
    assert [] == fake.requests


# --- who counts ------------------------------------------------------------------------------


def test_cohere_has_no_native_count(upstream: Upstream) -> None:
    """Cohere's v2 API has no token-counting endpoint: its provider is not CountsTokens."""
    cohere = provider(upstream, "cohere", {"type": "cohere", "keys": [{"value": "co-key"}]})
    assert not isinstance(cohere, CountsTokens)
