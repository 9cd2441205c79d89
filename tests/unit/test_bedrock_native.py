"""The ``/bedrock`` routes' pure translation: a client's Converse request as the unified chat
request, unified answers as Converse responses and ConverseStream messages (checked with
botocore's own event-stream decoder), and gateway errors as Bedrock's exceptions."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from botocore.eventstream import EventStreamBuffer

from providers.bedrock.eventstream import event_message, exception_message
from providers.bedrock.inbound import ConverseInput, to_chat
from providers.bedrock.outbound import (
    StreamWriter,
    converse_reply,
    error_body,
    error_name,
    stream_exception,
)
from proxy.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    UpstreamTimeoutError,
)
from proxy.schemas.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    FunctionCall,
    ThinkingBlock,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from proxy.schemas.common import PromptTokensDetails, Usage

_converse = msgspec.json.Decoder(ConverseInput).decode
_encode = msgspec.json.encode


def request(**body: Any) -> ConverseInput:
    return _converse(_encode({"messages": [{"role": "user", "content": [{"text": "Hi"}]}], **body}))


def decoded(data: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Messages as botocore reads them: (headers, JSON payload)."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, msgspec.json.decode(m.payload)) for m in buffer]


def chunk(
    delta: Delta, finish: str | None = None, usage: Usage | None = None
) -> ChatCompletionChunk:
    choices = [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
    got = ChatCompletionChunk(id="c", created=1, model="m", choices=choices)
    if usage is not None:
        got = ChatCompletionChunk(id="c", created=1, model="m", choices=[], usage=usage)
    return got


# --- the event-stream encoder ------------------------------------------------------------------


def test_event_message_decodes_with_botocore() -> None:
    """An encoded event passes botocore's length and CRC checks with its three headers."""
    [(headers, payload)] = decoded(event_message("messageStart", b'{"role":"assistant"}'))
    assert headers == {
        ":event-type": "messageStart",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert payload == {"role": "assistant"}


def test_exception_message_decodes_with_botocore() -> None:
    """An exception message names the ConverseStream member in ``:exception-type``."""
    [(headers, payload)] = decoded(exception_message("throttlingException", b'{"message":"x"}'))
    assert headers[":message-type"] == "exception"
    assert headers[":exception-type"] == "throttlingException"
    assert payload == {"message": "x"}


# --- Converse request -> unified -------------------------------------------------------------


def test_to_chat_maps_turns_tools_and_settings() -> None:
    """System, cache points, tool history, tools, choice, settings and output format map."""
    req = request(
        system=[{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        messages=[
            {"role": "user", "content": [{"text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "s1"}}},
                    {"toolUse": {"toolUseId": "t1", "name": "w", "input": {"city": "Oslo"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"text": "thanks"},
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "cold"}]}},
                ],
            },
        ],
        toolConfig={
            "tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}],
            "toolChoice": {"tool": {"name": "w"}},
        },
        inferenceConfig={"maxTokens": 10, "topP": 0.9},
        outputConfig={
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": '{"type":"object"}', "name": "out"}},
            }
        },
    )
    chat = to_chat(req, model="openai/gpt-4o", provider="openai", stream=False)
    body = msgspec.json.decode(_encode(chat))
    assert body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    }
    assistant = chat.messages[2]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.tool_calls == [
        ToolCall(id="t1", function=FunctionCall(name="w", arguments='{"city":"Oslo"}'))
    ]
    assert assistant.thinking_blocks == [ThinkingBlock(thinking="hm", signature="s1")]
    # The tool result comes right after the call; the user's text after it.
    assert isinstance(chat.messages[3], ToolMessage)
    assert chat.messages[3].content == "cold"
    assert isinstance(chat.messages[4], UserMessage)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert (body["max_completion_tokens"], body["top_p"]) == (10, 0.9)
    assert body["response_format"]["json_schema"] == {
        "name": "out",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert "stream" not in body


def test_to_chat_images_and_documents_become_data_urls() -> None:
    """Inline image and document bytes become data URLs with their media types."""
    req = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"image": {"format": "png", "source": {"bytes": "iVBORw=="}}},
                    {"document": {"format": "pdf", "name": "spec", "source": {"bytes": "JVBE"}}},
                ],
            }
        ]
    )
    body = msgspec.json.decode(_encode(to_chat(req, model="m/x", provider="m", stream=True)))
    parts = body["messages"][0]["content"]
    assert parts[0]["image_url"]["url"] == "data:image/png;base64,iVBORw=="
    assert parts[1]["file"] == {
        "file_data": "data:application/pdf;base64,JVBE",
        "filename": "spec.pdf",
    }
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"}},
            "guardrailConfig",
        ),
        ({"promptVariables": {"x": {"text": "y"}}}, "promptVariables"),
        ({"additionalModelRequestFields": {"top_k": 5}}, "additionalModelRequestFields"),
    ],
)
def test_to_chat_refuses_bedrock_only_fields(body: dict[str, Any], param: str) -> None:
    """What only Bedrock can honour is a 400 naming the field."""
    with pytest.raises(InvalidRequestError) as info:
        to_chat(request(**body), model="openai/gpt-4o", provider="openai", stream=False)
    assert info.value.param == param


def test_thinking_budget_becomes_effort() -> None:
    """A Claude thinking budget maps to the nearest reasoning effort."""
    fields = {"thinking": {"type": "enabled", "budget_tokens": 16000}}
    chat = to_chat(
        request(additionalModelRequestFields=fields), model="a/b", provider="a", stream=False
    )
    assert chat.reasoning_effort == "high"


# --- unified -> Converse -----------------------------------------------------------------------


def test_converse_reply_from_completion() -> None:
    """Reasoning, text and tool calls become content blocks; usage leaves out cache reads."""
    message = ChatMessage(
        content="Calling",
        tool_calls=[ToolCall(id="c1", function=FunctionCall("w", '{"a":1}'))],
        thinking_blocks=[ThinkingBlock(thinking="t", signature="s")],
    )
    usage = Usage(10, 2, 12, prompt_tokens_details=PromptTokensDetails(cached_tokens=4))
    completion = ChatCompletion(
        id="x",
        created=1,
        model="m",
        choices=[Choice(index=0, message=message, finish_reason="tool_calls")],
        usage=usage,
    )
    got = msgspec.json.decode(converse_reply(completion, latency_ms=12.4))
    assert got == {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "t", "signature": "s"}}},
                    {"text": "Calling"},
                    {"toolUse": {"toolUseId": "c1", "name": "w", "input": {"a": 1}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 6,
            "outputTokens": 2,
            "totalTokens": 12,
            "cacheReadInputTokens": 4,
        },
        "metrics": {"latencyMs": 12},
    }


def test_stream_writer_orders_blocks() -> None:
    """Reasoning, its signature, text and a tool call become blocks 0, 1, 2 in Converse's
    order, then messageStop and metadata."""
    writer = StreamWriter()
    out: list[bytes] = []
    out += writer.feed(chunk(Delta(role="assistant", reasoning_content="think")))
    out += writer.feed(
        chunk(Delta(thinking_blocks=[ThinkingBlock(thinking="think", signature="s")]))
    )
    out += writer.feed(chunk(Delta(content="Hi")))
    call = DeltaToolCall(index=0, id="c1", function=DeltaFunction(name="w", arguments='{"a"'))
    out += writer.feed(chunk(Delta(tool_calls=[call])))
    more = DeltaToolCall(index=0, function=DeltaFunction(arguments=":1}"))
    out += writer.feed(chunk(Delta(tool_calls=[more]), finish="tool_calls"))
    out += writer.feed(chunk(Delta(), usage=Usage(3, 4, 7)))
    out += writer.finish(latency_ms=5)
    events = [(h[":event-type"], p) for h, p in decoded(b"".join(out))]
    assert events == [
        ("messageStart", {"role": "assistant"}),
        (
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think"}}},
        ),
        (
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}},
        ),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hi"}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        (
            "contentBlockStart",
            {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "c1", "name": "w"}}},
        ),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a"'}}}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ":1}"}}}),
        ("contentBlockStop", {"contentBlockIndex": 2}),
        ("messageStop", {"stopReason": "tool_use"}),
        (
            "metadata",
            {
                "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
                "metrics": {"latencyMs": 5},
            },
        ),
    ]


def test_stream_writer_finish_without_stop() -> None:
    """A stream that never said why it stopped still ends with messageStop and metadata."""
    writer = StreamWriter()
    events = [h[":event-type"] for h, _ in decoded(b"".join(writer.finish(latency_ms=1)))]
    assert events == ["messageStart", "messageStop", "metadata"]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (InvalidRequestError("bad"), "ValidationException"),
        (AuthenticationError("no key"), "AccessDeniedException"),
        (UpstreamError("slow down", status=429, provider="p"), "ThrottlingException"),
        (
            UpstreamError("x", status=424, provider="p", code="ModelErrorException"),
            "ModelErrorException",
        ),
        (UpstreamTimeoutError("late"), "InternalServerException"),
        (UpstreamError("down", status=503, provider="p"), "ServiceUnavailableException"),
        (GatewayError("oops"), "InternalServerException"),
    ],
)
def test_error_names(error: GatewayError, name: str) -> None:
    """Each gateway error is the Bedrock exception of its status (or its own Bedrock name)."""
    assert error_name(error) == name
    assert msgspec.json.decode(error_body(error)) == {"message": error.message, "__type": name}


def test_stream_exception_member() -> None:
    """Mid-stream, an error is the ConverseStream member of its exception (or an internal one)."""
    [(headers, payload)] = decoded(stream_exception(UpstreamError("x", status=429, provider="p")))
    assert headers[":exception-type"] == "throttlingException"
    assert payload == {"message": "x"}
    [(headers, _)] = decoded(stream_exception(AuthenticationError("no")))
    assert headers[":exception-type"] == "internalServerException"
