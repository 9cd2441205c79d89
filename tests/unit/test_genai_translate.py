"""The pure translation behind the ``/genai`` routes: a client's Gemini request into the unified
chat request, and unified answers, chunks and errors back in Gemini's shape."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from providers.gemini.answer import (
    ChunkReader,
    error_body,
    from_completion,
    signature_bytes,
    signature_text,
)
from providers.gemini.inbound import GenerateRequest, camel_keys, decode_native, to_chat
from providers.gemini.native import NativeBody, for_model
from providers.gemini.schema import json_schema
from proxy.errors import InvalidRequestError, NotFoundError, UpstreamError
from proxy.schemas.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    FunctionName,
    ImagePart,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)


def _chat(body: dict[str, Any], provider: str = "anthropic") -> Any:
    req = decode_native(msgspec.json.encode(body), GenerateRequest)
    return to_chat(req, model=f"{provider}/m", provider=provider, stream=False)


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def test_camel_keys_leave_the_callers_data_alone() -> None:
    """snake_case keys become camelCase, except inside function arguments, results and
    schemas, whose keys are the caller's own."""
    got = camel_keys(
        {
            "generation_config": {"thinking_config": {"thinking_budget": 5}},
            "contents": [{"parts": [{"function_call": {"name": "f", "args": {"a_b": 1}}}]}],
            "tools": [{"function_declarations": [{"parameters_json_schema": {"x_y": {}}}]}],
        }
    )
    assert got == {
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 5}},
        "contents": [{"parts": [{"functionCall": {"name": "f", "args": {"a_b": 1}}}]}],
        "tools": [{"functionDeclarations": [{"parametersJsonSchema": {"x_y": {}}}]}],
    }


def test_google_schema_as_json_schema() -> None:
    """Capital types, nullable, propertyOrdering and int64-as-string limits become plain JSON
    Schema."""
    schema = {
        "type": "OBJECT",
        "property_ordering": ["a", "b"],
        "properties": {
            "a": {"type": "STRING", "nullable": True, "enum": ["x", "y"]},
            "b": {"type": "ARRAY", "items": {"type": "INTEGER"}, "max_items": "3"},
            "c": {"anyOf": [{"type": "NUMBER"}, {"type": "BOOLEAN"}], "nullable": True},
        },
        "required": ["a"],
    }
    got = msgspec.json.decode(json_schema(msgspec.Raw(msgspec.json.encode(schema)), "p"))
    assert got == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"], "enum": ["x", "y"]},
            "b": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
            "c": {
                "anyOf": [{"anyOf": [{"type": "number"}, {"type": "boolean"}]}, {"type": "null"}]
            },
        },
        "required": ["a"],
    }


def test_contents_become_messages() -> None:
    """The system instruction, an image with text, and a call without ids paired by name with
    its result become the unified messages."""
    chat = _chat(
        {
            "systemInstruction": {"parts": [{"text": "Be "}, {"text": "brief."}]},
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "What is this?"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    ],
                },
                {"role": "model", "parts": [{"functionCall": {"name": "look", "args": {}}}]},
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "look", "response": {"output": "a cat"}}},
                        {"text": "And now?"},
                    ],
                },
            ],
        }
    )
    system, user, model, result, after = chat.messages
    assert system == SystemMessage(content="Be brief.")
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    assert user.content[0] == TextPart(text="What is this?")
    image = user.content[1]
    assert isinstance(image, ImagePart)
    assert image.image_url.url == "data:image/png;base64,iVBORw0KGgo="
    assert isinstance(model, AssistantMessage)
    assert isinstance(model.tool_calls, list)
    call = model.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("look", "{}")
    assert result == ToolMessage(content="a cat", tool_call_id=call.id)
    assert after == UserMessage(content="And now?")


def test_streamed_thought_pieces_make_one_signed_block() -> None:
    """Thought parts sent back as streamed (pieces, the signature on the last) become one
    thinking block with the whole text and the provider's signature."""
    sig = signature_bytes("sig-1")
    chat = _chat(
        {
            "contents": [
                _user("Hi"),
                {
                    "role": "model",
                    "parts": [
                        {"text": "Let me ", "thought": True},
                        {"text": "think.", "thought": True},
                        {"text": "", "thought": True, "thoughtSignature": sig},
                        {"text": "Hello."},
                    ],
                },
                _user("Again"),
            ]
        }
    )
    model = chat.messages[1]
    assert isinstance(model, AssistantMessage)
    assert model.content == "Hello."
    assert model.reasoning_content == "Let me think."
    assert isinstance(model.thinking_blocks, list)
    assert [(b.thinking, b.signature) for b in model.thinking_blocks] == [
        ("Let me think.", "sig-1")
    ]


def test_settings_tools_and_choice() -> None:
    """generationConfig and a single allowed function become the unified settings and a named
    tool choice; snake_case fields count the same."""
    chat = _chat(
        {
            "contents": [_user("Hi")],
            "tools": [
                {
                    "function_declarations": [
                        {"name": "f", "parameters_json_schema": {"type": "object"}},
                        {"name": "g"},
                    ]
                }
            ],
            "tool_config": {
                "function_calling_config": {"mode": "ANY", "allowed_function_names": ["g"]}
            },
            "generation_config": {
                "temperature": 0.1,
                "max_output_tokens": 10,
                "stop_sequences": ["x"],
                "candidate_count": 2,
                "response_mime_type": "application/json",
                "thinking_config": {"thinking_budget": 8000},
            },
        },
        provider="openai",
    )
    assert [t.function.name for t in chat.tools] == ["f", "g"]
    assert bytes(chat.tools[0].function.parameters) == b'{"type":"object"}'
    assert chat.tool_choice == NamedToolChoice(function=FunctionName(name="g"))
    assert (chat.temperature, chat.max_completion_tokens, chat.stop, chat.n) == (
        0.1,
        10,
        ["x"],
        2,
    )
    assert chat.reasoning_effort == "medium"
    assert msgspec.json.encode(chat.response_format) == b'{"type":"json_object"}'


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"contents": [_user("Hi")], "cachedContent": "cachedContents/1"}, "cachedContent"),
        ({"contents": [_user("Hi")], "tools": [{"codeExecution": {}}]}, "tools[0]"),
        ({"contents": []}, "contents"),
        (
            {"contents": [{"role": "user", "parts": [{"executableCode": {}}]}]},
            "contents[0].parts[0]",
        ),
        ({"contents": "nope"}, "contents"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
                ]
            },
            "contents[0].parts[0]",
        ),
    ],
)
def test_what_cannot_be_translated_is_a_400(body: dict[str, Any], param: str) -> None:
    """Gemini-only features and malformed contents are 400s naming the field."""
    with pytest.raises(InvalidRequestError) as caught:
        _chat(body)
    assert caught.value.param == param


def test_completion_as_generate_content_response() -> None:
    """A chat completion with reasoning, text and a tool call becomes one candidate whose parts
    are the signed thought, the text and the function call."""
    completion = msgspec.json.decode(
        msgspec.json.encode(
            {
                "id": "chatcmpl-1",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": "Sure.",
                            "reasoning_content": "Hmm.",
                            "thinking_blocks": [
                                {"type": "thinking", "thinking": "Hmm.", "signature": "s"}
                            ],
                            "tool_calls": [
                                {
                                    "id": "c1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"a": 1}'},
                                }
                            ],
                        },
                    }
                ],
                "usage": {
                    "prompt_tokens": 3,
                    "completion_tokens": 4,
                    "total_tokens": 7,
                    "completion_tokens_details": {"reasoning_tokens": 1},
                },
            }
        ),
        type=ChatCompletion,
    )
    got = msgspec.json.encode(from_completion(completion, model="m"))
    assert got == (
        b'{"candidates":[{"content":{"parts":[{"text":"Hmm.","thought":true,'
        b'"thoughtSignature":"cw=="},{"text":"Sure."},{"functionCall":{"name":"f",'
        b'"args":{"a":1},"id":"c1"}}],"role":"model"},"finishReason":"STOP"}],'
        b'"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":3,"totalTokenCount":7,'
        b'"thoughtsTokenCount":1},"modelVersion":"m","responseId":"chatcmpl-1"}'
    )


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> Any:
    body: dict[str, Any] = {
        "id": "x",
        "created": 1,
        "model": "m",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return msgspec.json.decode(msgspec.json.encode(body), type=ChatCompletionChunk)


def test_chunks_as_stream_events() -> None:
    """Text goes out as it comes; a tool call streamed in pieces goes out whole in the last
    event, with the finish reason and the usage."""
    reader = ChunkReader(model="m", response_id="r1")
    out = reader.feed(_chunk({"role": "assistant", "content": "Hi"}))
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    out += reader.feed(_chunk({"tool_calls": [call]}))
    out += reader.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    out += reader.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "2}"}}]}))
    out += reader.feed(_chunk({}, finish="tool_calls"))
    out += reader.feed(_chunk(None, usage={"prompt_tokens": 2, "completion_tokens": 3}))  # type: ignore[arg-type]
    out += reader.finish()
    assert out == [
        b'{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}],'
        b'"modelVersion":"m","responseId":"r1"}',
        b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"a":2},'
        b'"id":"c1"}}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":'
        b'{"promptTokenCount":2,"candidatesTokenCount":3,"totalTokenCount":5},'
        b'"modelVersion":"m","responseId":"r1"}',
    ]


def test_errors_in_googles_shape() -> None:
    """A gateway error is Google's error body: its HTTP status, the status name, and the
    gateway's type, code and parameter as ErrorInfo; an upstream's own Google status is kept."""
    got = msgspec.json.decode(
        error_body(NotFoundError("No such model.", param="model", code="model_not_found"))
    )
    assert got == {
        "error": {
            "code": 404,
            "message": "No such model.",
            "status": "NOT_FOUND",
            "details": [
                {
                    "reason": "MODEL_NOT_FOUND",
                    "metadata": {"type": "invalid_request_error", "param": "model"},
                    "domain": "thruway",
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                }
            ],
        }
    }
    upstream = UpstreamError(
        "gemini: bad", status=400, provider="gemini", code="FAILED_PRECONDITION"
    )
    assert msgspec.json.decode(error_body(upstream))["error"]["status"] == "FAILED_PRECONDITION"


@pytest.mark.parametrize("signature", ["sig-fake-0001", "EqQBCgIYAhIM+/==", ""])
def test_signatures_round_trip(signature: str) -> None:
    """Any provider signature survives the trip through Gemini's base64 bytes, URL-safe or
    not; a value that is not one of ours comes back unchanged."""
    sent = signature_bytes(signature)
    assert signature_text(sent) == signature
    assert signature_text(sent.replace("+", "-").replace("/", "_").rstrip("=")) == signature
    assert signature_text("not base64!") == "not base64!"


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        (
            "batchEmbedContents",
            b'{"requests":[{"model":"models/gemini/e","content":{"parts":[]}}]}',
            b'{"requests":[{"model":"models/e","content":{"parts":[]}}]}',
        ),
        (
            "countTokens",
            b'{"generateContentRequest":{"model":"models/x","contents":[]}}',
            b'{"generateContentRequest":{"model":"models/e","contents":[]}}',
        ),
        ("countTokens", b'{"contents": []}', b'{"contents": []}'),
        ("generateContent", b'{"contents": [1]}', b'{"contents": [1]}'),
    ],
)
def test_native_body_names_the_upstream_model(method: str, body: bytes, expected: bytes) -> None:
    """Forwarded as it came, except the model named inside a batch or a count's request, which
    becomes the upstream's."""
    assert for_model(NativeBody(method=method, body=body), "e") == expected


def test_gemini_call_signatures_ride_on_the_function_call() -> None:
    """A Gemini model's signature on a call (served translated, as by Vertex AI) goes out on
    the functionCall part, and comes back as the call's ``extra_content``."""
    chunks = [
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                        "extra_content": {"google": {"thought_signature": "QUJD"}},
                    }
                ]
            }
        ),
        _chunk({}, finish="tool_calls"),
    ]
    reader = ChunkReader(model="m", response_id="r")
    for chunk in chunks:
        reader.feed(chunk)
    (last,) = reader.finish()
    part = msgspec.json.decode(last)["candidates"][0]["content"]["parts"][0]
    assert part == {
        "functionCall": {"name": "f", "args": {}, "id": "c1"},
        "thoughtSignature": "QUJD",
    }
    chat = _chat({"contents": [_user("Hi"), {"role": "model", "parts": [part]}, _user("Go")]})
    model = chat.messages[1]
    assert isinstance(model, AssistantMessage)
    assert isinstance(model.tool_calls, list)
    extra = model.tool_calls[0].extra_content
    assert isinstance(extra, msgspec.Raw)
    assert msgspec.json.decode(extra) == {"google": {"thought_signature": "QUJD"}}
