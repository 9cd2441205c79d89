"""Anthropic's stream events as OpenAI chunks, one event at a time (pure; no I/O).

A stream is ``message_start`` (the id, the input usage), then for each content block
``content_block_start``, its ``content_block_delta`` events (``text_delta``,
``input_json_delta``, ``thinking_delta``, ``signature_delta``) and ``content_block_stop``, then
``message_delta`` (the stop reason and the cumulative output usage) and ``message_stop``.
``ping`` events keep the connection alive; an ``error`` event (``overloaded_error``...) ends the
stream and is raised as the mapped error.

Tool calls get the indices 0, 1, ... in the order their blocks start; the id and name go in the
first delta, the arguments in the following ones. Thinking text streams as
``reasoning_content``; when a thinking block ends, one delta carries the whole block in
``thinking_blocks`` (its text and signature) for the client to send back, and a
``redacted_thinking`` block is such a delta as soon as it starts.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from providers._sse import SSEEvent
from providers._translated import ChunkMaker, stream_cut
from providers.anthropic import wire
from providers.anthropic.errors import event_error
from providers.anthropic.response import finish_reason, merge_usage, unified_usage
from providers.anthropic.translate import JSON_TOOL
from proxy.errors import UpstreamError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk, ThinkingBlock
from proxy.schemas.common import Usage

__all__ = ["AnthropicStream"]

_event = msgspec.json.Decoder(wire.Event).decode

Kind = Literal["text", "tool", "json", "thinking", "other"]


class _Block:
    """A content block being streamed: what it is, and what its deltas build."""

    __slots__ = ("kind", "signature", "thinking", "tool_index")

    def __init__(self, kind: Kind, tool_index: int = -1) -> None:
        self.kind = kind
        self.tool_index = tool_index
        self.thinking: list[str] = []
        self.signature = ""


class AnthropicStream:
    """A :class:`~providers._translated.StreamTranslator` for one Anthropic stream."""

    def __init__(self, *, provider: str, model: str, request_id: str, scrub: Redactor) -> None:
        self._provider = provider
        self._scrub = scrub
        self._maker = ChunkMaker(f"msg_{request_id}", model)
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._json_answer = False
        self._native_usage: wire.Usage | None = None
        self._stopped = False
        self._finished = False
        self.usage: Usage | None = None

    def feed(self, event: SSEEvent) -> list[ChatCompletionChunk]:
        try:
            ev = _event(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(
                f"{self._provider}: the upstream's stream event is not in the expected format.",
                status=502,
                provider=self._provider,
            ) from exc
        kind = ev.type
        if kind == "content_block_delta":
            return self._delta(ev)
        if kind == "content_block_start":
            return self._start(ev)
        if kind == "content_block_stop":
            return self._stop(ev.index)
        if kind == "message_start":
            self._message_start(ev.message)
        elif kind == "message_delta":
            return self._message_delta(ev)
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            raise event_error(
                ev.error or wire.ErrorBody(), provider=self._provider, scrub=self._scrub
            )
        # ``ping`` and event types added later carry nothing for the client.
        return []

    def finish(self) -> list[ChatCompletionChunk]:
        if not self._stopped:
            raise stream_cut(self._provider)
        # A stream that stopped without a stop reason still owes the client a finish reason.
        return [] if self._finished else [self._maker.finish("stop")]

    def usage_chunk(self) -> ChatCompletionChunk | None:
        return self._maker.usage(self.usage) if self.usage is not None else None

    # --- events -----------------------------------------------------------------------------

    def _message_start(self, message: wire.Message | None) -> None:
        if message is None:
            return
        if message.id:
            self._maker.id = message.id
        if message.model:
            self._maker.model = message.model
        if message.usage is not None:
            self._count(message.usage)

    def _message_delta(self, ev: wire.Event) -> list[ChatCompletionChunk]:
        if ev.usage is not None:
            self._count(ev.usage)
        if ev.delta is None or ev.delta.stop_reason is None:
            return []
        reason = finish_reason(ev.delta.stop_reason, json_answer=self._json_answer)
        self._finished = True
        return [self._maker.finish(reason)]

    def _count(self, usage: wire.Usage) -> None:
        self._native_usage = merge_usage(self._native_usage, usage)
        self.usage = unified_usage(self._native_usage)

    def _start(self, ev: wire.Event) -> list[ChatCompletionChunk]:
        block = ev.content_block
        if block is None:
            return []
        if block.type == "text":
            self._blocks[ev.index] = _Block("text")
            return [self._maker.text(block.text)] if block.text else []
        if block.type == "thinking":
            self._blocks[ev.index] = _Block("thinking")
            return []
        if block.type == "redacted_thinking":
            self._blocks[ev.index] = _Block("other")
            redacted = ThinkingBlock(type="redacted_thinking", data=block.data)
            return [self._maker.thinking_block(redacted)]
        if block.type == "tool_use" and block.name == JSON_TOOL:
            self._json_answer = True
            self._blocks[ev.index] = _Block("json")
            return []
        if block.type == "tool_use":
            index = self._tools
            self._tools += 1
            self._blocks[ev.index] = _Block("tool", index)
            return [self._maker.tool_start(index, block.id, block.name)]
        # Server tools and their results: nothing a chat completion can carry.
        self._blocks[ev.index] = _Block("other")
        return []

    def _delta(self, ev: wire.Event) -> list[ChatCompletionChunk]:
        state = self._blocks.get(ev.index)
        delta = ev.delta
        if state is None or delta is None:
            return []
        if delta.type == "text_delta" and delta.text and state.kind == "text":
            return [self._maker.text(delta.text)]
        if delta.type == "input_json_delta" and delta.partial_json:
            # The first input_json_delta of a block is often empty: nothing to send.
            if state.kind == "tool":
                return [self._maker.tool_arguments(state.tool_index, delta.partial_json)]
            if state.kind == "json":
                return [self._maker.text(delta.partial_json)]
        if state.kind == "thinking":
            if delta.type == "thinking_delta" and delta.thinking:
                state.thinking.append(delta.thinking)
                return [self._maker.reasoning(delta.thinking)]
            if delta.type == "signature_delta":
                state.signature += delta.signature
        return []

    def _stop(self, index: int) -> list[ChatCompletionChunk]:
        state = self._blocks.pop(index, None)
        if state is None or state.kind != "thinking":
            return []
        block = ThinkingBlock(thinking="".join(state.thinking), signature=state.signature)
        return [self._maker.thinking_block(block)]
