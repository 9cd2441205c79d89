"""ConverseStream: event-stream messages to OpenAI chunks, one message at a time.

The answer is ``application/vnd.amazon.eventstream``: binary messages (a prelude with lengths and
a CRC, typed headers, a payload, a CRC of the whole), decoded by botocore's
``EventStreamBuffer``. A message's ``:message-type`` is ``event`` (``:event-type`` names the
ConverseStream member, its payload is that member's JSON), ``exception`` (``:exception-type``
names a modelled error, its payload is the error's JSON) or ``error`` (``:error-code`` and
``:error-message`` headers).

Bedrock's order: ``messageStart``; per content block ``contentBlockStart`` (tool use only: its id
and name), ``contentBlockDelta`` (text, a piece of the tool input's JSON text, reasoning text,
the reasoning's signature, or redacted reasoning), ``contentBlockStop``; ``messageStop`` (the stop
reason); ``metadata`` (usage), the last message. A stream without ``metadata`` was cut.

Reasoning text goes out delta by delta as ``reasoning_content``; when its block stops, the whole
block (text and signature) follows as one ``thinking_blocks`` delta, ready to be sent back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from botocore.eventstream import EventStreamBuffer, ParserError

from providers._translated import ChunkMaker, stream_cut
from providers.bedrock import wire as w
from providers.bedrock.errors import error_from_body
from providers.bedrock.response import JSON_TOOL, finish_reason, usage_of
from proxy.errors import UpstreamError
from proxy.schemas.chat import ChatCompletionChunk, ThinkingBlock
from proxy.schemas.common import Usage

__all__ = ["BedrockStream", "Frame", "FrameReader"]

_start = msgspec.json.Decoder(w.ContentBlockStartEvent).decode
_delta = msgspec.json.Decoder(w.ContentBlockDeltaEvent).decode
_stop = msgspec.json.Decoder(w.MessageStopEvent).decode
_block_stop = msgspec.json.Decoder(w.ContentBlockStopEvent).decode
_metadata = msgspec.json.Decoder(w.MetadataEvent).decode


class Frame(msgspec.Struct, frozen=True):
    """One event-stream message: ``kind`` is its ``:message-type``; ``name`` its event type,
    exception type or error code; ``payload`` the JSON bytes."""

    kind: str
    name: str
    payload: bytes = b""
    message: str = ""  # ``:error-message`` of an ``error`` message


class FrameReader:
    """Bytes as they arrive to complete messages (botocore checks the lengths and CRCs)."""

    __slots__ = ("_buffer", "_provider")

    def __init__(self, provider: str) -> None:
        self._buffer = EventStreamBuffer()
        self._provider = provider

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer.add_data(data)
        try:
            return [_frame(m.headers, m.payload) for m in self._buffer]
        except ParserError as exc:
            raise UpstreamError(
                f"{self._provider}: the upstream's event stream is corrupt ({exc}).",
                status=502,
                provider=self._provider,
            ) from None


def _frame(headers: dict[str, Any], payload: bytes) -> Frame:
    kind = str(headers.get(":message-type", "event"))
    if kind == "exception":
        return Frame(kind, str(headers.get(":exception-type", "")), payload)
    if kind == "error":
        code = str(headers.get(":error-code", ""))
        return Frame(kind, code, payload, str(headers.get(":error-message", "")))
    return Frame(kind, str(headers.get(":event-type", "")), payload)


class _Thinking:
    __slots__ = ("pieces", "signature")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.signature: str | None = None


class BedrockStream:
    """The :class:`~providers._translated.StreamTranslator` of one ConverseStream answer."""

    __slots__ = (
        "_done",
        "_json_blocks",
        "_maker",
        "_provider",
        "_scrub",
        "_thinking",
        "_tools",
        "usage",
    )

    def __init__(
        self,
        model: str,
        request_id: str,
        *,
        provider: str,
        scrub: Callable[[str], str],
        created: int | None = None,
    ) -> None:
        self._maker = ChunkMaker(f"chatcmpl-{request_id}", model, created)
        self._provider = provider
        self._scrub = scrub
        # contentBlockIndex -> the OpenAI tool-call index (0, 1, ... in the order calls start).
        self._tools: dict[int, int] = {}
        # Blocks of the forced ``json_object`` tool, whose input is the answer's text.
        self._json_blocks: set[int] = set()
        # Reasoning blocks being streamed: their text so far and signature, sent whole as a
        # thinking block when the block stops (the text also went out delta by delta).
        self._thinking: dict[int, _Thinking] = {}
        self._done = False
        self.usage: Usage | None = None

    def feed(self, frame: Frame) -> list[ChatCompletionChunk]:
        if frame.kind != "event":
            raise self._error(frame)
        name = frame.name
        try:
            if name == "contentBlockDelta":
                return self._on_delta(_delta(frame.payload))
            if name == "contentBlockStart":
                return self._on_start(_start(frame.payload))
            if name == "messageStop":
                stop = _stop(frame.payload).stop_reason
                reason = finish_reason(stop, json_answer=bool(self._json_blocks))
                return [self._maker.finish(reason)]
            if name == "contentBlockStop":
                return self._on_stop(_block_stop(frame.payload).content_block_index)
            if name == "metadata":
                self.usage = usage_of(_metadata(frame.payload).usage)
                self._done = True
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(
                f"{self._provider}: the upstream's `{name}` event is not in the expected format.",
                status=502,
                provider=self._provider,
            ) from None
        # messageStart and events this gateway does not translate.
        return []

    def _on_start(self, event: w.ContentBlockStartEvent) -> list[ChatCompletionChunk]:
        use = event.start.tool_use
        if not isinstance(use, w.ToolUseStart):
            return []
        if use.name == JSON_TOOL:
            self._json_blocks.add(event.content_block_index)
            return []
        index = self._tools[event.content_block_index] = len(self._tools)
        return [self._maker.tool_start(index, use.tool_use_id, use.name)]

    def _on_delta(self, event: w.ContentBlockDeltaEvent) -> list[ChatCompletionChunk]:
        delta = event.delta
        if isinstance(delta.text, str):
            return [self._maker.text(delta.text)] if delta.text else []
        if isinstance(delta.tool_use, w.ToolUseDelta):
            piece = delta.tool_use.input
            if not piece:
                return []
            if event.content_block_index in self._json_blocks:
                return [self._maker.text(piece)]
            index = self._tools.get(event.content_block_index)
            if index is None:
                return []
            return [self._maker.tool_arguments(index, piece)]
        reasoning = delta.reasoning_content
        if isinstance(reasoning, w.ReasoningDelta):
            return self._on_reasoning(event.content_block_index, reasoning)
        return []

    def _on_reasoning(self, index: int, delta: w.ReasoningDelta) -> list[ChatCompletionChunk]:
        if isinstance(delta.redacted_content, str):
            block = ThinkingBlock(type="redacted_thinking", data=delta.redacted_content)
            return [self._maker.thinking_block(block)]
        thinking = self._thinking.setdefault(index, _Thinking())
        if isinstance(delta.signature, str):
            thinking.signature = delta.signature
        if isinstance(delta.text, str) and delta.text:
            thinking.pieces.append(delta.text)
            return [self._maker.reasoning(delta.text)]
        return []

    def _on_stop(self, index: int) -> list[ChatCompletionChunk]:
        thinking = self._thinking.pop(index, None)
        if thinking is None:
            return []
        block = ThinkingBlock(thinking="".join(thinking.pieces))
        if thinking.signature is not None:
            block.signature = thinking.signature
        return [self._maker.thinking_block(block)]

    def _error(self, frame: Frame) -> UpstreamError:
        if frame.kind == "exception":
            return error_from_body(
                frame.name, 502, frame.payload, provider=self._provider, scrub=self._scrub
            )
        message = frame.message or f"event stream error `{frame.name}`"
        return UpstreamError(
            f"{self._provider}: {self._scrub(message)}",
            status=502,
            provider=self._provider,
            code=frame.name or None,
        )

    def finish(self) -> list[ChatCompletionChunk]:
        if not self._done:
            raise stream_cut(self._provider)
        return []

    def usage_chunk(self) -> ChatCompletionChunk | None:
        return self._maker.usage(self.usage) if self.usage is not None else None
