"""Streams on the wire: exact SSE bytes, no buffering, keep-alives, disconnects, late failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import openai
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import Behavior, FakeOpenAI

BODY = {
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "user", "content": "Hi"}],
    "stream": True,
}


async def _gateway_over(
    make_gateway: MakeGateway,
    aiohttp_server: Any,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Gateway:
    """A gateway whose provider ``up`` is a tiny upstream answering chat with ``handler``."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    upstream = await aiohttp_server(app)
    return await make_gateway(
        {"providers": {"up": {"type": "vllm", "base_url": str(upstream.make_url("/v1"))}}}
    )


def _events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    return raw[:-2].split(b"\n\n")


async def test_sse_bytes_are_openais(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Each upstream chunk is forwarded byte for byte as ``data: ...\\n\\n``, then ``[DONE]``."""
    fake_openai.enqueue(Behavior(deltas=["A", "B"]))
    resp = await gateway.client.post("/v1/chat/completions", json=BODY)
    assert 200 == resp.status
    assert "text/event-stream; charset=utf-8" == resp.headers["Content-Type"]
    assert "no-cache" == resp.headers["Cache-Control"]
    assert "openai" == resp.headers["x-thruway-provider"]
    events = _events(await resp.read())
    assert b"data: [DONE]" == events[-1]
    chunks = [msgspec.json.decode(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert [{"role": "assistant", "content": "", "refusal": None}, {"content": "A"}] == [
        c["choices"][0]["delta"] for c in chunks[:2]
    ]
    assert "stop" == chunks[-1]["choices"][0]["finish_reason"]
    # Without include_usage the forced usage-only chunk is held back.
    assert all(c["choices"] for c in chunks)


async def test_usage_chunk_forwarded_exactly_when_asked(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """With include_usage the upstream's usage chunk is forwarded as it came."""
    body = {**BODY, "stream_options": {"include_usage": True}}
    fake_openai.enqueue(Behavior(usage=(7, 2)))
    resp = await gateway.client.post("/v1/chat/completions", json=body)
    events = _events(await resp.read())
    usage_chunk = msgspec.json.decode(events[-2].removeprefix(b"data: "))
    assert [] == usage_chunk["choices"]
    assert 9 == usage_chunk["usage"]["total_tokens"]


async def test_events_are_not_buffered(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Each event reaches the client when the upstream sends it, not at the end."""
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c", "d"], gap_s=0.15))
    resp = await gateway.client.post("/v1/chat/completions", json=BODY)
    arrivals: list[float] = []
    start = time.monotonic()
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        while b"\n\n" in buffer:
            _, buffer = buffer.split(b"\n\n", 1)
            arrivals.append(time.monotonic() - start)
    # Events 2..n arrive spread over the upstream's gaps, not together at the end.
    assert arrivals[-1] - arrivals[1] > 0.3
    assert arrivals[2] < arrivals[-1] - 0.2


async def test_keepalive_comments_while_upstream_is_silent(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A silent upstream mid-stream gets ``: keep-alive`` comments to the client."""
    gateway = await make_gateway(
        {
            "providers": {"openai": provider_for(fake_openai)},
            "streaming": {"keepalive_interval_s": 0.05},
        }
    )
    fake_openai.enqueue(Behavior(deltas=["a", "b"], gap_s=0.3))
    resp = await gateway.client.post("/v1/chat/completions", json=BODY)
    raw = await resp.read()
    assert b": keep-alive\n\n" in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    sdk_stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=BODY["messages"], stream=True
    )
    fake_openai.enqueue(Behavior(deltas=["x", "y"], gap_s=0.2))
    text = "".join([c.choices[0].delta.content or "" async for c in sdk_stream if c.choices])
    assert text  # the SDK skips comments


@pytest.mark.parametrize("gap_s", [0.001, 0.1])
async def test_client_disconnect_closes_the_upstream(
    gateway: Gateway, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, gap_s: float
) -> None:
    """A client leaving mid-stream drops the upstream at once, logs 499, and no traceback."""
    fake_openai.enqueue(Behavior(deltas=[str(i % 10) * 2000 for i in range(3000)], gap_s=gap_s))
    with capture_logs() as logs:
        resp = await gateway.client.post("/v1/chat/completions", json=BODY)
        await resp.content.readuntil(b"\n\n")
        resp.close()
        await asyncio.wait_for(fake_openai.disconnected.wait(), timeout=2)
        for _ in range(50):
            if any(entry["event"] == "request" for entry in logs):
                break
            await asyncio.sleep(0.02)
    assert 1 == fake_openai.disconnects
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert (499, "client_disconnected") == (line["status"], line["error_type"])
    assert [] == [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_failure_after_first_byte_ends_with_error_event(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An upstream cut mid-stream ends the client's stream with an error event, then [DONE]."""
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c", "d"], cut_after=3))
    resp = await gateway.client.post(
        "/v1/chat/completions", json={**BODY, "fallbacks": ["backup/gpt-4o-mini"]}
    )
    events = _events(await resp.read())
    assert b"data: [DONE]" == events[-1]
    error = msgspec.json.decode(events[-2].removeprefix(b"data: "))["error"]
    assert "api_connection_error" == error["type"]
    assert "`openai`" in error["message"]
    # Content already went out, so no fallback was tried.
    assert 3 == len(events) - 2


async def test_sdk_raises_on_mid_stream_error(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """The SDK surfaces the error event as an APIError instead of a silently short answer."""
    fake_openai.enqueue(Behavior(deltas=["a", "b", "c", "d"], cut_after=3))
    stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=BODY["messages"], stream=True
    )
    with pytest.raises(openai.APIError, match="closed the connection"):
        async for _ in stream:
            pass


async def test_upstream_error_event_ends_the_stream(
    make_gateway: MakeGateway, aiohttp_server: Any
) -> None:
    """An ``{"error": ...}`` event from the upstream mid-stream reaches the client as one."""
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}],
    }
    failure = {"error": {"message": "The server had an error", "type": "server_error"}}

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
        await resp.write(b"data: " + msgspec.json.encode(failure) + b"\n\n")
        return resp

    gateway = await _gateway_over(make_gateway, aiohttp_server, handler)
    resp = await gateway.client.post("/v1/chat/completions", json={**BODY, "model": "up/m"})
    events = _events(await resp.read())
    assert b"data: [DONE]" == events[-1]
    error = msgspec.json.decode(events[-2].removeprefix(b"data: "))["error"]
    assert "up: The server had an error" == error["message"]
    assert "server_error" == error["type"]


async def test_exact_wire_bytes(make_gateway: MakeGateway, aiohttp_server: Any) -> None:
    """The client receives exactly the upstream's payloads, re-framed as ``data: ...\\n\\n``."""
    payloads = [
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"content":"h\\u00e9llo \\n"},"finish_reason":null}]}',
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{},"finish_reason":"stop"}]}',
    ]
    usage = (
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        # CRLF framing, a comment and a split write: the gateway re-frames, it does not copy.
        await resp.write(b": upstream comment\r\n\r\n")
        for payload in [*payloads, usage]:
            await resp.write(b"data: " + payload[:10])
            await resp.write(payload[10:] + b"\r\n\r\n")
        await resp.write(b"data: [DONE]\r\n\r\n")
        return resp

    gateway = await _gateway_over(make_gateway, aiohttp_server, handler)
    body = {**BODY, "model": "up/m"}
    resp = await gateway.client.post("/v1/chat/completions", json=body)
    assert b"".join(b"data: " + p + b"\n\n" for p in payloads) + b"data: [DONE]\n\n" == (
        await resp.read()
    )
    asked = {**body, "stream_options": {"include_usage": True}}
    resp = await gateway.client.post("/v1/chat/completions", json=asked)
    raw = await resp.read()
    # The usage chunk is the upstream's, with the gateway's extra_fields appended.
    before = b"".join(b"data: " + p + b"\n\n" for p in payloads)
    assert raw.startswith(before + b"data: " + usage[:-1] + b',"extra_fields":{')
    assert raw.endswith(b"}}\n\ndata: [DONE]\n\n")
    spliced = msgspec.json.decode(raw[len(before) + 6 : -len(b"\n\ndata: [DONE]\n\n")])
    assert msgspec.json.decode(usage) == {k: v for k, v in spliced.items() if k != "extra_fields"}
    assert 5 == spliced["extra_fields"]["billed_usage"]["total_tokens"]


async def test_last_event_without_blank_line(
    make_gateway: MakeGateway, aiohttp_server: Any
) -> None:
    """An upstream that ends its last event without the closing blank line loses nothing."""
    chunk = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}'

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + chunk + b"\n\ndata: " + chunk)
        return resp

    gateway = await _gateway_over(make_gateway, aiohttp_server, handler)
    resp = await gateway.client.post("/v1/chat/completions", json={**BODY, "model": "up/m"})
    assert (b"data: " + chunk + b"\n\n") * 2 + b"data: [DONE]\n\n" == await resp.read()
