"""Self-tests of the fake OpenAI upstream, driven directly with the official openai SDK."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.responses import FunctionToolParam, Response, ResponseStreamEvent

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


# -- the Responses API ---------------------------------------------------------------------------

_EVENTS: pydantic.TypeAdapter[ResponseStreamEvent] = pydantic.TypeAdapter(ResponseStreamEvent)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """A Responses stream's events, checking each `event:` line names its payload's `type`."""
    out = []
    for block in raw.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        event = msgspec.json.decode(data.removeprefix(b"data: "))
        assert name == b"event: " + event["type"].encode()
        out.append(event)
    return out


async def create_response(fake: FakeOpenAI, **body: Any) -> Response:
    """A non-streamed response, validated by the SDK's model (which ``create`` does not do)."""
    status, _, raw = await raw_post(fake, "/v1/responses", msgspec.json.encode(body))
    assert status == 200
    return Response.model_validate_json(raw)


async def test_response_object(fake_openai: FakeOpenAI) -> None:
    """A non-streamed response is a valid SDK Response that echoes the request's settings."""
    fake_openai.enqueue(Behavior(content="Bonjour", usage=(20, 7), cached_tokens=4))
    response = await create_response(
        fake_openai,
        model="gpt-4o",
        input="Say hi in French",
        instructions="Be brief.",
        temperature=0.3,
        store=False,
        metadata={"team": "a"},
    )
    assert response.id.startswith("resp_")
    assert (response.object, response.status, response.model) == ("response", "completed", "gpt-4o")
    assert (response.instructions, response.temperature) == ("Be brief.", 0.3)
    assert (response.store, response.metadata) == (False, {"team": "a"})
    assert response.output_text == "Bonjour"
    message = response.output[0]
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "output_text"
    assert (message.content[0].annotations, message.content[0].logprobs) == ([], [])
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    assert response.usage.total_tokens == 27
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.incomplete_details is None


async def test_response_tool_calls_and_reasoning(fake_openai: FakeOpenAI) -> None:
    """Scripted reasoning and tool calls become a reasoning item and function_call items."""
    fake_openai.enqueue(Behavior(tool_calls=[WEATHER, CLOCK], reasoning_tokens=9))
    tool: FunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {}},
        "strict": False,
    }
    response = await create_response(fake_openai, model="o4-mini", input="Weather?", tools=[tool])
    assert [item.type for item in response.output] == [
        "reasoning",
        "function_call",
        "function_call",
    ]
    assert response.output[0].id.startswith("rs_")
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments, c.status) for c in calls] == [
        ("call_1", "get_weather", WEATHER["arguments"], "completed"),
        ("call_2", "get_time", CLOCK["arguments"], "completed"),
    ]
    assert all(c.id is not None and c.id.startswith("fc_") for c in calls)
    assert response.tools[0].type == "function"
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 9


async def test_response_incomplete(fake_openai: FakeOpenAI) -> None:
    """Finish `length` makes the response incomplete for max_output_tokens."""
    fake_openai.enqueue(Behavior(finish_reason="length"))
    response = await create_response(fake_openai, model="gpt-4o", input="Hi", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 16
    assert response.output[0].type == "message"
    assert response.output[0].status == "incomplete"


async def test_response_stream_events(fake_openai: FakeOpenAI) -> None:
    """A stream is `event:`/`data:` pairs numbered from 0, each a valid SDK event, in OpenAI's
    order, with the text in the scripted deltas and usage on response.completed."""
    fake_openai.enqueue(Behavior(deltas=["Hel", "lo"], tool_calls=None, usage=(3, 2)))
    body = {"model": "gpt-4o", "input": "Hi", "stream": True}
    status, headers, raw = await raw_post(fake_openai, "/v1/responses", msgspec.json.encode(body))
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert b"[DONE]" not in raw
    events = sse_events(raw)
    for event in events:
        _EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "Hel",
        "lo",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["usage"] is None
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["total_tokens"] == 5


async def test_response_stream_tool_call_events(fake_openai: FakeOpenAI) -> None:
    """Reasoning and a tool call stream as valid SDK events, ending in response.incomplete for a
    scripted `length` finish."""
    fake_openai.enqueue(Behavior(tool_calls=[WEATHER], reasoning_tokens=3, finish_reason="length"))
    body = {"model": "o4-mini", "input": "Hi", "stream": True}
    _, _, raw = await raw_post(fake_openai, "/v1/responses", msgspec.json.encode(body))
    events = sse_events(raw)
    for event in events:
        _EVENTS.validate_python(event)
    arguments = WEATHER["arguments"]
    deltas = [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * len(deltas),
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert events[4]["item"]["arguments"] == ""
    assert events[4]["item"]["status"] == "in_progress"
    assert [e["delta"] for e in events if "delta" in e] == deltas
    final = events[-1]["response"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in final["output"]] == ["reasoning", "function_call"]


async def test_response_stream_through_the_sdk(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    """The SDK's own stream accumulator rebuilds the scripted text and tool calls."""
    fake_openai.enqueue(Behavior(content="Streamed text"))
    async with client.responses.stream(model="gpt-4o", input="Hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Streamed text"
    fake_openai.enqueue(Behavior(tool_calls=[WEATHER], finish_reason="length"))
    async with client.responses.stream(model="gpt-4o", input="Hi") as stream:
        events = [event async for event in stream]
    assert "response.function_call_arguments.delta" in [event.type for event in events]
    last = events[-1]
    assert last.type == "response.incomplete"
    call = last.response.output[0]
    assert call.type == "function_call"
    assert (call.call_id, call.arguments) == ("call_1", WEATHER["arguments"])


async def test_response_stream_error_event(fake_openai: FakeOpenAI) -> None:
    """A scripted mid-stream error is an `error` event after N events, and the stream ends."""
    fake_openai.enqueue(Behavior(stream_error=(3, "server_error", "The model failed.")))
    body = {"model": "gpt-4o", "input": "Hi", "stream": True}
    _, _, raw = await raw_post(fake_openai, "/v1/responses", msgspec.json.encode(body))
    events = sse_events(raw)
    assert len(events) == 4
    assert events[-1] == {
        "type": "error",
        "code": "server_error",
        "message": "The model failed.",
        "param": None,
        "sequence_number": 3,
    }
    _EVENTS.validate_python(events[-1])


async def test_response_refusals(fake_openai: FakeOpenAI) -> None:
    """Like OpenAI: no model, no input, and chat's stream_options.include_usage are 400s."""
    cases = [
        ({"input": "Hi"}, "model", "missing_required_parameter"),
        ({"model": "gpt-4o"}, "input", "missing_required_parameter"),
        (
            {
                "model": "gpt-4o",
                "input": "Hi",
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            "stream_options.include_usage",
            "unknown_parameter",
        ),
    ]
    for body, param, code in cases:
        status, _, raw = await raw_post(fake_openai, "/v1/responses", msgspec.json.encode(body))
        assert status == 400
        error = msgspec.json.decode(raw)["error"]
        assert (error["param"], error["code"], error["type"]) == (
            param,
            code,
            "invalid_request_error",
        )
    body = {
        "model": "gpt-4o",
        "input": "Hi",
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    }
    status, _, _ = await raw_post(fake_openai, "/v1/responses", msgspec.json.encode(body))
    assert status == 200


async def test_response_scripted_error_and_cut(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    """Scripted statuses and cuts apply to /v1/responses as to chat."""
    fake_openai.enqueue(Behavior(status=429), Behavior(cut_after=2))
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model="gpt-4o", input="Hi")
    body = {"model": "gpt-4o", "input": "Hi", "stream": True}
    with pytest.raises(aiohttp.ClientPayloadError):
        await raw_post(fake_openai, "/v1/responses", msgspec.json.encode(body))
    assert [r.path for r in fake_openai.requests] == ["/v1/responses", "/v1/responses"]


async def test_input_tokens(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    """The count endpoint answers a deterministic estimate and refuses fields it does not take."""
    count = await client.responses.input_tokens.count(
        model="gpt-4o", input="Tell me a joke.", instructions="Be brief."
    )
    # 15 and 9 characters: 4 + 3 tokens, and 3 for the one input item.
    assert (count.object, count.input_tokens) == ("response.input_tokens", 10)
    assert fake_openai.requests[-1].json == {
        "model": "gpt-4o",
        "input": "Tell me a joke.",
        "instructions": "Be brief.",
    }
    body = {"model": "gpt-4o", "input": "Hi", "stream": True}
    status, _, raw = await raw_post(
        fake_openai, "/v1/responses/input_tokens", msgspec.json.encode(body)
    )
    assert status == 400
    assert msgspec.json.decode(raw)["error"]["param"] == "stream"
