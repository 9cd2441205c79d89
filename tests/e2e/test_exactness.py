"""Limits that stay exact across instances: three gateway processes sharing Redis (counters)
and PostgreSQL (keys), hit at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.test_process import PROVIDER_KEY, Process, gateway_process
from tests.fakes.openai import Behavior, FakeOpenAI

MASTER = "sk-master-exactness"
ADMIN = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as fake:
        yield fake


@contextlib.asynccontextmanager
async def three_gateways(
    tmp_path: Path, fake: FakeOpenAI, store_url: str, redis_url: str
) -> AsyncIterator[list[Process]]:
    document = {
        "providers": {"openai": {"base_url": fake.base_url, "keys": [{"value": fake.api_key}]}},
        "store": {"url": store_url},
        "state": {"url": redis_url},
        "auth": {"master_key": MASTER},
        "logging": {"level": "warning"},
        # $1 per thousand output tokens, input free: a request capped at 10 output tokens is
        # reserved $0.01, and the fake bills exactly that.
        "pricing": {"openai/priced": {"input": 0, "output": 1000}},
    }
    config = tmp_path / "thruway.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(gateway_process(config)) for _ in range(3)]


async def _key(session: aiohttp.ClientSession, gw: Process, **spec: Any) -> str:
    async with session.post(gw.url + "/api/keys", json={"name": "x", **spec}, headers=ADMIN) as r:
        assert r.status == 201, await r.text()
        secret: str = (await r.json())["key"]
        return secret


async def _burst(
    session: aiohttp.ClientSession, gateways: list[Process], key: str, n: int, **body: Any
) -> list[tuple[int, dict[str, Any]]]:
    """``n`` requests at once, spread over the gateways in turn."""

    async def one(i: int) -> tuple[int, dict[str, Any]]:
        async with session.post(
            gateways[i % len(gateways)].url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], **body},
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            return r.status, await r.json()

    return await asyncio.gather(*(one(i) for i in range(n)))


async def _recorded_spend(
    session: aiohttp.ClientSession, gw: Process, key_id: str, requests: int
) -> float:
    """The key's spend by its usage records, once all ``requests`` have one (each instance's
    writer flushes every second)."""
    for _ in range(100):
        async with session.get(
            gw.url + f"/api/usage?group_by=key&key_id={key_id}", headers=ADMIN
        ) as r:
            rows = (await r.json())["data"]
        if rows and rows[0]["requests"] == requests:
            return float(rows[0]["cost_usd"])
        await asyncio.sleep(0.1)
    pytest.fail(f"the usage records of {key_id} did not all arrive: {rows}")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_rate_limit_is_exact_across_instances(
    tmp_path: Path, fake: FakeOpenAI, store_url: str, redis_url: str
) -> None:
    """600 concurrent requests over three instances on a key with `rpm: 100`: exactly 100 are
    served and the other 500 are refused with 429."""
    async with (
        three_gateways(tmp_path, fake, store_url, redis_url) as gateways,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        key = await _key(session, gateways[0], rate_limit={"rpm": 100})
        results = await _burst(session, gateways, key, 600, model="openai/gpt-4o-mini")
    statuses = [status for status, _ in results]
    odd = {(s, b.get("error", {}).get("message")) for s, b in results if s not in (200, 429)}
    assert not odd, [line for g in gateways for line in g.lines if "limits_unavailable" in line][:3]
    assert (statuses.count(200), statuses.count(429)) == (100, 500)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_budget_is_not_overrun_across_instances(
    tmp_path: Path, fake: FakeOpenAI, store_url: str, redis_url: str
) -> None:
    """200 concurrent requests over three instances on a key whose budget covers 50: at most 50
    are served, the others get 402, and the spend (the counters', and the usage records') never
    passes the budget."""
    fake.enqueue(*[Behavior(usage=(12, 10), delay_s=0.05) for _ in range(200)])
    async with (
        three_gateways(tmp_path, fake, store_url, redis_url) as gateways,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        made_key = await _key(session, gateways[0], budget={"max_usd": 0.5, "period": "total"})
        results = await _burst(
            session, gateways, made_key, 200, model="openai/priced", max_tokens=10
        )
        served = [body for status, body in results if status == 200]
        refused = [body for status, body in results if status == 402]
        assert len(served) + len(refused) == 200
        # The estimate is the bill here, so the budget is used to the last cent.
        assert len(served) == 50
        assert {b["error"]["type"] for b in refused} == {"budget_exceeded"}
        billed = sum(b["extra_fields"]["cost_usd"] for b in served)
        assert billed <= 0.5 + 1e-9
        await asyncio.sleep(0.2)  # settlements run after the responses
        async with session.get(gateways[1].url + "/api/keys", headers=ADMIN) as r:
            key_id = (await r.json())["data"][0]["id"]
        async with session.get(gateways[2].url + f"/api/keys/{key_id}", headers=ADMIN) as r:
            spend = (await r.json())["spend"]
        recorded = await _recorded_spend(session, gateways[0], key_id, 200)
    assert spend["spent_usd"] == pytest.approx(billed)
    assert spend["spent_usd"] <= 0.5 + 1e-9
    # The usage records (written by all three instances) say the same.
    assert recorded == pytest.approx(billed)
    assert spend["reserved_usd"] == 0
