"""Self-tests of the fake OpenAI upstream, driven directly with the official openai SDK."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.fakes import openai as fakes
from tests.fakes.openai import Behavior, FakeOpenAI

fake_openai = fakes.fake_openai  # make the fixture visible here without a conftest

KEY = "sk-fake-upstream"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
WEATHER = {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
CLOCK = {"id": "call_2", "name": "get_time", "arguments": '{"timezone":"Europe/Paris"}'}


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


async def raw_post(fake: FakeOpenAI, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.root_url + path, data=body, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def test_chat_completion(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """A non-streamed chat completion parses in the SDK, echoes the model and honours `n`."""
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, n=2
    )
    assert raw.headers["openai-version"] == "2020-10-01"
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o"
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].message.content == "Hello from the fake!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 17
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


async def test_chat_tool_calls(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """Scripted tool calls come back in `message.tool_calls` with null content."""
    fake_openai.enqueue(Behavior(tool_calls=[WEATHER]))
    completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    tool_call = choice.message.tool_calls[0]
    assert tool_call.type == "function"
    assert (tool_call.id, tool_call.function.name) == ("call_1", "get_weather")
    assert tool_call.function.arguments == WEATHER["arguments"]


async def test_chat_stream_with_usage(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """With include_usage the SDK sees `usage: null` chunks and then a choiceless usage chunk."""
    fake_openai.enqueue(Behavior(content="Streaming works", usage=(7, 3)))
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Streaming works"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 10


async def test_sse_wire_format(fake_openai: FakeOpenAI) -> None:
    """Streams are `data: <json>\\n\\n` events ending in `data: [DONE]`, with exact deltas."""
    fake_openai.enqueue(Behavior(deltas=["Hel", "lo"]))
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    status, headers, raw = await raw_post(
        fake_openai, "/v1/chat/completions", msgspec.json.encode(body)
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = raw.split(b"\n\n")[:-2]
    assert all(event.startswith(b"data: {") for event in events)
    chunks = [msgspec.json.decode(event.removeprefix(b"data: ")) for event in events]
    assert all("usage" not in chunk for chunk in chunks)
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["logprobs"] is None


async def test_streamed_tool_calls(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """Parallel tool calls stream as indexed fragments that reassemble into the scripted calls."""
    fake_openai.enqueue(Behavior(tool_calls=[WEATHER, CLOCK]))
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    calls: dict[int, dict[str, str]] = {}
    fragments, finish = 0, None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function is not None:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
                fragments += bool(delta.function.arguments)
    assert calls == {0: WEATHER, 1: CLOCK}
    assert fragments > 4
    assert finish == "tool_calls"


async def test_embeddings_float(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """Float embeddings are deterministic per input and honour `dimensions`."""
    first = await client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    again = await client.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="float", dimensions=4
    )
    assert [item.index for item in first.data] == [0, 1]
    assert len(first.data[0].embedding) == 8
    assert first.data[0].embedding != first.data[1].embedding
    assert again.data[0].embedding == first.data[0].embedding[:4]
    assert first.usage.prompt_tokens == first.usage.total_tokens == 12


async def test_embeddings_base64(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """Base64 embeddings are little-endian float32, which the SDK decodes to the float values."""
    floats = await client.embeddings.create(model="m", input="hi", encoding_format="float")
    decoded = await client.embeddings.create(model="m", input="hi")  # the SDK asks for base64
    assert fake_openai.requests[-1].json["encoding_format"] == "base64"
    assert decoded.data[0].embedding == floats.data[0].embedding
    raw = await client.embeddings.create(model="m", input="hi", encoding_format="base64")
    packed = base64.b64decode(str(raw.data[0].embedding))
    assert list(struct.unpack("<8f", packed)) == floats.data[0].embedding


async def test_speech(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """Speech returns a few KB of deterministic audio with the format's content type."""
    mp3 = await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hi")
    wav = await client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Hi", response_format="wav"
    )
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    assert mp3.response.headers["transfer-encoding"] == "chunked"
    assert mp3.content.startswith(b"ID3")
    assert len(mp3.content) == 4096
    assert wav.response.headers["content-type"] == "audio/wav"
    assert wav.content[:4] == b"RIFF"
    assert wav.content[8:12] == b"WAVE"


async def test_transcription_json(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """A JSON transcription carries text and token usage; the upload is recorded byte for byte."""
    audio = b"RIFF\r\n--\r\n\x00\xff binary"
    result = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("clip.wav", audio, "audio/wav"), language="en"
    )
    assert result.text == "Hello from the fake!"
    assert result.usage is not None
    assert result.usage.type == "tokens"
    recorded = fake_openai.requests[-1]
    assert recorded.files == {"file": ("clip.wav", audio)}
    assert recorded.form == {"model": "gpt-4o-transcribe", "language": "en"}


async def test_transcription_text(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """`response_format=text` answers text/plain, which the SDK returns as a string."""
    fake_openai.enqueue(Behavior(content="Bonjour"))
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("clip.mp3", b"ID3...", "audio/mpeg"), response_format="text"
    )
    assert text == "Bonjour"


async def test_models(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """The models list reflects `fake.models`, and unknown models are 404 model_not_found."""
    fake_openai.models = ["gpt-4o", "o3"]
    page = await client.models.list()
    assert [model.id for model in page.data] == ["gpt-4o", "o3"]
    assert (await client.models.retrieve("o3")).owned_by == "system"
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-9")
    assert info.value.code == "model_not_found"


async def test_rate_limit(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """A scripted 429 surfaces as RateLimitError with OpenAI's code and retry headers."""
    fake_openai.enqueue(Behavior(status=429))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert "gpt-4o-mini" in info.value.message


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, openai.BadRequestError, "context_length_exceeded"),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (404, openai.NotFoundError, "model_not_found"),
        (500, openai.InternalServerError, None),
        (503, openai.InternalServerError, None),
    ],
)
async def test_scripted_errors(
    fake_openai: FakeOpenAI,
    client: openai.AsyncOpenAI,
    status: int,
    error: type[openai.APIStatusError],
    code: str | None,
) -> None:
    """Scripted statuses answer OpenAI's error shape, which the SDK maps to its error classes."""
    fake_openai.enqueue(Behavior(status=status))
    with pytest.raises(error) as info:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.code == code
    assert isinstance(info.value.body, dict)
    assert set(info.value.body) == {"message", "type", "param", "code"}


async def test_wrong_key(fake_openai: FakeOpenAI) -> None:
    """A wrong key gets OpenAI's 401 with the key masked in the message."""
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="sk-wrong-key-1234", max_retries=0
    ) as sdk:
        with pytest.raises(openai.AuthenticationError) as info:
            await sdk.models.list()
    assert "Incorrect API key provided: sk-wr***1234." in info.value.message
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-wrong-key-1234"


async def test_bad_requests(fake_openai: FakeOpenAI) -> None:
    """Unknown paths, malformed JSON and a missing model answer OpenAI-shaped errors."""
    status, _, body = await raw_post(fake_openai, "/v1/foo", b"{}")
    assert status == 404
    assert msgspec.json.decode(body) == {
        "error": {
            "message": "Invalid URL (POST /v1/foo)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    status, _, body = await raw_post(fake_openai, "/v1/chat/completions", b"{nope")
    assert status == 400
    assert "could not parse the JSON body" in msgspec.json.decode(body)["error"]["message"]
    status, _, body = await raw_post(fake_openai, "/v1/embeddings", b'{"input": "x"}')
    assert status == 400
    assert msgspec.json.decode(body)["error"]["message"] == "you must provide a model parameter"


async def test_cut_stream(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """A stream cut after N events raises in the SDK after exactly N chunks, with no [DONE]."""
    fake_openai.enqueue(Behavior(cut_after=3))
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    received: list[ChatCompletionChunk] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIConnectionError) as info:
        await consume()
    assert "incomplete chunked read" in str(info.value.__cause__)
    assert len(received) == 3
    assert fake_openai.disconnects == 0


async def test_client_disconnect(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """A client leaving mid-stream is counted in `disconnects` and sets `disconnected`."""
    fake_openai.enqueue(Behavior(gap_s=0.2))
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    async for _ in stream:
        break
    await stream.close()
    await asyncio.wait_for(fake_openai.disconnected.wait(), timeout=2)
    assert fake_openai.disconnects == 1


async def test_delay_before_headers(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """A delayed answer trips the client's timeout, and the abandoned request counts as gone."""
    fake_openai.enqueue(Behavior(delay_s=5))
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2).chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    await asyncio.wait_for(fake_openai.disconnected.wait(), timeout=2)


async def test_records_requests(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """Each request is recorded in order with method, path, query, headers and decoded body."""
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)
    await client.models.list(extra_query={"limit": "2"})
    chat, models = fake_openai.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.json == {"messages": MESSAGES, "model": "gpt-4o", "temperature": 0.5}
    assert msgspec.json.decode(chat.body) == chat.json
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert chat.headers["content-type"] == "application/json"
    assert (models.method, models.path, models.query, models.json) == (
        "GET",
        "/v1/models",
        {"limit": "2"},
        None,
    )
