"""Writing server-sent events to the client: bytes in, bytes out, one write per event.

A small bytes-level writer rather than aiohttp-sse: upstream payloads arrive as bytes and leave as
bytes (aiohttp-sse takes ``str`` and splits it with a regex per event), and the keep-alive is one
timer per stream rather than a task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from aiohttp import web

__all__ = ["DONE", "SSE_HEADERS", "KeepAlive", "event", "event_batch", "open_event_stream"]

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # Tells nginx and similar proxies not to buffer the stream.
    "X-Accel-Buffering": "no",
}


def event(data: bytes, name: bytes | None = None) -> bytes:
    """One SSE event: ``[event: name\\n]data: payload\\n\\n`` (payloads are single-line JSON)."""
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


def event_batch(payloads: list[bytes]) -> bytes:
    """Several ``data`` events in one buffer (one join, however many there are)."""
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n"


async def open_event_stream(request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={**headers, **SSE_HEADERS})
    await response.prepare(request)
    return response


class KeepAlive:
    """Sends ``: keep-alive`` (or ``payload``: a dialect's own keep-alive event such as
    Anthropic's ``ping``, or a blank line where a client reads comments as data) when nothing
    was written for ``interval`` seconds.

    One ``call_later`` timer per stream; :meth:`touch` after each write only records the time.
    """

    __slots__ = ("_handle", "_interval", "_last", "_loop", "_payload", "_response", "_task")

    def __init__(
        self, response: web.StreamResponse, interval: float, *, payload: bytes = KEEPALIVE
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._response = response
        self._payload = payload
        self._interval = interval
        self._last = self._loop.time()
        self._task: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval, self._fire)

    def touch(self) -> None:
        self._last = self._loop.time()

    def _fire(self) -> None:
        now = self._loop.time()
        due = self._last + self._interval
        if now >= due and (self._task is None or self._task.done()):
            self._task = self._loop.create_task(self._send())
            self._last = now
            due = now + self._interval
        self._handle = self._loop.call_later(max(due - now, 0.01), self._fire)

    async def _send(self) -> None:
        # A failure means the client is gone; the stream's next write (or cancellation) ends it.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._response.write(self._payload)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
