"""OpenAI and Azure OpenAI serving ``/v1/responses`` natively: ``provider.send`` for operation
``responses`` and ``count_tokens``, against the fake upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from openai.types.responses import Response

from providers._upstream import Upstream
from providers.base import Call, CountsTokens, EventStream, JSONReply, Provider
from providers.registry import build_registry
from proxy.config import build_config
from proxy.errors import UnsupportedCapabilityError, UpstreamError
from proxy.operations import RESPONSES, Inbound, Target
from proxy.schemas.common import BilledUsage
from proxy.schemas.responses import REQUEST_DECODER
from tests.fakes import azure as azure_fakes
from tests.fakes import openai as openai_fakes
from tests.fakes.azure import API_KEY, FakeAzure
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.openai_responses import estimate_tokens

fake_openai = openai_fakes.fake_openai  # the fixtures, visible here without a conftest
fake_azure = azure_fakes.fake_azure

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
_raw_body = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with aiohttp.ClientSession() as session:
        yield Upstream(session)


def build(upstream: Upstream, name: str, settings: dict[str, Any]) -> Provider:
    config = build_config({"providers": {name: settings}}, source="test.yaml")
    return build_registry(config, upstream, env={})[name]


def openai_provider(upstream: Upstream, fake: FakeOpenAI) -> Provider:
    return build(
        upstream, "openai", {"base_url": fake.base_url, "keys": [{"value": "sk-fake-upstream"}]}
    )


def azure_provider(upstream: Upstream, fake: FakeAzure, api_version: str) -> Provider:
    settings = {
        "base_url": fake.root_url,
        "api_version": api_version,
        "keys": [{"value": API_KEY}],
        "deployments": {"gpt-4o": "chat-prod"},
    }
    return build(upstream, "azure", settings)


def call(body: dict[str, Any], provider: str = "openai", model: str = "gpt-4o") -> Call:
    """A Responses call as the gateway's Responses layer hands it over."""
    encoded = msgspec.json.encode({"model": f"{provider}/{model}", **body})
    inbound = Inbound(
        op=RESPONSES,
        typed=REQUEST_DECODER.decode(encoded),
        model=f"{provider}/{model}",
        fallbacks=list(body.get("fallbacks", [])),
        stream=bool(body.get("stream")),
        wants_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        raw=_raw_body(encoded),
    )
    return Call(inbound=inbound, target=Target(provider, model), request_id="req-test")


async def drain(stream: EventStream) -> list[bytes]:
    payloads: list[bytes] = []
    try:
        async for batch in stream:
            payloads.extend(batch)
    finally:
        await stream.aclose()
    return payloads


def sse_payloads(transcript: bytes) -> list[bytes]:
    return [block.split(b"\ndata: ")[1] for block in transcript.split(b"\n\n") if block]


INPUT = [{"role": "user", "content": [{"type": "input_text", "text": "Say hi in French"}]}]


async def test_json_reply(upstream: Upstream, fake_openai: FakeOpenAI) -> None:
    """The body goes out with the target model and without gateway fields; the Response comes
    back as sent, with its usage in the gateway's terms."""
    fake_openai.enqueue(
        Behavior(content="Bonjour", usage=(20, 7), cached_tokens=4, reasoning_tokens=2)
    )
    body = {
        "input": INPUT,
        "instructions": "Be brief.",
        "store": False,
        "temperature": 0.2,
        "text": {"verbosity": "low"},
        "fallbacks": ["openai/gpt-4o-mini"],
    }
    reply = await openai_provider(upstream, fake_openai).send(call(body))
    assert isinstance(reply, JSONReply)
    sent = fake_openai.requests[-1]
    assert (sent.path, sent.headers["authorization"]) == (
        "/v1/responses",
        "Bearer sk-fake-upstream",
    )
    assert sent.json == {k: v for k, v in body.items() if k != "fallbacks"} | {"model": "gpt-4o"}
    response = Response.model_validate_json(reply.body)
    assert (response.output_text, response.model, response.store) == ("Bonjour", "gpt-4o", False)
    assert reply.usage == BilledUsage(
        prompt_tokens=20, completion_tokens=7, total_tokens=27, cached_tokens=4, reasoning_tokens=2
    )
    assert reply.headers["x-thruway-upstream-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("options", "forwarded"),
    [
        ({"include_usage": True, "include_obfuscation": False}, {"include_obfuscation": False}),
        ({"include_usage": True}, None),
        ({"include_obfuscation": True}, {"include_obfuscation": True}),
    ],
)
async def test_stream_options_without_include_usage(
    upstream: Upstream, fake_openai: FakeOpenAI, options: dict[str, bool], forwarded: Any
) -> None:
    """`include_usage` (chat's option, a 400 on the Responses API) is removed, other stream
    options kept, and an emptied `stream_options` left out."""
    body = {"input": "Hi", "stream": True, "stream_options": options}
    stream = await openai_provider(upstream, fake_openai).send(call(body))
    assert isinstance(stream, EventStream)
    payloads = await drain(stream)
    assert msgspec.json.decode(payloads[-1])["type"] == "response.completed"
    sent = fake_openai.requests[-1].json
    assert sent.get("stream_options") == forwarded
    assert ("stream_options" in sent) == (forwarded is not None)


async def test_stream_payloads_are_the_upstream_data(
    upstream: Upstream, fake_openai: FakeOpenAI
) -> None:
    """Each event's `data` payload goes out byte for byte (the `event:` line dropped), and the
    usage comes from response.completed."""
    transcript = (FIXTURES / "responses_stream.sse").read_bytes()
    fake_openai.replay = transcript
    stream = await openai_provider(upstream, fake_openai).send(
        call({"input": "Hi", "stream": True})
    )
    assert isinstance(stream, EventStream)
    assert stream.headers["x-thruway-upstream-request-id"].startswith("req_")
    assert await drain(stream) == sse_payloads(transcript)
    assert stream.usage == BilledUsage(
        prompt_tokens=21, completion_tokens=4, total_tokens=25, cached_tokens=3
    )


async def test_incomplete_stream_usage(upstream: Upstream, fake_openai: FakeOpenAI) -> None:
    """A stream ending in response.incomplete still reports its usage."""
    fake_openai.enqueue(Behavior(finish_reason="length", usage=(9, 16), reasoning_tokens=5))
    stream = await openai_provider(upstream, fake_openai).send(
        call({"input": "Hi", "stream": True})
    )
    assert isinstance(stream, EventStream)
    payloads = await drain(stream)
    assert msgspec.json.decode(payloads[-1])["type"] == "response.incomplete"
    assert stream.usage == BilledUsage(
        prompt_tokens=9, completion_tokens=16, total_tokens=25, reasoning_tokens=5
    )


async def test_mid_stream_error_event(upstream: Upstream, fake_openai: FakeOpenAI) -> None:
    """An `error` event is raised as the upstream's error after the events before it went out."""
    fake_openai.enqueue(Behavior(stream_error=(4, "server_error", "The model failed to answer.")))
    stream = await openai_provider(upstream, fake_openai).send(
        call({"input": "Hi", "stream": True})
    )
    assert isinstance(stream, EventStream)
    received: list[bytes] = []

    async def consume() -> None:
        async for batch in stream:
            received.extend(batch)

    with pytest.raises(UpstreamError) as info:
        await consume()
    await stream.aclose()
    assert [msgspec.json.decode(p)["sequence_number"] for p in received] == [0, 1, 2, 3]
    error = info.value
    assert (error.status, error.code, error.retryable) == (500, "server_error", True)
    assert error.message == "openai: The model failed to answer."
    assert stream.usage is None


async def test_nested_error_event(upstream: Upstream, fake_openai: FakeOpenAI) -> None:
    """An error event carrying OpenAI's usual `error` object keeps its type, code and param."""
    fake_openai.replay = (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
        b'"response":{"id":"resp_1","status":"in_progress","usage":null}}\n\n'
        b'event: error\ndata: {"type":"error","sequence_number":1,"error":{"type":'
        b'"invalid_request_error","code":"context_length_exceeded","message":"Too long.",'
        b'"param":"input"}}\n\n'
    )
    stream = await openai_provider(upstream, fake_openai).send(
        call({"input": "Hi", "stream": True})
    )
    assert isinstance(stream, EventStream)
    with pytest.raises(UpstreamError) as info:
        await drain(stream)
    error = info.value
    assert (error.type, error.code, error.param) == (
        "invalid_request_error",
        "context_length_exceeded",
        "input",
    )
    assert error.message == "openai: Too long."


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_429_is_retryable(
    upstream: Upstream, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """A 429 keeps its status, code and retry-after, and allows another attempt."""
    fake_openai.enqueue(Behavior(status=429))
    with pytest.raises(UpstreamError) as info:
        await openai_provider(upstream, fake_openai).send(call({"input": "Hi", "stream": stream}))
    error = info.value
    assert (error.status, error.code, error.retryable) == (429, "rate_limit_exceeded", True)
    assert error.headers["retry-after"] == "1"
    assert "Rate limit reached for gpt-4o" in error.message


async def test_stream_of_the_wrong_type_is_a_502(
    upstream: Upstream, fake_openai: FakeOpenAI
) -> None:
    """A streamed request answered with another content type is a 502."""
    fake_openai.enqueue(Behavior(headers={"Content-Type": "application/json"}))
    with pytest.raises(UpstreamError) as info:
        await openai_provider(upstream, fake_openai).send(call({"input": "Hi", "stream": True}))
    assert info.value.status == 502
    assert "expected an event stream" in info.value.message


async def test_count_tokens(upstream: Upstream, fake_openai: FakeOpenAI) -> None:
    """Only the fields the count endpoint takes are sent (the fake refuses others), and its
    `input_tokens` is returned."""
    provider = openai_provider(upstream, fake_openai)
    assert isinstance(provider, CountsTokens)
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}]
    counted = {"input": "Tell me a joke.", "instructions": "Be brief.", "tools": tools}
    body = counted | {
        "store": False,
        "temperature": 0.5,
        "metadata": {"a": "b"},
        "fallbacks": ["x/y"],
    }
    assert await provider.count_tokens(call(body)) == 10 == estimate_tokens(counted)
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/responses/input_tokens"
    assert sent.json == counted | {"model": "gpt-4o"}


async def test_only_openai_serves_responses(upstream: Upstream) -> None:
    """OpenAI-compatible services keep translating: no `responses`, no token count."""
    groq = build(upstream, "groq", {"keys": [{"value": "gsk-test"}]})
    openai = build(upstream, "openai", {"keys": [{"value": "sk-test"}]})
    assert "responses" not in groq.operations
    assert not isinstance(groq, CountsTokens)
    assert "responses" in openai.operations


@pytest.mark.parametrize(
    ("api_version", "path", "query"),
    [
        ("v1", "/openai/v1/responses", {}),
        ("preview", "/openai/v1/responses", {"api-version": "preview"}),
        ("2025-03-01-preview", "/openai/responses", {"api-version": "2025-03-01-preview"}),
        ("2025-04-01-preview", "/openai/responses", {"api-version": "2025-04-01-preview"}),
    ],
)
async def test_azure_urls(
    upstream: Upstream, fake_azure: FakeAzure, api_version: str, path: str, query: dict[str, str]
) -> None:
    """Both Azure styles reach the Responses API with the deployment as `model`, for answers,
    streams and token counts."""
    provider = azure_provider(upstream, fake_azure, api_version)
    assert "responses" in provider.operations
    reply = await provider.send(call({"input": "Hi", "store": False}, "azure"))
    assert isinstance(reply, JSONReply)
    assert Response.model_validate_json(reply.body).model == "gpt-4o-2024-08-06"
    stream = await provider.send(call({"input": "Hi", "stream": True}, "azure"))
    assert isinstance(stream, EventStream)
    assert msgspec.json.decode((await drain(stream))[-1])["type"] == "response.completed"
    assert stream.usage is not None
    assert isinstance(provider, CountsTokens)
    assert await provider.count_tokens(call({"input": "Hi"}, "azure")) == 4
    answered, streamed, counted = fake_azure.requests
    for sent in (answered, streamed):
        assert (sent.path, sent.query, sent.json["model"]) == (path, query, "chat-prod")
    assert (counted.path, counted.query) == (path + "/input_tokens", query)
    assert counted.json == {"input": "Hi", "model": "chat-prod"}
    assert answered.headers["api-key"] == API_KEY


@pytest.mark.parametrize("api_version", ["2024-10-21", "2025-01-01-preview"])
async def test_azure_refuses_older_dated_versions(
    upstream: Upstream, fake_azure: FakeAzure, api_version: str
) -> None:
    """A dated api_version before 2025-03-01-preview is refused with a 400 naming it, before
    anything is sent."""
    provider = azure_provider(upstream, fake_azure, api_version)
    with pytest.raises(UnsupportedCapabilityError) as info:
        await provider.send(call({"input": "Hi"}, "azure"))
    assert info.value.status == 400
    assert f"api_version `{api_version}`" in info.value.message
    assert "2025-03-01-preview" in info.value.message
    assert isinstance(provider, CountsTokens)
    with pytest.raises(UnsupportedCapabilityError):
        await provider.count_tokens(call({"input": "Hi"}, "azure"))
    assert fake_azure.requests == []
    # The gateway serves the Responses API through chat for such a version instead.
    assert "responses" not in provider.operations
    assert "chat_completion" in provider.operations
