"""The ``/anthropic`` route's errors in Anthropic's shape, and Anthropic's own stream passed
through natively (pure parts)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from providers._sse import SSEEvent
from providers.anthropic.native import NativeStream, native_body
from providers.anthropic.outbound import error_body, error_type
from proxy.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    UpstreamConnectionError,
    UpstreamError,
)
from proxy.redact import Redactor

_enc = msgspec.json.encode


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequestError("x"), "invalid_request_error"),
        (AuthenticationError("x"), "authentication_error"),
        (UpstreamError("x", status=403, provider="p"), "permission_error"),
        (UpstreamError("x", status=404, provider="p"), "not_found_error"),
        (PayloadTooLargeError("x"), "request_too_large"),
        (UpstreamError("x", status=429, provider="p"), "rate_limit_error"),
        (GatewayError("x"), "api_error"),
        (UpstreamConnectionError("x"), "api_error"),
        (OverloadedError("x", provider="p", retry_after_s=1), "overloaded_error"),
        (UpstreamError("x", status=529, provider="p", type="overloaded_error"), "overloaded_error"),
    ],
)
def test_error_types(error: GatewayError, kind: str) -> None:
    """Each gateway error has Anthropic's error type for its status."""
    assert error_type(error) == kind
    assert msgspec.json.decode(error_body(error)) == {
        "type": "error",
        "error": {"type": kind, "message": "x"},
    }


# --- native ---------------------------------------------------------------------------------


def native_events(*events: dict[str, Any]) -> list[SSEEvent]:
    return [SSEEvent(e["type"].encode(), _enc(e)) for e in events]


START = {
    "type": "message_start",
    "message": {"id": "m", "usage": {"input_tokens": 5, "output_tokens": 1}},
}
TEXT = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
PING = {"type": "ping"}
DELTA = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn"},
    "usage": {"output_tokens": 9, "cache_read_input_tokens": 2},
}
STOP = {"type": "message_stop"}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_native_stream_holds_the_preamble() -> None:
    """message_start and ping are held until a content event, then sent with it, whole; the
    usage merges message_start's and message_delta's."""
    native = NativeStream(provider="anthropic", scrub=Redactor([]))
    assert native.feed(native_events(START, PING)) == (b"", None)
    out, error = native.feed(native_events(TEXT, DELTA, STOP))
    assert error is None
    assert out.startswith(b"event: message_start\ndata: ")
    assert out.count(b"\n\n") == 5
    assert native.finish() == b""
    assert native.usage is not None
    assert (native.usage.prompt_tokens, native.usage.completion_tokens) == (7, 9)
    assert native.usage.cached_tokens == 2


def test_native_stream_errors() -> None:
    """An error event before content is raised (nothing sent); after content, it comes back
    with the bytes before it; a stream without message_stop is cut."""
    early = NativeStream(provider="anthropic", scrub=Redactor([]))
    with pytest.raises(UpstreamError) as overloaded:
        early.feed(native_events(START, OVERLOADED))
    assert overloaded.value.status == 529
    late = NativeStream(provider="anthropic", scrub=Redactor([]))
    out, error = late.feed(native_events(START, TEXT, OVERLOADED, STOP))
    assert out.count(b"event: ") == 2
    assert error is not None
    assert error.type == "overloaded_error"
    with pytest.raises(UpstreamConnectionError):
        late.finish()


def test_native_body_replaces_model_and_drops_fallbacks() -> None:
    """The body goes on field for field, the model as the upstream names it, without the
    gateway's fallbacks."""
    raw = msgspec.json.decode(
        b'{"model":"anthropic/claude-x","fallbacks":["a/b"],"max_tokens":5,"x":{"y":[1, 2]}}',
        type=dict[str, msgspec.Raw],
    )
    assert native_body(raw, "claude-x") == b'{"model":"claude-x","max_tokens":5,"x":{"y":[1, 2]}}'


def test_native_body_leaves_out_thinking_the_gateway_signed() -> None:
    """Thinking blocks carried in the gateway's envelope (another provider's reasoning) are
    left out for Anthropic, with `thinking` itself; Anthropic's own blocks stay as sent."""
    from proxy.responses.envelope import encode_envelope
    from proxy.schemas.chat import ThinkingBlock

    envelope = encode_envelope([ThinkingBlock(thinking="t", signature="gemini-sig")], {})
    assert envelope is not None
    body = {
        "model": "anthropic/claude-x",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "", "signature": envelope},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ],
    }
    raw = msgspec.json.decode(msgspec.json.encode(body), type=dict[str, msgspec.Raw])
    sent = msgspec.json.decode(native_body(raw, "claude-x"))
    assert "thinking" not in sent
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use"]
    assert sent["messages"][0] == body["messages"][0]

    own = dict(body, messages=[body["messages"][0]])
    own["messages"] = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "s"}]},
    ]
    raw = msgspec.json.decode(msgspec.json.encode(own), type=dict[str, msgspec.Raw])
    assert msgspec.json.decode(native_body(raw, "claude-x"))["thinking"] == own["thinking"]
