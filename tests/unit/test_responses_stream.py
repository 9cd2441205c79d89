"""``ResponsesStream``: chat chunks in, Responses events out, one feed at a time; exact event
sequences and SSE bytes, every event checked by the SDK's models and its stream accumulator."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import openai
import pytest
from openai.types.responses.response_error import ResponseError

from proxy.responses.envelope import decode_envelope
from proxy.responses.stream import ERROR_CODES, ResponsesStream, encode_event, encode_events
from proxy.responses.translate import output_as_input, to_chat
from proxy.schemas.chat import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ThinkingBlock,
)
from proxy.schemas.common import Usage
from proxy.schemas.response_events import OutputTextDelta, StreamEvent
from proxy.schemas.responses import ReasoningItem
from tests.unit.responses_support import (
    accumulate,
    as_json,
    counter_ids,
    request,
    sdk_event,
    sdk_response,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "responses"
GEMINI_EXTRA = {"google": {"thought_signature": "Q2lnbmF0dXJl"}}
# Lifecycle events carry the whole Response: elided in the sequences, checked on their own.
LIFECYCLE = {"response.created", "response.in_progress", "response.completed",
             "response.incomplete", "response.failed"}  # fmt: skip


def _chunk(
    delta: Delta | None = None,
    finish: str | None = None,
    *,
    usage: Usage | None = None,
    logprobs: bytes | None = None,
) -> ChatCompletionChunk:
    choices = []
    if delta is not None or finish is not None:
        raw = None if logprobs is None else msgspec.Raw(logprobs)
        choices.append(
            ChunkChoice(index=0, delta=delta or Delta(), finish_reason=finish, logprobs=raw)
        )
    return ChatCompletionChunk(
        id="chatcmpl-1", created=1, model="upstream-model", choices=choices, usage=usage
    )


def _call(index: int, *, id: str | None = None, name: str | None = None, args: str = "",
          extra: dict[str, Any] | None = None) -> Delta:  # fmt: skip
    call = DeltaToolCall(index=index, function=DeltaFunction(arguments=args))
    if id is not None and name is not None:
        call.id, call.type = id, "function"
        call.function = DeltaFunction(name=name, arguments=args)
    if extra is not None:
        call.extra_content = msgspec.Raw(msgspec.json.encode(extra))
    return Delta(tool_calls=[call])


def _stream(doc: dict[str, Any] | None = None) -> ResponsesStream:
    req = request({"input": "hi", "stream": True, **(doc or {})})
    return ResponsesStream(req, response_id="resp_1", created_at=1750000000, new_id=counter_ids())


def _run(chunks: list[ChatCompletionChunk], doc: dict[str, Any] | None = None) -> list[Any]:
    """Every event of a whole stream, each validated by the SDK's own event models."""
    stream = _stream(doc)
    events: list[StreamEvent] = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish()
    for event in events:
        sdk_event(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


def _brief(events: list[Any]) -> list[Any]:
    """The events as JSON, lifecycle events reduced to their type and status."""
    out = []
    for doc in as_json(events):
        if doc["type"] in LIFECYCLE:
            doc = {"type": doc["type"], "status": doc["response"]["status"]}
        else:
            del doc["sequence_number"]
        out.append(doc)
    return out


TEXT_CHUNKS = [
    _chunk(Delta(role="assistant", content="Hi")),
    _chunk(Delta(content=" there")),
    _chunk(finish="stop"),
    _chunk(usage=Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)),
]


def test_text_stream_exact_bytes() -> None:
    """A text answer is exactly this SSE transcript (``event:`` line, one-line JSON data)."""
    events = _run(TEXT_CHUNKS)
    assert encode_events(events) == (FIXTURES / "text.sse").read_bytes()
    assert b"".join(encode_event(e) for e in events) == encode_events(events)


def test_encode_event_bytes() -> None:
    """One event is ``event: <type>``, its JSON on one ``data:`` line, and a blank line."""
    event = OutputTextDelta(
        sequence_number=4, item_id="msg_1", output_index=0, content_index=0, delta="Hi\n"
    )
    assert encode_event(event) == (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","item_id":"msg_1","output_index":0,'
        b'"content_index":0,"delta":"Hi\\n","logprobs":[],"sequence_number":4}\n\n'
    )


def test_each_feed_returns_its_own_events() -> None:
    """Nothing is held back: a chunk's events come out of the ``feed`` that took it."""
    stream = _stream()
    start = [e["type"] for e in as_json(stream.start())]
    first = [e["type"] for e in as_json(stream.feed(TEXT_CHUNKS[0]))]
    second = [e["type"] for e in as_json(stream.feed(TEXT_CHUNKS[1]))]
    assert start == ["response.created", "response.in_progress"]
    assert first == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert second == ["response.output_text.delta"]
    assert stream.feed(TEXT_CHUNKS[2]) == []
    assert stream.feed(TEXT_CHUNKS[3]) == []
    last = [e["type"] for e in as_json(stream.finish())]
    assert last == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_first_feed_starts_the_stream() -> None:
    """``feed`` before ``start`` sends ``response.created`` and ``response.in_progress`` first;
    a later ``start`` sends nothing."""
    stream = _stream()
    events = stream.feed(TEXT_CHUNKS[0])
    assert [e["type"] for e in as_json(events)][:2] == [
        "response.created",
        "response.in_progress",
    ]
    assert stream.start() == []
    assert events[0].sequence_number == 0


def test_reasoning_text_and_a_signed_gemini_call() -> None:
    """Reasoning streams as a summary, text as a message, and a tool call whose
    ``extra_content`` arrives with it gets a reasoning item carrying it just before; each item
    opens when the content kind changes, and the call's deltas stream as arguments."""
    events = _run([
        _chunk(Delta(role="assistant", reasoning_content="Let me")),
        _chunk(Delta(reasoning_content=" think")),
        _chunk(Delta(content="Checking.")),
        _chunk(_call(0, id="call_a", name="weather", extra=GEMINI_EXTRA)),
        _chunk(_call(0, args='{"c":')),
        _chunk(_call(0, args='"Paris"}')),
        _chunk(finish="tool_calls"),
    ])  # fmt: skip
    brief = _brief(events)
    envelope = brief[16]["item"].pop("encrypted_content")
    rs0 = {"item_id": "rs_0", "output_index": 0, "summary_index": 0}
    msg = {"item_id": "msg_1", "output_index": 1, "content_index": 0}
    fc = {"item_id": "fc_3", "output_index": 3}
    text = {"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}
    call = {"type": "function_call", "call_id": "call_a", "name": "weather", "id": "fc_3"}
    assert brief == [
        {"type": "response.created", "status": "in_progress"},
        {"type": "response.in_progress", "status": "in_progress"},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "reasoning", "id": "rs_0", "summary": []}},
        {"type": "response.reasoning_summary_part.added", **rs0,
         "part": {"type": "summary_text", "text": ""}},
        {"type": "response.reasoning_summary_text.delta", **rs0, "delta": "Let me"},
        {"type": "response.reasoning_summary_text.delta", **rs0, "delta": " think"},
        {"type": "response.reasoning_summary_text.done", **rs0, "text": "Let me think"},
        {"type": "response.reasoning_summary_part.done", **rs0,
         "part": {"type": "summary_text", "text": "Let me think"}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"type": "reasoning", "id": "rs_0",
                  "summary": [{"type": "summary_text", "text": "Let me think"}]}},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"type": "message", "role": "assistant", "content": [], "id": "msg_1",
                  "status": "in_progress"}},
        {"type": "response.content_part.added", **msg, "part": {**text, "text": ""}},
        {"type": "response.output_text.delta", **msg, "delta": "Checking.", "logprobs": []},
        {"type": "response.output_text.done", **msg, "text": "Checking.", "logprobs": []},
        {"type": "response.content_part.done", **msg, "part": text},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"type": "message", "role": "assistant", "content": [text], "id": "msg_1",
                  "status": "completed"}},
        {"type": "response.output_item.added", "output_index": 2,
         "item": {"type": "reasoning", "id": "rs_2", "summary": []}},
        {"type": "response.output_item.done", "output_index": 2,
         "item": {"type": "reasoning", "id": "rs_2", "summary": []}},
        {"type": "response.output_item.added", "output_index": 3,
         "item": {**call, "arguments": "", "status": "in_progress"}},
        {"type": "response.function_call_arguments.delta", **fc, "delta": '{"c":'},
        {"type": "response.function_call_arguments.delta", **fc, "delta": '"Paris"}'},
        {"type": "response.function_call_arguments.done", **fc, "arguments": '{"c":"Paris"}'},
        {"type": "response.output_item.done", "output_index": 3,
         "item": {**call, "arguments": '{"c":"Paris"}', "status": "completed"}},
        {"type": "response.completed", "status": "completed"},
    ]  # fmt: skip
    carried = decode_envelope(envelope, param=None)
    assert carried is not None
    assert as_json(carried.tool_extras) == {"call_a": GEMINI_EXTRA}
    final = accumulate(events)
    assert final.output_text == "Checking."
    assert [item.type for item in final.output] == [
        "reasoning",
        "message",
        "reasoning",
        "function_call",
    ]


def test_final_response_has_usage_model_and_every_item() -> None:
    """``response.completed`` carries the whole Response: output items, the upstream's model and
    the usage sent after the finish reason; the SDK's accumulator agrees with it."""
    events = _run(TEXT_CHUNKS, {"max_output_tokens": 50})
    final = events[-1].response
    assert as_json(final.output) == [
        {"type": "message", "role": "assistant", "id": "msg_0", "status": "completed",
         "content": [{"type": "output_text", "text": "Hi there", "annotations": [],
                      "logprobs": []}]}
    ]  # fmt: skip
    assert (final.model, final.max_output_tokens, final.status) == (
        "upstream-model", 50, "completed")  # fmt: skip
    assert as_json(final.usage) == {
        "input_tokens": 5, "output_tokens": 2, "total_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }  # fmt: skip
    assert events[0].response.model == "anthropic/claude"
    sdk_response(final)
    sdk_final = accumulate(events)
    assert sdk_final.output_text == "Hi there"
    assert sdk_final.usage is not None
    assert sdk_final.usage.total_tokens == 7


def test_anthropic_thinking_signature_survives_the_next_turn() -> None:
    """Anthropic's thinking block (text and signature, sent at the end of the thinking) lands
    in the reasoning item's envelope, and the next turn's assistant message gets it back."""
    block = ThinkingBlock(thinking="Need the tool.", signature="EqQBCkYIBxgC")
    events = _run([
        _chunk(Delta(role="assistant", reasoning_content="Need the tool.")),
        _chunk(Delta(thinking_blocks=[block])),
        _chunk(_call(0, id="toolu_1", name="lookup", args="")),
        _chunk(_call(0, args='{"q":"x"}')),
        _chunk(finish="tool_calls"),
    ])  # fmt: skip
    final = events[-1].response
    reasoning = final.output[0]
    assert isinstance(reasoning, ReasoningItem)
    carried = decode_envelope(reasoning.encrypted_content, param=None)
    assert carried is not None
    assert carried.thinking_blocks == [block]
    output = {"type": "function_call_output", "call_id": "toolu_1", "output": "found"}
    nxt = to_chat(request({"input": [output]}), output_as_input(final))
    assert as_json(nxt.messages[0]) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "id": "toolu_1",
                        "function": {"name": "lookup", "arguments": '{"q":"x"}'}}],
        "reasoning_content": "Need the tool.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "EqQBCkYIBxgC"}
        ],
    }  # fmt: skip


def test_interleaved_parallel_calls_stay_open_until_the_end() -> None:
    """Argument deltas of parallel calls may interleave: each goes to its own item, and the
    calls close in output order at the end."""
    events = _run([
        _chunk(_call(0, id="c0", name="f")),
        _chunk(_call(1, id="c1", name="g")),
        _chunk(_call(0, args='{"a":1}')),
        _chunk(_call(1, args='{"b":2}')),
        _chunk(finish="tool_calls"),
    ])  # fmt: skip
    tail = [(e["type"], e.get("output_index")) for e in _brief(events)[-5:]]
    assert tail == [
        ("response.function_call_arguments.done", 0),
        ("response.output_item.done", 0),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    final = accumulate(events)
    assert [(o.call_id, o.arguments) for o in final.output if o.type == "function_call"] == [
        ("c0", '{"a":1}'),
        ("c1", '{"b":2}'),
    ]


def test_text_after_a_call_and_late_extra_content() -> None:
    """Text after a tool call opens a new message item while the call stays open; a tool call's
    ``extra_content`` arriving after its start gets a reasoning item of its own."""
    events = _run([
        _chunk(_call(0, id="c0", name="f", args="{}")),
        _chunk(Delta(tool_calls=[DeltaToolCall(index=0, extra_content=msgspec.Raw(b'{"k":1}'))])),
        _chunk(Delta(content="Done.")),
        _chunk(finish="stop"),
    ])  # fmt: skip
    final = events[-1].response
    assert [(i["type"], i["id"]) for i in as_json(final.output)] == [
        ("function_call", "fc_0"),
        ("reasoning", "rs_1"),
        ("message", "msg_2"),
    ]
    extras_item = final.output[1]
    assert isinstance(extras_item, ReasoningItem)
    carried = decode_envelope(extras_item.encrypted_content, param=None)
    assert carried is not None
    assert as_json(carried.tool_extras) == {"c0": {"k": 1}}
    nxt = to_chat(request({"input": "next"}), output_as_input(final))
    assert as_json(nxt.messages[0]) == {
        "role": "assistant",
        "content": "Done.",
        "tool_calls": [{"type": "function", "id": "c0",
                        "function": {"name": "f", "arguments": "{}"},
                        "extra_content": {"k": 1}}],
    }  # fmt: skip
    accumulate(events)


def test_refusal_is_a_second_content_part() -> None:
    """A refusal after text is the message's second part, with refusal delta and done events."""
    events = _run([
        _chunk(Delta(content="Well")),
        _chunk(Delta(refusal="I can't.")),
        _chunk(finish="stop"),
    ])  # fmt: skip
    kinds = [(e["type"], e.get("content_index")) for e in _brief(events)]
    assert kinds[4:11] == [
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.content_part.added", 1),
        ("response.refusal.delta", 1),
        ("response.refusal.done", 1),
        ("response.content_part.done", 1),
    ]
    assert as_json(events[-1].response.output[0])["content"] == [
        {"type": "output_text", "text": "Well", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "I can't."},
    ]
    accumulate(events)


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_answer_ends_incomplete(finish: str, reason: str) -> None:
    """An answer cut by length or a filter ends with ``response.incomplete``, the reason, and
    the open items ``incomplete``."""
    events = _run([_chunk(Delta(content="Once upon")), _chunk(finish=finish)])
    last = as_json(events[-1])
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": reason}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert as_json(events[-2])["item"]["status"] == "incomplete"
    assert last["response"]["completed_at"] is None


def test_fail_closes_open_items_then_fails() -> None:
    """A broken upstream stream closes what is open as ``incomplete``, then ``response.failed``
    with the error; a code outside OpenAI's list is sent as ``server_error``."""
    stream = _stream()
    stream.start()
    stream.feed(_chunk(Delta(content="Hal")))
    stream.feed(_chunk(_call(0, id="c0", name="f", args="{")))
    events = stream.fail("anthropic: overloaded", "upstream_timeout")
    for event in events:
        sdk_event(event)
    assert _brief(events) == [
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 1,
         "arguments": "{"},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"type": "function_call", "call_id": "c0", "name": "f", "arguments": "{",
                  "id": "fc_1", "status": "incomplete"}},
        {"type": "response.failed", "status": "failed"},
    ]  # fmt: skip
    failed = as_json(events[-1])["response"]
    assert failed["error"] == {"code": "server_error", "message": "anthropic: overloaded"}
    assert [item["status"] for item in failed["output"]] == ["completed", "incomplete"]
    assert stream.finish() == []
    assert stream.fail("again") == []
    assert stream.feed(_chunk(Delta(content="late"))) == []


def test_fail_keeps_openai_codes_and_closes_an_open_text() -> None:
    """An OpenAI error code is kept; an open text part is closed with its text so far."""
    stream = _stream()
    stream.feed(_chunk(Delta(content="Hal")))
    events = stream.fail("Too many requests", "rate_limit_exceeded")
    assert [e["type"] for e in _brief(events)] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    assert as_json(events[0])["text"] == "Hal"
    assert as_json(events[-1])["response"]["error"]["code"] == "rate_limit_exceeded"


def test_error_codes_are_the_sdks() -> None:
    """The codes ``fail`` keeps are exactly those the SDK's ``ResponseError`` accepts."""
    sdk_codes = typing.get_args(ResponseError.model_fields["code"].annotation)
    assert set(sdk_codes) == ERROR_CODES


def test_max_tool_calls_drops_later_calls_silently() -> None:
    """Tool calls past ``max_tool_calls`` produce no events and no items."""
    events = _run(
        [
            _chunk(_call(0, id="c0", name="f", args="{}")),
            _chunk(_call(1, id="c1", name="f", args="{")),
            _chunk(_call(1, args="}")),
            _chunk(finish="tool_calls"),
        ],
        {"max_tool_calls": 1},
    )
    final = accumulate(events)
    assert [o.call_id for o in final.output if o.type == "function_call"] == ["c0"]
    assert not any("c1" in str(as_json(e)) for e in events[:-1])


def test_logprobs_stream_with_the_text() -> None:
    """Chat logprobs go with each text delta (without bytes) and into the final part (with)."""
    token = (
        b'{"content":[{"token":"Hi","logprob":-0.5,"bytes":[72,105],'
        b'"top_logprobs":[{"token":"Hi","logprob":-0.5,"bytes":[72,105]}]}]}'
    )
    events = _run([_chunk(Delta(content="Hi"), logprobs=token), _chunk(finish="stop")],
                  {"top_logprobs": 1})  # fmt: skip
    delta = next(e for e in as_json(events) if e["type"] == "response.output_text.delta")
    assert delta["logprobs"] == [
        {"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hi", "logprob": -0.5}]}
    ]
    final = as_json(events[-1])["response"]["output"][0]["content"][0]
    assert final["logprobs"] == [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
         "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}
    ]  # fmt: skip
    accumulate(events)


def test_snapshot_holds_what_streamed_so_far() -> None:
    """Mid-stream, the snapshot holds the partial reasoning, text and arguments (to store when
    the client goes away), with the items still ``in_progress``."""
    stream = _stream()
    stream.feed(_chunk(Delta(reasoning_content="Hm")))
    stream.feed(_chunk(Delta(content="Par")))
    snap = as_json(stream.snapshot())
    assert snap["status"] == "in_progress"
    assert snap["output"] == [
        {"type": "reasoning", "id": "rs_0", "summary": [{"type": "summary_text", "text": "Hm"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "in_progress",
         "content": [{"type": "output_text", "text": "Par", "annotations": [],
                      "logprobs": []}]},
    ]  # fmt: skip
    sdk_response(stream.snapshot())


def test_empty_answer_and_other_choices() -> None:
    """A stream with no content completes with no output; choices other than the first, and
    empty deltas, produce nothing."""
    other = ChatCompletionChunk(
        id="x", created=1, model="m",
        choices=[ChunkChoice(index=1, delta=Delta(content="other"))],
    )  # fmt: skip
    events = _run([_chunk(Delta(role="assistant", content="")), other, _chunk(finish="stop")])
    assert [e["type"] for e in _brief(events)] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert as_json(events[-1])["response"]["output"] == []


def _gateway_transport(body: bytes, seen: list[bytes]) -> httpx2.MockTransport:
    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req.read())
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.MockTransport(handler)


def test_sdk_stream_helper_accepts_the_stream() -> None:
    """The openai SDK's ``responses.stream()`` helper reads our SSE bytes end to end (its
    accumulator, text events and final response)."""
    events = _run([
        _chunk(Delta(reasoning_content="Plan.")),
        _chunk(Delta(content="Hello")),
        _chunk(Delta(content=" world")),
        _chunk(_call(0, id="c0", name="f", args='{"x":1}')),
        _chunk(finish="tool_calls"),
        _chunk(usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)),
    ])  # fmt: skip
    seen: list[bytes] = []
    http = httpx2.Client(transport=_gateway_transport(encode_events(events), seen))
    client = openai.OpenAI(api_key="sk-x", base_url="http://gateway.test/v1", http_client=http)
    with client.responses.stream(model="anthropic/claude", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    client.close()
    assert deltas == ["Hello", " world"]
    assert final.output_text == "Hello world"
    assert final.usage is not None
    assert final.usage.total_tokens == 7
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert msgspec.json.decode(seen[0])["stream"] is True
