"""Anthropic's pure translation: golden fixtures (request, answer, stream) and its rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from providers._sse import SSEEvent, SSEParser
from providers.anthropic import merge_betas
from providers.anthropic.errors import map_error
from providers.anthropic.models import claude_version, default_max_tokens
from providers.anthropic.response import from_native
from providers.anthropic.stream import AnthropicStream
from providers.anthropic.translate import JSON_TOOL, to_native
from providers.anthropic.wire import Message
from proxy.errors import InvalidRequestError, UpstreamConnectionError, UpstreamError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk, ChatRequest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
OLD = "2023-06-01"


def request(**fields: Any) -> ChatRequest:
    body = {"model": "anthropic/m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return decode(body, ChatRequest)


def decode(value: Any, type_: Any) -> Any:
    """A Python value as the Struct the wire would give (Raw fields need JSON)."""
    return msgspec.json.decode(msgspec.json.encode(value), type=type_)


def native(req: ChatRequest, model: str = "claude-sonnet-4-5", version: str = OLD) -> Any:
    out = to_native(req, model, stream=False, provider="anthropic", api_version=version)
    return json.loads(msgspec.json.encode(out))


def stream(model: str = "claude-sonnet-4-5") -> AnthropicStream:
    return AnthropicStream(
        provider="anthropic", model=model, request_id="r1", scrub=Redactor(["sk-ant-secret"])
    )


def event(payload: dict[str, Any]) -> SSEEvent:
    return SSEEvent(payload["type"].encode(), msgspec.json.encode(payload))


def encoded(chunks: list[ChatCompletionChunk]) -> list[bytes]:
    out = []
    for chunk in chunks:
        chunk.created = 0
        out.append(msgspec.json.encode(chunk))
    return out


# --- golden fixtures ------------------------------------------------------------------------


def test_request_golden() -> None:
    """A request using every translated feature becomes exactly the native request on file."""
    unified = (FIXTURES / "chat_request.unified.json").read_bytes()
    req = msgspec.json.decode(unified, type=ChatRequest)
    got = to_native(
        req, "claude-sonnet-4-5-20250929", stream=True, provider="anthropic", api_version=OLD
    )
    want = json.loads((FIXTURES / "chat_request.native.json").read_text())
    assert json.loads(msgspec.json.encode(got)) == want


def test_response_golden() -> None:
    """A message with thinking, redacted thinking, text, tool calls and a server tool becomes
    exactly the unified completion on file."""
    message = msgspec.json.decode(
        (FIXTURES / "chat_response.native.json").read_bytes(), type=Message
    )
    got = from_native(message, "claude-sonnet-4-5-20250929")
    got.created = 0
    want = json.loads((FIXTURES / "chat_response.unified.json").read_text())
    assert json.loads(msgspec.json.encode(got)) == want


def test_stream_golden() -> None:
    """A native stream transcript becomes exactly the chunk bytes on file, usage chunk last."""
    translator = stream("claude-sonnet-4-5-20250929")
    chunks: list[ChatCompletionChunk] = []
    for ev in SSEParser().feed((FIXTURES / "chat_stream.native.sse").read_bytes()):
        chunks += translator.feed(ev)
    chunks += translator.finish()
    usage = translator.usage_chunk()
    assert usage is not None
    want = (FIXTURES / "chat_stream.chunks.jsonl").read_bytes().splitlines()
    assert encoded([*chunks, usage]) == want


# --- streams --------------------------------------------------------------------------------


def test_stream_translates_each_event_as_it_comes() -> None:
    """Every delta gives its chunk from the event that carried it; nothing is held back."""
    translator = stream()
    start = {"id": "msg_1", "model": "claude-sonnet-4-5", "content": [], "usage": {}}
    assert translator.feed(event({"type": "message_start", "message": start})) == []
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    assert translator.feed(event(block)) == []
    for piece in ("Hel", "lo"):
        delta = {"type": "text_delta", "text": piece}
        got = translator.feed(event({"type": "content_block_delta", "index": 0, "delta": delta}))
        assert [c.choices[0].delta.content for c in got] == [piece]
    assert translator.feed(event({"type": "ping"})) == []


def test_stream_error_event_is_mapped() -> None:
    """An overloaded_error event is a retryable 529 named for the provider."""
    translator = stream()
    error = {"type": "overloaded_error", "message": "Overloaded"}
    with pytest.raises(UpstreamError) as info:
        translator.feed(event({"type": "error", "error": error}))
    assert (info.value.status, info.value.type, info.value.retryable) == (
        529,
        "overloaded_error",
        True,
    )
    assert info.value.message == "anthropic: Overloaded"


def test_stream_usage_input_from_start_output_from_delta() -> None:
    """Input usage from message_start and output usage from a message_delta that carries only
    output tokens make one usage, cache reads and writes counted in the prompt once."""
    translator = stream()
    usage = {"input_tokens": 5, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 2}
    start = {"id": "msg_1", "usage": {**usage, "output_tokens": 1}}
    translator.feed(event({"type": "message_start", "message": start}))
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 9},
    }
    translator.feed(event(end))
    got = translator.usage
    assert got is not None
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (17, 9, 26)
    assert got.prompt_tokens_details is not None
    assert got.prompt_tokens_details.cached_tokens == 10


def test_stream_without_message_stop_is_cut() -> None:
    """A stream that ends before message_stop is an error, not a short answer."""
    translator = stream()
    translator.feed(event({"type": "message_start", "message": {"id": "msg_1"}}))
    with pytest.raises(UpstreamConnectionError):
        translator.finish()


def test_stream_message_stop_without_stop_reason_still_finishes() -> None:
    """A stream that stops without a message_delta still gives the client a finish reason."""
    translator = stream()
    translator.feed(event({"type": "message_stop"}))
    assert [c.choices[0].finish_reason for c in translator.finish()] == ["stop"]


def test_stream_json_tool_is_text() -> None:
    """The forced JSON tool's input streams as content and finishes as ``stop``."""
    translator = stream()
    tool = {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {}}
    translator.feed(event({"type": "content_block_start", "index": 0, "content_block": tool}))
    delta = {"type": "input_json_delta", "partial_json": '{"a": 1}'}
    got = translator.feed(event({"type": "content_block_delta", "index": 0, "delta": delta}))
    assert [c.choices[0].delta.content for c in got] == ['{"a": 1}']
    end = {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}}
    assert [c.choices[0].finish_reason for c in translator.feed(event(end))] == ["stop"]


# --- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("a_new_reason", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    """Each stop reason Anthropic documents maps to OpenAI's finish reason."""
    message = Message(id="msg_1", content=[], stop_reason=stop_reason)
    assert from_native(message, "m").choices[0].finish_reason == finish


def test_json_tool_answer_is_content() -> None:
    """A forced JSON tool's input comes back as the message text, finished as ``stop``."""
    body = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"a": 1}}],
        "stop_reason": "tool_use",
    }
    completion = from_native(decode(body, Message), "m")
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ('{"a":1}', "stop")
    assert choice.message.tool_calls is msgspec.UNSET


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "native_type", "unified_type", "code", "retryable"),
    [
        (400, "invalid_request_error", "invalid_request_error", None, False),
        (401, "authentication_error", "authentication_error", None, False),
        (403, "permission_error", "permission_error", None, False),
        (404, "not_found_error", "not_found_error", None, False),
        (413, "request_too_large", "invalid_request_error", "request_too_large", False),
        (429, "rate_limit_error", "rate_limit_error", None, True),
        (500, "api_error", "api_error", None, True),
        (529, "overloaded_error", "overloaded_error", None, True),
    ],
)
def test_error_mapping(
    status: int, native_type: str, unified_type: str, code: str | None, retryable: bool
) -> None:
    """Anthropic's error body keeps its status and message, with the unified type."""
    body = msgspec.json.encode(
        {
            "type": "error",
            "error": {"type": native_type, "message": "it failed"},
            "request_id": "req_1",
        }
    )
    got = map_error(status, body, {}, provider="anthropic", scrub=Redactor([]))
    assert (got.status, got.type, got.code, got.retryable) == (
        status,
        unified_type,
        code,
        retryable,
    )
    assert got.message == "anthropic: it failed"


def test_error_keeps_retry_after_and_request_id_and_hides_keys() -> None:
    """A 429 keeps retry-after and request-id; a key echoed in the message is scrubbed."""
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"key sk-ant-secret"}}'
    headers = {"retry-after": "7", "request-id": "req_9", "other": "x"}
    got = map_error(429, body, headers, provider="anthropic", scrub=Redactor(["sk-ant-secret"]))
    assert got.headers == {"retry-after": "7", "request-id": "req_9"}
    assert "sk-ant-secret" not in got.message


def test_error_not_json() -> None:
    """A body that is not Anthropic's JSON (a proxy's page) is reported with its status."""
    got = map_error(502, b"<html>bad gateway</html>", {}, provider="a", scrub=Redactor([]))
    assert (got.status, got.retryable) == (502, True)
    assert got.message == "a: HTTP 502: <html>bad gateway</html>"


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "version", "default"),
    [
        ("claude-3-haiku-20240307", (3, 0), 4096),
        ("claude-3-5-haiku-20241022", (3, 5), 8192),
        ("claude-3-7-sonnet-latest", (3, 7), 32000),
        ("claude-sonnet-4-20250514", (4, 0), 32000),
        ("claude-opus-4-1-20250805", (4, 1), 32000),
        ("claude-haiku-4-5", (4, 5), 32000),
        ("claude-opus-4-7", (4, 7), 32000),
        ("claude-sonnet-4-5@20250929", (4, 5), 32000),
        ("claude-fable-5-1", (5, 1), 32000),
        ("my-alias", None, 4096),
    ],
)
def test_model_versions(model: str, version: tuple[int, int] | None, default: int) -> None:
    """The version read from a model id picks the default max_tokens."""
    assert claude_version(model) == version
    assert default_max_tokens(version) == default
    assert native(request(), model)["max_tokens"] == default


def test_reasoning_budget_and_max_tokens() -> None:
    """Budget models get a thinking budget below max_tokens, shrunk to fit a small one."""
    assert native(request(reasoning_effort="high"), "claude-haiku-4-5")["thinking"] == {
        "type": "enabled",
        "budget_tokens": 16384,
    }
    small = native(request(reasoning_effort="high", max_tokens=4000), "claude-haiku-4-5")
    assert (small["max_tokens"], small["thinking"]["budget_tokens"]) == (4000, 2000)
    unknown = native(request(reasoning_effort="high"), "my-alias")
    assert (unknown["max_tokens"], unknown["thinking"]["budget_tokens"]) == (20480, 16384)
    assert "thinking" not in native(request(reasoning_effort="none"), "claude-haiku-4-5")
    with pytest.raises(InvalidRequestError) as info:
        native(request(reasoning_effort="low", max_completion_tokens=1000))
    assert info.value.param == "max_completion_tokens"


def test_reasoning_adaptive() -> None:
    """Claude 4.6 and later get adaptive thinking, summarized, with the effort level."""
    got = native(request(reasoning_effort="minimal"), "claude-opus-4-7")
    assert got["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert got["output_config"] == {"effort": "low"}
    with pytest.raises(InvalidRequestError):
        native(request(reasoning_effort="extreme"), "claude-opus-4-7")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}, "tool_choice"),
    ],
)
def test_unsupported_parameters(fields: dict[str, Any], param: str) -> None:
    """A parameter Anthropic cannot honour is a 400 unsupported_parameter naming it."""
    tools = [{"type": "function", "function": {"name": "f"}}]
    with pytest.raises(InvalidRequestError) as info:
        native(request(tools=tools, **fields))
    assert (info.value.param, info.value.code) == (param, "unsupported_parameter")


def test_parameters_dropped_or_mapped() -> None:
    """Parameters that do not change the answer are dropped; the end user is mapped."""
    got = native(
        request(n=1, seed=3, store=True, service_tier="auto", safety_identifier="u-1", user="u-0")
    )
    assert got["metadata"] == {"user_id": "u-1"}
    assert set(got) == {"model", "max_tokens", "messages", "metadata"}


def test_sampling_limits() -> None:
    """Temperature above 1, and any sampling parameter under API version 2026-10-21, is a 400."""
    assert native(request(temperature=0.3, top_p=0.9))["temperature"] == 0.3
    with pytest.raises(InvalidRequestError) as info:
        native(request(temperature=1.5))
    assert info.value.param == "temperature"
    with pytest.raises(InvalidRequestError) as info:
        native(request(top_p=0.9), version="2026-10-21")
    assert (info.value.param, info.value.code) == ("top_p", "unsupported_parameter")


def test_json_object_is_a_forced_tool() -> None:
    """json_object is a forced tool taking any object; with tools or reasoning it is a 400."""
    got = native(request(response_format={"type": "json_object"}))
    assert got["tools"][0]["name"] == JSON_TOOL
    assert got["tools"][0]["input_schema"] == {"type": "object"}
    assert got["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    tools = [{"type": "function", "function": {"name": "f"}}]
    for extra in ({"tools": tools}, {"reasoning_effort": "low", "max_tokens": 4000}):
        with pytest.raises(InvalidRequestError) as info:
            native(request(response_format={"type": "json_object"}, **extra))
        assert info.value.param == "response_format"


def test_json_schema_on_old_models_is_a_forced_tool() -> None:
    """Before Claude 4.5 a json_schema answer goes through the forced tool with that schema."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    got = native(request(response_format=fmt), "claude-sonnet-4-20250514")
    assert got["tools"][0]["input_schema"] == schema
    assert "output_config" not in got
    assert native(request(response_format=fmt), "claude-opus-4-7")["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


def test_reserved_tool_name() -> None:
    """A client tool may not take the JSON tool's name."""
    with pytest.raises(InvalidRequestError):
        native(request(tools=[{"type": "function", "function": {"name": JSON_TOOL}}]))


def test_turns_merge_and_empty_messages_drop() -> None:
    """Consecutive user messages make one turn; empty messages are left out."""
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "c"},
    ]
    got = native(request(messages=messages))
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
    ]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
        (
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]},
            "messages[0].content[0].file",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
            },
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]},
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_untranslatable_messages(message: dict[str, Any], param: str) -> None:
    """What Anthropic cannot take is a 400 naming where it is."""
    with pytest.raises(InvalidRequestError) as info:
        native(request(messages=[message]))
    assert info.value.param == param


def test_plain_text_file_is_a_document() -> None:
    """A text/plain file becomes a document with a text source."""
    data = "data:text/plain;base64,aGVsbG8="
    content = [{"type": "file", "file": {"file_data": data, "filename": "a.txt"}}]
    got = native(request(messages=[{"role": "user", "content": content}]))
    assert got["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "hello"},
            "title": "a.txt",
        }
    ]


def test_merge_betas() -> None:
    """anthropic-beta values merge in order without repeats."""
    assert merge_betas("a,b", None, " b , c", "") == "a,b,c"
