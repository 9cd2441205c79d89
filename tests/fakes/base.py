"""What every fake upstream shares: a real HTTP server on 127.0.0.1 that records each request,
answers from a script of provider-neutral :class:`~tests.fakes.script.Turn` objects, and can
stall, fail or cut a stream.

A provider's fake subclasses :class:`FakeServer`, registers its routes in ``routes()`` and
renders a ``Turn`` in its own wire format; the conformance suite scripts every fake alike.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.script import Turn

__all__ = ["Exchange", "FakeServer", "Recorded"]


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    match: dict[str, str] = field(default_factory=dict)


@dataclass
class Exchange:
    """One request being answered: what came in, the turn that answers it, the response."""

    request: web.Request
    rec: Recorded
    turn: Turn
    started: float = field(default_factory=time.monotonic)
    response: web.StreamResponse | None = None
    cut: bool = False


Handler = Callable[[Exchange], Awaitable[web.StreamResponse]]


class FakeServer:
    """Base of the fakes: start/close, recording, the turn queue, streaming with gaps and cuts.

    ``script(*turns)`` queues answers, first in first out; once the queue is empty ``Turn()``
    (a plain successful answer) applies. ``disconnects`` counts requests whose client (the
    gateway) went away before the answer was complete; ``disconnected`` is set at the first.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self._queue: deque[Turn] = deque()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing = False

    # --- for subclasses --------------------------------------------------------------------

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        """(method, aiohttp path pattern, handler) of each endpoint."""
        raise NotImplementedError

    async def check_auth(self, ex: Exchange) -> web.StreamResponse | None:
        """An error response when the request's credentials are wrong, else ``None``."""
        return None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def script(self, *turns: Turn) -> None:
        self._queue.extend(turns)

    async def start(self) -> Any:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._wrap(handler))
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- plumbing --------------------------------------------------------------------------

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            try:
                doc = msgspec.json.decode(body) if body else None
            except msgspec.DecodeError:
                doc = None
            rec = Recorded(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
                json=doc,
                match=dict(request.match_info),
            )
            self.requests.append(rec)
            ex = Exchange(request, rec, self._queue.popleft() if self._queue else Turn())
            try:
                if ex.turn.delay_s > 0:
                    await asyncio.sleep(ex.turn.delay_s)
                denied = await self.check_auth(ex)
                if denied is not None:
                    return denied
                return await handler(ex)
            except asyncio.CancelledError:
                self._note_disconnect(ex)
                raise
            except ConnectionResetError:
                self._note_disconnect(ex)
                return ex.response or web.Response()

        return run

    def _note_disconnect(self, ex: Exchange) -> None:
        if not (ex.cut or self._closing):
            self.disconnects += 1
            self.disconnected.set()

    async def stream(
        self,
        ex: Exchange,
        chunks: Iterable[bytes],
        *,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send ``chunks`` one write each, honouring the turn's stall, gap and cut settings."""
        turn = ex.turn
        resp = ex.response = web.StreamResponse(
            headers=CIMultiDict({"Content-Type": content_type, **(headers or {})})
        )
        await resp.prepare(ex.request)
        if turn.stall_after_headers_s > 0:
            await asyncio.sleep(turn.stall_after_headers_s)
        for sent, chunk in enumerate(chunks):
            if sent and turn.gap_s > 0:
                await asyncio.sleep(turn.gap_s)
            if turn.cut_after is not None and sent >= turn.cut_after:
                await self.abort(ex)
                return resp
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    @staticmethod
    async def abort(ex: Exchange) -> None:
        """Let what was written reach the socket, then drop the connection."""
        transport = ex.request.transport
        if transport is None:
            return
        for _ in range(100):
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.01)
        ex.cut = True
        transport.abort()

    @staticmethod
    def json(
        payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        return web.Response(
            body=body,
            status=status,
            headers=CIMultiDict({"Content-Type": "application/json", **(headers or {})}),
        )
