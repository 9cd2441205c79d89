"""Cohere through the official ``openai`` SDK: what the conformance scenarios do not cover."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import Gateway, MakeGateway
from tests.fakes.cohere import FakeCohere
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

KEY = "co-fake-key"
MODEL = "cohere/command-a-03-2025"
USER = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now."}}


@pytest.fixture
async def cohere() -> AsyncIterator[FakeCohere]:
    fake = await FakeCohere(api_key=KEY).start()
    try:
        yield fake
    finally:
        await fake.close()


def _config(fake: FakeCohere, **extra: Any) -> dict[str, Any]:
    return {"type": "cohere", "base_url": fake.base_url, "keys": [{"value": KEY}], **extra}


@pytest.fixture
async def gateway(
    make_gateway: MakeGateway, cohere: FakeCohere, fake_backup: FakeOpenAI
) -> Gateway:
    backup = {
        "type": "openai",
        "base_url": fake_backup.base_url,
        "keys": [{"value": "sk-fake-backup"}],
    }
    return await make_gateway({"providers": {"cohere": _config(cohere), "backup": backup}})


def _sent(fake: FakeCohere) -> Any:
    return fake.requests[-1].json


async def test_tool_choice_forms(gateway: Gateway, cohere: FakeCohere) -> None:
    """auto is omitted, none/required are NONE/REQUIRED, a named function is REQUIRED with only
    that tool sent."""
    sdk = gateway.sdk()
    expected: list[tuple[Any, str | None, list[str]]] = [
        ("auto", None, ["get_weather", "get_time"]),
        ("none", "NONE", ["get_weather", "get_time"]),
        ("required", "REQUIRED", ["get_weather", "get_time"]),
        ({"type": "function", "function": {"name": "get_time"}}, "REQUIRED", ["get_time"]),
    ]
    for choice, sent_choice, sent_tools in expected:
        await sdk.chat.completions.create(
            model=MODEL, messages=USER, tools=[WEATHER, TIME], tool_choice=choice
        )
        sent = _sent(cohere)
        assert sent.get("tool_choice") == sent_choice
        assert [t["function"]["name"] for t in sent["tools"]] == sent_tools
    # A function declared without parameters gets the empty schema Cohere requires.
    assert sent["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}


async def test_named_tool_not_in_tools_is_refused(gateway: Gateway, cohere: FakeCohere) -> None:
    """Naming a tool that is not declared is the caller's 400, before Cohere is asked."""
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk().chat.completions.create(
            model=MODEL,
            messages=USER,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert info.value.param == "tool_choice"
    assert cohere.requests == []


async def test_strict_tools(gateway: Gateway, cohere: FakeCohere) -> None:
    """A strict function turns on Cohere's strict_tools; none strict leaves it unset."""
    sdk = gateway.sdk()
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    await sdk.chat.completions.create(model=MODEL, messages=USER, tools=[strict, TIME])
    assert _sent(cohere)["strict_tools"] is True
    await sdk.chat.completions.create(model=MODEL, messages=USER, tools=[WEATHER])
    assert "strict_tools" not in _sent(cohere)


async def test_response_format(gateway: Gateway, cohere: FakeCohere) -> None:
    """json_schema is Cohere's json_object with the schema; json_object goes as is; text is
    Cohere's default and not sent."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    cohere.script(Turn(text='{"n": 42}'))
    resp = await gateway.sdk().chat.completions.create(
        model=MODEL,
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    assert json.loads(resp.choices[0].message.content or "") == {"n": 42}
    assert _sent(cohere)["response_format"] == {"type": "json_object", "json_schema": schema}
    await gateway.sdk().chat.completions.create(
        model=MODEL, messages=USER, response_format={"type": "json_object"}
    )
    assert _sent(cohere)["response_format"] == {"type": "json_object"}
    await gateway.sdk().chat.completions.create(
        model=MODEL, messages=USER, response_format={"type": "text"}
    )
    assert "response_format" not in _sent(cohere)


async def test_sampling_parameters_and_defaults(gateway: Gateway, cohere: FakeCohere) -> None:
    """Nothing is required by Cohere: unset parameters are not sent (Cohere's defaults apply);
    set ones are renamed (top_p -> p, stop -> stop_sequences, max_completion_tokens ->
    max_tokens); fields that do not change the answer are dropped."""
    sdk = gateway.sdk()
    await sdk.chat.completions.create(model=MODEL, messages=USER)
    sent = _sent(cohere)
    assert set(sent) == {"model", "messages", "stream"}
    assert (sent["model"], sent["stream"]) == ("command-a-03-2025", False)
    await sdk.chat.completions.create(
        model=MODEL,
        messages=USER,
        temperature=0.7,
        top_p=0.9,
        max_completion_tokens=64,
        stop="###",
        seed=11,
        presence_penalty=0.1,
        user="u-1",
        store=True,
        metadata={"k": "v"},
        service_tier="auto",
    )
    sent = _sent(cohere)
    expected = {"temperature": 0.7, "p": 0.9, "max_tokens": 64, "seed": 11}
    assert {k: sent[k] for k in expected} == expected
    assert sent["stop_sequences"] == ["###"]
    assert sent["presence_penalty"] == 0.1
    for gone in ("top_p", "stop", "user", "store", "metadata", "service_tier"):
        assert gone not in sent


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"temperature": 1.7}, "temperature"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
async def test_unsupported_parameters(
    gateway: Gateway, cohere: FakeCohere, fields: dict[str, Any], param: str
) -> None:
    """What Cohere cannot honour is a 400 naming the parameter; Cohere is not called."""
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER, **fields)
    assert (info.value.param, info.value.code) == (param, "unsupported_parameter")
    assert cohere.requests == []


async def test_citations_are_not_returned(gateway: Gateway, cohere: FakeCohere) -> None:
    """Cohere's citations leave the answer's text whole, streamed or not, and add nothing."""
    cohere.citations = [
        {
            "start": 0,
            "end": 5,
            "text": "Hello",
            "sources": [{"type": "document", "id": "doc_0", "document": {"text": "Hello"}}],
            "type": "TEXT_CONTENT",
        }
    ]
    sdk = gateway.sdk()
    resp = await sdk.chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content == "Hello from the fake!"
    assert resp.choices[0].message.annotations is None
    stream = await sdk.chat.completions.create(model=MODEL, messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from the fake!"


async def test_text_documents(gateway: Gateway, cohere: FakeCohere) -> None:
    """A text file part becomes a Cohere document; the message keeps its other parts."""
    data = base64.b64encode(b"Paris is in France.").decode()
    await gateway.sdk().chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where is Paris?"},
                    {
                        "type": "file",
                        "file": {
                            "filename": "facts.md",
                            "file_data": f"data:text/markdown;base64,{data}",
                        },
                    },
                ],
            }
        ],
    )
    sent = _sent(cohere)
    assert sent["documents"] == [
        {"id": "doc_0", "data": {"text": "Paris is in France.", "title": "facts.md"}}
    ]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Where is Paris?"}]}
    ]


async def test_tool_plan_and_reasoning_round_trip(gateway: Gateway, cohere: FakeCohere) -> None:
    """Cohere's tool plan comes back as text and its thinking as reasoning_content; both go
    back to Cohere on the next turn as tool_plan and a thinking block."""
    call = ToolCallSpec("get_weather_x1", "get_weather", '{"city": "Paris"}')
    cohere.script(Turn(text="I will check.", reasoning="Need weather.", tool_calls=[call]))
    sdk = gateway.sdk()
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    resp = await sdk.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], reasoning_effort="medium"
    )
    message = resp.choices[0].message
    assert message.content == "I will check."
    assert (message.model_extra or {})["reasoning_content"] == "Need weather."
    assert _sent(cohere)["thinking"] == {"type": "enabled", "token_budget": 4096}
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "get_weather_x1", "content": "18C"},
    ]
    await sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assistant = _sent(cohere)["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "Need weather."}],
        "tool_plan": "I will check.",
        "tool_calls": [
            {
                "type": "function",
                "id": "get_weather_x1",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert _sent(cohere)["messages"][2] == {
        "role": "tool",
        "tool_call_id": "get_weather_x1",
        "content": "18C",
    }


async def test_rate_limit_keeps_retry_after_and_falls_back(
    gateway: Gateway, cohere: FakeCohere, fake_backup: FakeOpenAI
) -> None:
    """Cohere's 429 keeps its Retry-After for the client, and moves a request with fallbacks
    to the next target."""
    cohere.retry_after = "12"
    cohere.script(Turn(error="rate_limit", error_message="You are past the per minute limit"))
    with pytest.raises(openai.RateLimitError) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert info.value.response.headers["retry-after"] == "12"
    assert "cohere: You are past the per minute limit" in info.value.message

    cohere.script(Turn(error="rate_limit"))
    fake_backup.enqueue(Behavior(content="from the backup"))
    resp = await gateway.sdk().chat.completions.create(
        model=MODEL, messages=USER, extra_body={"fallbacks": ["backup/gpt-4o-mini"]}
    )
    assert resp.choices[0].message.content == "from the backup"


@pytest.mark.parametrize(
    ("error", "exc"),
    [
        ("auth", openai.AuthenticationError),
        ("invalid", openai.BadRequestError),
        ("overloaded", openai.InternalServerError),
    ],
)
async def test_cohere_errors(
    gateway: Gateway, cohere: FakeCohere, error: Any, exc: type[openai.APIStatusError]
) -> None:
    """Cohere's error answers reach the client with their status and Cohere's message."""
    cohere.script(Turn(error=error, error_message="nope", error_param="messages"))
    with pytest.raises(exc) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert "nope" in info.value.message
    assert info.value.status_code == {"auth": 401, "invalid": 400, "overloaded": 503}[error]


async def test_failed_generation(
    gateway: Gateway, cohere: FakeCohere, fake_backup: FakeOpenAI
) -> None:
    """A generation Cohere ends with finish_reason ERROR is an error: a retryable 502 that
    falls back before the stream starts, and an error event once text has been streamed."""
    cohere.script(Turn(finish="content_filter"))
    fake_backup.enqueue(Behavior(content="from the backup"))
    resp = await gateway.sdk().chat.completions.create(
        model=MODEL, messages=USER, extra_body={"fallbacks": ["backup/gpt-4o-mini"]}
    )
    assert resp.choices[0].message.content == "from the backup"

    cohere.script(Turn(finish="content_filter", gap_s=0.02))
    stream = await gateway.sdk().chat.completions.create(model=MODEL, messages=USER, stream=True)
    pieces: list[str] = []

    async def drain() -> None:
        async for chunk in stream:
            pieces.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as info:
        await drain()
    assert "".join(pieces) == "Hello from the fake!"
    assert "the response was blocked" in info.value.message


async def test_embeddings_dimensions_and_input_type(gateway: Gateway, cohere: FakeCohere) -> None:
    """dimensions is Cohere's output_dimension; input_type defaults to search_document and an
    extra body field may name another; an unknown one is a 400."""
    sdk = gateway.sdk()
    resp = await sdk.embeddings.create(model="cohere/embed-v4.0", input="hello", dimensions=256)
    assert len(resp.data[0].embedding) == 256
    assert resp.usage.prompt_tokens == 1
    sent = _sent(cohere)
    assert sent == {
        "model": "embed-v4.0",
        "texts": ["hello"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    query = await sdk.embeddings.create(
        model="cohere/embed-v4.0", input="hello", extra_body={"input_type": "search_query"}
    )
    assert _sent(cohere)["input_type"] == "search_query"
    assert "output_dimension" not in _sent(cohere)
    assert query.data[0].embedding != resp.data[0].embedding
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.embeddings.create(
            model="cohere/embed-v4.0", input="hello", extra_body={"input_type": "poetry"}
        )
    assert info.value.param == "input_type"
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.embeddings.create(model="cohere/embed-v4.0", input=[[1, 2, 3]])
    assert info.value.param == "input"


async def test_models_list(make_gateway: MakeGateway, cohere: FakeCohere) -> None:
    """/v1/models pages through Cohere's list and keeps its chat and embed models, after the
    configured ones."""
    cohere.max_page_size = 2
    gateway = await make_gateway({"providers": {"cohere": _config(cohere, models=["my-tune"])}})
    models = await gateway.sdk().models.list()
    assert [m.id for m in models.data] == [
        "cohere/my-tune",
        "cohere/command-a-03-2025",
        "cohere/command-a-reasoning-08-2025",
        "cohere/embed-v4.0",
    ]
    pages = [r.query.get("page_token") for r in cohere.requests]
    assert pages == [None, "2"]
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in cohere.requests)


async def test_auth_configured_headers_and_upstream_headers(
    make_gateway: MakeGateway, cohere: FakeCohere
) -> None:
    """The key goes as a Bearer token with the configured headers; Cohere's response headers
    reach the client."""
    gateway = await make_gateway(
        {"providers": {"cohere": _config(cohere, headers={"X-Client-Name": "thruway-tests"})}}
    )
    raw = await gateway.sdk().chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    assert raw.headers["x-debug-trace-id"]
    headers = cohere.requests[-1].headers
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["X-Client-Name"] == "thruway-tests"
    assert headers["Accept"] == "application/json"


async def test_key_from_environment(make_gateway: MakeGateway, cohere: FakeCohere) -> None:
    """With no keys configured, COHERE_API_KEY is the key; a wrong key is Cohere's 401."""
    gateway = await make_gateway(
        {"providers": {"cohere": {"base_url": cohere.base_url}}}, env={"COHERE_API_KEY": KEY}
    )
    resp = await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content == "Hello from the fake!"
    wrong = await make_gateway(
        {"providers": {"cohere": {"base_url": cohere.base_url, "keys": [{"value": "co-bad"}]}}}
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await wrong.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert "invalid api token" in info.value.message
    assert "co-bad" not in info.value.message
