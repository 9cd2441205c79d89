"""Usage records of a real gateway process stopped by SIGTERM: every request it was sent, done,
refused, in flight or cut by the drain, has exactly one record in its SQLite file afterwards."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiosqlite
import pytest

from tests.e2e.test_process import (
    CHAT,
    PROVIDER_KEY,
    _first_event,
    _session,
    _write_config,
    gateway_process,
)
from tests.fakes.openai import Behavior, FakeOpenAI


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as made:
        yield made


async def _post(session: aiohttp.ClientSession, url: str, rid: str, body: object) -> int:
    """A request's status, or 0 when the gateway cut it before answering."""
    try:
        async with session.post(url, json=body, headers={"x-request-id": rid}) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, OSError):
        return 0


async def _stream_to_first_event(
    session: aiohttp.ClientSession, url: str, rid: str, first: asyncio.Event
) -> bytes:
    async with session.post(
        url, json={**CHAT, "stream": True}, headers={"x-request-id": rid}
    ) as resp:
        await _first_event(resp)
        first.set()
        try:
            return await resp.content.read()
        except aiohttp.ClientPayloadError:
            return b""


async def test_sigterm_mid_run_leaves_one_record_per_request(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    """Finished requests, a 400, streams and slow answers cut by the drain after SIGTERM, and a
    client that left all have one record each, written at shutdown (the flush interval is
    longer than the run)."""
    config = _write_config(
        tmp_path,
        fake,
        server={"drain_timeout_s": 0.5},
        usage={"flush_interval_s": 60, "batch_size": 1000},
    )
    url_path = "/v1/chat/completions"
    statuses: dict[str, int] = {}
    async with gateway_process(config) as gw, _session() as session:
        url = gw.url + url_path
        for n in range(5):
            statuses[f"done-{n}"] = await _post(session, url, f"done-{n}", CHAT)
        statuses["bad"] = await _post(session, url, "bad", {"model": "openai/gpt-4o-mini"})
        fake.enqueue(*(Behavior(deltas=list("abcdefghij"), gap_s=0.5) for _ in range(5)))
        firsts = [asyncio.Event() for _ in range(5)]
        streams = [
            asyncio.create_task(_stream_to_first_event(session, url, f"stream-{n}", first))
            for n, first in enumerate(firsts)
        ]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 10)
        # One client leaves its stream; the fake sees the gateway close the upstream.
        streams[0].cancel()
        await asyncio.wait_for(fake.disconnected.wait(), 10)
        fake.enqueue(*(Behavior(delay_s=5) for _ in range(3)))
        slow = [asyncio.create_task(_post(session, url, f"slow-{n}", CHAT)) for n in range(3)]
        while len(fake.requests) < 5 + 5 + 3:
            await asyncio.sleep(0.02)
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*streams[1:], *slow, return_exceptions=True)
        assert 0 == await gw.wait()
    sent = {*statuses, *(f"stream-{n}" for n in range(5)), *(f"slow-{n}" for n in range(3))}
    async with aiosqlite.connect(tmp_path / "thruway.db") as db:
        rows = await db.execute_fetchall("SELECT request_id, status, error_type FROM usage_records")
    counts = Counter(row[0] for row in rows)
    assert {rid: 1 for rid in sent} == dict(counts)
    got = {row[0]: (row[1], row[2]) for row in rows}
    assert all(got[f"done-{n}"] == (200, None) for n in range(5))
    assert (400, "invalid_request_error") == got["bad"]
    assert (499, "client_disconnected") == got["stream-0"]
    cut = {got[rid] for rid in sent if rid.startswith(("slow-", "stream-")) and rid != "stream-0"}
    assert {(503, "gateway_shutdown")} == cut
    assert [] == gw.events("usage_records_lost")
