"""boto3's ``bedrock-runtime`` client, unchanged, against the gateway's ``/bedrock`` routes:
Converse and ConverseStream served natively by a Bedrock provider (``FakeBedrock`` checks the
gateway's SigV4 signature) and translated to OpenAI and Anthropic, errors as botocore's
exceptions. boto3 is synchronous, so each call runs in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from structlog.testing import capture_logs

from tests.conformance.case_bedrock import bedrock_config
from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.bedrock import BedrockTurn, FakeBedrock
from tests.fakes.gemini import API_KEY as GEMINI_KEY
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
ANTHROPIC_KEY = "sk-ant-fake-native"
MASTER = "sk-gateway-master"
USER = [{"role": "user", "content": [{"text": "Hi"}]}]
WEATHER = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
}


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    server = await FakeBedrock().start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    server = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def gateway(
    make_gateway: MakeGateway,
    bedrock: FakeBedrock,
    fake_openai: FakeOpenAI,
    anthropic: FakeAnthropic,
) -> Gateway:
    return await make_gateway(
        {
            "providers": {
                "bedrock": bedrock_config(bedrock),
                "openai": provider_for(fake_openai),
                "anthropic": {"base_url": anthropic.base_url, "keys": [{"value": ANTHROPIC_KEY}]},
            }
        }
    )


def runtime(gateway: Gateway, api_key: str | None = None) -> BaseClient:
    """boto3's bedrock-runtime client at the gateway, with its own (unchecked) AWS credentials;
    ``api_key``: the gateway key, added as ``x-api-key`` by an event hook."""
    session = boto3.session.Session(
        aws_access_key_id="AKIDCLIENTSIDE000001",
        aws_secret_access_key="client-side-secret",
        region_name="us-east-1",
    )
    client = session.client(
        "bedrock-runtime",
        endpoint_url=str(gateway.client.make_url("/bedrock")),
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    if api_key is not None:

        def add_key(request: Any, **_: Any) -> None:
            request.headers["x-api-key"] = api_key

        client.meta.events.register("before-sign.bedrock-runtime.*", add_key)
    return client


async def converse(client: BaseClient, **kwargs: Any) -> dict[str, Any]:
    got: dict[str, Any] = await asyncio.to_thread(client.converse, **kwargs)
    return got


async def converse_stream(client: BaseClient, **kwargs: Any) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        return list(client.converse_stream(**kwargs)["stream"])

    return await asyncio.to_thread(run)


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e
    )


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [next(iter(e)) for e in events]


async def raises(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as info:
        await asyncio.to_thread(call)
    return info.value


# --- Bedrock behind the route: native ------------------------------------------------------------


async def test_converse_native(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """A Bedrock model id reaches the Bedrock provider with the client's body as sent, re-signed
    by the gateway, and the answer comes back as Bedrock gave it."""
    bedrock.script(Turn(text="Native hello", prompt_tokens=20, completion_tokens=4))
    got = await converse(
        runtime(gateway),
        modelId=CLAUDE,
        messages=USER,
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 64, "temperature": 0.2},
        additionalModelRequestFields={"top_k": 40},
    )
    assert got["output"]["message"]["content"] == [{"text": "Native hello"}]
    assert got["stopReason"] == "end_turn"
    assert got["usage"] == {"inputTokens": 20, "outputTokens": 4, "totalTokens": 24}
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-thruway-provider"] == "bedrock"
    rec = bedrock.requests[-1]
    assert rec.path == f"/model/{CLAUDE}/converse"
    assert rec.json["additionalModelRequestFields"] == {"top_k": 40}
    assert rec.json["system"] == [{"text": "Be brief."}]
    assert rec.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKE")


async def test_converse_stream_native(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """ConverseStream from a Bedrock provider is passed on event by event, with its usage."""
    bedrock.script(Turn(text="Streamed natively", prompt_tokens=9, completion_tokens=3))
    events = await converse_stream(runtime(gateway), modelId=CLAUDE, messages=USER)
    assert kinds(events) == [
        "messageStart",
        *["contentBlockDelta"] * 3,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert streamed_text(events) == "Streamed natively"
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 12
    assert bedrock.requests[-1].path == f"/model/{CLAUDE}/converse-stream"


async def test_native_tool_use_round_trip(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """A tool call and its result travel natively across two turns."""
    call = ToolCallSpec(id="tooluse_1", name="get_weather", arguments='{"city": "Paris"}')
    bedrock.script(Turn(text="", tool_calls=[call]), Turn(text="Sunny in Paris"))
    client = runtime(gateway)
    tools = {"tools": [WEATHER]}
    first = await converse(client, modelId=CLAUDE, messages=USER, toolConfig=tools)
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][0]["toolUse"]
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}
    messages = [*USER, first["output"]["message"], {"role": "user", "content": [result]}]
    second = await converse(client, modelId=CLAUDE, messages=messages, toolConfig=tools)
    assert second["output"]["message"]["content"] == [{"text": "Sunny in Paris"}]


async def test_native_error_keeps_bedrock_exception(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """Bedrock's own ValidationException reaches boto3 as that exception."""
    bedrock.script(Turn(error="invalid", error_message="bad value", error_param="messages"))
    client = runtime(gateway)
    error = await raises(lambda: client.converse(modelId=CLAUDE, messages=USER))
    assert error.response["Error"]["Code"] == "ValidationException"
    assert "bad value" in error.response["Error"]["Message"]
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_native_stream_exception_mid_stream(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """An exception Bedrock sends after the first events reaches boto3 as Bedrock sent it, and
    the log line records the failure."""
    bedrock.script(
        BedrockTurn(
            exception="modelStreamErrorException",
            exception_after=3,
            exception_message="The model stopped responding.",
            gap_s=0.05,  # the exception arrives in a later read than the events before it
        )
    )
    with capture_logs() as logs, pytest.raises(EventStreamError) as info:
        await converse_stream(runtime(gateway), modelId=CLAUDE, messages=USER)
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert info.value.response["Error"]["Message"] == "The model stopped responding."
    (line,) = [e for e in logs if e["event"] == "request"]
    assert line["failures"] == [f"bedrock/{CLAUDE}: 424 api_error mid-stream"]


async def test_native_stream_exception_first_falls_back(
    make_gateway: MakeGateway, bedrock: FakeBedrock, fake_openai: FakeOpenAI
) -> None:
    """An exception before anything reached the client lets a route's fallback serve the
    stream (here OpenAI, translated to ConverseStream)."""
    gateway = await make_gateway(
        {
            "providers": {"bedrock": bedrock_config(bedrock), "openai": provider_for(fake_openai)},
            "routes": {
                "smart": {
                    "targets": [{"model": f"bedrock/{CLAUDE}"}],
                    "fallbacks": ["openai/gpt-4o-mini"],
                }
            },
        }
    )
    bedrock.script(BedrockTurn(exception="throttlingException", exception_after=1))
    fake_openai.enqueue(Behavior(content="fallback answer"))
    events = await converse_stream(runtime(gateway), modelId="smart", messages=USER)
    assert streamed_text(events) == "fallback answer"
    assert len(bedrock.requests) == 1


# --- other providers behind the route: translated ------------------------------------------------


async def test_converse_to_openai(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """``openai/<model>`` (sent percent-encoded by boto3) is served by OpenAI through the
    translation: system, inference settings and tools become the chat request's."""
    fake_openai.enqueue(Behavior(content="From OpenAI", usage=(30, 6), cached_tokens=10))
    got = await converse(
        runtime(gateway),
        modelId="openai/gpt-4o-mini",
        messages=USER,
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 50, "temperature": 0.5, "stopSequences": ["END"]},
        toolConfig={"tools": [WEATHER], "toolChoice": {"auto": {}}},
    )
    assert got["output"]["message"] == {"role": "assistant", "content": [{"text": "From OpenAI"}]}
    assert got["stopReason"] == "end_turn"
    assert got["usage"] == {
        "inputTokens": 20,
        "outputTokens": 6,
        "totalTokens": 36,
        "cacheReadInputTokens": 10,
    }
    assert got["metrics"]["latencyMs"] >= 0
    sent = fake_openai.requests[-1].json
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    assert (sent["max_completion_tokens"], sent["temperature"], sent["stop"]) == (50, 0.5, ["END"])
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "auto"


async def test_converse_stream_to_openai_with_tool_call(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """OpenAI's streamed tool call becomes ConverseStream's toolUse block start, input deltas
    and stop, then messageStop tool_use and the metadata usage."""
    calls = [{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'}]
    fake_openai.enqueue(Behavior(content="", tool_calls=calls, usage=(15, 7)))
    events = await converse_stream(
        runtime(gateway),
        modelId="openai/gpt-4o-mini",
        messages=USER,
        toolConfig={"tools": [WEATHER]},
    )
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert starts == [
        {
            "contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": "call_1", "name": "get_weather"}},
        }
    ]
    arguments = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e
    )
    assert arguments == '{"city":"Oslo"}'
    assert kinds(events)[0] == "messageStart"
    assert kinds(events)[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    assert events[-1]["metadata"]["usage"] == {
        "inputTokens": 15,
        "outputTokens": 7,
        "totalTokens": 22,
    }
    assert fake_openai.requests[-1].json["stream_options"] == {"include_usage": True}


async def test_converse_stream_to_openai_text(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Streamed text arrives as one text block's deltas."""
    fake_openai.enqueue(Behavior(content="Hello in pieces", deltas=["Hello ", "in ", "pieces"]))
    events = await converse_stream(runtime(gateway), modelId="openai/gpt-4o", messages=USER)
    assert streamed_text(events) == "Hello in pieces"
    assert kinds(events) == [
        "messageStart",
        *["contentBlockDelta"] * 3,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]


async def test_converse_to_anthropic_with_thinking(
    gateway: Gateway, anthropic: FakeAnthropic
) -> None:
    """Anthropic's thinking comes back as a reasoningContent block with its signature, and a
    Claude thinking budget becomes a reasoning effort."""
    anthropic.script(
        Turn(text="Done thinking", reasoning="Let me see", reasoning_signature="sig-9")
    )
    got = await converse(
        runtime(gateway),
        modelId="anthropic/claude-sonnet-4-5",
        messages=USER,
        inferenceConfig={"maxTokens": 9000},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 4096}},
    )
    content = got["output"]["message"]["content"]
    assert content[0] == {
        "reasoningContent": {"reasoningText": {"text": "Let me see", "signature": "sig-9"}}
    }
    assert content[1] == {"text": "Done thinking"}
    assert anthropic.requests[-1].json["thinking"]["type"] == "enabled"


async def test_converse_stream_to_anthropic_thinking(
    gateway: Gateway, anthropic: FakeAnthropic
) -> None:
    """Streamed thinking is a reasoningContent block: text deltas, then the signature."""
    anthropic.script(Turn(text="Answer", reasoning="Pondering", reasoning_signature="sig-7"))
    events = await converse_stream(
        runtime(gateway),
        modelId="anthropic/claude-sonnet-4-5",
        messages=USER,
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}},
    )
    reasoning = [
        e["contentBlockDelta"]["delta"]["reasoningContent"]
        for e in events
        if "contentBlockDelta" in e and "reasoningContent" in e["contentBlockDelta"]["delta"]
    ]
    assert "".join(r.get("text", "") for r in reasoning) == "Pondering"
    assert reasoning[-1] == {"signature": "sig-7"}
    assert streamed_text(events) == "Answer"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 5


async def test_tool_result_turn_to_anthropic(gateway: Gateway, anthropic: FakeAnthropic) -> None:
    """A Converse tool-use history (toolUse, then toolResult) reaches Anthropic as its own
    tool_use and tool_result blocks."""
    assistant = {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Rome"}}}
        ],
    }
    result = {"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 21}}]}}
    messages = [*USER, assistant, {"role": "user", "content": [result, {"text": "And now?"}]}]
    await converse(
        runtime(gateway),
        modelId="anthropic/claude-sonnet-4-5",
        messages=messages,
        toolConfig={"tools": [WEATHER]},
    )
    sent = anthropic.requests[-1].json["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use"
    assert sent[1]["content"][0]["input"] == {"city": "Rome"}
    blocks = sent[2]["content"]
    assert blocks[0]["type"] == "tool_result"
    assert blocks[0]["tool_use_id"] == "t1"
    assert blocks[-1] == {"type": "text", "text": "And now?"}


# --- errors and keys ---------------------------------------------------------------------------


async def test_upstream_throttling_is_throttling_exception(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An OpenAI 429 reaches boto3 as ThrottlingException, with the x-amzn-ErrorType header."""
    fake_openai.enqueue(Behavior(status=429))
    client = runtime(gateway)
    error = await raises(lambda: client.converse(modelId="openai/gpt-4o", messages=USER))
    assert error.response["Error"]["Code"] == "ThrottlingException"
    headers = error.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"] == "ThrottlingException"


async def test_unknown_provider_is_resource_not_found(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Without a Bedrock provider, a bare model id is ResourceNotFoundException naming the
    configured providers."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    client = runtime(gateway)
    error = await raises(lambda: client.converse(modelId=CLAUDE, messages=USER))
    assert error.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "Configured providers: openai" in error.response["Error"]["Message"]


async def test_untranslatable_field_is_validation_exception(gateway: Gateway) -> None:
    """A Bedrock-only field sent to another provider is a ValidationException naming it."""
    client = runtime(gateway)
    error = await raises(
        lambda: client.converse(
            modelId="openai/gpt-4o",
            messages=USER,
            guardrailConfig={"guardrailIdentifier": "g1", "guardrailVersion": "1"},
        )
    )
    assert error.response["Error"]["Code"] == "ValidationException"
    assert "guardrailConfig" in error.response["Error"]["Message"]


async def test_invalid_json_body_is_validation_exception(gateway: Gateway) -> None:
    """A body that is not JSON is a 400 in Bedrock's shape."""
    resp = await gateway.client.post(f"/bedrock/model/{CLAUDE}/converse", data=b"{not json")
    assert resp.status == 400
    assert resp.headers["x-amzn-ErrorType"] == "ValidationException"
    body = await resp.json()
    assert body["__type"] == "ValidationException"
    assert "not valid JSON" in body["message"]


async def test_stream_cut_mid_way_ends_with_exception(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A translated stream cut after its first events ends with an exception message."""
    fake_openai.enqueue(Behavior(content="abcdefghij", deltas=list("abcdefghij"), cut_after=3))
    with pytest.raises(EventStreamError) as info:
        await converse_stream(runtime(gateway), modelId="openai/gpt-4o", messages=USER)
    assert info.value.response["Error"]["Code"] == "internalServerException"


async def test_gateway_key_as_x_api_key(make_gateway: MakeGateway, bedrock: FakeBedrock) -> None:
    """With a master key, boto3's SigV4 Authorization header is not taken for a key: the call
    is refused as AccessDeniedException, and passes with the key added as x-api-key."""
    gateway = await make_gateway(
        {"auth": {"master_key": MASTER}, "providers": {"bedrock": bedrock_config(bedrock)}}
    )
    client = runtime(gateway)
    error = await raises(lambda: client.converse(modelId=CLAUDE, messages=USER))
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    got = await converse(runtime(gateway, api_key=MASTER), modelId=CLAUDE, messages=USER)
    assert got["output"]["message"]["content"] == [{"text": "Hello from the fake!"}]
    assert "x-api-key" not in {k.lower() for k in bedrock.requests[-1].headers}


# --- more providers, model ids, bodies only Bedrock takes, disconnects ---------------------------


async def test_converse_and_stream_to_gemini(make_gateway: MakeGateway) -> None:
    """Gemini behind the route answers Converse and ConverseStream through the translation."""
    async with FakeGemini() as gemini:
        config = {"base_url": gemini.base_url, "keys": [{"value": GEMINI_KEY}]}
        gateway = await make_gateway({"providers": {"gemini": config}})
        gemini.script(Turn(text="From Gemini"), Turn(text="Gemini streams"))
        client = runtime(gateway)
        got = await converse(client, modelId="gemini/gemini-2.5-flash", messages=USER)
        assert got["output"]["message"]["content"] == [{"text": "From Gemini"}]
        events = await converse_stream(client, modelId="gemini/gemini-2.5-flash", messages=USER)
        assert streamed_text(events) == "Gemini streams"
        assert events[-1]["metadata"]["usage"]["totalTokens"] == 17


async def test_arn_model_id_reaches_bedrock(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """An inference-profile ARN (its ``:`` and ``/`` percent-encoded by boto3) is a Bedrock
    model id, sent on encoded the same way."""
    await converse(runtime(gateway), modelId=PROFILE_ARN, messages=USER)
    assert bedrock.requests[-1].match["model_id"] == PROFILE_ARN
    assert bedrock.raw_paths[-1] == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile"
        "%2Fa1b2c3d4e5f6/converse"
    )


async def test_s3_source_native_only(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """An S3 image source, which the translation does not model, reaches Bedrock as sent and
    is a ValidationException naming the field for another provider."""
    image = {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/cat.png"}}}}
    messages = [{"role": "user", "content": [image, {"text": "What is it?"}]}]
    client = runtime(gateway)
    await converse(client, modelId=CLAUDE, messages=messages)
    assert bedrock.requests[-1].json["messages"][0]["content"][0] == image
    error = await raises(lambda: client.converse(modelId="openai/gpt-4o", messages=messages))
    assert error.response["Error"]["Code"] == "ValidationException"
    assert "messages[0].content[0].image.source" in error.response["Error"]["Message"]


async def test_client_disconnect_mid_stream(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A client leaving a translated stream drops the upstream and is logged as 499."""
    fake_openai.enqueue(Behavior(deltas=[str(i % 10) * 2000 for i in range(3000)]))
    body = {"messages": USER}
    with capture_logs() as logs:
        resp = await gateway.client.post(
            "/bedrock/model/openai%2Fgpt-4o/converse-stream", json=body
        )
        assert resp.headers["Content-Type"] == "application/vnd.amazon.eventstream"
        await resp.content.readexactly(16)
        resp.close()
        await asyncio.wait_for(fake_openai.disconnected.wait(), timeout=2)
        for _ in range(50):
            if any(entry["event"] == "request" for entry in logs):
                break
            await asyncio.sleep(0.02)
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert (line["status"], line["error_type"]) == (499, "client_disconnected")


async def test_native_stream_usage_is_accounted(gateway: Gateway, bedrock: FakeBedrock) -> None:
    """The usage of a stream passed on byte for byte is read from its metadata event for the
    canonical log line."""
    bedrock.script(Turn(prompt_tokens=30, completion_tokens=8, cached_tokens=10))
    with capture_logs() as logs:
        await converse_stream(runtime(gateway), modelId=CLAUDE, messages=USER)
    (line,) = [e for e in logs if e["event"] == "request"]
    assert (line["request_type"], line["provider"], line["stream"]) == (
        "bedrock_converse",
        "bedrock",
        True,
    )
    assert (line["input_tokens"], line["output_tokens"], line["cached_tokens"]) == (30, 8, 10)
