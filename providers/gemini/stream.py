"""``streamGenerateContent?alt=sse`` as OpenAI chunks, one event at a time (pure).

Each ``data:`` event is a whole ``GenerateContentResponse`` carrying the next piece of each
candidate: text and thought parts become content and reasoning deltas as they come; a function
call arrives whole (Gemini does not stream arguments), so it becomes its start delta (id, name,
arguments ``""``) followed by one delta with all its arguments. Every event repeats
``usageMetadata`` (the last one is final); the last event of a candidate carries its
``finishReason``, and a stream that ends before every candidate had one was cut.
"""

from __future__ import annotations

import re

import msgspec
from msgspec import UNSET

from providers._sse import SSEParser
from providers._translated import ChunkMaker, stream_cut
from providers.gemini.errors import error_from_body
from providers.gemini.response import (
    arguments_text,
    blocked_message,
    call_id,
    finish_reason,
    signature_extra,
    usage_of,
)
from providers.gemini.wire import Candidate, Part, StreamEvent
from proxy.errors import UpstreamError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk, Delta, ThinkingBlock
from proxy.schemas.common import Usage

__all__ = ["EventReader", "GeminiStream"]

_event = msgspec.json.Decoder(StreamEvent).decode
# A line that opens bare JSON (``{`` or ``[``), not an SSE field.
_BARE = re.compile(rb"^[ \t]*[\[{]", re.MULTILINE)


class EventReader:
    """Splits the stream's bytes into event payloads.

    Events are SSE ``data:`` lines (Gemini ends each with ``\\r\\n\\r\\n``). An error the API
    reports after the stream began may come as bare JSON lines rather than an SSE event (the
    official SDKs parse both); from the first such line on, what is not SSE is gathered and
    handed over as one payload when the stream ends.
    """

    __slots__ = ("_line", "_raw", "_sse")

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._line = b""  # an incomplete last line
        self._raw: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._line + chunk if self._line else chunk
        cut = buf.rfind(b"\n") + 1
        self._line = buf[cut:]
        if not cut:
            return []
        lines = buf[:cut]
        if not self._raw and _BARE.search(lines) is None:
            return [e.data for e in self._sse.feed(lines)]
        out: list[bytes] = []
        for line in lines.splitlines(keepends=True):
            sse = line.startswith(b"data:") or not line.strip()
            if sse or not (self._raw or _BARE.match(line)):
                out += [e.data for e in self._sse.feed(line)]
            else:
                self._raw.append(line.strip())
        return out

    def close(self) -> list[bytes]:
        out = self.feed(b"\n") if self._line else []
        out += [e.data for e in self._sse.close()]
        if self._raw:
            out.append(b"".join(self._raw).strip(b"[],"))
        return out


class _Candidate:
    """One candidate's stream: its chunk maker (the role goes with its first delta), the index
    of its next tool call, and whether it finished."""

    __slots__ = ("calls", "finished", "maker")

    def __init__(self, maker: ChunkMaker) -> None:
        self.maker = maker
        self.calls = 0
        self.finished = False


class GeminiStream:
    """The stream translator of one Gemini answer (``n`` candidates become ``n`` choices)."""

    def __init__(
        self, *, model: str, id: str, created: int, provider: str, scrub: Redactor
    ) -> None:
        self.usage: Usage | None = None
        self._model = model
        self._id = id
        self._created = created
        self._provider = provider
        self._scrub = scrub
        self._candidates: dict[int, _Candidate] = {}
        self._blocked = False

    def _candidate(self, index: int) -> _Candidate:
        got = self._candidates.get(index)
        if got is None:
            got = self._candidates[index] = _Candidate(
                ChunkMaker(self._id, self._model, self._created)
            )
        return got

    def feed(self, event: bytes) -> list[ChatCompletionChunk]:
        try:
            ev = _event(event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(
                f"{self._provider}: an event of the stream is not in the expected format.",
                status=502,
                provider=self._provider,
            ) from exc
        if ev.error is not None:
            raise error_from_body(ev.error, self._provider, self._scrub)
        if ev.usage_metadata is not None:
            self.usage = usage_of(ev.usage_metadata)
        out: list[ChatCompletionChunk] = []
        blocked = blocked_message(ev)
        if blocked is not None:
            maker = self._candidate(0).maker
            out.append(maker.chunk(Delta(refusal=blocked)))
            out.append(maker.finish("content_filter"))
            self._blocked = True
        seed = ev.response_id or self._id
        for cand in ev.candidates:
            out += self._feed_candidate(cand, seed)
        return out

    def _feed_candidate(self, cand: Candidate, seed: str) -> list[ChatCompletionChunk]:
        state = self._candidate(cand.index)
        out: list[ChatCompletionChunk] = []
        for part in cand.content.parts if cand.content else ():
            out += self._feed_part(part, state, seed, cand.index)
        if cand.finish_reason and not state.finished:
            state.finished = True
            reason = finish_reason(cand.finish_reason, tool_calls=state.calls > 0)
            out.append(state.maker.finish(reason))
        if cand.index:
            for chunk in out:
                chunk.choices[0].index = cand.index
        return out

    def _feed_part(
        self, part: Part, state: _Candidate, seed: str, candidate: int
    ) -> list[ChatCompletionChunk]:
        maker = state.maker
        call = part.function_call
        signature = part.thought_signature
        if call is not UNSET:
            index, state.calls = state.calls, state.calls + 1
            extra = signature_extra(signature) if isinstance(signature, str) else None
            given = call.id if isinstance(call.id, str) and call.id else None
            start = maker.tool_start(
                index, given or call_id(seed, candidate, index), call.name, extra
            )
            return [start, maker.tool_arguments(index, arguments_text(part))]
        out = []
        text = part.text
        if isinstance(text, str) and text:
            out.append(maker.reasoning(text) if part.thought is True else maker.text(text))
        if isinstance(signature, str):
            # A signature on a text or thought part is returned as a thinking block of its own.
            out.append(maker.thinking_block(ThinkingBlock(signature=signature)))
        return out

    def finish(self) -> list[ChatCompletionChunk]:
        if self._blocked:
            return []
        if not self._candidates or not all(c.finished for c in self._candidates.values()):
            raise stream_cut(self._provider)
        return []

    def usage_chunk(self) -> ChatCompletionChunk | None:
        if self.usage is None:
            return None
        return ChunkMaker(self._id, self._model, self._created).usage(self.usage)
