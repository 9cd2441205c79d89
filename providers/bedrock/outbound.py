"""Unified answers in Converse's shape, for the ``/bedrock`` routes when another provider served
the request: a chat completion as a Converse response, chat chunks as ConverseStream events,
and gateway errors as Bedrock's. Pure.

The stream keeps Converse's order: ``messageStart``; per content block (reasoning, text, each
tool call) ``contentBlockStart`` (tool use only), ``contentBlockDelta``s and
``contentBlockStop``; ``messageStop`` with the stop reason; ``metadata`` with the usage, last.
A reasoning block's signature (a translated provider sends the whole thinking block when it
ends) goes out as a ``reasoningContent.signature`` delta before the block stops.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET

from providers.bedrock import wire as w
from providers.bedrock.eventstream import event_message, exception_message
from proxy.errors import GatewayError
from proxy.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Delta,
    DeltaFunction,
    ThinkingBlock,
)
from proxy.schemas.common import Usage

__all__ = ["StreamWriter", "converse_reply", "error_body", "error_name", "stream_exception"]

_encode = msgspec.json.Encoder().encode
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filtered",
}
# Bedrock's exceptions by the status a gateway error has (botocore's model of each).
_BY_STATUS = {
    400: "ValidationException",
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    422: "ValidationException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
    529: "ServiceUnavailableException",
}
_KNOWN = frozenset(_BY_STATUS.values()) | {
    "ConflictException",
    "InternalServerException",
    "ModelNotReadyException",
    "ModelStreamErrorException",
    "ServiceQuotaExceededException",
}
# The ConverseStream members that carry an exception mid-stream.
_STREAM_EXCEPTIONS = frozenset(
    {
        "InternalServerException",
        "ModelStreamErrorException",
        "ValidationException",
        "ThrottlingException",
        "ServiceUnavailableException",
    }
)


class _Usage(msgspec.Struct, rename="camel"):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_input_tokens: int | msgspec.UnsetType = UNSET


class _Metrics(msgspec.Struct, rename="camel"):
    latency_ms: int


class _Reply(msgspec.Struct, rename="camel"):
    output: w.ConverseOutput
    stop_reason: str
    usage: _Usage
    metrics: _Metrics


class _MessageStart(msgspec.Struct):
    role: str = "assistant"


class _Metadata(msgspec.Struct):
    usage: _Usage
    metrics: _Metrics


class _ErrorBody(msgspec.Struct):
    message: str
    # botocore's rest-json parser reads the exception's name here when the header is missing.
    type_: str = msgspec.field(name="__type")


def stop_reason(finish_reason: str | None) -> str:
    return _STOP.get(finish_reason or "stop", "end_turn")


def _usage(usage: Usage | None) -> _Usage:
    """OpenAI's prompt tokens include the cache reads; Bedrock's ``inputTokens`` do not."""
    if usage is None:
        return _Usage(0, 0, 0)
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    out = _Usage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )
    if cached:
        out.cache_read_input_tokens = cached
    return out


def _tool_input(arguments: str) -> msgspec.Raw:
    """A tool call's arguments as the ``input`` document (a JSON string when they are not
    JSON, so that nothing is lost)."""
    text = arguments.strip() or "{}"
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return msgspec.Raw(_encode(arguments))
    return msgspec.Raw(text.encode())


def _reasoning_block(block: ThinkingBlock) -> w.ContentBlock:
    if block.type == "redacted_thinking" and isinstance(block.data, str):
        return w.ContentBlock(reasoning_content=w.ReasoningContent(redacted_content=block.data))
    text = block.thinking if isinstance(block.thinking, str) else ""
    content = w.ReasoningContent(reasoning_text=w.ReasoningText(text, block.signature))
    return w.ContentBlock(reasoning_content=content)


def converse_reply(completion: ChatCompletion, *, latency_ms: float) -> bytes:
    """A chat completion (its first choice) as Converse's response body."""
    blocks: list[w.ContentBlock] = []
    finish: str | None = None
    if completion.choices:
        choice = completion.choices[0]
        finish = choice.finish_reason
        message = choice.message
        thinking = message.thinking_blocks if isinstance(message.thinking_blocks, list) else []
        blocks.extend(_reasoning_block(b) for b in thinking)
        if not thinking and isinstance(message.reasoning_content, str):
            text = w.ReasoningText(message.reasoning_content)
            blocks.append(w.ContentBlock(reasoning_content=w.ReasoningContent(text)))
        if message.content:
            blocks.append(w.ContentBlock(text=message.content))
        elif message.refusal:
            blocks.append(w.ContentBlock(text=message.refusal))
        for call in message.tool_calls or ():
            use = w.ToolUseBlock(call.id, call.function.name, _tool_input(call.function.arguments))
            blocks.append(w.ContentBlock(tool_use=use))
    usage = completion.usage if isinstance(completion.usage, Usage) else None
    reply = _Reply(
        output=w.ConverseOutput(w.Message(role="assistant", content=blocks)),
        stop_reason=stop_reason(finish),
        usage=_usage(usage),
        metrics=_Metrics(round(latency_ms)),
    )
    return _encode(reply)


# --- errors ----------------------------------------------------------------------------------


def error_name(error: GatewayError) -> str:
    """The Bedrock exception a gateway error is (an upstream Bedrock's own name kept)."""
    if error.code in _KNOWN:
        return error.code
    if error.status in _BY_STATUS:
        return _BY_STATUS[error.status]
    return "InternalServerException"


def error_body(error: GatewayError) -> bytes:
    """``{"message": ..., "__type": ...}``: Bedrock's error body, naming the exception so that
    botocore raises it even without the ``x-amzn-ErrorType`` header."""
    return _encode(_ErrorBody(error.message, error_name(error)))


def stream_exception(error: GatewayError) -> bytes:
    """A failure past the first event, as a ConverseStream exception message."""
    name = error_name(error)
    if name not in _STREAM_EXCEPTIONS:
        name = "ModelStreamErrorException" if error.status == 424 else "InternalServerException"
    member = name[:1].lower() + name[1:]
    return exception_message(member, _encode({"message": error.message}))


# --- streams ---------------------------------------------------------------------------------


class StreamWriter:
    """Chat chunks in, ConverseStream messages (encoded) out; one instance per stream."""

    __slots__ = ("_block", "_kind", "_next", "_started", "_stopped", "_tools", "usage")

    def __init__(self) -> None:
        self._started = False
        self._stopped = False
        self._next = 0  # the next content block's index
        self._block: int | None = None  # the open block
        self._kind = ""  # "text", "reasoning" or "tool"
        self._tools: dict[int, int] = {}  # OpenAI tool-call index -> block index
        self.usage: Usage | None = None

    def _event(self, name: str, payload: msgspec.Struct) -> bytes:
        return event_message(name, _encode(payload))

    def _open(self, kind: str, out: list[bytes]) -> int:
        if self._block is not None and self._kind == kind and kind != "tool":
            return self._block
        self._close(out)
        self._block, self._kind = self._next, kind
        self._next += 1
        return self._block

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            out.append(self._event("contentBlockStop", w.ContentBlockStopEvent(self._block)))
            self._block = None

    def _delta(self, index: int, delta: w.BlockDelta) -> bytes:
        return self._event("contentBlockDelta", w.ContentBlockDeltaEvent(index, delta))

    def feed(self, chunk: ChatCompletionChunk) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(self._event("messageStart", _MessageStart()))
        if isinstance(chunk.usage, Usage):
            self.usage = chunk.usage
        choice = chunk.choices[0] if chunk.choices else None
        if choice is not None and choice.index == 0:
            self._on_delta(choice.delta, out)
            if choice.finish_reason is not None and not self._stopped:
                self._close(out)
                self._stopped = True
                stop = w.MessageStopEvent(stop_reason(choice.finish_reason))
                out.append(self._event("messageStop", stop))
        return out

    def _on_delta(self, delta: Delta, out: list[bytes]) -> None:
        if isinstance(delta.reasoning_content, str) and delta.reasoning_content:
            index = self._open("reasoning", out)
            reasoning = w.ReasoningDelta(text=delta.reasoning_content)
            out.append(self._delta(index, w.BlockDelta(reasoning_content=reasoning)))
        for block in delta.thinking_blocks or ():
            self._on_thinking(block, out)
        if isinstance(delta.content, str) and delta.content:
            index = self._open("text", out)
            out.append(self._delta(index, w.BlockDelta(text=delta.content)))
        for call in delta.tool_calls or ():
            fn = call.function if isinstance(call.function, DeltaFunction) else DeltaFunction()
            known = self._tools.get(call.index)
            if known is None:
                index = self._tools[call.index] = self._open("tool", out)
                name = fn.name if isinstance(fn.name, str) else ""
                use = w.ToolUseStart(call.id if isinstance(call.id, str) else "", name)
                start = w.ContentBlockStartEvent(index, w.BlockStart(tool_use=use))
                out.append(self._event("contentBlockStart", start))
            else:
                index = known
            if isinstance(fn.arguments, str) and fn.arguments:
                piece = w.BlockDelta(tool_use=w.ToolUseDelta(fn.arguments))
                out.append(self._delta(index, piece))

    def _on_thinking(self, block: ThinkingBlock, out: list[bytes]) -> None:
        """A whole thinking block: its signature closes the reasoning streamed so far; a block
        whose text was not streamed goes out whole; redacted data is a block of its own."""
        if block.type == "redacted_thinking":
            if isinstance(block.data, str):
                index = self._open("redacted", out)
                redacted = w.ReasoningDelta(redacted_content=block.data)
                out.append(self._delta(index, w.BlockDelta(reasoning_content=redacted)))
                self._close(out)
            return
        streamed = self._block is not None and self._kind == "reasoning"
        index = self._open("reasoning", out)
        if not streamed and isinstance(block.thinking, str) and block.thinking:
            text = w.ReasoningDelta(text=block.thinking)
            out.append(self._delta(index, w.BlockDelta(reasoning_content=text)))
        if isinstance(block.signature, str):
            signature = w.ReasoningDelta(signature=block.signature)
            out.append(self._delta(index, w.BlockDelta(reasoning_content=signature)))
        self._close(out)

    def finish(self, *, latency_ms: float) -> list[bytes]:
        """What is still owed once the upstream is done: the stop (if none came) and the
        ``metadata`` event with the usage."""
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(self._event("messageStart", _MessageStart()))
        if not self._stopped:
            self._close(out)
            self._stopped = True
            out.append(self._event("messageStop", w.MessageStopEvent("end_turn")))
        metadata = _Metadata(usage=_usage(self.usage), metrics=_Metrics(round(latency_ms)))
        out.append(self._event("metadata", metadata))
        return out
