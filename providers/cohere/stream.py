"""Cohere's v2 chat stream as OpenAI chunks, one event at a time (pure).

Cohere's events (each SSE ``data:`` is JSON tagged by ``type``; the ``event:`` line repeats
it): ``message-start`` (the id), ``content-start``/``content-delta``/``content-end`` (text in
``delta.message.content.text``, reasoning in ``...content.thinking``), ``tool-plan-delta``
(``delta.message.tool_plan``), ``tool-call-start`` (id, name, arguments so far),
``tool-call-delta`` (more arguments), ``tool-call-end``, ``citation-start``/``citation-end``
and ``debug`` (not translated), and ``message-end`` (finish reason, usage, or ``error``).
A stream that ends without ``message-end`` was cut.
"""

from __future__ import annotations

import msgspec

from providers._sse import SSEEvent
from providers._translated import ChunkMaker, stream_cut
from providers.cohere import wire
from providers.cohere.errors import generation_failed
from providers.cohere.translate import finish_reason, to_usage
from proxy.errors import UpstreamError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk
from proxy.schemas.common import Usage

__all__ = ["CohereStream"]

_decode = msgspec.json.Decoder(wire.StreamEvent).decode


class _Typed(msgspec.Struct):
    type: str | None = None
    message: str | None = None  # an error body, should one arrive as an event


_decode_type = msgspec.json.Decoder(_Typed).decode
_KNOWN = frozenset(
    {
        "message-start",
        "content-start",
        "content-delta",
        "content-end",
        "tool-plan-delta",
        "tool-call-start",
        "tool-call-delta",
        "tool-call-end",
        "citation-start",
        "citation-end",
        "message-end",
        "debug",
    }
)


class CohereStream:
    """One stream's translation; tool calls are numbered 0, 1, ... in the order they start
    (Cohere's own ``index`` also counts content blocks)."""

    __slots__ = ("_calls", "_chunks", "_ended", "_provider", "_scrub", "usage")

    def __init__(
        self,
        model: str,
        request_id: str,
        *,
        provider: str,
        scrub: Redactor,
        created: int | None = None,
    ) -> None:
        self._chunks = ChunkMaker(request_id, model, created)
        self._calls: dict[int, int] = {}
        self._ended = False
        self._provider = provider
        self._scrub = scrub
        self.usage: Usage | None = None

    def feed(self, event: SSEEvent) -> list[ChatCompletionChunk]:
        data = event.data
        if self._ended or not data or data == b"[DONE]":
            return []
        try:
            ev = _decode(data)
        except msgspec.ValidationError:  # a DecodeError too: caught first
            return self._unknown(data)
        except msgspec.DecodeError:
            raise self._bad() from None
        return self._translate(ev)

    def _unknown(self, data: bytes) -> list[ChatCompletionChunk]:
        """An event that is not one of Cohere's documented shapes: a malformed known event is
        a bad answer, an error body an error; an event type newer than this code is skipped."""
        try:
            typed = _decode_type(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise self._bad() from None
        if typed.type in _KNOWN:
            raise self._bad()
        if typed.type is None and typed.message:
            raise UpstreamError(
                f"{self._provider}: {self._scrub(typed.message)}",
                status=502,
                provider=self._provider,
            )
        return []

    def _translate(self, ev: wire.StreamEvent) -> list[ChatCompletionChunk]:
        chunks = self._chunks
        if isinstance(ev, wire.MessageStart):
            if ev.id:
                chunks.id = ev.id
            return []
        if isinstance(ev, (wire.ContentStart, wire.ContentDelta)):
            content = ev.delta.message.content if ev.delta and ev.delta.message else None
            out = []
            if content is not None and content.thinking:
                out.append(chunks.reasoning(content.thinking))
            if content is not None and content.text:
                out.append(chunks.text(content.text))
            return out
        if isinstance(ev, wire.ToolPlanDelta):
            plan = ev.delta.message.tool_plan if ev.delta and ev.delta.message else None
            return [chunks.text(plan)] if plan else []
        if isinstance(ev, (wire.ToolCallStart, wire.ToolCallDelta)):
            return self._tool_call(ev)
        if isinstance(ev, wire.MessageEnd):
            return self._end(ev)
        return []  # content-end, tool-call-end, citations, debug

    def _tool_call(self, ev: wire.ToolCallStart | wire.ToolCallDelta) -> list[ChatCompletionChunk]:
        call = ev.delta.message.tool_calls if ev.delta and ev.delta.message else None
        if call is None:
            return []
        arguments = call.function.arguments if call.function else None
        out = []
        if isinstance(ev, wire.ToolCallStart):
            index = self._calls[ev.index] = len(self._calls)
            name = call.function.name if call.function else None
            out.append(self._chunks.tool_start(index, call.id or "", name or ""))
        else:
            got = self._calls.get(ev.index)
            if got is None:
                raise self._bad()
            index = got
        if arguments:
            out.append(self._chunks.tool_arguments(index, arguments))
        return out

    def _end(self, ev: wire.MessageEnd) -> list[ChatCompletionChunk]:
        self._ended = True
        delta = ev.delta
        reason = delta.finish_reason if delta else None
        if delta is not None and delta.usage is not None:
            self.usage = to_usage(delta.usage)
        if reason in ("ERROR", "TIMEOUT") or (delta is not None and delta.error):
            raise generation_failed(
                reason or "ERROR",
                delta.error if delta else None,
                provider=self._provider,
                scrub=self._scrub,
            )
        return [self._chunks.finish(finish_reason(reason, called_tools=bool(self._calls)))]

    def finish(self) -> list[ChatCompletionChunk]:
        if not self._ended:
            raise stream_cut(self._provider)
        return []

    def usage_chunk(self) -> ChatCompletionChunk | None:
        return self._chunks.usage(self.usage) if self.usage is not None else None

    def _bad(self) -> UpstreamError:
        return UpstreamError(
            f"{self._provider}: the upstream's stream event is not in the expected format.",
            status=502,
            provider=self._provider,
        )
