"""Bedrock's pure translation, checked against golden fixtures (``tests/fixtures/bedrock/``).

- ``chat_request.json`` -> ``converse_request.json``: a unified request as the Converse body;
- ``converse_response.json`` -> ``chat_response.json``: a Converse answer as a chat completion;
- ``converse_stream.json`` (the events of a ConverseStream answer, encoded here as real
  event-stream messages) -> ``converse_stream.chunks.jsonl``: the exact chunk bytes, one a line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import msgspec
import pytest
from botocore.validate import ParamValidator

from providers.bedrock.errors import error_from_body, map_error
from providers.bedrock.response import JSON_TOOL, finish_reason, from_converse
from providers.bedrock.stream import BedrockStream, Frame, FrameReader
from providers.bedrock.translate import model_family, to_converse
from providers.bedrock.wire import ConverseResponse
from proxy.errors import InvalidRequestError, UpstreamConnectionError, UpstreamError
from proxy.schemas.chat import ChatRequest
from tests.fakes.bedrock import encode_message

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bedrock"
MODEL = "anthropic.claude-sonnet-4-20250514-v1:0"
CREATED = 1735689600
_SHAPES = botocore.session.get_session().get_service_model("bedrock-runtime")


def request(**fields: Any) -> ChatRequest:
    doc = {"model": "bedrock/m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return msgspec.convert(doc, ChatRequest)


def native(req: ChatRequest, model: str = MODEL) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(msgspec.json.encode(to_converse(req, model=model)))
    return got


def event(name: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(payload).encode())


def translate(data: bytes, step: int) -> list[bytes]:
    """The chunk bytes of a stream answer delivered ``step`` bytes at a time."""
    reader = FrameReader("bedrock")
    stream = BedrockStream(MODEL, "req-fixture", provider="bedrock", scrub=str, created=CREATED)
    chunks = []
    for i in range(0, len(data), step):
        for frame in reader.feed(data[i : i + step]):
            chunks += stream.feed(frame)
    chunks += stream.finish()
    usage = stream.usage_chunk()
    assert usage is not None
    return [msgspec.json.encode(c) for c in [*chunks, usage]]


def test_request_golden() -> None:
    """The unified request becomes exactly the Converse body, valid for botocore's model."""
    req = msgspec.json.decode((FIXTURES / "chat_request.json").read_bytes(), type=ChatRequest)
    got = native(req)
    assert got == json.loads((FIXTURES / "converse_request.json").read_text())
    shape = _SHAPES.operation_model("Converse").input_shape
    report = ParamValidator().validate({**got, "modelId": MODEL}, shape)
    assert not report.has_errors(), report.generate_report()


def test_response_golden() -> None:
    """A Converse answer with reasoning, text and two tool calls becomes the chat completion."""
    body = (FIXTURES / "converse_response.json").read_bytes()
    resp = msgspec.json.decode(body, type=ConverseResponse)
    got = from_converse(resp, model=MODEL, id="chatcmpl-fixture", created=CREATED)
    assert json.loads(msgspec.json.encode(got)) == json.loads(
        (FIXTURES / "chat_response.json").read_text()
    )


@pytest.mark.parametrize("step", [1, 7, 100_000])
def test_stream_golden(step: int) -> None:
    """Event-stream messages, however the bytes are split, become exactly the expected chunks."""
    events = json.loads((FIXTURES / "converse_stream.json").read_text())
    data = b"".join(event(name, payload) for name, payload in events)
    expected = (FIXTURES / "converse_stream.chunks.jsonl").read_bytes().splitlines()
    assert translate(data, step) == expected


def test_stream_without_metadata_is_cut() -> None:
    """A stream that ends before Bedrock's closing ``metadata`` event is an error."""
    stream = BedrockStream(MODEL, "r", provider="bedrock", scrub=str)
    stream.feed(Frame("event", "messageStop", b'{"stopReason":"end_turn"}'))
    with pytest.raises(UpstreamConnectionError):
        stream.finish()


def test_corrupt_stream_is_a_502() -> None:
    """A message whose CRC does not match is reported as a corrupt upstream stream."""
    frame = bytearray(event("messageStart", {"role": "assistant"}))
    frame[-1] ^= 0xFF
    with pytest.raises(UpstreamError) as info:
        FrameReader("bedrock").feed(bytes(frame))
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("exception", "status", "type_", "retryable"),
    [
        ("throttlingException", 429, "rate_limit_error", True),
        ("serviceUnavailableException", 503, "overloaded_error", True),
        ("internalServerException", 500, "api_error", True),
        ("validationException", 400, "invalid_request_error", False),
        ("modelStreamErrorException", 424, "api_error", False),
    ],
)
def test_stream_exception_messages(
    exception: str, status: int, type_: str, retryable: bool
) -> None:
    """An exception message inside the stream raises the mapped error from ``feed``."""
    stream = BedrockStream(MODEL, "r", provider="bedrock", scrub=str)
    frame = Frame("exception", exception, b'{"message":"Model said no."}')
    with pytest.raises(UpstreamError) as info:
        stream.feed(frame)
    err = info.value
    assert (err.status, err.type, err.retryable) == (status, type_, retryable)
    assert err.message.startswith("bedrock: Model said no.")


def test_generic_error_messages() -> None:
    """An ``error`` message (code and text in headers) is a 502 with Bedrock's text."""
    headers = {
        ":message-type": "error",
        ":error-code": "InternalFailure",
        ":error-message": "Boom.",
    }
    data = encode_message(headers, b"")
    (frame,) = FrameReader("bedrock").feed(data)
    with pytest.raises(UpstreamError) as info:
        BedrockStream(MODEL, "r", provider="bedrock", scrub=str).feed(frame)
    assert (info.value.status, info.value.code, info.value.message) == (
        502,
        "InternalFailure",
        "bedrock: Boom.",
    )


def test_model_errors_retry_only_on_the_model_side() -> None:
    """ModelStreamErrorException may be retried when the model's endpoint answered 5xx."""
    err = error_from_body(
        "modelStreamErrorException",
        502,
        b'{"message":"overloaded","originalStatusCode":503}',
        provider="bedrock",
        scrub=str,
    )
    assert (err.status, err.retryable) == (424, True)


@pytest.mark.parametrize(
    ("name", "status", "type_", "retryable"),
    [
        ("ValidationException", 400, "invalid_request_error", False),
        ("AccessDeniedException", 403, "permission_error", False),
        ("UnrecognizedClientException", 403, "authentication_error", False),
        ("InvalidSignatureException", 403, "authentication_error", False),
        ("ResourceNotFoundException", 404, "not_found_error", False),
        ("ModelTimeoutException", 408, "timeout_error", True),
        ("ModelErrorException", 424, "api_error", False),
        ("ThrottlingException", 429, "rate_limit_error", True),
        ("ModelNotReadyException", 429, "overloaded_error", True),
        ("ServiceQuotaExceededException", 400, "rate_limit_error", True),
        ("InternalServerException", 500, "api_error", True),
        ("ServiceUnavailableException", 503, "overloaded_error", True),
    ],
)
def test_http_errors(name: str, status: int, type_: str, retryable: bool) -> None:
    """Each exception named in ``x-amzn-ErrorType`` keeps its status and gets its type."""
    headers = {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    err = map_error(status, b'{"message":"Nope."}', headers, provider="bedrock", scrub=str)
    assert (err.status, err.type, err.retryable, err.code) == (status, type_, retryable, name)
    assert err.message == f"bedrock: Nope. ({name})"


def test_error_without_header() -> None:
    """Without the header, botocore's other places for the name are read (``__type``), and a
    capitalised ``Message`` is the message."""
    body = b'{"__type":"com.amazon.bedrock#ThrottlingException","Message":"Slow down."}'
    err = map_error(400, body, {}, provider="bedrock", scrub=str)
    assert (err.status, err.code, err.message) == (
        429,
        "ThrottlingException",
        "bedrock: Slow down. (ThrottlingException)",
    )
    err = map_error(403, b'{"Message":"Authentication failed."}', {}, provider="bedrock", scrub=str)
    assert (err.status, err.type) == (403, "permission_error")


def test_stop_reasons() -> None:
    """Bedrock's stop reasons map onto OpenAI's four finish reasons."""
    assert [
        finish_reason(r)
        for r in (
            "end_turn",
            "stop_sequence",
            "tool_use",
            "max_tokens",
            "model_context_window_exceeded",
            "guardrail_intervened",
            "content_filtered",
            "malformed_tool_use",
        )
    ] == [
        "stop",
        "stop",
        "tool_calls",
        "length",
        "length",
        "content_filter",
        "content_filter",
        "stop",
    ]
    assert finish_reason("tool_use", json_answer=True) == "stop"


def test_json_object_is_a_forced_tool_answered_as_text() -> None:
    """``json_object`` asks for the reserved tool, whose input streams back as text (stop)."""
    got = native(request(response_format={"type": "json_object"}))
    assert got["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": JSON_TOOL,
                    "inputSchema": {"json": {"type": "object"}},
                    "description": "Give the complete answer as a JSON object.",
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    stream = BedrockStream(MODEL, "r", provider="bedrock", scrub=str)
    start = {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": JSON_TOOL}}}
    delta = {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"a": 1}'}}}
    chunks = [
        *stream.feed(Frame("event", "contentBlockStart", json.dumps(start).encode())),
        *stream.feed(Frame("event", "contentBlockDelta", json.dumps(delta).encode())),
        *stream.feed(Frame("event", "messageStop", b'{"stopReason":"tool_use"}')),
    ]
    assert [(c.choices[0].delta.content, c.choices[0].finish_reason) for c in chunks] == [
        ('{"a": 1}', None),
        (msgspec.UNSET, "stop"),
    ]


def test_tool_choice_none() -> None:
    """``none`` leaves the tools out, unless the history has tool blocks (Bedrock then needs
    ``toolConfig``): the tools go without a ``toolChoice``."""
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert "toolConfig" not in native(request(tools=tools, tool_choice="none"))
    history = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    got = native(request(messages=history, tools=tools, tool_choice="none"))
    assert got["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "f",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            }
        ]
    }
    # Tool history and no tools at all: what the history used is declared.
    assert native(request(messages=history))["toolConfig"]["tools"][0]["toolSpec"]["name"] == "f"


def test_reasoning_budgets() -> None:
    """reasoning_effort is Claude's thinking budget (kept under max_tokens) or Nova's level."""
    got = native(request(reasoning_effort="low"))
    assert got["additionalModelRequestFields"] == {
        "thinking": {"budget_tokens": 2048, "type": "enabled"}
    }
    assert got["inferenceConfig"] == {"maxTokens": 2048 + 4096}
    got = native(request(reasoning_effort="high", max_tokens=3000))
    assert got["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 2999
    with pytest.raises(InvalidRequestError) as info:
        native(request(reasoning_effort="high", max_tokens=1000))
    assert info.value.param == "max_tokens"
    got = native(request(reasoning_effort="medium"), model="us.amazon.nova-2-lite-v1:0")
    assert got["additionalModelRequestFields"] == {
        "reasoningConfig": {"maxReasoningEffort": "medium", "type": "enabled"}
    }
    assert "additionalModelRequestFields" not in native(request(reasoning_effort="none"))
    with pytest.raises(InvalidRequestError) as info:
        native(request(reasoning_effort="low"), model="meta.llama3-70b-instruct-v1:0")
    assert (info.value.param, info.value.code) == ("reasoning_effort", "unsupported_parameter")


def test_model_families() -> None:
    """The family comes from the id, an inference profile or an ARN's alias."""
    assert model_family("us.anthropic.claude-3-5-haiku-20241022-v1:0") == "claude"
    assert model_family("arn:aws:bedrock:us-east-1:1:application-inference-profile/x") == "other"
    assert (
        model_family("arn:aws:bedrock:us-east-1:1:application-inference-profile/x", "claude-prod")
        == "claude"
    )
    assert model_family("amazon.titan-embed-text-v2:0") == "titan"
    assert model_family("cohere.embed-v4:0") == "cohere"
