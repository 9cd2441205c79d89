"""A fake OpenAI upstream that misbehaves on purpose, at random but repeatably.

:class:`FaultyOpenAI` is :class:`~tests.fakes.openai.FakeOpenAI` (same routes, same wire format)
with a :class:`FaultPlan`: each chat completion request draws one :class:`Fault` from a
``random.Random(plan.seed)``, so one seed always gives one sequence of faults. The faults are the
ways real upstreams fail:

- ``RATE_LIMIT`` (429), ``SERVER_ERROR`` (500), ``UNAVAILABLE`` (503): OpenAI's own error bodies
  and headers; a 429 carries ``retry-after``, ``retry-after-ms``, both or neither (its own draw);
- ``OVERLOADED`` (529): what Anthropic-style upstreams answer when overloaded;
- ``RESET``: the connection is reset (TCP RST) before any response byte;
- ``STALL_HEADERS``: nothing at all for ``plan.stall_s`` (longer than the gateway's timeout);
- ``STALL_MID``: a stream stalls after ``plan.events_before_fault`` events, a JSON answer after
  half its body (its ``Content-Length`` promising the rest);
- ``MALFORMED``: 200 and a body that is not JSON (a JSON answer cut in half, complete as HTTP);
  in a stream, the first event's data cut in half, the rest of the stream as usual;
- ``TRUNCATED``: a stream cut in the middle of the event after ``plan.events_before_fault``
  complete ones (no ``[DONE]``), a JSON answer cut after half its body.

``fake.plan = FaultPlan(...)`` switches the plan at run time (and restarts its random sequence).
``received``, ``in_progress`` and ``history`` say what came in, what is being answered now, and
what was injected.
"""

from __future__ import annotations

import asyncio
import enum
import random
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.openai import (
    Behavior,
    FakeOpenAI,
    _ApiError,
    _Call,
    _canned_error,
    _model_of,
    _record,
)

__all__ = ["Fault", "FaultPlan", "FaultyOpenAI", "Injection", "faulty_openai"]


class Fault(enum.Enum):
    NONE = "none"
    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    OVERLOADED = "529"
    RESET = "reset"
    STALL_HEADERS = "stall_headers"
    STALL_MID = "stall_mid"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"


# The FaultPlan field holding each fault's rate, in the order of the cumulative draw.
_RATE_FIELDS: dict[Fault, str] = {
    Fault.RATE_LIMIT: "rate_limit",
    Fault.SERVER_ERROR: "server_error",
    Fault.UNAVAILABLE: "unavailable",
    Fault.OVERLOADED: "overloaded",
    Fault.RESET: "reset",
    Fault.STALL_HEADERS: "stall_headers",
    Fault.STALL_MID: "stall_mid",
    Fault.MALFORMED: "malformed",
    Fault.TRUNCATED: "truncated",
}
_STATUS = {
    Fault.RATE_LIMIT: 429,
    Fault.SERVER_ERROR: 500,
    Fault.UNAVAILABLE: 503,
    Fault.OVERLOADED: 529,
}
# What a 429 says about when to come back: (retry-after, retry-after-ms), None where absent.
RETRY_HINTS: tuple[tuple[str | None, str | None], ...] = (
    (None, None),
    ("1", None),
    (None, "850"),
    ("1", "850"),
)
_OVERLOADED = {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}


@dataclass(frozen=True)
class FaultPlan:
    """The probability of each fault per request (their sum at most 1; the rest: a good answer)."""

    seed: int = 0
    rate_limit: float = 0.0
    server_error: float = 0.0
    unavailable: float = 0.0
    overloaded: float = 0.0
    reset: float = 0.0
    stall_headers: float = 0.0
    stall_mid: float = 0.0
    malformed: float = 0.0
    truncated: float = 0.0
    stall_s: float = 30.0  # longer than any timeout the gateway under test uses
    events_before_fault: int = 1  # complete stream events before STALL_MID and TRUNCATED
    # Faults a stream request is spared (drawn, then answered well and recorded as NONE): to
    # keep out of a long run a fault the gateway is known to mishandle, without changing the
    # random sequence of the others.
    spare_streams: frozenset[Fault] = frozenset()

    def __post_init__(self) -> None:
        rates = [getattr(self, name) for name in _RATE_FIELDS.values()]
        if any(r < 0 for r in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1: {rates}")

    @classmethod
    def spread(cls, total: float, *, seed: int, only: Sequence[Fault] = (), **kw: Any) -> FaultPlan:
        """``total`` shared equally among ``only`` (default: every fault)."""
        kinds = list(only) or list(_RATE_FIELDS)
        rates = {_RATE_FIELDS[kind]: total / len(kinds) for kind in kinds}
        return cls(seed=seed, **rates, **kw)

    def faults(self) -> dict[Fault, float]:
        return {kind: getattr(self, name) for kind, name in _RATE_FIELDS.items()}


@dataclass(frozen=True)
class Injection:
    """One draw: the fault, whether the request asked for a stream, and a 429's retry hint."""

    fault: Fault
    stream: bool
    retry_hint: tuple[str | None, str | None] = (None, None)


@dataclass
class _FaultBehavior(Behavior):
    fault: Fault = Fault.NONE
    plan: FaultPlan | None = None


class FaultyOpenAI(FakeOpenAI):
    """FakeOpenAI whose chat completions fail as ``plan`` draws; other routes answer normally."""

    def __init__(self, plan: FaultPlan | None = None, api_key: str | None = "sk-fake-upstream"):
        super().__init__(api_key=api_key)
        self.received = 0  # requests of any route
        self.in_progress = 0  # requests whose handler is running now
        self.peak_in_progress = 0
        self.history: list[Injection] = []
        self.plan = plan or FaultPlan()

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan) -> None:
        self._plan = plan
        self._rng = random.Random(plan.seed)

    @property
    def injected(self) -> Counter[Fault]:
        return Counter(i.fault for i in self.history if i.fault is not Fault.NONE)

    def open_connections(self) -> int:
        """TCP connections the server holds open (idle keep-alive ones included)."""
        return len(self._runner.server.connections) if self._runner and self._runner.server else 0

    async def close_connections(self, grace_s: float = 1.0) -> int:
        """Close every connection, kept-alive idle ones at once, one serving a request once
        it is answered (at most ``grace_s``), as a server restarting does. Returns how many."""
        if self._runner is None or self._runner.server is None:
            return 0
        handlers = self._runner.server.connections
        await asyncio.gather(*(handler.shutdown(grace_s) for handler in handlers))
        return len(handlers)

    # -- plumbing ---------------------------------------------------------------------------

    def _draw(self, stream: bool) -> Injection:
        # Two draws per request whatever the outcome, so the sequence depends on the seed only.
        roll, hint = self._rng.random(), self._rng.choice(RETRY_HINTS)
        fault, edge = Fault.NONE, 0.0
        for kind, rate in self.plan.faults().items():
            edge += rate
            if roll < edge:
                fault = kind
                break
        if stream and fault in self.plan.spare_streams:
            fault = Fault.NONE
        injection = Injection(fault, stream, hint if fault is Fault.RATE_LIMIT else (None, None))
        self.history.append(injection)
        return injection

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.received += 1
        self.in_progress += 1
        self.peak_in_progress = max(self.peak_in_progress, self.in_progress)
        try:
            return await self._answer(request)
        finally:
            self.in_progress -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if (request.method, request.path) != ("POST", "/v1/chat/completions"):
            return await super()._dispatch(request)
        rec = _record(request, await request.read())
        self.requests.append(rec)
        stream = isinstance(rec.json, dict) and bool(rec.json.get("stream"))
        injection = self._draw(stream)
        behavior = _FaultBehavior(fault=injection.fault, plan=self.plan)
        call = _Call(request, rec, behavior)
        try:
            return await self._inject(call, injection)
        except asyncio.CancelledError:
            self._note_disconnect(call)
            raise
        except ConnectionResetError:
            self._note_disconnect(call)
            return call.response or web.Response()

    async def _inject(self, call: _Call, injection: Injection) -> web.StreamResponse:
        fault, plan = injection.fault, self.plan
        if fault is Fault.RESET:
            return await self._reset(call)
        if fault is Fault.STALL_HEADERS:
            await asyncio.sleep(plan.stall_s)
        if fault in _STATUS:
            return self._status_error(call, fault, injection.retry_hint)
        try:
            resp = await self._route(call)
        except _ApiError as err:
            return self._error(call, err)
        if injection.stream or not isinstance(resp, web.Response) or resp.status != 200:
            return resp
        return await self._spoil_json(call, resp, fault)

    def _status_error(
        self, call: _Call, fault: Fault, hint: tuple[str | None, str | None]
    ) -> web.Response:
        status = _STATUS[fault]
        if fault is Fault.OVERLOADED:
            return self._json(call, {"error": _OVERLOADED}, status)
        extra: dict[str, str] = {}
        if fault is Fault.RATE_LIMIT:
            extra = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
            after, after_ms = hint
            if after is not None:
                extra["retry-after"] = after
            if after_ms is not None:
                extra["retry-after-ms"] = after_ms
        bearer = call.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return self._error(call, _canned_error(status, _model_of(call.rec), bearer), extra)

    async def _reset(self, call: _Call) -> web.StreamResponse:
        """A TCP reset before any byte of the response: SO_LINGER 0, then close."""
        transport = call.request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            call.cut = True
            transport.abort()
        # The lost connection cancels this handler (handler_cancellation); until then, wait.
        await asyncio.sleep(self.plan.stall_s)
        return web.Response()

    async def _spoil_json(self, call: _Call, good: web.Response, fault: Fault) -> web.Response:
        body = bytes(good.body) if isinstance(good.body, (bytes, bytearray)) else b""
        if fault is Fault.MALFORMED:
            good.body = body[: len(body) // 2]
            return good
        if fault not in (Fault.STALL_MID, Fault.TRUNCATED):
            return good
        headers = CIMultiDict(good.headers)
        headers["Content-Length"] = str(len(body))
        resp = call.response = web.StreamResponse(status=good.status, headers=headers)
        await resp.prepare(call.request)
        await resp.write(body[: len(body) // 2])
        if fault is Fault.STALL_MID:
            await asyncio.sleep(self.plan.stall_s)
            await resp.write(body[len(body) // 2 :])
            await resp.write_eof()
        else:
            await self._abort(call)
        return good

    async def _stream(
        self, call: _Call, content_type: str, chunks: Sequence[bytes]
    ) -> web.StreamResponse:
        behavior = call.behavior
        if not isinstance(behavior, _FaultBehavior) or behavior.plan is None:
            return await super()._stream(call, content_type, chunks)
        fault, plan = behavior.fault, behavior.plan
        if fault is Fault.MALFORMED and chunks:
            first = chunks[0]
            chunks = [first[: len(first) // 2] + b"\n\n", *chunks[1:]]
        if fault not in (Fault.STALL_MID, Fault.TRUNCATED):
            return await super()._stream(call, content_type, chunks)
        resp = call.response = web.StreamResponse(headers=self._headers(call, content_type))
        await resp.prepare(call.request)
        n = plan.events_before_fault
        for chunk in chunks[:n]:
            await resp.write(chunk)
        if fault is Fault.STALL_MID:
            await asyncio.sleep(plan.stall_s)
            for chunk in chunks[n:]:
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        if n < len(chunks):
            await resp.write(chunks[n][: len(chunks[n]) // 2])
        await self._abort(call)
        return resp


@pytest.fixture
async def faulty_openai() -> AsyncIterator[FaultyOpenAI]:
    """A started `FaultyOpenAI` with no faults planned yet, closed after the test."""
    fake = await FaultyOpenAI().start()
    try:
        yield fake
    finally:
        await fake.close()
