"""The Gemini provider through the official ``openai`` SDK, against ``FakeGemini``: what the
conformance scenarios do not cover."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import Gateway, MakeGateway
from tests.fakes.gemini import API_KEY, FakeGemini, MidStreamError
from tests.fakes.openai import FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

USER = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    server = await FakeGemini().start()
    try:
        yield server
    finally:
        await server.close()


def _provider(fake: FakeGemini, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.base_url, "keys": [{"value": API_KEY}], **extra}


@pytest.fixture
async def gw(make_gateway: MakeGateway, fake: FakeGemini) -> Gateway:
    return await make_gateway({"providers": {"gemini": _provider(fake)}})


def _last(fake: FakeGemini) -> Any:
    return fake.requests[-1].json


# --- requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
async def test_tool_choice_forms(
    gw: Gateway, fake: FakeGemini, choice: Any, expected: dict[str, Any]
) -> None:
    """Each tool_choice form becomes Gemini's function-calling mode, with both tools declared."""
    await gw.sdk().chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=USER, tools=[WEATHER, TIME], tool_choice=choice
    )
    body = _last(fake)
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    declared = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["get_weather", "get_time"]
    assert declared[0]["parametersJsonSchema"] == WEATHER["function"]["parameters"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
)
async def test_allowed_tools_narrow_the_declarations(
    gw: Gateway, fake: FakeGemini, mode: str, expected: dict[str, Any]
) -> None:
    """allowed_tools declares only the allowed functions, in AUTO or ANY mode."""
    allowed = {"mode": mode, "tools": [{"type": "function", "function": {"name": "get_time"}}]}
    await gw.sdk().chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=USER,
        tools=[WEATHER, TIME],
        tool_choice={"type": "allowed_tools", "allowed_tools": allowed},  # type: ignore[typeddict-item]
    )
    body = _last(fake)
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["get_time"]
    assert body["toolConfig"] == {"functionCallingConfig": expected}


async def test_response_format(gw: Gateway, fake: FakeGemini) -> None:
    """json_object asks for JSON; json_schema passes the schema natively as responseJsonSchema."""
    sdk = gw.sdk()
    await sdk.chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=USER, response_format={"type": "json_object"}
    )
    assert _last(fake)["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    await sdk.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    config = _last(fake)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


async def test_generation_settings_and_defaults(gw: Gateway, fake: FakeGemini) -> None:
    """Sampling settings land in generationConfig; a plain request sends none (Gemini needs no
    defaults); n asks for candidates and returns one choice each."""
    sdk = gw.sdk()
    await sdk.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    assert "generationConfig" not in _last(fake)
    resp = await sdk.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=USER,
        stop="END",
        temperature=0.4,
        top_p=0.8,
        max_tokens=64,
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        n=2,
        user="someone",
        metadata={"k": "v"},
        store=False,
    )
    assert _last(fake)["generationConfig"] == {
        "stopSequences": ["END"],
        "candidateCount": 2,
        "maxOutputTokens": 64,
        "temperature": 0.4,
        "topP": 0.8,
        "seed": 3,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
    }
    assert set(_last(fake)) == {"contents", "generationConfig"}
    assert [c.index for c in resp.choices] == [0, 1]
    assert [c.message.content for c in resp.choices] == ["Hello from the fake!"] * 2


async def test_unsupported_parameters_are_refused(gw: Gateway, fake: FakeGemini) -> None:
    """Parameters Gemini cannot honour are a 400 naming them, and nothing is sent."""
    with pytest.raises(openai.BadRequestError) as info:
        await gw.sdk().chat.completions.create(
            model="gemini/gemini-2.5-flash", messages=USER, logprobs=True
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("logprobs", "unsupported_parameter")
    assert not fake.requests


async def test_media_by_reference_and_inline(gw: Gateway, fake: FakeGemini) -> None:
    """An https image of a known type goes by URL (the API downloads it); a PDF and audio go
    inline."""
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4").decode()
    await gw.sdk().chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.webp"}},
                    {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            }
        ],
    )
    parts = _last(fake)["contents"][0]["parts"]
    assert parts[1] == {
        "fileData": {"fileUri": "https://example.com/a/cat.webp", "mimeType": "image/webp"}
    }
    assert parts[2] == {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}}
    assert parts[3] == {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}


# --- thought signatures -------------------------------------------------------------------


async def test_thought_signature_round_trip(gw: Gateway, fake: FakeGemini) -> None:
    """A Gemini 3 call's signature comes back in extra_content and goes back on the same call
    with the next turn, its result paired by name and id."""
    call = ToolCallSpec("ignored", "get_weather", '{"city": "Paris"}')
    fake.script(Turn(text="", tool_calls=[call], reasoning_signature="c2lnLUdlbWluaTM="))
    sdk = gw.sdk()
    messages: list[Any] = list(USER)
    resp = await sdk.chat.completions.create(
        model="gemini/gemini-3-pro-preview", messages=messages, tools=[WEATHER]
    )
    message = resp.choices[0].message
    assert message.tool_calls is not None
    tool_call = message.tool_calls[0]
    extra = (tool_call.model_extra or {})["extra_content"]
    assert extra == {"google": {"thought_signature": "c2lnLUdlbWluaTM="}}
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "18C"},
    ]
    await sdk.chat.completions.create(
        model="gemini/gemini-3-pro-preview", messages=messages, tools=[WEATHER]
    )
    contents = _last(fake)["contents"]
    sent_call = contents[1]["parts"][0]
    assert sent_call["thoughtSignature"] == "c2lnLUdlbWluaTM="
    assert sent_call["functionCall"] == {
        "name": "get_weather",
        "args": {"city": "Paris"},
        "id": tool_call.id,
    }
    result = contents[2]["parts"][0]["functionResponse"]
    assert result == {"name": "get_weather", "response": {"output": "18C"}, "id": tool_call.id}


async def test_streamed_call_signature_round_trip(gw: Gateway, fake: FakeGemini) -> None:
    """Streamed, a call's signature rides the call's first delta, beside the reasoning and the
    text, and goes back on that call."""
    call = ToolCallSpec("ignored", "get_weather", '{"city": "Paris"}')
    fake.script(Turn(text="Checking.", tool_calls=[call], reasoning="Need weather.", pieces=2))
    sdk = gw.sdk()
    stream = await sdk.chat.completions.create(
        model="gemini/gemini-3-pro-preview",
        messages=USER,
        tools=[WEATHER],
        reasoning_effort="low",
        stream=True,
    )
    content, reasoning, calls = "", "", []
    async for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            calls += [tc.model_dump(exclude_none=True) for tc in choice.delta.tool_calls or []]
    assert (content, reasoning) == ("Checking.", "Need weather.")
    start, arguments = calls
    assert start["extra_content"] == {"google": {"thought_signature": "sig-fake-0001"}}
    assert arguments["function"]["arguments"] == '{"city": "Paris"}'
    function = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assistant = {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": start["id"],
                "type": "function",
                "function": function,
                "extra_content": start["extra_content"],
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": start["id"], "content": "1"}
    await sdk.chat.completions.create(
        model="gemini/gemini-3-pro-preview", messages=[*USER, assistant, result], tools=[WEATHER]
    )
    sent = _last(fake)["contents"][1]["parts"]
    assert sent[0] == {"text": "Checking."}
    assert sent[1]["thoughtSignature"] == "sig-fake-0001"


@pytest.mark.parametrize("stream", [False, True])
async def test_text_signature_round_trip(gw: Gateway, fake: FakeGemini, stream: bool) -> None:
    """A text answer's signature comes back as a thinking block (whole, or as a delta of its
    own) and goes back on the answer's text."""
    fake.script(Turn(text="42", reasoning="Six times seven.", reasoning_signature="c2lnLXQ="))
    sdk = gw.sdk()
    if stream:
        chunks = await sdk.chat.completions.create(
            model="gemini/gemini-2.5-pro", messages=USER, reasoning_effort="low", stream=True
        )
        blocks = []
        async for chunk in chunks:
            for choice in chunk.choices:
                blocks += (choice.delta.model_extra or {}).get("thinking_blocks") or []
        assert blocks == [{"type": "thinking", "signature": "c2lnLXQ="}]
    else:
        resp = await sdk.chat.completions.create(
            model="gemini/gemini-2.5-pro", messages=USER, reasoning_effort="low"
        )
        blocks = (resp.choices[0].message.model_extra or {})["thinking_blocks"]
        assert blocks == [
            {"type": "thinking", "thinking": "Six times seven.", "signature": "c2lnLXQ="}
        ]
    assistant = {"role": "assistant", "content": "42", "thinking_blocks": blocks}
    await sdk.chat.completions.create(
        model="gemini/gemini-2.5-pro",
        messages=[*USER, assistant, {"role": "user", "content": "And 6*8?"}],
    )
    assert _last(fake)["contents"][1] == {
        "parts": [{"text": "42", "thoughtSignature": "c2lnLXQ="}],
        "role": "model",
    }


async def test_reasoning_effort_levels(gw: Gateway, fake: FakeGemini) -> None:
    """reasoning_effort is a thinking budget on Gemini 2.5 and a thinking level on Gemini 3,
    with thought summaries asked for."""
    sdk = gw.sdk()
    await sdk.chat.completions.create(
        model="gemini/gemini-2.5-pro", messages=USER, reasoning_effort="medium"
    )
    config = _last(fake)["generationConfig"]["thinkingConfig"]
    assert config == {"includeThoughts": True, "thinkingBudget": 8192}
    await sdk.chat.completions.create(
        model="gemini/gemini-3-pro-preview", messages=USER, reasoning_effort="minimal"
    )
    config = _last(fake)["generationConfig"]["thinkingConfig"]
    assert config == {"includeThoughts": True, "thinkingLevel": "MINIMAL"}


# --- safety -------------------------------------------------------------------------------


async def test_safety_stop_is_content_filter(gw: Gateway, fake: FakeGemini) -> None:
    """An answer Gemini stops for SAFETY ends with content_filter, whole and streamed."""
    fake.script(Turn(finish="content_filter"), Turn(finish="content_filter"))
    sdk = gw.sdk()
    resp = await sdk.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.content is None
    stream = await sdk.chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=USER, stream=True
    )
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finishes[-1] == "content_filter"


async def test_blocked_prompt(gw: Gateway, fake: FakeGemini) -> None:
    """A prompt Gemini blocks is a content_filter answer whose refusal says why, whole and
    streamed, with the prompt's usage."""
    fake.prompt_blocks.extend(["SAFETY", "SAFETY"])
    sdk = gw.sdk()
    resp = await sdk.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    choice = resp.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("content_filter", None)
    assert choice.message.refusal == "Gemini blocked the prompt (SAFETY)."
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 12
    stream = await sdk.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.refusal == "Gemini blocked the prompt (SAFETY)."
    assert chunks[1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].usage is not None


# --- errors -------------------------------------------------------------------------------


async def test_resource_exhausted_with_retry_delay(
    make_gateway: MakeGateway, fake: FakeGemini, fake_backup: FakeOpenAI
) -> None:
    """RESOURCE_EXHAUSTED is a 429 whose RetryInfo delay is the retry-after header; being
    retryable, it moves on to a fallback."""
    fake.retry_delay = "17.2s"
    providers = {
        "gemini": _provider(fake),
        "backup": {
            "type": "openai",
            "base_url": fake_backup.base_url,
            "keys": [{"value": "sk-fake-backup"}],
        },
    }
    gw = await make_gateway({"providers": providers})
    fake.script(Turn(error="rate_limit"), Turn(error="rate_limit"))
    with pytest.raises(openai.RateLimitError) as info:
        await gw.sdk().chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    assert info.value.response.headers["retry-after"] == "18"
    body = info.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"]) == ("rate_limit_error", "RESOURCE_EXHAUSTED")
    assert body["message"].startswith("gemini: You exceeded your current quota")
    resp = await gw.sdk().chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=USER,
        extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
    )
    assert (resp.model_extra or {})["extra_fields"]["provider"] == "backup"


async def test_wrong_key_is_an_authentication_error(
    make_gateway: MakeGateway, fake: FakeGemini
) -> None:
    """Gemini's 400 API_KEY_INVALID reaches the client as a 401 without the key."""
    wrong = "AIzaSyWRONG-key-000000000000000000000"
    gw = await make_gateway(
        {"providers": {"gemini": {"base_url": fake.base_url, "keys": [{"value": wrong}]}}}
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await gw.sdk().chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["message"] == "gemini: API key not valid. Please pass a valid API key."
    assert wrong not in json.dumps(body)


@pytest.mark.parametrize("bare", [False, True])
async def test_error_after_the_stream_began(gw: Gateway, fake: FakeGemini, bare: bool) -> None:
    """An error Gemini reports mid-stream (SSE event or bare JSON) ends the stream with an
    error the SDK raises, after the text that came first."""
    # Apart, so that the text is sent before the error arrives.
    fake.script(Turn(text="The quick brown fox", pieces=4, gap_s=0.05))
    fake.stream_errors.append(MidStreamError(after=2, bare=bare))
    stream = await gw.sdk().chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=USER, stream=True
    )
    got: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as info:
        await read()
    assert "".join(got) == "The quick "
    assert "overloaded" in str(info.value.message)


# --- endpoints and configuration ----------------------------------------------------------


async def test_embeddings_single_and_batch(gw: Gateway, fake: FakeGemini) -> None:
    """One input uses embedContent, several batchEmbedContents (one request each, naming the
    model); dimensions become outputDimensionality; usage is the API's count."""
    sdk = gw.sdk()
    one = await sdk.embeddings.create(
        model="gemini/gemini-embedding-001", input="hello", dimensions=4
    )
    rec = fake.requests[-1]
    assert rec.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert rec.json == {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}
    assert len(one.data[0].embedding) == 4
    assert one.usage.prompt_tokens == 12
    many = await sdk.embeddings.create(model="gemini/gemini-embedding-001", input=["a", "b", "c"])
    rec = fake.requests[-1]
    assert rec.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert rec.json == {
        "requests": [
            {"content": {"parts": [{"text": t}]}, "model": "models/gemini-embedding-001"}
            for t in "abc"
        ]
    }
    assert [d.index for d in many.data] == [0, 1, 2]
    assert many.data[0].embedding != many.data[1].embedding


async def test_embeddings_without_usage(gw: Gateway, fake: FakeGemini) -> None:
    """An API version that reports no embedding usage is counted as 0 tokens, not guessed."""
    fake.embedding_usage = False
    resp = await gw.sdk().embeddings.create(model="gemini/text-embedding-004", input="hi")
    assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (0, 0)


async def test_models_list_follows_pages(make_gateway: MakeGateway, fake: FakeGemini) -> None:
    """/v1/models lists every page of Gemini's list (ids without models/) after the configured
    ones."""
    gw = await make_gateway({"providers": {"gemini": _provider(fake, models=["my-tuned"])}})
    models = [m.id async for m in gw.sdk().models.list()]
    assert models == ["gemini/my-tuned"] + [f"gemini/{m}" for m in fake.models]
    assert [r.query.get("pageToken") for r in fake.requests] == [None, "2", "4"]
    assert all(r.query["pageSize"] == "1000" for r in fake.requests)


async def test_key_headers_and_api_version(make_gateway: MakeGateway, fake: FakeGemini) -> None:
    """The key goes in x-goog-api-key, never the URL; configured headers pass through;
    api_version and deployments shape the path."""
    provider = _provider(
        fake,
        api_version="v1",
        headers={"x-goog-user-project": "proj-1"},
        deployments={"fast": "gemini-2.5-flash-lite"},
    )
    gw = await make_gateway({"providers": {"gemini": provider}})
    await gw.sdk(api_key="sk-caller").chat.completions.create(model="gemini/fast", messages=USER)
    rec = fake.requests[-1]
    assert rec.path == "/v1/models/gemini-2.5-flash-lite:generateContent"
    assert rec.query == {}
    assert rec.headers["x-goog-api-key"] == API_KEY
    assert rec.headers["x-goog-user-project"] == "proj-1"
    assert "Authorization" not in rec.headers
    stream = await gw.sdk().chat.completions.create(model="gemini/fast", messages=USER, stream=True)
    _ = [c async for c in stream]
    assert fake.requests[-1].query == {"alt": "sse"}
    assert fake.requests[-1].path.endswith(":streamGenerateContent")


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
async def test_key_from_the_environment(
    make_gateway: MakeGateway, fake: FakeGemini, variable: str
) -> None:
    """With no keys configured, the key comes from GEMINI_API_KEY, else GOOGLE_API_KEY."""
    gw = await make_gateway(
        {"providers": {"gemini": {"base_url": fake.base_url}}}, env={variable: API_KEY}
    )
    resp = await gw.sdk().chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    assert resp.choices[0].message.content == "Hello from the fake!"
    assert fake.requests[-1].headers["x-goog-api-key"] == API_KEY


async def test_no_key_leaves_the_provider_unavailable(
    make_gateway: MakeGateway, fake: FakeGemini
) -> None:
    """Without a key anywhere, the provider is listed as unavailable, naming the variable."""
    gw = await make_gateway({"providers": {"gemini": {"base_url": fake.base_url}}})
    with pytest.raises(openai.APIStatusError) as info:
        await gw.sdk().chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER)
    assert info.value.status_code == 503
    assert "GEMINI_API_KEY" in str(info.value.message)
    assert not fake.requests
