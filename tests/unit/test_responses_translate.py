"""The Responses schema and its translation to and from chat: pure functions, golden cases, and
the openai SDK's own models as the judge of everything produced."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from openai.types.conversations import Conversation as SDKConversation
from openai.types.conversations import ConversationItemList
from openai.types.responses import ResponseItemList

from middlewares.decode import _param as decode_param
from proxy.errors import InvalidRequestError
from proxy.responses.envelope import PREFIX, decode_envelope
from proxy.responses.translate import (
    drop_gateway_reasoning,
    from_chat,
    output_as_input,
    resolve_item_references,
    stored_items,
    to_chat,
)
from proxy.schemas import chat
from proxy.schemas.common import CompletionTokensDetails, PromptTokensDetails, Usage
from proxy.schemas.responses import (
    CONVERSATION_CREATE_DECODER,
    ITEMS_CREATE_DECODER,
    REQUEST_DECODER,
    RESPONSE_DECODER,
    Conversation,
    FunctionCallItem,
    FunctionChoice,
    FunctionTool,
    ItemList,
    ItemReference,
    MessageItem,
    ReasoningItem,
    decode_items,
    item_type,
)
from tests.unit.responses_support import as_json, counter_ids, request, sdk_response

TOOL_PARAMS = {"type": "object", "properties": {"q": {"type": "string"}}}
GEMINI_EXTRA = {"google": {"thought_signature": "Q2lnbmF0dXJl"}}

# Every request field, the way the openai SDK sends them (messages may leave out ``type``).
EVERY_FIELD: dict[str, Any] = {
    "model": "anthropic/claude-sonnet-4",
    "input": [
        {"role": "developer", "content": "Answer briefly."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these?"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "original"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=",
                 "filename": "a.pdf"},
            ],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "A cat.",
                                           "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup",
         "arguments": '{"q":"cat"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "a small feline"},
        {"role": "user", "content": "Thanks"},
    ],
    "instructions": "You are terse.",
    "fallbacks": ["openai/gpt-4.1"],
    "stream": True,
    "stream_options": {"include_usage": False, "include_obfuscation": False},
    "background": False,
    "conversation": {"id": "conv_1"},
    "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
    "max_output_tokens": 512,
    "max_tool_calls": 2,
    "metadata": {"team": "search"},
    "parallel_tool_calls": False,
    "previous_response_id": None,
    "prompt_cache_key": "pk-1",
    "reasoning": {"effort": "high", "summary": "auto"},
    "safety_identifier": "user-hash",
    "service_tier": "priority",
    "store": False,
    "temperature": 0.2,
    "text": {
        "format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"},
                   "strict": True, "description": "The answer"},
        "verbosity": "low",
    },
    "top_logprobs": 3,
    "top_p": 0.9,
    "tool_choice": {"type": "function", "name": "lookup"},
    "tools": [{"type": "function", "name": "lookup", "description": "Look up",
               "parameters": TOOL_PARAMS, "strict": True}],
    "truncation": "disabled",
    "user": "u-1",
}  # fmt: skip

EVERY_FIELD_CHAT: dict[str, Any] = {
    "model": "anthropic/claude-sonnet-4",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png",
                                                    "detail": "high"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=",
                                          "filename": "a.pdf"}},
            ],
        },
        {
            "role": "assistant",
            "content": "A cat.",
            "tool_calls": [{"type": "function", "id": "call_1",
                            "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}],
        },
        {"role": "tool", "content": "a small feline", "tool_call_id": "call_1"},
        {"role": "user", "content": "Thanks"},
    ],
    "fallbacks": ["openai/gpt-4.1"],
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.2,
    "top_p": 0.9,
    "max_completion_tokens": 512,
    "logprobs": True,
    "top_logprobs": 3,
    "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up",
                                                "parameters": TOOL_PARAMS, "strict": True}}],
    "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "description": "The answer", "schema": {"type": "object"},
        "strict": True}},
    "reasoning_effort": "high",
    "verbosity": "low",
    "user": "u-1",
    "service_tier": "priority",
    "prompt_cache_key": "pk-1",
    "safety_identifier": "user-hash",
}  # fmt: skip


def _completion(message: chat.ChatMessage, finish: str = "stop", **kw: Any) -> chat.ChatCompletion:
    choice = chat.Choice(index=0, message=message, finish_reason=finish, **kw)
    return chat.ChatCompletion(id="chatcmpl-1", created=1, model="claude-x", choices=[choice])


def _items(*docs: dict[str, Any]) -> list[Any]:
    return decode_items(msgspec.json.encode(list(docs)))


def _bad(doc: dict[str, Any], history: list[Any] | None = None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        to_chat(request(doc), history or [])
    return info.value


# --- decoding -------------------------------------------------------------------------------


def test_every_request_field_decodes_and_re_encodes_as_sent() -> None:
    """Every field of a request decodes, and encodes back as sent (typeless messages gaining
    their ``type``), so nothing the client set is lost or invented."""
    doc = {**EVERY_FIELD, "prompt": {"id": "pmpt_1", "version": "2",
                                     "variables": {"city": "Paris"}}}  # fmt: skip
    req = request(doc)
    unset = [f for f in req.__struct_fields__ if getattr(req, f) is msgspec.UNSET]
    assert unset == []
    expected = {**doc, "input": [{"type": "message", **item} for item in doc["input"]]}
    assert as_json(req) == expected
    assert req.stores is False
    assert req.conversation_id == "conv_1"


def test_store_defaults_to_true_but_stays_distinguishable() -> None:
    """``store`` left out is ``UNSET`` (so it is not forwarded) yet means true."""
    req = request({"input": "hi"})
    assert req.store is msgspec.UNSET
    assert req.stores is True
    assert request({"input": "hi", "store": None}).stores is True
    assert request({"input": "hi", "conversation": "conv_9"}).conversation_id == "conv_9"


def test_typeless_message_bare_reference_and_openai_only_items() -> None:
    """``{"role", "content"}`` is a message, ``{"id"}`` alone an item reference, and an item type
    only OpenAI serves is kept verbatim (re-encoded byte for byte)."""
    computer = b'{"type":"computer_call_output","call_id":"c","output":{"type":"x"}}'
    body = b'{"model":"m","input":[{"role":"user","content":"hi"},{"id":"msg_7"},' + computer
    body += b"]}"
    req = REQUEST_DECODER.decode(body)
    assert isinstance(req.input, list)
    first, second, third = req.input
    assert first == MessageItem(role="user", content="hi")
    assert second == ItemReference(id="msg_7")
    assert isinstance(third, msgspec.Raw)
    assert msgspec.json.encode(third) == computer
    kinds = [item_type(i) for i in req.input]
    assert kinds == ["message", "item_reference", "computer_call_output"]


def test_builtin_tools_and_tool_choice_forms_are_kept() -> None:
    """Function tools and the function tool_choice are typed; built-in tools and OpenAI's other
    tool_choice forms are kept verbatim with their ``type``."""
    web = {"type": "web_search", "search_context_size": "low"}
    req = request({
        "tools": [{"type": "function", "name": "f"}, web],
        "tool_choice": {"type": "mcp", "server_label": "deepwiki"},
    })  # fmt: skip
    assert isinstance(req.tools, list)
    assert req.tools[0] == FunctionTool(name="f")
    assert as_json(req.tools[1]) == web
    assert as_json(req.tool_choice) == {"type": "mcp", "server_label": "deepwiki"}
    assert request({"tool_choice": {"type": "function", "name": "f"}}).tool_choice == (
        FunctionChoice(name="f")
    )
    assert request({"tool_choice": "required"}).tool_choice == "required"


@pytest.mark.parametrize(
    ("doc", "message", "param"),
    [
        ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
         "Expected `str`, got `int`", "input[0].content[0].text"),
        ({"input": [{"role": "robot", "content": "x"}]},
         "Invalid enum value 'robot'", "input[0].role"),
        ({"input": [{"type": "message"}]}, "missing required field `role`", "input[0].role"),
        ({"input": ["hi", 1]}, "Expected `object`, got `str`", "input[0]"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
         "missing required field `arguments`", "input[0].arguments"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "x"}]}]},
         "Invalid value 'x'", "input[0].output[0].type"),
        ({"input": [{"type": 3}]}, "Expected `str`, got `int`", "input[0].type"),
        ({"input": 5}, "Expected `str | array`, got `int`", "input"),
        ({"tools": [{"name": "f"}]}, "missing required field `type`", "tools[0].type"),
        ({"tools": [{"type": "function", "name": "f", "strict": "yes"}]},
         "Expected `bool | null`, got `str`", "tools[0].strict"),
        ({"tool_choice": "sometimes"}, "Invalid enum value 'sometimes'", "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "missing required field `name`",
         "tool_choice.name"),
        ({"temperature": 3}, "Expected `float` <= 2.0", "temperature"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}},
         "missing required field `name`", "text.format.name"),
        ({"conversation": 7}, "Expected `str | object | null`, got `int`", "conversation"),
    ],
)  # fmt: skip
def test_bad_input_names_the_json_path(doc: dict[str, Any], message: str, param: str) -> None:
    """A malformed request fails with msgspec's message and the exact path, which the decode
    middleware turns into the 400's ``param`` as for chat."""
    with pytest.raises(msgspec.ValidationError) as info:
        REQUEST_DECODER.decode(msgspec.json.encode({"model": "m", **doc}))
    text, got = decode_param(info.value)
    assert message in text
    assert got == param


def test_conversation_and_item_bodies_decode_with_paths() -> None:
    """The conversation bodies decode their items as the request does, errors at their path."""
    create = CONVERSATION_CREATE_DECODER.decode(
        b'{"items":[{"role":"user","content":"hi"}],"metadata":{"a":"b"}}'
    )
    assert create.items == [MessageItem(role="user", content="hi")]
    assert ITEMS_CREATE_DECODER.decode(b'{"items":[{"id":"msg_1"}]}').items == [
        ItemReference(id="msg_1")
    ]
    with pytest.raises(msgspec.ValidationError) as info:
        ITEMS_CREATE_DECODER.decode(b'{"items":[{"role":"user"}]}')
    assert decode_param(info.value)[1] == "items[0].content"
    with pytest.raises(msgspec.ValidationError) as info:
        ITEMS_CREATE_DECODER.decode(msgspec.json.encode({"items": [{"id": "x"}] * 21}))
    assert decode_param(info.value)[1] == "items"


def test_openai_native_response_decodes_with_unknown_items_kept() -> None:
    """A response as OpenAI sends it (built-in tool items and tools included) decodes, the
    items the gateway does not model kept verbatim, and encodes back unchanged in them."""
    web_call = {"type": "web_search_call", "id": "ws_1", "status": "completed",
                "action": {"type": "search", "query": "q"}}  # fmt: skip
    doc = as_json(from_chat(_completion(chat.ChatMessage(content="Hi")), request({}),
                            response_id="resp_1", created_at=1, new_id=counter_ids()))  # fmt: skip
    doc["output"].insert(0, web_call)
    doc["tools"] = [{"type": "web_search"}]
    resp = RESPONSE_DECODER.decode(msgspec.json.encode(doc))
    assert isinstance(resp.output[0], msgspec.Raw)
    assert isinstance(resp.output[1], MessageItem)
    assert as_json(resp) == doc
    sdk_response(resp)


# --- to_chat --------------------------------------------------------------------------------


def test_every_request_field_to_chat() -> None:
    """Every request field maps to its chat equivalent; the gateway's own (store, metadata,
    conversation, max_tool_calls, truncation...) stay out, and a stream always asks usage."""
    assert as_json(to_chat(request(EVERY_FIELD), [])) == EVERY_FIELD_CHAT


def test_string_input_history_then_input() -> None:
    """A string input is one user message, after the instructions and the history."""
    history = _items(
        {"role": "user", "content": "Hi"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
    )  # fmt: skip
    out = to_chat(request({"instructions": "Be kind.", "input": "Bye"}), history)
    assert as_json(out) == {
        "model": "anthropic/claude",
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ],
    }


def test_function_calls_reasoning_and_outputs_make_one_assistant_turn() -> None:
    """Consecutive reasoning, assistant text and function calls become one assistant message
    (tool_calls keyed by call_id); each function_call_output a tool message."""
    doc = {"input": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [
            {"type": "summary_text", "text": "Two cities."},
            {"type": "summary_text", "text": "Call twice."}]},
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"c":"P"}'},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"c":"R"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sun"},
        {"type": "function_call_output", "call_id": "c2", "output": [
            {"type": "input_text", "text": "rain"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]},
    ]}  # fmt: skip
    assert as_json(to_chat(request(doc), []).messages) == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"type": "function", "id": "c1",
                 "function": {"name": "weather", "arguments": '{"c":"P"}'}},
                {"type": "function", "id": "c2",
                 "function": {"name": "weather", "arguments": '{"c":"R"}'}},
            ],
            "reasoning_content": "Two cities.\n\nCall twice.",
        },
        {"role": "tool", "content": "sun", "tool_call_id": "c1"},
        {"role": "tool", "tool_call_id": "c2", "content": [
            {"type": "text", "text": "rain"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
    ]  # fmt: skip


def test_assistant_refusal_calls_only_and_reasoning_alone() -> None:
    """An assistant refusal part is chat's ``refusal``, calls alone give ``content: null``,
    and a reasoning item with nothing after it is dropped (chat has no message for it)."""
    doc = {"input": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"role": "user", "content": "b"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "id": "rs_9", "summary": [], "content": [
            {"type": "reasoning_text", "text": "hmm"}]},
    ]}  # fmt: skip
    assert as_json(to_chat(request(doc), []).messages) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": None, "refusal": "No."},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "ok", "tool_call_id": "c1"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, {"type": "text"}),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "json_schema", "name": "n", "schema": {"type": "object"}},
         {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}),
    ],
)  # fmt: skip
def test_text_format_to_response_format(fmt: dict[str, Any], expected: dict[str, Any]) -> None:
    """``text.format`` becomes ``response_format``; a JSON schema's fields move under
    ``json_schema``."""
    out = to_chat(request({"input": "x", "text": {"format": fmt}}), [])
    assert as_json(out.response_format) == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", "none"),
        ("auto", "auto"),
        ("required", "required"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
        ({"type": "allowed_tools", "mode": "required",
          "tools": [{"type": "function", "name": "f"}]},
         {"type": "allowed_tools", "allowed_tools": {
             "mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}}),
    ],
)  # fmt: skip
def test_tool_choice_forms(choice: Any, expected: Any) -> None:
    """Each tool_choice form that names functions has its chat equivalent."""
    doc = {"input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": choice}
    assert as_json(to_chat(request(doc), []).tool_choice) == expected


def test_logprobs_from_include_and_null_options_dropped() -> None:
    """``include`` asking for logprobs turns chat logprobs on; options sent as null are left to
    the provider's defaults."""
    doc = {"input": "x", "include": ["message.output_text.logprobs"], "temperature": None,
           "top_p": None, "user": None, "reasoning": {"effort": None}, "stream": False}  # fmt: skip
    assert as_json(to_chat(request(doc), [])) == {
        "model": "anthropic/claude",
        "messages": [{"role": "user", "content": "x"}],
        "logprobs": True,
    }


def test_function_tool_without_schema_or_with_null_schema() -> None:
    """A function tool's null ``parameters`` and ``description`` are left out of chat."""
    doc = {"input": "x", "tools": [{"type": "function", "name": "f", "parameters": None,
                                    "description": None, "strict": False}]}  # fmt: skip
    assert as_json(to_chat(request(doc), []).tools) == [
        {"type": "function", "function": {"name": "f", "strict": False}}
    ]


@pytest.mark.parametrize(
    ("doc", "param", "code", "words"),
    [
        ({"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]},
         "tools[1]", "unsupported_tool", "built-in `web_search` tool"),
        ({"input": "x", "tools": [{"type": "custom", "name": "grammar"}]},
         "tools[0]", "unsupported_tool", "`custom`"),
        ({"input": "x", "tool_choice": {"type": "file_search"}},
         "tool_choice", "unsupported_parameter", "`file_search`"),
        ({"input": "x", "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                        "tools": [{"type": "mcp", "server_label": "s"}]}},
         "tool_choice", "unsupported_parameter", "`allowed_tools`"),
        ({"input": [{"id": "msg_1"}]}, "input[0]", "item_not_found", "`msg_1`"),
        ({"input": [{"role": "user", "content": "a"},
                    {"type": "computer_call_output", "call_id": "c", "output": {}}]},
         "input[1]", "unsupported_item", "`computer_call_output`"),
        ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                                 {"type": "input_image", "file_id": "file_1"}]}]},
         "input[0].content[1].image_url", "unsupported_parameter", "`file_id`"),
        ({"input": [{"role": "user", "content": [
            {"type": "input_file", "file_url": "https://x.test/a.pdf"}]}]},
         "input[0].content[0].file_url", "unsupported_parameter", "`file_url`"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "filename": "a"}]}]},
         "input[0].content[0]", None, "`file_data` or `file_id`"),
        ({"input": [{"role": "assistant", "content": [
            {"type": "input_image", "image_url": "https://x.test/a.png"}]}]},
         "input[0].content[0]", None, "text and refusals only"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": [
            {"type": "input_file", "file_url": "https://x.test/a.pdf"}]}]},
         "input[0].output[0].file_url", "unsupported_parameter", "`file_url`"),
        ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter",
         "OpenAI's platform"),
        ({}, "input", None, "no input"),
        ({"input": [{"type": "reasoning", "id": "rs", "summary": [],
                     "encrypted_content": PREFIX + "bm90IGpzb24"}]},
         "input[0].encrypted_content", "invalid_encrypted_content", "altered"),
    ],
)  # fmt: skip
def test_untranslatable_input_is_a_400_naming_it(
    doc: dict[str, Any], param: str, code: str | None, words: str
) -> None:
    """What only OpenAI can serve, or what cannot be sent, is a 400 naming its place."""
    err = _bad(doc)
    assert (err.status, err.param, err.code) == (400, param, code)
    assert words in err.message


def test_history_errors_have_no_request_param() -> None:
    """An untranslatable item from the history is a 400 without a request path."""
    history = _items({"type": "web_search_call", "id": "ws_1", "status": "completed"})
    err = _bad({"input": "x"}, history)
    assert (err.param, err.code) == (None, "unsupported_item")
    assert err.message.startswith("An earlier item is a `web_search_call` item")


def test_openai_encrypted_reasoning_is_ignored_off_openai() -> None:
    """OpenAI's own encrypted reasoning is opaque here: its summary is kept, the blob ignored."""
    doc = {"input": [
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAAABo-opaque",
         "summary": [{"type": "summary_text", "text": "Plan."}]},
        {"role": "assistant", "content": "Done."},
    ]}  # fmt: skip
    assert as_json(to_chat(request(doc), []).messages) == [
        {"role": "assistant", "content": "Done.", "reasoning_content": "Plan."}
    ]


# --- from_chat ------------------------------------------------------------------------------

ANTHROPIC_BLOCKS = [
    chat.ThinkingBlock(thinking="The user wants weather.", signature="EqQBCkYIBxgCKkB"),
    chat.ThinkingBlock(type="redacted_thinking", data="EmwKAhgBEgy3va3pzix"),
]
URL_CITATION = msgspec.Raw(
    b'{"type":"url_citation","url_citation":{"start_index":0,"end_index":5,'
    b'"title":"Paris","url":"https://x.test/paris"}}'
)
LOGPROBS = msgspec.Raw(
    b'{"content":[{"token":"Sunny","logprob":-0.1,"bytes":[83,117,110,110,121],'
    b'"top_logprobs":[{"token":"Sunny","logprob":-0.1,"bytes":[83,117,110,110,121]},'
    b'{"token":"Rain","logprob":-2.5,"bytes":null}]}],"refusal":null}'
)


def _full_completion() -> chat.ChatCompletion:
    message = chat.ChatMessage(
        content="Sunny",
        reasoning_content="The user wants weather.",
        thinking_blocks=ANTHROPIC_BLOCKS,
        annotations=[URL_CITATION, msgspec.Raw(b'{"type":"file_citation","x":1}')],
        tool_calls=[
            chat.ToolCall(id="toolu_1", function=chat.FunctionCall("weather", '{"c":"Paris"}')),
            chat.ToolCall(
                id="toolu_2",
                function=chat.FunctionCall("weather", '{"c":"Rome"}'),
                extra_content=msgspec.Raw(msgspec.json.encode(GEMINI_EXTRA)),
            ),
        ],
    )
    completion = _completion(message, "tool_calls", logprobs=LOGPROBS)
    completion.usage = Usage(
        prompt_tokens=100,
        completion_tokens=40,
        total_tokens=140,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=60),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=25),
    )
    completion.service_tier = "default"
    return completion


def test_from_chat_golden() -> None:
    """A chat answer with reasoning, signed thinking, cited text with logprobs, two tool calls
    and usage becomes exactly this Response, which the SDK's own model accepts."""
    req = request({"input": "Weather?", "include": ["message.output_text.logprobs"]})
    resp = from_chat(_full_completion(), req, response_id="resp_1", created_at=1750000000,
                     completed_at=1750000003, new_id=counter_ids())  # fmt: skip
    doc = as_json(resp)
    envelope = doc["output"][0].pop("encrypted_content")
    assert doc == {
        "id": "resp_1", "object": "response", "created_at": 1750000000, "status": "completed",
        "background": False, "completed_at": 1750000003, "error": None,
        "incomplete_details": None, "instructions": None, "max_output_tokens": None,
        "max_tool_calls": None, "model": "claude-x",
        "output": [
            {"type": "reasoning", "id": "rs_0",
             "summary": [{"type": "summary_text", "text": "The user wants weather."}]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "Sunny",
                          "annotations": [{"type": "url_citation", "start_index": 0,
                                           "end_index": 5, "title": "Paris",
                                           "url": "https://x.test/paris"}],
                          "logprobs": [{"token": "Sunny", "logprob": -0.1,
                                        "bytes": [83, 117, 110, 110, 121],
                                        "top_logprobs": [
                                            {"token": "Sunny", "logprob": -0.1,
                                             "bytes": [83, 117, 110, 110, 121]},
                                            {"token": "Rain", "logprob": -2.5, "bytes": []}]}]}]},
            {"type": "function_call", "call_id": "toolu_1", "name": "weather",
             "arguments": '{"c":"Paris"}', "id": "fc_2", "status": "completed"},
            {"type": "function_call", "call_id": "toolu_2", "name": "weather",
             "arguments": '{"c":"Rome"}', "id": "fc_3", "status": "completed"},
        ],
        "parallel_tool_calls": True, "previous_response_id": None, "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
        "service_tier": "default", "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
        "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
        "usage": {"input_tokens": 100, "output_tokens": 40, "total_tokens": 140,
                  "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 25}},
        "user": None, "metadata": {},
    }  # fmt: skip
    carried = decode_envelope(envelope, param=None)
    assert carried is not None
    assert carried.thinking_blocks == ANTHROPIC_BLOCKS
    assert {k: as_json(v) for k, v in carried.tool_extras.items()} == {"toolu_2": GEMINI_EXTRA}
    sdk = sdk_response(resp)
    assert sdk.output_text == "Sunny"
    assert sdk.usage is not None
    assert sdk.usage.input_tokens_details.cached_tokens == 60


def test_request_settings_are_echoed() -> None:
    """The Response echoes every setting of the request, as OpenAI does; the SDK accepts it."""
    req = request({**EVERY_FIELD, "stream": False})
    resp = from_chat(_completion(chat.ChatMessage(content="{}")), req, response_id="resp_2",
                     created_at=5, new_id=counter_ids())  # fmt: skip
    doc = as_json(resp)
    del doc["output"], doc["usage"]
    assert doc == {
        "id": "resp_2", "object": "response", "created_at": 5, "status": "completed",
        "background": False, "completed_at": None, "conversation": {"id": "conv_1"},
        "error": None, "incomplete_details": None, "instructions": "You are terse.",
        "max_output_tokens": 512, "max_tool_calls": 2, "model": "claude-x",
        "parallel_tool_calls": False, "previous_response_id": None, "prompt_cache_key": "pk-1",
        "reasoning": {"effort": "high", "summary": "auto"}, "safety_identifier": "user-hash",
        "service_tier": "priority", "store": False, "temperature": 0.2,
        "text": EVERY_FIELD["text"], "tool_choice": {"type": "function", "name": "lookup"},
        "tools": EVERY_FIELD["tools"], "top_logprobs": 3, "top_p": 0.9,
        "truncation": "disabled", "user": "u-1", "metadata": {"team": "search"},
    }  # fmt: skip
    sdk_response(resp)


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_answers_are_incomplete(finish: str, reason: str) -> None:
    """A chat answer cut by length or a content filter is an ``incomplete`` Response with the
    reason, its items ``incomplete`` too."""
    completion = _completion(chat.ChatMessage(content="Once upon"), finish)
    resp = from_chat(completion, request({"input": "x"}), response_id="r", created_at=1,
                     completed_at=9, new_id=counter_ids())  # fmt: skip
    doc = as_json(resp)
    assert (doc["status"], doc["incomplete_details"], doc["completed_at"]) == (
        "incomplete", {"reason": reason}, None)  # fmt: skip
    assert doc["output"] == [
        {"type": "message", "role": "assistant", "id": "msg_0", "status": "incomplete",
         "content": [{"type": "output_text", "text": "Once upon", "annotations": [],
                      "logprobs": []}]}
    ]  # fmt: skip
    assert sdk_response(resp).incomplete_details is not None


def test_refusal_and_no_usage() -> None:
    """A refusal is a ``refusal`` part; an answer without usage has ``usage: null``."""
    completion = _completion(chat.ChatMessage(refusal="I can't help with that."))
    resp = from_chat(completion, request({"input": "x"}), response_id="r", created_at=1,
                     new_id=counter_ids())  # fmt: skip
    assert as_json(resp.output) == [
        {"type": "message", "role": "assistant", "id": "msg_0", "status": "completed",
         "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    ]  # fmt: skip
    assert resp.usage is None
    sdk_response(resp)


@pytest.mark.parametrize(("limit", "kept"), [(None, 3), (2, 2), (0, 0)])
def test_max_tool_calls_drops_the_calls_past_it(limit: int | None, kept: int) -> None:
    """Calls past ``max_tool_calls`` are dropped (chat cannot stop the model at the limit)."""
    calls = [chat.ToolCall(id=f"c{i}", function=chat.FunctionCall("f", "{}")) for i in range(3)]
    completion = _completion(chat.ChatMessage(tool_calls=calls), "tool_calls")
    req = request({"input": "x", "max_tool_calls": limit})
    resp = from_chat(completion, req, response_id="r", created_at=1, new_id=counter_ids())
    assert [i.call_id for i in resp.output if isinstance(i, FunctionCallItem)] == [
        f"c{i}" for i in range(kept)
    ]


def test_no_choice_and_random_ids() -> None:
    """An answer without choices is an empty completed Response; ids are prefix + 48 hex."""
    empty = chat.ChatCompletion(id="x", created=1, model="m", choices=[])
    assert from_chat(empty, request({"input": "x"}), response_id="r", created_at=1).output == []
    resp = from_chat(_full_completion(), request({"input": "x"}), response_id="r", created_at=1)
    ids = [getattr(item, "id", "") for item in resp.output]
    assert [re.fullmatch(r"(rs|msg|fc)_[0-9a-f]{48}", i) is not None for i in ids] == [True] * 4


# --- continuity across turns ----------------------------------------------------------------


def test_reasoning_signatures_survive_a_round_trip() -> None:
    """An answer's thinking blocks and tool-call ``extra_content`` come back on the next turn's
    assistant message exactly, through the output items (and their JSON)."""
    resp = from_chat(_full_completion(), request({"input": "Weather?"}), response_id="r",
                     created_at=1, new_id=counter_ids())  # fmt: skip
    history = decode_items(msgspec.json.encode(output_as_input(resp)))
    outputs = [{"type": "function_call_output", "call_id": c, "output": "ok"}
               for c in ("toolu_1", "toolu_2")]  # fmt: skip
    out = to_chat(request({"input": outputs}), history)
    assert as_json(out.messages[0]) == {
        "role": "assistant",
        "content": "Sunny",
        "tool_calls": [
            {"type": "function", "id": "toolu_1",
             "function": {"name": "weather", "arguments": '{"c":"Paris"}'}},
            {"type": "function", "id": "toolu_2",
             "function": {"name": "weather", "arguments": '{"c":"Rome"}'},
             "extra_content": GEMINI_EXTRA},
        ],
        "reasoning_content": "The user wants weather.",
        "thinking_blocks": as_json(ANTHROPIC_BLOCKS),
    }  # fmt: skip
    assert [as_json(m)["role"] for m in out.messages] == ["assistant", "tool", "tool"]


def test_gateway_reasoning_is_dropped_for_openai() -> None:
    """Before a native OpenAI request, reasoning items carrying the gateway's envelope are
    removed; OpenAI's own reasoning items stay."""
    ours = ReasoningItem(id="rs_1", encrypted_content=PREFIX + "e30")
    theirs = ReasoningItem(id="rs_2", encrypted_content="gAAAAB")
    message = MessageItem(role="user", content="hi")
    assert drop_gateway_reasoning([ours, message, theirs]) == [message, theirs]


def test_item_references_resolve_against_known_items() -> None:
    """``item_reference`` items are replaced by the known item of that id; an unknown id is a
    400 at its place."""
    known = {"msg_1": MessageItem(role="user", content="earlier", id="msg_1")}
    items = [ItemReference(id="msg_1"), MessageItem(role="user", content="now")]
    assert resolve_item_references(items, known) == [known["msg_1"], items[1]]
    with pytest.raises(InvalidRequestError) as info:
        resolve_item_references([items[1], ItemReference(id="msg_2")], known)
    assert (info.value.param, info.value.code) == ("input[1]", "item_not_found")


def test_stored_items_carry_ids_statuses_and_parts() -> None:
    """Items stored for listing get ids, statuses and content parts, so the SDK's conversation
    and input-item lists accept them; ids already given are kept."""
    items = _items(
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "input_text", "text": "hello"}]},
        {"role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_x"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "summary": []},
    )
    stored = stored_items(items, new_id=counter_ids())
    assert as_json(stored) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}],
         "id": "msg_0", "status": "completed"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "hello", "annotations": []}]},
        {"type": "message", "role": "developer", "id": "msg_2", "status": "completed",
         "content": [{"type": "input_text", "text": "be brief"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}",
         "id": "fc_x", "status": "completed"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok", "id": "fco_3",
         "status": "completed"},
        {"type": "reasoning", "id": "rs_4", "summary": []},
    ]  # fmt: skip
    page = ItemList(data=stored, first_id="msg_0", last_id="rs_4", has_more=False)
    ConversationItemList.model_validate_json(msgspec.json.encode(page))
    ResponseItemList.model_validate_json(msgspec.json.encode(page))


def test_conversation_object() -> None:
    """The conversation object has the SDK's shape."""
    conv = Conversation(id="conv_1", created_at=1750000000, metadata={"topic": "demo"})
    assert as_json(conv) == {"id": "conv_1", "created_at": 1750000000,
                             "metadata": {"topic": "demo"}, "object": "conversation"}  # fmt: skip
    SDKConversation.model_validate_json(msgspec.json.encode(conv))
