"""The ``/anthropic`` route's translation (pure): a client's Messages request to the unified
chat request, and unified answers and chunks back to Anthropic's shapes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from providers.anthropic.inbound import MessagesIn, to_chat, without_cache_control
from providers.anthropic.outbound import MessageEvents, message_body
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk

_enc = msgspec.json.encode


def messages_in(**fields: Any) -> MessagesIn:
    body = {"model": "openai/gpt-4o", "max_tokens": 100, **fields}
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return msgspec.json.decode(_enc(body), type=MessagesIn)


def chat_json(req: MessagesIn, stream: bool = False) -> Any:
    return msgspec.json.decode(_enc(to_chat(req, req.model, stream=stream)))


# --- request --------------------------------------------------------------------------------


def test_system_and_content_blocks() -> None:
    """System blocks keep cache_control; images (base64 and URL) become image parts, a PDF a
    file part, a plain-text document its text."""
    req = messages_in(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {
                        "type": "document",
                        "title": "spec.pdf",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    },
                ],
            }
        ],
    )
    got = chat_json(req)
    assert got["messages"] == [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {
                    "type": "file",
                    "file": {
                        "file_data": "data:application/pdf;base64,JVBE",
                        "filename": "spec.pdf",
                    },
                },
                {"type": "text", "text": "notes"},
            ],
        },
    ]
    assert got["max_completion_tokens"] == 100


def test_tool_turns() -> None:
    """An assistant turn's thinking, text and tool_use become one assistant message; the next
    user turn's tool results become tool messages first (an error flagged in the text, an
    image moved to the user message), then its text."""
    req = messages_in(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "enc"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "t2", "name": "w", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here:"},
                    {"type": "tool_result", "tool_use_id": "t1", "content": "-3 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "no city"},
                            {"type": "image", "source": {"type": "url", "url": "https://m/p"}},
                        ],
                    },
                ],
            },
        ]
    )
    got = chat_json(req)["messages"]
    assert got[1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "type": "function",
                "id": "t1",
                "function": {"name": "w", "arguments": '{"city":"Oslo"}'},
            },
            {"type": "function", "id": "t2", "function": {"name": "w", "arguments": "{}"}},
        ],
        "reasoning_content": "Use the tool.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "enc"},
        ],
    }
    assert got[2] == {"role": "tool", "content": "-3 C", "tool_call_id": "t1"}
    assert got[3] == {"role": "tool", "content": "Error: no city", "tool_call_id": "t2"}
    assert got[4] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Here:"},
            {"type": "image_url", "image_url": {"url": "https://m/p"}},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "want"),
    [
        ({"type": "auto"}, ("auto", None)),
        ({"type": "any"}, ("required", None)),
        ({"type": "none"}, ("none", None)),
        (
            {"type": "tool", "name": "w", "disable_parallel_tool_use": True},
            ({"type": "function", "function": {"name": "w"}}, False),
        ),
    ],
)
def test_tools_and_choice(choice: dict[str, Any], want: tuple[Any, Any]) -> None:
    """Client tools become function tools; each tool_choice its unified form."""
    tool = {"name": "w", "input_schema": {"type": "object"}, "description": "d", "strict": True}
    got = chat_json(messages_in(tools=[tool], tool_choice=choice))
    assert got["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "w",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    assert (got["tool_choice"], got.get("parallel_tool_calls")) == want


@pytest.mark.parametrize(
    ("thinking", "output", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 8000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, None, "high"),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "disabled"}, None, None),
    ],
)
def test_thinking_becomes_reasoning_effort(
    thinking: dict[str, Any], output: dict[str, Any] | None, effort: str | None
) -> None:
    """Thinking budgets map to low/medium/high; adaptive thinking takes its effort."""
    fields: dict[str, Any] = {"thinking": thinking}
    if output is not None:
        fields["output_config"] = output
    assert chat_json(messages_in(**fields)).get("reasoning_effort") == effort


def test_sampling_user_and_stream() -> None:
    """stop_sequences, temperature, top_p and a short user id are carried; a stream asks for
    usage; a user id longer than OpenAI's 64 characters is not sent."""
    got = chat_json(
        messages_in(stop_sequences=["X"], temperature=0.3, top_p=0.8, metadata={"user_id": "u"}),
        stream=True,
    )
    assert (got["stop"], got["temperature"], got["top_p"], got["user"]) == (["X"], 0.3, 0.8, "u")
    assert (got["stream"], got["stream_options"]) == (True, {"include_usage": True})
    long_user = chat_json(messages_in(metadata={"user_id": "u" * 65}))
    assert "user" not in long_user


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "text": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f1"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
        ({"system": [{"type": "image", "source": {"type": "url", "url": "u"}}]}, "system[0].type"),
        ({"tools": [{"name": "w"}], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ],
)
def test_untranslatable_input_is_a_400(fields: dict[str, Any], param: str) -> None:
    """What only Anthropic can serve is refused with a 400 naming the field."""
    with pytest.raises(InvalidRequestError) as refused:
        to_chat(messages_in(**fields), "openai/gpt-4o")
    assert refused.value.param == param


# --- answers --------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> ChatCompletion:
    body = {
        "id": "chatcmpl-1",
        "created": 1,
        "model": "gpt",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }
    return msgspec.json.decode(_enc(body), type=ChatCompletion)


def test_message_body() -> None:
    """Thinking blocks first, then text, then tool_use blocks; usage without cached tokens in
    input_tokens; the finish reason as stop_reason."""
    got = msgspec.json.decode(
        message_body(
            completion(
                {
                    "role": "assistant",
                    "content": "Sure.",
                    "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                    "reasoning_content": "t",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "f", "arguments": "oops"},
                        },
                    ],
                },
                "tool_calls",
                {
                    "prompt_tokens": 10,
                    "completion_tokens": 3,
                    "prompt_tokens_details": {"cached_tokens": 4},
                },
            ),
            message_id="msg_1",
            model="openai/gpt",
        )
    )
    assert got == {
        "type": "message",
        "id": "msg_1",
        "model": "openai/gpt",
        "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "c2", "name": "f", "input": {"arguments": "oops"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 6,
            "output_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4,
        },
        "role": "assistant",
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, stop: str) -> None:
    """OpenAI's finish reasons as Anthropic's stop reasons."""
    body = message_body(
        completion({"role": "assistant", "content": "x"}, finish or "", {}),
        message_id="m",
        model="p/m",
    )
    assert msgspec.json.decode(body)["stop_reason"] == stop


def chunk(
    delta: dict[str, Any], finish: str | None = None, usage: Any = None
) -> ChatCompletionChunk:
    body: dict[str, Any] = {
        "id": "c",
        "created": 1,
        "model": "m",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return msgspec.json.decode(_enc(body), type=ChatCompletionChunk)


def events_of(data: bytes) -> list[Any]:
    out = []
    for part in data.split(b"\n\n"):
        if part:
            name, payload = part.split(b"\n")
            event = msgspec.json.decode(payload.removeprefix(b"data: "))
            assert name == b"event: " + event["type"].encode()
            out.append(event)
    return out


def test_stream_blocks_in_order() -> None:
    """Reasoning streams as a thinking block that its signed block closes, then text, then
    each tool call as its own tool_use block; the end carries stop reason and usage."""
    events = MessageEvents(message_id="msg_x", model="p/m")
    data = b"".join(
        [
            events.feed(chunk({"role": "assistant", "reasoning_content": "Hm"})),
            events.feed(
                chunk(
                    {"thinking_blocks": [{"type": "thinking", "thinking": "Hm", "signature": "S"}]}
                )
            ),
            events.feed(chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "R"}]})),
            events.feed(chunk({"content": "Hi"})),
            events.feed(
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                        ]
                    }
                )
            ),
            events.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})),
            events.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),
            events.feed(
                chunk(
                    {
                        "tool_calls": [
                            {"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}
                        ]
                    }
                )
            ),
            events.feed(chunk({}, "tool_calls")),
            events.feed(chunk({}, usage={"prompt_tokens": 7, "completion_tokens": 2})),
            events.finish(),
        ]
    )
    got = events_of(data)
    compact = [
        (e["type"], e.get("index"), (e.get("content_block") or e.get("delta") or {}).get("type"))
        for e in got
    ]
    assert compact == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "redacted_thinking"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "text"),
        ("content_block_delta", 2, "text_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("content_block_start", 4, "tool_use"),
        ("content_block_delta", 4, "input_json_delta"),
        ("content_block_stop", 4, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert got[0]["message"]["id"] == "msg_x"
    assert got[3]["delta"]["signature"] == "S"
    assert got[10]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert got[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert got[-2]["usage"]["input_tokens"] == 7
    assert got[-2]["usage"]["output_tokens"] == 2


def test_interleaved_tool_calls_keep_their_blocks() -> None:
    """Arguments of an earlier tool call arriving after a later call began go to the earlier
    call's block."""
    events = MessageEvents(message_id="m", model="p/m")
    data = b"".join(
        events.feed(chunk({"tool_calls": [call]}))
        for call in (
            {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x":'}},
            {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y":'}},
            {"index": 0, "function": {"arguments": "1}"}},
            {"index": 1, "id": "b", "function": {"arguments": "2}"}},
        )
    )
    deltas = [
        (e["index"], e["delta"]["partial_json"])
        for e in events_of(data)
        if e["type"] == "content_block_delta"
    ]
    assert deltas == [(0, '{"x":'), (1, '{"y":'), (0, "1}"), (1, "2}")]


def test_a_whole_thinking_block_without_streamed_text() -> None:
    """A provider that sends its thinking whole (not streamed) still gives a thinking block
    with its text and signature."""
    events = MessageEvents(message_id="m", model="p/m")
    data = events.feed(
        chunk({"thinking_blocks": [{"type": "thinking", "thinking": "All", "signature": "Z"}]})
    )
    got = events_of(data + events.finish())
    assert [e["type"] for e in got[1:5]] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
    ]
    assert got[2]["delta"] == {"type": "thinking_delta", "thinking": "All"}
    assert got[3]["delta"] == {"type": "signature_delta", "signature": "Z"}


def test_tool_call_extras_round_trip_through_a_thinking_signature() -> None:
    """A tool call's extra_content goes out in an empty thinking block's signature (whole
    answers and streams alike) and comes back onto the call; an altered one is a 400."""
    extra = {"google": {"thought_signature": "TS"}}
    answer = completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                    "extra_content": extra,
                }
            ],
        },
        "tool_calls",
        {},
    )
    content = msgspec.json.decode(message_body(answer, message_id="m", model="p/m"))["content"]
    assert [b["type"] for b in content] == ["thinking", "tool_use"]
    events = MessageEvents(message_id="m", model="p/m")
    start = {"index": 0, "id": "c1", "extra_content": extra, "function": {"name": "f"}}
    streamed = events_of(events.feed(chunk({"tool_calls": [start]})))
    signature = streamed[1]["content_block"]["signature"]
    assert signature == content[0]["signature"]
    back = messages_in(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1"}]},
        ]
    )
    assistant = chat_json(back)["messages"][1]
    assert assistant["tool_calls"][0]["extra_content"] == extra
    assert "thinking_blocks" not in assistant
    content[0]["signature"] = signature[:-2] + "!!"
    with pytest.raises(InvalidRequestError) as altered:
        to_chat(
            messages_in(
                messages=[
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": content},
                ]
            ),
            "p/m",
        )
    assert altered.value.param == "messages[1].content[0].signature"


def test_without_cache_control() -> None:
    """The request for OpenAI-compatible upstreams has no cache marks, and its system text as
    one string; the translated request itself keeps them."""
    marked = {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}
    req = messages_in(
        system=[{"type": "text", "text": "A"}, {**marked, "text": "B"}],
        messages=[{"role": "user", "content": [marked, {"type": "text", "text": "there"}]}],
    )
    chat = to_chat(req, "openai/gpt-4o")
    stripped = msgspec.json.decode(_enc(without_cache_control(chat)))["messages"]
    assert stripped == [
        {"role": "system", "content": "A\n\nB"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
        },
    ]
    assert b"cache_control" in _enc(chat)


def test_an_empty_stream_is_still_a_whole_message() -> None:
    """An upstream stream with no chunk at all still gives message_start, message_delta and
    message_stop."""
    got = events_of(MessageEvents(message_id="m", model="p/m").finish())
    assert [e["type"] for e in got] == ["message_start", "message_delta", "message_stop"]
