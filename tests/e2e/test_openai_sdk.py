"""The official ``openai`` SDK against the gateway, with the fake OpenAI upstream behind it."""

from __future__ import annotations

import asyncio
import base64
import struct

import openai
import pytest

from tests.conftest import Gateway, MakeGateway
from tests.fakes.openai import Behavior, FakeOpenAI

USER = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def test_chat_completion(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A chat completion comes back as OpenAI's object, with usage and extra_fields."""
    fake_openai.enqueue(Behavior(content="Bonjour!", usage=(21, 3)))
    result = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, temperature=0.2
    )
    assert "Bonjour!" == result.choices[0].message.content
    assert "stop" == result.choices[0].finish_reason
    assert (21, 3, 24) == (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        result.usage.total_tokens,
    )
    extra = result.model_extra["extra_fields"]
    assert "openai" == extra["provider"]
    assert "chat_completion" == extra["request_type"]
    assert "openai/gpt-4o-mini" == extra["model_requested"]
    assert {"temperature": 0.2} == extra["model_params"]
    assert 0 == extra["fallback_index"]
    assert 21 == extra["billed_usage"]["prompt_tokens"]
    assert 3 == extra["billed_usage"]["completion_tokens"]
    assert extra["latency"] > 0
    assert "raw_response" not in extra


async def test_upstream_receives_the_provider_model_and_key(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """The upstream gets its own model name and the configured key, never the caller's key."""
    await gateway.sdk(api_key="sk-caller-key").chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, extra_body={"fallbacks": ["backup/gpt-4o"]}
    )
    sent = fake_openai.requests[-1]
    assert "gpt-4o-mini" == sent.json["model"]
    assert "fallbacks" not in sent.json
    assert "Bearer sk-fake-upstream" == sent.headers["authorization"]


async def test_unmodelled_fields_are_forwarded_unchanged(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """Fields the unified schema does not model reach an OpenAI-compatible upstream as sent."""
    await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=USER,
        extra_body={"brand_new_param": {"nested": [1, 2.5, None]}, "top_k": 7},
    )
    sent = fake_openai.requests[-1].json
    assert {"nested": [1, 2.5, None]} == sent["brand_new_param"]
    assert 7 == sent["top_k"]


async def test_sync_client(gateway: Gateway) -> None:
    """The synchronous SDK client works too (run in a thread: the gateway shares this loop)."""
    client = gateway.sync_sdk()
    result = await asyncio.to_thread(
        client.chat.completions.create, model="openai/gpt-4o-mini", messages=USER
    )
    assert "Hello from the fake!" == result.choices[0].message.content

    def stream_text() -> str:
        chunks = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=USER, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert "Hello from the fake!" == await asyncio.to_thread(stream_text)


async def test_streaming_chat(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A stream arrives chunk by chunk and the upstream is asked for usage."""
    fake_openai.enqueue(Behavior(deltas=["Hel", "lo", " world"]))
    stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Hello world" == text
    assert all(c.usage is None for c in chunks)
    assert {"include_usage": True} == fake_openai.requests[-1].json["stream_options"]


async def test_streaming_usage_when_asked(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """With include_usage the client gets the usage chunk, with the gateway's extra_fields."""
    fake_openai.enqueue(Behavior(usage=(40, 9)))
    stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert [] == last.choices
    assert (40, 9) == (last.usage.prompt_tokens, last.usage.completion_tokens)
    extra = last.model_extra["extra_fields"]
    assert ("openai", "chat_completion", 0) == (
        extra["provider"],
        extra["request_type"],
        extra["fallback_index"],
    )
    assert 49 == extra["billed_usage"]["total_tokens"]
    assert all("extra_fields" not in (c.model_extra or {}) for c in chunks[:-1])


async def test_tool_calls(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Tools and tool_choice go upstream as sent; tool calls come back whole."""
    calls = [
        {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "call_b", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
    ]
    fake_openai.enqueue(Behavior(tool_calls=calls))
    result = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=USER,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=True,
    )
    got = result.choices[0].message.tool_calls
    assert ["call_a", "call_b"] == [c.id for c in got]
    assert '{"city":"Oslo"}' == got[1].function.arguments
    assert "tool_calls" == result.choices[0].finish_reason
    sent = fake_openai.requests[-1].json
    assert [WEATHER_TOOL] == sent["tools"]
    assert {"type": "function", "function": {"name": "get_weather"}} == sent["tool_choice"]


async def test_streamed_tool_calls(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Streamed tool-call deltas reassemble into the same calls (SDK stream helper)."""
    calls = [
        {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "call_b", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
    ]
    fake_openai.enqueue(Behavior(tool_calls=calls))
    async with gateway.sdk().chat.completions.stream(
        model="openai/gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL]
    ) as stream:
        final = await stream.get_final_completion()
    got = final.choices[0].message.tool_calls
    assert [("call_a", '{"city":"Paris"}'), ("call_b", '{"city":"Oslo"}')] == [
        (c.id, c.function.arguments) for c in got
    ]


async def test_tool_result_turn(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An assistant tool-call turn and its tool result are accepted and forwarded."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C, sunny"},
    ]
    await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
    )
    assert messages == fake_openai.requests[-1].json["messages"]


async def test_response_format_logprobs_and_more(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """The remaining chat parameters pass through to an OpenAI upstream unchanged."""
    params = {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
        },
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "stop": ["\n\n"],
        "seed": 7,
        "reasoning_effort": "low",
        "max_completion_tokens": 100,
        "presence_penalty": 0.5,
        "user": "u-1",
    }
    result = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, **params
    )
    assert 2 == len(result.choices)
    sent = fake_openai.requests[-1].json
    assert params == {k: sent[k] for k in params}


async def test_legacy_completions(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """``/v1/completions`` works, streaming and not."""
    client = gateway.sdk()
    result = await client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="Say")
    assert result.choices[0].text
    stream = await client.completions.create(
        model="openai/gpt-3.5-turbo-instruct", prompt="Say", stream=True
    )
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert result.choices[0].text == text


async def test_embeddings(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Embeddings come back as floats (the SDK asks for base64 and decodes it) and as sent."""
    client = gateway.sdk()
    result = await client.embeddings.create(
        model="openai/text-embedding-3-small", input=["a", "b"], dimensions=4
    )
    assert [4, 4] == [len(d.embedding) for d in result.data]
    assert "base64" == fake_openai.requests[-1].json["encoding_format"]
    floats = await client.embeddings.create(
        model="openai/text-embedding-3-small", input="a", dimensions=4, encoding_format="float"
    )
    raw = await client.embeddings.create(
        model="openai/text-embedding-3-small", input="a", dimensions=4, encoding_format="base64"
    )
    decoded = struct.unpack("<4f", base64.b64decode(raw.data[0].embedding))  # type: ignore[arg-type]
    assert list(decoded) == floats.data[0].embedding
    assert "embedding" == raw.model_extra["extra_fields"]["request_type"]


async def test_speech(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Speech returns the upstream's audio bytes and content type."""
    response = await gateway.sdk().audio.speech.create(
        model="openai/gpt-4o-mini-tts", voice="alloy", input="Hello there"
    )
    audio = response.read()
    assert audio.startswith(b"ID3")
    assert "audio/mpeg" == response.response.headers["content-type"]
    assert "openai" == response.response.headers["x-thruway-provider"]


async def test_transcription(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A multipart transcription reaches the upstream with the file and the provider's model."""
    client = gateway.sdk()
    audio = ("clip.wav", b"RIFF" + bytes(200), "audio/wav")
    result = await client.audio.transcriptions.create(
        model="openai/whisper-1", file=audio, language="en"
    )
    assert result.text
    sent = fake_openai.requests[-1]
    assert "whisper-1" == sent.form["model"]
    assert "en" == sent.form["language"]
    assert ("clip.wav", b"RIFF" + bytes(200)) == sent.files["file"]
    text = await client.audio.transcriptions.create(
        model="openai/whisper-1", file=audio, response_format="text"
    )
    assert isinstance(text, str)
    assert text.strip()


async def test_models_list(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """``/v1/models`` lists every provider's models as provider/model, fetched once and cached."""
    client = gateway.sdk()
    first = [m.id for m in (await client.models.list()).data]
    assert "openai/gpt-4o-mini" in first
    assert "backup/gpt-4o-mini" in first
    fetched = sum(1 for r in fake_openai.requests if r.path == "/v1/models")
    await client.models.list()
    assert fetched == sum(1 for r in fake_openai.requests if r.path == "/v1/models")


async def test_models_retrieve(gateway: Gateway) -> None:
    """One model can be fetched by its provider/model id; an unknown one is a 404."""
    client = gateway.sdk()
    model = await client.models.retrieve("openai/gpt-4o-mini")
    assert ("openai/gpt-4o-mini", "model") == (model.id, model.object)
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("openai/no-such-model")
    assert "model_not_found" == info.value.code


async def test_raw_response_on_request(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """``x-thruway-raw-response: true`` adds the upstream's own body to extra_fields."""
    result = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=USER,
        extra_headers={"x-thruway-raw-response": "true"},
    )
    raw = result.model_extra["extra_fields"]["raw_response"]
    assert result.id == raw["id"]
    assert "extra_fields" not in raw


async def test_response_headers(gateway: Gateway) -> None:
    """Responses carry the request id (echoed when given) and the provider, model and latency."""
    raw = await gateway.sdk().chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=USER, extra_headers={"x-request-id": "trace-42"}
    )
    assert "trace-42" == raw.headers["x-request-id"]
    assert "openai" == raw.headers["x-thruway-provider"]
    assert "gpt-4o-mini" == raw.headers["x-thruway-model"]
    assert float(raw.headers["x-thruway-latency-ms"]) > 0
    assert raw.headers["x-thruway-upstream-request-id"].startswith("req_")
    fresh = await gateway.sdk().chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=USER
    )
    assert 32 == len(fresh.headers["x-request-id"])


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_upstream_errors_keep_status_and_message(
    gateway: Gateway, fake_openai: FakeOpenAI, status: int, exception: type[Exception]
) -> None:
    """An upstream error reaches the SDK as the matching exception with the upstream's message."""
    fake_openai.enqueue(Behavior(status=status))
    with pytest.raises(exception) as info:
        await gateway.sdk().chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    err = info.value
    assert isinstance(err, openai.APIStatusError)
    assert status == err.status_code
    assert err.message.startswith("Error code:")
    body = err.body
    assert isinstance(body, dict)
    assert body["message"].startswith("openai: ")
    assert "sk-fa" not in body["message"]  # the masked key OpenAI echoes in a 401
    if status == 429:
        assert "1" == err.response.headers["retry-after"]
        assert "rate_limit_exceeded" == body["code"]


async def test_upstream_timeout_is_504(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """An upstream that does not answer within the provider's timeout is a 504."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "keys": [{"value": "sk-fake-upstream"}],
                    "timeout_s": 0.2,
                }
            }
        }
    )
    fake_openai.enqueue(Behavior(delay_s=2))
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk().chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert 504 == info.value.status_code
    assert "upstream_timeout" == info.value.body["code"]  # type: ignore[index]


async def test_unreachable_upstream_is_502(make_gateway: MakeGateway) -> None:
    """An upstream nobody listens on is a 502 naming the provider, not a 500."""
    gateway = await make_gateway(
        {"providers": {"local": {"type": "vllm", "base_url": "http://127.0.0.1:9/v1"}}}
    )
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk().chat.completions.create(model="local/qwen3", messages=USER)
    assert 502 == info.value.status_code
    assert "upstream_unreachable" == info.value.body["code"]  # type: ignore[index]
    assert "`local`" in info.value.body["message"]  # type: ignore[index]
