"""A deliberately cheap fake OpenAI-compatible upstream for the benchmark.

``python -m bench.upstream --port N`` serves on 127.0.0.1 with a hand-written HTTP/1.1 keep-alive
protocol on uvloop (no framework: the upstream must cost as little CPU per request as possible, so
that it is never what limits the gateway's numbers):

- ``GET /health``: 200.
- ``POST`` anything (``/v1/chat/completions``): a precomputed ``chat.completion`` JSON body, or,
  when the body contains ``"stream":true``, an SSE stream of ``chat.completion.chunk`` events:
  20 content events (a ``"bench_gap_ms":G`` field in the body puts G ms between them), a finish
  event, a usage chunk when the body contains ``"include_usage":true``, then ``data: [DONE]``.
  Each event is one write (one chunk of ``Transfer-Encoding: chunked``).

The gap is read from the body because the gateway forwards neither query strings nor client
headers, but does forward body fields it does not model. Request bodies must carry a
``Content-Length`` (every client used here does); anything else is answered 411 and closed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

import msgspec

__all__ = ["CONTENT_EVENTS", "main", "stream_frames"]

CONTENT_EVENTS = 20
_MAX_HEAD = 64 * 1024
_encode = msgspec.json.encode


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nx-request-id: req_bench\r\n\r\n"
    )
    return head.encode() + body


_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": CONTENT_EVENTS,
    "total_tokens": 12 + CONTENT_EVENTS,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
_HEAD = {"id": "chatcmpl-bench", "created": 1_715_367_049, "model": "gpt-4o-mini"}
_COMPLETION = _HEAD | {
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the bench upstream!"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": _USAGE,
    "system_fingerprint": "fp_bench",
}
JSON_RESPONSE = _response("200 OK", "application/json", _encode(_COMPLETION))
HEALTH_RESPONSE = _response("200 OK", "application/json", b'{"status":"ok"}')
NOT_FOUND = _response("404 Not Found", "application/json", b'{"error":{"message":"not found"}}')
LENGTH_REQUIRED = _response("411 Length Required", "text/plain", b"Content-Length required")
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nx-request-id: req_bench\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_frames(include_usage: bool) -> list[bytes]:
    """The wire bytes of one stream, one element per write; the first carries the headers."""
    extra: dict[str, object] = {"usage": None} if include_usage else {}
    head = _HEAD | {"object": "chat.completion.chunk", "system_fingerprint": "fp_bench"}

    def event(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + _encode(head | {"choices": [choice]} | extra) + b"\n\n"

    events = [event({"role": "assistant", "content": "tok0 "})]
    events += [event({"content": f"tok{i} "}) for i in range(1, CONTENT_EVENTS)]
    events.append(event({}, "stop"))
    if include_usage:
        events.append(b"data: " + _encode(head | {"choices": [], "usage": _USAGE}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    frames = [_chunk(e) for e in events]
    frames[0] = _STREAM_HEAD + frames[0]
    frames[-1] += b"0\r\n\r\n"
    return frames


_FRAMES = {True: stream_frames(True), False: stream_frames(False)}
_GAP_FIELD = b'"bench_gap_ms":'


def _gap_s(body: bytes) -> float:
    at = body.find(_GAP_FIELD)
    if at < 0:
        return 0.0
    start = end = at + len(_GAP_FIELD)
    while end < len(body) and body[end : end + 1] in b"0123456789.":
        end += 1
    try:
        return float(body[start:end]) / 1000.0
    except ValueError:
        return 0.0


def _content_length(head: bytes) -> int | None:
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        return None
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = lower.find(b"\r\n", at + 2)
    return int(lower[at + 17 : end if end >= 0 else len(lower)].strip())


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order, one at a time."""

    __slots__ = ("_buffer", "_busy", "_closed", "_task", "_transport")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._busy = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve()

    def _serve(self) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer
        for _ in range(1000):  # bounded: requests pipelined in one read
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.close()
                return
            head = bytes(buffer[:end])
            length = _content_length(head)
            if length is None:
                transport.write(LENGTH_REQUIRED)
                transport.close()
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            if head.startswith(b"POST "):
                if b'"stream":true' in body:
                    frames = _FRAMES[b'"include_usage":true' in body]
                    gap = _gap_s(body)
                    if gap > 0:
                        self._busy = True
                        self._task = asyncio.get_running_loop().create_task(
                            self._stream(frames, gap)
                        )
                        return
                    for frame in frames:
                        transport.write(frame)
                else:
                    transport.write(JSON_RESPONSE)
            elif head.startswith((b"GET /health ", b"HEAD /health ")):
                transport.write(HEALTH_RESPONSE)
            else:
                transport.write(NOT_FOUND)

    async def _stream(self, frames: list[bytes], gap: float) -> None:
        transport = self._transport
        assert transport is not None
        try:
            for i, frame in enumerate(frames):
                if 0 < i < CONTENT_EVENTS:
                    await asyncio.sleep(gap)
                if self._closed:
                    return
                transport.write(frame)
        finally:
            self._task = None
            self._busy = False
        if not self._closed and self._buffer:
            self._serve()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(_Connection, host, port, backlog=4096, reuse_address=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.upstream", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
