"""Unified chat answers rendered as Anthropic's Messages API, for the ``/anthropic`` route when
another family's provider served the request (pure; no I/O).

- :func:`message_body`: a :class:`ChatCompletion` as Anthropic's ``message`` object: thinking
  blocks first (signature and all; bare ``reasoning_content`` as a thinking block with an
  empty signature), then the text, then one ``tool_use`` block per tool call.
- :class:`MessageEvents`: unified chunks as Anthropic's event sequence: ``message_start``, then
  per content block ``content_block_start``, its deltas (``thinking_delta``,
  ``signature_delta``, ``text_delta``, ``input_json_delta``) and ``content_block_stop``, then
  ``message_delta`` (stop reason, usage) and ``message_stop``. One block is open at a time: a
  delta of another kind closes it and opens the next.
- :func:`error_body`: a gateway error as ``{"type": "error", "error": {"type", "message"}}``
  with Anthropic's error types, which its SDKs map to their exception classes by status.

Usage: OpenAI's ``prompt_tokens`` include cached tokens, Anthropic's ``input_tokens`` exclude
those read from the cache (``cache_read_input_tokens``).

A tool call may carry what its provider needs back on the next turn (Gemini's thought
signature, in ``extra_content``); a ``tool_use`` block has no place for it, but a thinking
block's ``signature`` is opaque state that clients keep and send back. Such a call is preceded
by an empty thinking block whose signature is the gateway's envelope
(:mod:`proxy.responses.envelope`: the same one the Responses API uses), which
:mod:`.inbound` opens again.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from proxy.errors import GatewayError
from proxy.responses.envelope import encode_envelope
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, Delta, ThinkingBlock
from proxy.schemas.common import Usage

__all__ = [
    "PING",
    "MessageEvents",
    "OutUsage",
    "error_body",
    "error_event",
    "error_type",
    "message_body",
    "sse",
    "stop_reason",
]

_encode = msgspec.json.Encoder().encode

# OpenAI's finish_reason -> Anthropic's stop_reason.
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Anthropic's error types, by status (its SDKs pick the exception class by status).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_KNOWN_TYPES = frozenset(_ERROR_TYPES.values())


# --- the message --------------------------------------------------------------------------


class OutUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class _Text(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class _Thinking(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class _Redacted(msgspec.Struct, tag_field="type", tag="redacted_thinking"):
    data: str


class _ToolUse(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: msgspec.Raw


_Block = _Text | _Thinking | _Redacted | _ToolUse


class _Message(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    model: str
    content: list[_Block]
    stop_reason: str | None
    stop_sequence: str | None
    usage: OutUsage
    role: Literal["assistant"] = "assistant"


def stop_reason(finish_reason: str | None) -> str:
    return _STOP.get(finish_reason or "", "end_turn")


def out_usage(usage: Usage | UnsetType | None) -> OutUsage:
    if usage is None or usage is UNSET:
        return OutUsage()
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    return OutUsage(
        input_tokens=max(usage.prompt_tokens - cached, 0),
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=cached,
    )


def _input(arguments: str) -> msgspec.Raw:
    """A tool call's arguments as ``input``, which must be a JSON object."""
    try:
        value = msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict):
        return msgspec.Raw(arguments.encode() if arguments else b"{}")
    # Not an object: the text, kept where the caller can see it.
    return msgspec.Raw(_encode({"arguments": arguments}))


def _thinking(block: ThinkingBlock) -> _Block:
    if block.type == "redacted_thinking":
        return _Redacted(data=block.data if isinstance(block.data, str) else "")
    thinking = block.thinking if isinstance(block.thinking, str) else ""
    signature = block.signature if isinstance(block.signature, str) else ""
    return _Thinking(thinking=thinking, signature=signature)


def _carrier(call_id: str, extra: msgspec.Raw) -> _Thinking:
    """The empty thinking block that carries a tool call's ``extra_content``."""
    return _Thinking(thinking="", signature=encode_envelope([], {call_id: extra}) or "")


def message_body(completion: ChatCompletion, *, message_id: str, model: str) -> bytes:
    """``completion`` as Anthropic's message JSON, under ``message_id`` and ``model`` (the
    model the client named)."""
    content: list[_Block] = []
    finish = None
    if completion.choices:
        choice = completion.choices[0]
        finish = choice.finish_reason
        msg = choice.message
        blocks = msg.thinking_blocks if msg.thinking_blocks is not UNSET else []
        if blocks:
            content += [_thinking(b) for b in blocks]
        elif isinstance(msg.reasoning_content, str) and msg.reasoning_content:
            content.append(_Thinking(thinking=msg.reasoning_content, signature=""))
        text = msg.content or msg.refusal
        if text:
            content.append(_Text(text=text))
        for call in msg.tool_calls or ():
            if call.extra_content is not UNSET:
                content.append(_carrier(call.id, call.extra_content))
            content.append(
                _ToolUse(id=call.id, name=call.function.name, input=_input(call.function.arguments))
            )
    message = _Message(
        id=message_id,
        model=model,
        content=content,
        stop_reason=stop_reason(finish),
        stop_sequence=None,
        usage=out_usage(completion.usage),
    )
    return _encode(message)


# --- events ---------------------------------------------------------------------------------


class _MessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: _Message


class _BlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: _Block


class _TextDelta(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class _JSONDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class _ThinkingDelta(msgspec.Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class _SignatureDelta(msgspec.Struct, tag_field="type", tag="signature_delta"):
    signature: str


class _BlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: _TextDelta | _JSONDelta | _ThinkingDelta | _SignatureDelta


class _BlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class _StopDelta(msgspec.Struct):
    stop_reason: str
    stop_sequence: None = None


class _MessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: _StopDelta
    usage: OutUsage


class _MessageStop(msgspec.Struct, tag_field="type", tag="message_stop"):
    pass


class _ErrorDetail(msgspec.Struct):
    type: str
    message: str


class _Error(msgspec.Struct, tag_field="type", tag="error"):
    error: _ErrorDetail


_Event = (
    _MessageStart | _BlockStart | _BlockDelta | _BlockStop | _MessageDelta | _MessageStop | _Error
)


def sse(name: str, data: bytes) -> bytes:
    """One named event as Anthropic writes it."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _event_bytes(event: _Event) -> bytes:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return sse(tag, _encode(event))


PING = sse("ping", b'{"type":"ping"}')


class MessageEvents:
    """One stream's unified chunks in, Anthropic's events (SSE bytes) out."""

    def __init__(self, *, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._started = False
        self._open: Literal["text", "thinking", "tool"] | None = None
        self._index = -1
        self._tools: dict[int, int] = {}  # a tool call's unified index -> its block's index
        self._finish: str | None = None
        self._usage: Usage | None = None

    def _start(self, out: list[_Event]) -> None:
        if not self._started:
            self._started = True
            start = _Message(
                id=self._id,
                model=self._model,
                content=[],
                stop_reason=None,
                stop_sequence=None,
                usage=OutUsage(),
            )
            out.append(_MessageStart(message=start))

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        out: list[_Event] = []
        self._start(out)
        if isinstance(chunk.usage, Usage):
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            self._delta(choice.delta, out)
            if choice.finish_reason:
                self._finish = choice.finish_reason
        return b"".join(_event_bytes(e) for e in out)

    def finish(self) -> bytes:
        """What ends the stream: the open block's stop, ``message_delta``, ``message_stop``."""
        out: list[_Event] = []
        self._start(out)
        self._close(out)
        delta = _StopDelta(stop_reason=stop_reason(self._finish))
        out.append(_MessageDelta(delta=delta, usage=out_usage(self._usage)))
        out.append(_MessageStop())
        return b"".join(_event_bytes(e) for e in out)

    # --- blocks ------------------------------------------------------------------------------

    def _close(self, out: list[_Event]) -> None:
        if self._open is not None:
            out.append(_BlockStop(index=self._index))
            self._open = None

    def _begin(self, kind: Literal["text", "thinking", "tool"], block: _Block) -> list[_Event]:
        out: list[_Event] = []
        self._close(out)
        self._index += 1
        self._open = kind
        out.append(_BlockStart(index=self._index, content_block=block))
        return out

    def _delta(self, delta: Delta, out: list[_Event]) -> None:
        if isinstance(delta.reasoning_content, str) and delta.reasoning_content:
            if self._open != "thinking":
                out += self._begin("thinking", _Thinking(thinking="", signature=""))
            out.append(_BlockDelta(self._index, _ThinkingDelta(delta.reasoning_content)))
        for block in delta.thinking_blocks or ():
            self._thinking_block(block, out)
        if isinstance(delta.content, str) and delta.content:
            if self._open != "text":
                out += self._begin("text", _Text(text=""))
            out.append(_BlockDelta(self._index, _TextDelta(delta.content)))
        for call in delta.tool_calls or ():
            fn = call.function if call.function is not UNSET else None
            if isinstance(call.id, str) and call.index not in self._tools:
                if call.extra_content is not UNSET:
                    out += self._begin("thinking", _carrier(call.id, call.extra_content))
                    self._close(out)
                name = fn.name if fn is not None and isinstance(fn.name, str) else ""
                tool = _ToolUse(id=call.id, name=name, input=msgspec.Raw(b"{}"))
                out += self._begin("tool", tool)
                self._tools[call.index] = self._index
            at = self._tools.get(call.index)
            arguments = fn.arguments if fn is not None else UNSET
            if at is not None and isinstance(arguments, str) and arguments:
                # Arguments of an earlier call arriving late (calls interleaved) still go to
                # their own block.
                out.append(_BlockDelta(at, _JSONDelta(arguments)))

    def _thinking_block(self, block: ThinkingBlock, out: list[_Event]) -> None:
        """A whole thinking block: it ends the thinking streamed so far with its signature,
        or (nothing streamed, or a redacted block) is a block of its own."""
        if block.type == "redacted_thinking":
            out += self._begin("thinking", _thinking(block))
            self._close(out)
            return
        if self._open != "thinking":
            out += self._begin("thinking", _Thinking(thinking="", signature=""))
            if isinstance(block.thinking, str) and block.thinking:
                out.append(_BlockDelta(self._index, _ThinkingDelta(block.thinking)))
        if isinstance(block.signature, str) and block.signature:
            out.append(_BlockDelta(self._index, _SignatureDelta(block.signature)))
        self._close(out)


# --- errors ---------------------------------------------------------------------------------


def error_type(exc: GatewayError) -> str:
    """Anthropic's error type for a gateway error: an Anthropic type kept in its code
    (``request_too_large``), else the type its status stands for, else its own type when it
    is one of Anthropic's."""
    if exc.code in _KNOWN_TYPES:
        return exc.code
    got = _ERROR_TYPES.get(exc.status)
    if got is not None:
        return got
    if exc.type in _KNOWN_TYPES:
        return exc.type
    return "api_error" if exc.status >= 500 else "invalid_request_error"


def error_body(exc: GatewayError) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}``."""
    return _encode(_Error(error=_ErrorDetail(type=error_type(exc), message=exc.message)))


def error_event(exc: GatewayError) -> bytes:
    """The ``error`` event that ends a stream which already began."""
    return sse("error", error_body(exc))
