"""Gemini translation, pure functions against golden fixtures (``tests/fixtures/gemini``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from providers.gemini.errors import map_error
from providers.gemini.request import (
    SKIP_SIGNATURE,
    check_request,
    data_url_part,
    image_urls,
    is_gemini_3,
    reference_part,
    to_native,
)
from providers.gemini.response import finish_reason, from_native
from providers.gemini.stream import EventReader, GeminiStream
from providers.gemini.wire import GenerateContentResponse, Part
from proxy.errors import GatewayError, InvalidRequestError, UpstreamConnectionError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk, ChatRequest
from tests.fakes.gemini import google_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
_HELLO = b"data: " + google_json({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})
_HELLO += b"\r\n\r\n"
SCRUB = Redactor(["AIzaSyFAKE-secret-key-0123456789abcdef"])


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _request(doc: dict[str, Any]) -> ChatRequest:
    doc = {"model": "gemini/gemini-2.5-flash", **doc}
    return msgspec.json.decode(msgspec.json.encode(doc), type=ChatRequest)


def _native(req: ChatRequest, model: str = "gemini-2.5-flash") -> Any:
    """The native body as plain JSON values; media resolved without the network."""
    media: dict[str, Part] = {}
    for url in image_urls(req):
        part = data_url_part(url) if url.startswith("data:") else reference_part(url)
        assert part is not None
        media[url] = part
    return msgspec.json.decode(msgspec.json.encode(to_native(req, model=model, media=media)))


def _stream(raw: bytes, step: int) -> list[ChatCompletionChunk]:
    reader = EventReader()
    translator = GeminiStream(
        model="gemini-2.5-flash", id="chatcmpl-req-1", created=1750000000, provider="gemini",
        scrub=SCRUB,
    )  # fmt: skip
    chunks: list[ChatCompletionChunk] = []
    for i in range(0, len(raw), step):
        for event in reader.feed(raw[i : i + step]):
            chunks += translator.feed(event)
    for event in reader.close():
        chunks += translator.feed(event)
    chunks += translator.finish()
    usage = translator.usage_chunk()
    if usage is not None:
        chunks.append(usage)
    return chunks


# --- golden fixtures ----------------------------------------------------------------------


def test_request_golden() -> None:
    """A request using every translated feature becomes exactly the fixture's native body."""
    req = msgspec.json.decode(_fixture("chat_request.json"), type=ChatRequest)
    assert _native(req) == msgspec.json.decode(_fixture("chat_request.native.json"))


def test_response_golden() -> None:
    """A two-candidate answer (thoughts, signatures, calls with and without ids, MAX_TOKENS)
    becomes exactly the fixture's chat completion."""
    native = msgspec.json.decode(_fixture("response.native.json"), type=GenerateContentResponse)
    got = from_native(native, model="gemini-2.5-flash", created=1750000000, fallback_id="x")
    expected = msgspec.json.decode(_fixture("response.unified.json"))
    assert msgspec.json.decode(msgspec.json.encode(got)) == expected


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_stream_golden(step: int) -> None:
    """The fixture's SSE transcript (CRLF events), read in any slicing, becomes exactly the
    fixture's chunk bytes."""
    chunks = _stream(_fixture("stream.native.sse"), step)
    sse = b"".join(b"data: " + msgspec.json.encode(c) + b"\n\n" for c in chunks)
    assert sse == _fixture("stream.chunks.sse")


# --- request details ----------------------------------------------------------------------


def test_gemini_3_levels_and_missing_signatures() -> None:
    """Gemini 3 gets a thinking level, and a signature-less call turn gets the documented
    skip value on its first call only."""
    req = _request(
        {
            "reasoning_effort": "high",
            "messages": [
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                        {"id": "b", "type": "function", "function": {"name": "f", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": "1"},
                {"role": "tool", "tool_call_id": "b", "content": "2"},
            ],
        }
    )
    body = _native(req, model="gemini-3-pro-preview")
    thinking = body["generationConfig"]["thinkingConfig"]
    assert thinking == {"includeThoughts": True, "thinkingLevel": "HIGH"}
    calls = body["contents"][1]["parts"]
    assert calls[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in calls[1]
    assert calls[0]["functionCall"]["args"] == {}
    assert len(body["contents"]) == 3  # both results in one user turn
    assert _native(req)["contents"][1]["parts"][0].get("thoughtSignature") is None


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gemini-3-pro-preview", True),
        ("gemini-3.1-flash-lite", True),
        ("models/gemini-10-ultra", True),
        ("gemini-2.5-flash", False),
        ("gemini-flash-latest", False),
        ("gemma-3-27b-it", False),
    ],
)
def test_generation_detection(model: str, expected: bool) -> None:
    """Only models named Gemini 3 or later are treated as such."""
    assert is_gemini_3(model) is expected


def test_reasoning_none_turns_thinking_off() -> None:
    """reasoning_effort none is a zero budget on Gemini 2.5 (thoughts not asked for)."""
    req = _request({"reasoning_effort": "none", "messages": [{"role": "user", "content": "x"}]})
    body = _native(req)
    assert body["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": False,
        "thinkingBudget": 0,
    }


@pytest.mark.parametrize(
    ("url", "media_type"),
    [
        ("https://example.com/a.png", "image/png"),
        ("https://x.s3.amazonaws.com/doc.PDF?X-Amz-Signature=1", "application/pdf"),
        ("https://generativelanguage.googleapis.com/v1beta/files/abc123", None),
    ],
)
def test_urls_by_reference(url: str, media_type: str | None) -> None:
    """https URLs of a known media type, and Files API URIs, go by reference."""
    part = reference_part(url)
    assert part is not None
    got = msgspec.json.decode(msgspec.json.encode(part))["fileData"]
    assert got == ({"fileUri": url, "mimeType": media_type} if media_type else {"fileUri": url})


@pytest.mark.parametrize(
    "url", ["https://example.com/image", "https://example.com/v1.2/photo", "http://a.com/a.png"]
)
def test_urls_downloaded(url: str) -> None:
    """http URLs, and https URLs whose media type is unknown, are left to the gateway."""
    assert reference_part(url) is None


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"verbosity": "low"}, "verbosity"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {
                "parallel_tool_calls": False,
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "parallel_tool_calls",
        ),
    ],
)
def test_parameters_that_cannot_be_honoured(doc: dict[str, Any], param: str) -> None:
    """A parameter Gemini cannot honour is a 400 naming it, not silently dropped."""
    req = _request({"messages": [{"role": "user", "content": "x"}], **doc})
    with pytest.raises(InvalidRequestError) as info:
        check_request(req, "gemini")
    assert info.value.param == param
    assert info.value.code == "unsupported_parameter"


def test_bad_tool_arguments_and_unknown_results() -> None:
    """Arguments that are not a JSON object, and a result answering no call, are 400s."""
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    req = _request({"messages": [{"role": "assistant", "tool_calls": [call]}]})
    with pytest.raises(InvalidRequestError) as info:
        _native(req)
    assert info.value.param == "messages[0].tool_calls[0].function.arguments"
    req = _request({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "1"}]})
    with pytest.raises(InvalidRequestError) as info:
        _native(req)
    assert info.value.param == "messages[0].tool_call_id"


# --- answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "tools", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("OTHER", False, "stop"),
    ],
)
def test_finish_reasons(reason: str, tools: bool, expected: str) -> None:
    """Gemini's finish reasons map to OpenAI's four."""
    assert finish_reason(reason, tool_calls=tools) == expected


def test_blocked_prompt_is_a_content_filtered_answer() -> None:
    """A prompt Gemini blocks (no candidates) is a content_filter choice naming the reason."""
    native = msgspec.json.decode(
        b'{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},'
        b'"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}',
        type=GenerateContentResponse,
    )
    got = from_native(native, model="m", created=1, fallback_id="chatcmpl-1")
    assert got.choices[0].finish_reason == "content_filter"
    assert got.choices[0].message.content is None
    assert got.choices[0].message.refusal == "Gemini blocked the prompt (PROHIBITED_CONTENT)."
    assert got.usage is not msgspec.UNSET
    assert got.usage.prompt_tokens == 9


def test_stream_without_finish_is_cut() -> None:
    """A stream that ends before a finishReason is an error, not a short answer."""
    with pytest.raises(UpstreamConnectionError):
        _stream(_HELLO, 4096)


def test_stream_error_events() -> None:
    """An error event, as SSE or as bare JSON lines after the stream began, raises the mapped
    error."""
    error = {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
    event = b"data: " + google_json({"error": error}) + b"\r\n\r\n"
    bare = msgspec.json.format(
        b'[{"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}]', indent=2
    )
    with pytest.raises(GatewayError) as info:
        _stream(_HELLO + event, 5)
    assert (info.value.status, info.value.type, info.value.retryable) == (
        503,
        "overloaded_error",
        True,
    )
    with pytest.raises(GatewayError) as info:
        _stream(_HELLO + bare, 5)
    assert (info.value.status, info.value.message) == (500, "gemini: Internal error")


# --- errors -------------------------------------------------------------------------------


def test_rate_limit_with_retry_delay() -> None:
    """RESOURCE_EXHAUSTED is a retryable 429 whose RetryInfo delay becomes retry-after."""
    body = (
        b'{"error": {"code": 429, "message": "You exceeded your current quota.", '
        b'"status": "RESOURCE_EXHAUSTED", "details": ['
        b'{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},'
        b'{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "23.4s"}]}}'
    )
    err = map_error(429, body, {}, provider="gemini", scrub=SCRUB)
    assert (err.status, err.type, err.retryable) == (429, "rate_limit_error", True)
    assert err.headers == {"retry-after": "24"}
    assert err.message == "gemini: You exceeded your current quota."
    assert err.code == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(
    ("status", "google", "http", "kind", "retryable"),
    [
        (400, "INVALID_ARGUMENT", 400, "invalid_request_error", False),
        (400, "FAILED_PRECONDITION", 400, "invalid_request_error", False),
        (401, "UNAUTHENTICATED", 401, "authentication_error", False),
        (403, "PERMISSION_DENIED", 403, "permission_error", False),
        (404, "NOT_FOUND", 404, "not_found_error", False),
        (500, "INTERNAL", 500, "api_error", True),
        (503, "UNAVAILABLE", 503, "overloaded_error", True),
        (504, "DEADLINE_EXCEEDED", 504, "timeout_error", True),
    ],
)
def test_google_statuses(status: int, google: str, http: int, kind: str, retryable: bool) -> None:
    """Each google.rpc status keeps its HTTP status and gets the unified type and retryability."""
    body = msgspec.json.encode({"error": {"code": status, "message": "m", "status": google}})
    err = map_error(status, body, {}, provider="gemini", scrub=SCRUB)
    assert (err.status, err.type, err.retryable) == (http, kind, retryable)


def test_invalid_key_is_an_authentication_error_and_scrubbed() -> None:
    """Gemini's 400 API_KEY_INVALID is a 401; a key echoed in a message never comes back."""
    body = (
        b'{"error": {"code": 400, "status": "INVALID_ARGUMENT", '
        b'"message": "API key not valid: AIzaSyFAKE-secret-key-0123456789abcdef", '
        b'"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", '
        b'"reason": "API_KEY_INVALID"}]}}'
    )
    err = map_error(400, body, {}, provider="gemini", scrub=SCRUB)
    assert (err.status, err.type, err.code) == (401, "authentication_error", "API_KEY_INVALID")
    assert "AIzaSyFAKE" not in err.message


def test_non_json_error() -> None:
    """A non-JSON error page (a proxy in front) keeps its status and a short text."""
    err = map_error(
        502, b"<html>Bad Gateway</html>", {"retry-after": "5"}, provider="gemini", scrub=SCRUB
    )
    assert (err.status, err.retryable, err.headers) == (502, True, {"retry-after": "5"})
    assert err.message == "gemini: HTTP 502: <html>Bad Gateway</html>"


def test_stream_with_two_candidates() -> None:
    """With n=2 each candidate streams as its own choice index, each with its role first and
    its own finish; the stream ends only when both finished."""
    events = [
        {"candidates": [{"content": {"parts": [{"text": "A"}]}, "index": 0}]},
        {"candidates": [{"content": {"parts": [{"text": "B"}]}, "index": 1}]},
        {
            "candidates": [
                {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
                {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1},
            ]
        },
    ]
    raw = b"".join(b"data: " + google_json(e) + b"\r\n\r\n" for e in events)
    chunks = _stream(raw, 4096)
    got = [
        (c.index, c.delta.role or None, c.delta.content or None, c.finish_reason)
        for chunk in chunks
        for c in chunk.choices
    ]
    assert got == [
        (0, "assistant", "A", None),
        (1, "assistant", "B", None),
        (0, None, "a", None),
        (0, None, None, "stop"),
        (1, None, "b", None),
        (1, None, None, "length"),
    ]
    with pytest.raises(UpstreamConnectionError):
        _stream(b"".join(b"data: " + google_json(e) + b"\r\n\r\n" for e in events[:2]), 4096)
