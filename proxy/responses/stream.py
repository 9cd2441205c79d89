"""Chat chunks in, Responses stream events out: :class:`ResponsesStream`, and the SSE bytes.

Each ``feed`` returns the events of that chunk (nothing is held back). Output items open in the
order the chunk's content kind changes: reasoning, then text (a message item; a refusal is a
second content part of it), then each tool call; reasoning after text, or text after a tool
call, opens a new item. A reasoning or message item is closed (its ``.done`` events) when the
next item opens, since its content is contiguous; ``function_call`` items stay open until the
end, because a provider may interleave the argument deltas of parallel calls. ``finish`` closes
what is open, in output order, then sends ``response.completed`` (or ``response.incomplete``)
with the whole ``Response``, usage included.

Reasoning text streams as the item's summary (``response.reasoning_summary_*``). What the
provider needs back (thinking blocks with signatures, a tool call's ``extra_content``) goes in
the reasoning item's ``encrypted_content`` envelope: a tool call's into the reasoning item open
when the call starts, or else into a reasoning item of its own just before the call. Calls past
``max_tool_calls`` are dropped, events and all.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import TypeVar

import msgspec
from msgspec import UNSET

from proxy.responses.envelope import IdFactory, new_item_id
from proxy.responses.output import (
    logprobs_of,
    new_response,
    outcome,
    reasoning_item,
    response_usage,
    text_logprobs,
)
from proxy.schemas.chat import ChatCompletionChunk, Delta, DeltaToolCall, ThinkingBlock
from proxy.schemas.common import Usage
from proxy.schemas.response_events import (
    ContentPartAdded,
    ContentPartDone,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    ReasoningSummaryPartAdded,
    ReasoningSummaryPartDone,
    ReasoningSummaryTextDelta,
    ReasoningSummaryTextDone,
    RefusalDelta,
    RefusalDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    StreamEvent,
)
from proxy.schemas.responses import (
    ContentPart,
    FunctionCallItem,
    Logprob,
    MessageItem,
    OutputItem,
    OutputText,
    ReasoningItem,
    Refusal,
    Response,
    ResponseError,
    ResponsesRequest,
    ResponseStatus,
    SummaryText,
)

__all__ = ["ERROR_CODES", "ResponsesStream", "encode_event", "encode_events"]

# ``response.failed``'s ``error.code`` takes OpenAI's codes; any other becomes ``server_error``.
ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)
_ItemStatus = typing.Literal["completed", "incomplete"]


class _Seq:
    """The stream's event counter: 0, 1, 2, ..."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = -1

    def __call__(self) -> int:
        self.n += 1
        return self.n


class _Item:
    """An output item being built; ``status`` is ``in_progress`` until it is closed."""

    prefix = ""

    def __init__(self, seq: _Seq, index: int, item_id: str) -> None:
        self.seq = seq
        self.index = index
        self.id = item_id
        self.status: typing.Literal["in_progress", "completed", "incomplete"] = "in_progress"

    def render(self) -> OutputItem:
        raise NotImplementedError

    def added(self) -> list[StreamEvent]:
        item = self.render()
        return [OutputItemAdded(sequence_number=self.seq(), output_index=self.index, item=item)]

    def close(self, status: _ItemStatus) -> list[StreamEvent]:
        out = self._close_content()
        self.status = status
        item = self.render()
        out.append(OutputItemDone(sequence_number=self.seq(), output_index=self.index, item=item))
        return out

    def _close_content(self) -> list[StreamEvent]:
        return []


class _Reasoning(_Item):
    """Reasoning text streams as summary part 0; blocks and extras go in the envelope."""

    prefix = "rs"

    def __init__(self, seq: _Seq, index: int, item_id: str) -> None:
        super().__init__(seq, index, item_id)
        self.text: list[str] = []
        self.blocks: list[ThinkingBlock] = []
        self.extras: dict[str, msgspec.Raw] = {}

    def render(self) -> ReasoningItem:
        text = "".join(self.text)
        if self.status == "in_progress":
            return ReasoningItem(id=self.id, summary=[SummaryText(text=text)] if text else [])
        return reasoning_item(self.id, text, self.blocks, self.extras)

    def delta(self, text: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self.text:
            out.append(
                ReasoningSummaryPartAdded(
                    sequence_number=self.seq(),
                    item_id=self.id,
                    output_index=self.index,
                    summary_index=0,
                    part=SummaryText(text=""),
                )
            )
        self.text.append(text)
        out.append(
            ReasoningSummaryTextDelta(
                sequence_number=self.seq(),
                item_id=self.id,
                output_index=self.index,
                summary_index=0,
                delta=text,
            )
        )
        return out

    def _close_content(self) -> list[StreamEvent]:
        if not self.text:
            return []
        text = "".join(self.text)
        done = ReasoningSummaryTextDone(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            summary_index=0,
            text=text,
        )
        part_done = ReasoningSummaryPartDone(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            summary_index=0,
            part=SummaryText(text=text),
        )
        return [done, part_done]


class _Message(_Item):
    """The assistant message: a text part, then a refusal part when one comes."""

    prefix = "msg"

    def __init__(self, seq: _Seq, index: int, item_id: str) -> None:
        super().__init__(seq, index, item_id)
        self.parts: list[OutputText | Refusal] = []
        self.open: OutputText | Refusal | None = None
        self.buffer: list[str] = []
        self.logprobs: list[Logprob] = []

    def render(self) -> MessageItem:
        content: list[ContentPart] = list(self.parts)
        if isinstance(self.open, OutputText):
            text = "".join(self.buffer)
            content.append(OutputText(text=text, annotations=[], logprobs=list(self.logprobs)))
        elif isinstance(self.open, Refusal):
            content.append(Refusal(refusal="".join(self.buffer)))
        return MessageItem(role="assistant", content=content, id=self.id, status=self.status)

    def _part(self, part: OutputText | Refusal) -> list[StreamEvent]:
        if self.open is not None and type(self.open) is type(part):
            return []
        out = self._close_content()
        self.open = part
        added = ContentPartAdded(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            content_index=len(self.parts),
            part=part,
        )
        return [*out, added]

    def text(self, delta: str, logprobs: list[Logprob]) -> list[StreamEvent]:
        out = self._part(OutputText(text="", annotations=[], logprobs=[]))
        self.buffer.append(delta)
        self.logprobs += logprobs
        event = OutputTextDelta(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            content_index=len(self.parts),
            delta=delta,
            logprobs=text_logprobs(logprobs),
        )
        return [*out, event]

    def refusal(self, delta: str) -> list[StreamEvent]:
        out = self._part(Refusal(refusal=""))
        self.buffer.append(delta)
        event = RefusalDelta(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            content_index=len(self.parts),
            delta=delta,
        )
        return [*out, event]

    def _close_content(self) -> list[StreamEvent]:
        if self.open is None:
            return []
        text, index = "".join(self.buffer), len(self.parts)
        done: StreamEvent
        part: OutputText | Refusal
        if isinstance(self.open, OutputText):
            part = OutputText(text=text, annotations=[], logprobs=self.logprobs)
            done = OutputTextDone(
                sequence_number=self.seq(),
                item_id=self.id,
                output_index=self.index,
                content_index=index,
                text=text,
                logprobs=text_logprobs(self.logprobs),
            )
        else:
            part = Refusal(refusal=text)
            done = RefusalDone(
                sequence_number=self.seq(),
                item_id=self.id,
                output_index=self.index,
                content_index=index,
                refusal=text,
            )
        self.parts.append(part)
        self.open, self.buffer, self.logprobs = None, [], []
        part_done = ContentPartDone(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            content_index=index,
            part=part,
        )
        return [done, part_done]


class _Call(_Item):
    prefix = "fc"

    def __init__(self, seq: _Seq, index: int, item_id: str, call_id: str, name: str) -> None:
        super().__init__(seq, index, item_id)
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []

    def render(self) -> FunctionCallItem:
        return FunctionCallItem(
            call_id=self.call_id,
            name=self.name,
            arguments="".join(self.arguments),
            id=self.id,
            status=self.status,
        )

    def delta(self, arguments: str) -> list[StreamEvent]:
        self.arguments.append(arguments)
        event = FunctionCallArgumentsDelta(
            sequence_number=self.seq(), item_id=self.id, output_index=self.index, delta=arguments
        )
        return [event]

    def _close_content(self) -> list[StreamEvent]:
        done = FunctionCallArgumentsDone(
            sequence_number=self.seq(),
            item_id=self.id,
            output_index=self.index,
            arguments="".join(self.arguments),
        )
        return [done]


_I = TypeVar("_I", _Reasoning, _Message)


class ResponsesStream:
    """The Responses events of one answer, built from its chat chunks as they arrive.

    ``start`` (called by the first ``feed`` if not before) gives ``response.created`` and
    ``response.in_progress``; ``finish`` (the chat stream ended) or ``fail`` (it broke) the last
    events. ``sequence_number`` counts every event from 0. After ``finish`` or ``fail`` every
    call returns no events. ``model`` is the request's until a chunk names the upstream's.
    """

    def __init__(
        self,
        req: ResponsesRequest,
        *,
        response_id: str,
        created_at: int,
        new_id: IdFactory = new_item_id,
    ) -> None:
        self._req = req
        self._id = response_id
        self._created_at = created_at
        self._new_id = new_id
        self._seq = _Seq()
        self._model = req.model
        self._items: list[_Item] = []
        self._current: _Reasoning | _Message | None = None
        self._calls: dict[int, _Call] = {}  # chat tool-call index -> its item
        self._dropped: set[int] = set()  # chat tool-call indexes past max_tool_calls
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._started = False
        self._ended = False

    # --- the events -------------------------------------------------------------------------

    def start(self) -> list[StreamEvent]:
        if self._started:
            return []
        self._started = True
        return [
            ResponseCreated(sequence_number=self._seq(), response=self.snapshot()),
            ResponseInProgress(sequence_number=self._seq(), response=self.snapshot()),
        ]

    def feed(self, chunk: ChatCompletionChunk) -> list[StreamEvent]:
        if self._ended:
            return []
        out = self.start()
        self._model = chunk.model or self._model
        if chunk.usage:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            out += self._delta(choice.delta, choice.logprobs)
            if choice.finish_reason:
                self._finish_reason = choice.finish_reason
        return out

    def finish(self, *, completed_at: int | None = None) -> list[StreamEvent]:
        """Closes the open items; ``response.completed``, or ``response.incomplete`` when the
        answer was cut (finish reason ``length`` or ``content_filter``)."""
        if self._ended:
            return []
        out = self.start()
        status, details = outcome(self._finish_reason)
        out += self._close_all("completed" if status == "completed" else "incomplete")
        resp = self.snapshot(status)
        resp.incomplete_details = details
        if status == "completed":
            resp.completed_at = completed_at
            out.append(ResponseCompleted(sequence_number=self._seq(), response=resp))
        else:
            out.append(ResponseIncomplete(sequence_number=self._seq(), response=resp))
        return out

    def fail(self, message: str, code: str = "server_error") -> list[StreamEvent]:
        """Closes the open items as ``incomplete``, then ``response.failed`` with the error
        (``code`` outside OpenAI's list is sent as ``server_error``)."""
        if self._ended:
            return []
        out = self.start()
        out += self._close_all("incomplete")
        resp = self.snapshot("failed")
        resp.error = ResponseError(
            code=code if code in ERROR_CODES else "server_error", message=message
        )
        out.append(ResponseFailed(sequence_number=self._seq(), response=resp))
        return out

    def snapshot(self, status: ResponseStatus = "in_progress") -> Response:
        """The response as built so far (what to store when the client goes away)."""
        resp = new_response(
            self._req,
            response_id=self._id,
            created_at=self._created_at,
            status=status,
            model=self._model,
        )
        resp.output = [item.render() for item in self._items]
        if self._usage is not None:
            resp.usage = response_usage(self._usage)
        return resp

    # --- items ------------------------------------------------------------------------------

    def _delta(self, d: Delta, logprobs: msgspec.Raw | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if d.reasoning_content or d.thinking_blocks:
            reasoning = self._open(_Reasoning, out)
            if d.reasoning_content:
                out += reasoning.delta(d.reasoning_content)
            reasoning.blocks += d.thinking_blocks or []
        if d.content or d.refusal:
            message = self._open(_Message, out)
            if d.content:
                out += message.text(d.content, logprobs_of(logprobs))
            if d.refusal:
                out += message.refusal(d.refusal)
        for call in d.tool_calls or ():
            out += self._tool_call(call)
        return out

    def _open(self, kind: type[_I], out: list[StreamEvent]) -> _I:
        """The open item of this kind, or a new one (closing the open one of the other kind)."""
        current = self._current
        if isinstance(current, kind):
            return current
        if current is not None:
            out += current.close("completed")
        item = kind(self._seq, len(self._items), self._new_id(kind.prefix))
        self._items.append(item)
        self._current = item
        out += item.added()
        return item

    def _tool_call(self, delta: DeltaToolCall) -> list[StreamEvent]:
        if delta.index in self._dropped:
            return []
        out: list[StreamEvent] = []
        call = self._calls.get(delta.index)
        extra = delta.extra_content
        if call is None:
            limit = self._req.max_tool_calls
            if isinstance(limit, int) and len(self._calls) >= limit:
                self._dropped.add(delta.index)
                return []
            call_id = delta.id if isinstance(delta.id, str) else self._new_id("call")
            current, self._current = self._current, None
            if extra is not UNSET and isinstance(current, _Reasoning):
                current.extras[call_id] = extra
                extra = UNSET
            if current is not None:
                out += current.close("completed")
            if extra is not UNSET:
                out += self._extras_item(call_id, extra)
            name = delta.function.name if delta.function and delta.function.name else ""
            call = _Call(self._seq, len(self._items), self._new_id("fc"), call_id, name)
            self._items.append(call)
            self._calls[delta.index] = call
            out += call.added()
        elif extra is not UNSET:
            out += self._extras_item(call.call_id, extra)
        if delta.function and delta.function.arguments:
            out += call.delta(delta.function.arguments)
        return out

    def _extras_item(self, call_id: str, extra: msgspec.Raw) -> list[StreamEvent]:
        """A reasoning item of its own carrying a tool call's ``extra_content``."""
        item = _Reasoning(self._seq, len(self._items), self._new_id("rs"))
        item.extras[call_id] = extra
        self._items.append(item)
        return item.added() + item.close("completed")

    def _close_all(self, status: _ItemStatus) -> list[StreamEvent]:
        self._ended = True
        self._current = None
        out: list[StreamEvent] = []
        for item in self._items:
            if item.status == "in_progress":
                out += item.close(status)
        return out


_EVENT_HEADS = {
    cls: b"event: " + str(cls.__struct_config__.tag).encode() + b"\ndata: "
    for cls in typing.get_args(StreamEvent)
}
_encode = msgspec.json.Encoder().encode


def encode_event(event: StreamEvent) -> bytes:
    """The SSE bytes of one event: ``event: <type>\\ndata: <json>\\n\\n``."""
    return _EVENT_HEADS[type(event)] + _encode(event) + b"\n\n"


def encode_events(events: Sequence[StreamEvent]) -> bytes:
    """Several events in one buffer (one write per chunk)."""
    return b"".join(_EVENT_HEADS[type(ev)] + _encode(ev) + b"\n\n" for ev in events)
