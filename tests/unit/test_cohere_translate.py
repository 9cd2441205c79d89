"""Cohere's translation against golden fixtures (``tests/fixtures/cohere``): pure functions, no
network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from providers._sse import SSEParser
from providers.cohere import translate, wire
from providers.cohere.errors import map_error
from providers.cohere.stream import CohereStream
from proxy.errors import InvalidRequestError, UpstreamConnectionError, UpstreamError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk, ChatRequest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cohere"
CREATED = 1_750_000_000
_encode = msgspec.json.Encoder().encode
_request = msgspec.json.Decoder(ChatRequest).decode
_response = msgspec.json.Decoder(wire.ChatResponse).decode


def _json(name: str) -> Any:
    return msgspec.json.decode((FIXTURES / name).read_bytes())


def _unified(name: str) -> ChatRequest:
    return _request((FIXTURES / name).read_bytes())


def _native(req: ChatRequest, model: str, *, stream: bool = False) -> Any:
    return msgspec.json.decode(
        _encode(translate.chat_request(req, model, stream=stream, provider="cohere"))
    )


def _run(transcript: bytes, model: str, piece: int) -> list[ChatCompletionChunk]:
    """The transcript fed in ``piece``-byte reads, as a network might deliver it."""
    translator = CohereStream(
        model, "req-1", provider="cohere", scrub=Redactor([]), created=CREATED
    )
    parser = SSEParser()
    chunks: list[ChatCompletionChunk] = []
    for start in range(0, len(transcript), piece):
        for event in parser.feed(transcript[start : start + piece]):
            chunks += translator.feed(event)
    for event in parser.close():
        chunks += translator.feed(event)
    chunks += translator.finish()
    usage = translator.usage_chunk()
    return [*chunks, usage] if usage is not None else chunks


def _events(*payloads: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + p["type"].encode() + b"\ndata: " + _encode(p) + b"\n\n" for p in payloads
    )


# --- requests -----------------------------------------------------------------------------


def test_request_with_tools_documents_and_images() -> None:
    """System/developer, images by URL and inline, a text file, a tool turn with its plan and
    reasoning, a tool result, a named tool choice and sampling become Cohere's exact body."""
    req = _unified("request_tools.unified.json")
    got = _native(req, "command-a-03-2025", stream=True)
    assert got == _json("request_tools.cohere.json")


def test_request_with_json_schema_and_reasoning() -> None:
    """A json_schema format is Cohere's json_object with the schema; reasoning_effort is a
    thinking budget; a previous turn's thinking goes back as a thinking block."""
    req = _unified("request_json.unified.json")
    assert _native(req, "command-a-reasoning-08-2025") == _json("request_json.cohere.json")


def _chat(**fields: Any) -> ChatRequest:
    body = {"model": "cohere/m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return _request(_encode(body))


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
OTHER = {"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("choice", "sent_choice", "sent_tools"),
    [
        ("auto", None, ["f", "g"]),
        ("none", "NONE", ["f", "g"]),
        ("required", "REQUIRED", ["f", "g"]),
        ({"type": "function", "function": {"name": "g"}}, "REQUIRED", ["g"]),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "name": "f"}]},
            },
            None,
            ["f"],
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "g"}}],
                },
            },
            "REQUIRED",
            ["g"],
        ),
    ],
)
def test_tool_choice_forms(choice: Any, sent_choice: str | None, sent_tools: list[str]) -> None:
    """Each tool_choice form maps to Cohere's REQUIRED/NONE (auto: omitted), naming a tool by
    sending only that tool."""
    got = _native(_chat(tools=[TOOL, OTHER], tool_choice=choice), "m")
    assert got.get("tool_choice") == sent_choice
    assert [t["function"]["name"] for t in got["tools"]] == sent_tools


def test_tool_without_parameters_gets_an_empty_schema() -> None:
    """Cohere requires ``parameters``: a function declared without them takes none."""
    got = _native(_chat(tools=[{"type": "function", "function": {"name": "now"}}]), "m")
    assert got["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"parallel_tool_calls": False, "tools": [TOOL]}, "parallel_tool_calls"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"temperature": 1.5}, "temperature"),
        ({"presence_penalty": -0.5}, "presence_penalty"),
        ({"frequency_penalty": 1.5}, "frequency_penalty"),
        ({"seed": -1}, "seed"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
    ],
)
def test_what_cohere_cannot_honour_is_a_400(fields: dict[str, Any], param: str) -> None:
    """A parameter Cohere cannot honour, and that would change the answer, is refused naming it."""
    with pytest.raises(InvalidRequestError) as info:
        translate.chat_request(_chat(**fields), "m", stream=False, provider="cohere")
    assert (info.value.param, info.value.code) == (param, "unsupported_parameter")
    assert "Provider `cohere`" in info.value.message


def test_named_tool_must_be_declared() -> None:
    """A tool_choice naming an undeclared function is the caller's mistake, named as such."""
    choice = {"type": "function", "function": {"name": "zz"}}
    with pytest.raises(InvalidRequestError) as info:
        translate.chat_request(
            _chat(tools=[TOOL], tool_choice=choice), "m", stream=False, provider="cohere"
        )
    assert info.value.param == "tool_choice"
    assert "`zz`" in info.value.message


def test_inputs_cohere_cannot_take_are_refused() -> None:
    """Audio parts, PDFs, file ids and legacy function messages are 400s naming the part."""
    cases = [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ]
    for part in cases:
        req = _chat(messages=[{"role": "user", "content": [part]}])
        with pytest.raises(InvalidRequestError) as info:
            translate.chat_request(req, "m", stream=False, provider="cohere")
        assert info.value.param == "messages[0].content[0]"
    req = _chat(messages=[{"role": "function", "name": "f", "content": "x"}])
    with pytest.raises(InvalidRequestError):
        translate.chat_request(req, "m", stream=False, provider="cohere")


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking"),
    [
        ("none", None, {"type": "disabled"}),
        ("minimal", None, {"type": "enabled", "token_budget": 512}),
        ("medium", None, {"type": "enabled", "token_budget": 4096}),
        ("medium", 3000, {"type": "enabled", "token_budget": 1500}),
        ("high", 3000, {"type": "enabled"}),
    ],
)
def test_reasoning_effort_is_a_thinking_budget(
    effort: str, max_tokens: int | None, thinking: dict[str, Any]
) -> None:
    """reasoning_effort sets Cohere's thinking (a budget under max_tokens; high is unlimited)."""
    fields: dict[str, Any] = {"reasoning_effort": effort}
    if max_tokens:
        fields["max_tokens"] = max_tokens
    assert _native(_chat(**fields), "m")["thinking"] == thinking


def test_top_p_is_clamped_to_cohere_range() -> None:
    """OpenAI's top_p 0 and 1 become Cohere's nearest accepted p, 0.01 and 0.99."""
    assert _native(_chat(top_p=0), "m")["p"] == 0.01
    assert _native(_chat(top_p=1), "m")["p"] == 0.99


# --- answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model"), [("tools", "command-a-03-2025"), ("text", "command-a-03-2025")]
)
def test_response(name: str, model: str) -> None:
    """Cohere's answer (plan, thinking, tool calls, citations, usage) is OpenAI's completion."""
    body = (FIXTURES / f"response_{name}.cohere.json").read_bytes()
    completion, failed = translate.chat_completion(_response(body), model, CREATED)
    assert failed is None
    assert msgspec.json.decode(_encode(completion)) == _json(f"response_{name}.unified.json")


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_failed_generation_is_reported(reason: str) -> None:
    """A 200 whose finish reason is ERROR or TIMEOUT is reported to the caller to raise."""
    body = {"id": "x", "finish_reason": reason, "message": {"role": "assistant"}}
    _, failed = translate.chat_completion(_response(_encode(body)), "m", CREATED)
    assert failed == reason


def test_usage_prefers_billed_units_and_caps_cached_tokens() -> None:
    """Billed counts win over raw token counts; cached tokens never exceed the prompt."""
    usage = wire.WireUsage(
        billed_units=wire.Tokens(input_tokens=50, output_tokens=26),
        tokens=wire.Tokens(input_tokens=793, output_tokens=61),
        cached_tokens=176,
    )
    got = translate.to_usage(usage)
    assert got is not None
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (50, 26, 76)
    assert got.prompt_tokens_details is not None
    assert got.prompt_tokens_details.cached_tokens == 50


@pytest.mark.parametrize(
    ("name", "model"),
    [("stream_text", "command-a-reasoning-08-2025"), ("stream_tools", "command-a-03-2025")],
)
@pytest.mark.parametrize("piece", [1, 7, 100_000])
def test_stream(name: str, model: str, piece: int) -> None:
    """Each Cohere event becomes its chunks, byte for byte, however the bytes are split."""
    transcript = (FIXTURES / f"{name}.cohere.sse").read_bytes()
    expected = (FIXTURES / f"{name}.chunks.jsonl").read_bytes().splitlines()
    assert [_encode(c) for c in _run(transcript, model, piece)] == expected


def test_stream_without_message_end_is_cut() -> None:
    """A stream that ends before message-end raises the cut-stream error."""
    transcript = (FIXTURES / "stream_text.cohere.sse").read_bytes()
    cut = transcript[: transcript.index(b"event: message-end")]
    with pytest.raises(UpstreamConnectionError):
        _run(cut, "m", 100_000)


def test_stream_error_at_message_end_raises_with_usage_kept() -> None:
    """message-end with finish_reason ERROR raises Cohere's error text; usage is still kept."""
    transcript = _events(
        {"id": "a", "type": "message-start"},
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "ERROR",
                "error": "internal failure sk-secret",
                "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 1}},
            },
        },
    )
    translator = CohereStream("m", "r", provider="cohere", scrub=Redactor(["sk-secret"]))
    start, end = SSEParser().feed(transcript)
    assert translator.feed(start) == []
    with pytest.raises(UpstreamError) as info:
        translator.feed(end)
    assert info.value.status == 502
    assert info.value.retryable
    assert "internal failure" in info.value.message
    assert "sk-secret" not in info.value.message
    assert translator.usage is not None
    assert translator.usage.prompt_tokens == 3


def test_stream_skips_unknown_events_and_done() -> None:
    """An event type newer than this code and a trailing ``[DONE]`` are skipped."""
    transcript = _events(
        {"id": "a", "type": "message-start"},
        {"type": "some-future-event", "delta": {"x": 1}},
        {"type": "debug", "prompt": "..."},
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE"}},
    )
    chunks = _run(transcript + b"data: [DONE]\n\n", "m", 100_000)
    assert [c.choices[0].finish_reason for c in chunks] == ["stop"]


def test_stream_malformed_known_event_is_a_bad_answer() -> None:
    """A documented event in the wrong shape is a 502, not silently dropped."""
    transcript = _events({"type": "tool-call-delta", "index": "zero"})
    with pytest.raises(UpstreamError) as info:
        _run(transcript, "m", 100_000)
    assert info.value.status == 502


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "type_", "retryable"),
    [
        (400, "invalid_request_error", False),
        (401, "authentication_error", False),
        (402, "permission_error", False),
        (404, "not_found_error", False),
        (422, "invalid_request_error", False),
        (429, "rate_limit_error", True),
        (498, "invalid_request_error", False),
        (499, "api_error", True),
        (500, "api_error", True),
        (501, "api_error", False),
        (503, "overloaded_error", True),
        (504, "timeout_error", True),
    ],
)
def test_error_statuses(status: int, type_: str, retryable: bool) -> None:
    """Each status Cohere documents keeps its status, gets a unified type and retry rule."""
    body = b'{"id":"e1","message":"it failed for key co-secret"}'
    err = map_error(
        status, body, {"retry-after": "7"}, provider="cohere", scrub=Redactor(["co-secret"])
    )
    assert (err.status, err.type, err.retryable) == (status, type_, retryable)
    assert err.message == "cohere: it failed for key [redacted]"
    assert err.headers == {"retry-after": "7"}


def test_error_without_json_body() -> None:
    """A non-JSON error body still gives a message naming the status."""
    err = map_error(502, b"<html>bad gateway</html>", {}, provider="cohere", scrub=Redactor([]))
    assert err.message == "cohere: HTTP 502: <html>bad gateway</html>"
    assert err.retryable
