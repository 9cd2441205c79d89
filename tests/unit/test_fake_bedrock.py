"""Self-tests of the fake Bedrock upstream, driven by botocore itself (through boto3).

If the real AWS SDK signs requests the fake accepts, parses the fake's JSON, event streams and
errors, and gets the fake's refusals for wrong signatures, the fake speaks Bedrock's wire format
and checks SigV4 as Bedrock does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from tests.fakes.bedrock import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    BedrockTurn,
    FakeBedrock,
    encode_message,
)
from tests.fakes.script import ToolCallSpec, Turn

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    "us.anthropic.claude-3-5-haiku-20241022-v1:0"
)
USER = [{"role": "user", "content": [{"text": "Hi"}]}]


_clients: list[Any] = []


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    server = await FakeBedrock().start()
    try:
        yield server
    finally:
        while _clients:
            _clients.pop().close()
        await server.close()


def client(fake: FakeBedrock, *, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> Any:
    """A boto3 Bedrock Runtime client of the fake, closed with the fake."""
    sdk = boto3.client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=fake.root_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )
    _clients.append(sdk)
    return sdk


async def call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, **kwargs)


def test_encoded_messages_decode_with_botocore() -> None:
    """A message built by the fake's encoder decodes with botocore, split at any byte."""
    frame = encode_message({":event-type": "messageStart", ":message-type": "event"}, b'{"a":1}')
    buffer = EventStreamBuffer()
    buffer.add_data(frame[:7])
    assert list(buffer) == []
    buffer.add_data(frame[7:] + frame)
    got = list(buffer)
    assert [m.payload for m in got] == [b'{"a":1}', b'{"a":1}']
    assert got[0].headers == {":event-type": "messageStart", ":message-type": "event"}


async def test_converse_signed_by_botocore(fake: FakeBedrock) -> None:
    """botocore's signature is accepted, and its parser reads the fake's answer and usage."""
    fake.script(Turn(text="Hi there", prompt_tokens=30, cached_tokens=20, cache_creation_tokens=4))
    got = await call(client(fake).converse, modelId=CLAUDE, messages=USER)
    assert got["output"]["message"]["content"] == [{"text": "Hi there"}]
    assert got["stopReason"] == "end_turn"
    assert got["usage"] == {
        "inputTokens": 6,
        "outputTokens": 5,
        "totalTokens": 35,
        "cacheReadInputTokens": 20,
        "cacheWriteInputTokens": 4,
    }
    assert fake.requests[-1].path == f"/model/{CLAUDE}/converse"


async def test_arn_model_ids_are_signed_encoded(fake: FakeBedrock) -> None:
    """An inference-profile ARN (``:`` and ``/`` percent-encoded in the path) passes the check."""
    await call(client(fake).converse, modelId=PROFILE_ARN, messages=USER)
    assert fake.requests[-1].match["model_id"] == PROFILE_ARN


async def test_converse_stream_events(fake: FakeBedrock) -> None:
    """botocore decodes the fake's event stream: text, a tool call in pieces, stop, usage."""
    call_spec = ToolCallSpec("tooluse_1", "get_weather", '{"city": "Paris"}')
    fake.script(Turn(text="Let me check.", tool_calls=[call_spec], reasoning="Think."))
    got = await call(client(fake).converse_stream, modelId=CLAUDE, messages=USER)
    events = list(got["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart"
    assert names[-2:] == ["messageStop", "metadata"]
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert starts == [
        {
            "contentBlockIndex": 2,
            "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
        }
    ]
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    assert len(pieces) == 4
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    signature = [
        e["contentBlockDelta"]["delta"]["reasoningContent"]
        for e in events
        if "signature"
        in e.get("contentBlockDelta", {}).get("delta", {}).get("reasoningContent", {})
    ]
    assert signature == [{"signature": "sig-fake-0001"}]
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 17


async def test_stream_exception_message(fake: FakeBedrock) -> None:
    """An exception message in the stream is raised by botocore with its exception type."""
    fake.script(BedrockTurn(exception="throttlingException", exception_after=2))
    got = await call(client(fake).converse_stream, modelId=CLAUDE, messages=USER)
    with pytest.raises(EventStreamError) as info:
        list(got["stream"])
    got["stream"].close()
    assert info.value.response["Error"]["Code"] == "throttlingException"
    assert "Too many tokens" in info.value.response["Error"]["Message"]


async def test_scripted_errors_parse_as_bedrock_exceptions(fake: FakeBedrock) -> None:
    """Each scripted error is the exception botocore's model names, with its status."""
    expected = {
        "rate_limit": ("ThrottlingException", 429),
        "overloaded": ("ServiceUnavailableException", 503),
        "server": ("InternalServerException", 500),
        "auth": ("UnrecognizedClientException", 403),
        "invalid": ("ValidationException", 400),
    }
    sdk = client(fake)
    for kind, (code, status) in expected.items():
        fake.script(Turn(error=kind))  # type: ignore[arg-type]
        with pytest.raises(ClientError) as info:
            await call(sdk.converse, modelId=CLAUDE, messages=USER)
        assert info.value.response["Error"]["Code"] == code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


async def test_wrong_signatures_are_refused(fake: FakeBedrock) -> None:
    """A wrong secret is InvalidSignatureException, an unknown key UnrecognizedClientException."""
    with pytest.raises(ClientError) as info:
        await call(client(fake, secret="wrong").converse, modelId=CLAUDE, messages=USER)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as info:
        await call(client(fake, key="AKIAUNKNOWN").converse, modelId=CLAUDE, messages=USER)
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"


async def test_conversation_rules(fake: FakeBedrock) -> None:
    """Like Bedrock, the fake refuses a conversation that does not alternate roles."""
    twice = [*USER, *USER]
    with pytest.raises(ClientError) as info:
        await call(client(fake).converse, modelId=CLAUDE, messages=twice)
    assert "alternate" in info.value.response["Error"]["Message"]


async def test_invoke_model_embeddings(fake: FakeBedrock) -> None:
    """Titan and Cohere embedding bodies are answered in their own shapes."""
    sdk = client(fake)
    got = await call(
        sdk.invoke_model,
        modelId="amazon.titan-embed-text-v2:0",
        body=json.dumps({"inputText": "hello world", "dimensions": 256}),
    )
    titan = json.loads(got["body"].read())
    assert (len(titan["embedding"]), titan["inputTextTokenCount"]) == (256, 2)
    got = await call(
        sdk.invoke_model,
        modelId="cohere.embed-english-v3",
        body=json.dumps({"texts": ["a", "b c"], "input_type": "search_document"}),
    )
    cohere = json.loads(got["body"].read())
    assert len(cohere["embeddings"]) == 2
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "3"


async def test_count_tokens(fake: FakeBedrock) -> None:
    """botocore's CountTokens (signed, its input a union) gets the fake's count; a model
    Bedrock cannot count for, or an input that is neither member of the union, is refused."""
    sdk = client(fake)
    converse = {"messages": USER, "system": [{"text": "Be brief."}]}
    got = await call(sdk.count_tokens, modelId=CLAUDE, input={"converse": converse})
    assert got["inputTokens"] == 1 + 2 + 3
    assert fake.requests[-1].path == f"/model/{CLAUDE}/count-tokens"
    with pytest.raises(ClientError) as info:
        await call(sdk.count_tokens, modelId="amazon.nova-pro-v1:0", input={"converse": converse})
    assert info.value.response["Error"]["Code"] == "ValidationException"
    unchecked = boto3.client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=fake.root_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
    )
    _clients.append(unchecked)
    with pytest.raises(ClientError) as info:
        await call(unchecked.count_tokens, modelId=CLAUDE, input={})
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "input" in info.value.response["Error"]["Message"]
