"""Usage records through the real gateway, on SQLite and PostgreSQL: one record per request
whatever its end, written by the background writer (also after the store comes back), contents
only when configured, and read back with ``GET /api/logs`` and ``GET /api/usage``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiosqlite
import asyncpg
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from proxy.config import ConfigError, build_config
from proxy.keys import STORE
from proxy.store import UsageRecord
from tests.conftest import Gateway, MakeGateway, provider_for
from tests.e2e.test_metrics import scrape, value
from tests.fakes.openai import Behavior, FakeOpenAI

MASTER = "sk-master-usage-test"
USER = [{"role": "user", "content": "Hello there"}]
CHAT = {"model": "openai/gpt-4o-mini", "messages": USER}
ADMIN = {"Authorization": f"Bearer {MASTER}"}
WAIT_S = 10.0


async def start(
    make_gateway: MakeGateway, fake: FakeOpenAI, store_url: str, **usage: Any
) -> Gateway:
    return await make_gateway(
        {
            "providers": {"openai": provider_for(fake)},
            "auth": {"master_key": MASTER},
            "store": {"url": store_url},
            "usage": {"flush_interval_s": 0.02, **usage},
        }
    )


async def logs(gw: Gateway, **params: str) -> dict[str, Any]:
    resp = await gw.client.get("/api/logs", params=params, headers=ADMIN)
    body: dict[str, Any] = await resp.json()
    assert 200 == resp.status, body
    return body


async def all_records(gw: Gateway, **params: str) -> list[dict[str, Any]]:
    """Every record matching ``params``, following the cursor."""
    out: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    while True:
        page = await logs(gw, limit="1000", **params, **cursor)
        out += page["data"]
        if not page["has_more"]:
            return out
        cursor = {"cursor": page["next_cursor"]}


async def wait_for(gw: Gateway, request_ids: set[str]) -> list[dict[str, Any]]:
    """Every record once all of ``request_ids`` have one (the writer works in the background)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        records = await all_records(gw)
        if request_ids <= {r["request_id"] for r in records}:
            return records
        assert time.monotonic() < deadline, request_ids - {r["request_id"] for r in records}
        await asyncio.sleep(0.02)


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    counts = Counter(r["request_id"] for r in records)
    assert {rid: 1 for rid in counts} == dict(counts), "a request has more than one record"
    return {r["request_id"]: r for r in records}


async def disconnect_mid_stream(gw: Gateway, fake: FakeOpenAI, request_id: str) -> None:
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={**ADMIN, "x-request-id": request_id},
    )
    await resp.content.readuntil(b"\n\n")
    resp.close()
    await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


async def test_mixed_run_has_one_record_per_request(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """JSON answers, streams, upstream errors, a cut stream, a client that left, a 400, a 401,
    the model list and a stored-response read each leave exactly one record with what
    happened; admin reads leave none, and no content is kept."""
    gw = await start(make_gateway, fake_openai, store_url)
    sdk = gw.sdk(api_key=MASTER)
    fake_openai.enqueue(
        Behavior(usage=(21, 3), cached_tokens=5),
        Behavior(usage=(7, 4)),
        Behavior(status=500),
        Behavior(deltas=["a", "b", "c", "d"], cut_after=2),
        Behavior(deltas=[str(i % 10) * 2000 for i in range(3000)], gap_s=0.01),
    )
    await sdk.chat.completions.create(**CHAT, extra_headers={"x-request-id": "json"})
    stream = await sdk.chat.completions.create(
        **CHAT, stream=True, extra_headers={"x-request-id": "stream"}
    )
    assert "Hello from the fake!" == "".join(
        [c.choices[0].delta.content or "" async for c in stream if c.choices]
    )
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(**CHAT, extra_headers={"x-request-id": "upstream-500"})
    cut = await gw.client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={**ADMIN, "x-request-id": "cut"},
    )
    assert b'"error"' in await cut.read()
    await disconnect_mid_stream(gw, fake_openai, "gone")
    bad = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini"},
        headers={**ADMIN, "x-request-id": "bad"},
    )
    assert 400 == bad.status
    unauth = await gw.client.post(
        "/v1/chat/completions", json=CHAT, headers={"x-request-id": "unauth"}
    )
    assert 401 == unauth.status
    models = await gw.client.get("/v1/models", headers={**ADMIN, "x-request-id": "models"})
    assert 200 == models.status
    missing = await gw.client.get(
        "/v1/responses/resp_missing", headers={**ADMIN, "x-request-id": "stored"}
    )
    assert 404 == missing.status
    ids = {"json", "stream", "upstream-500", "cut", "gone", "bad", "unauth", "models", "stored"}
    got = by_id(await wait_for(gw, ids))
    assert ids == set(got)
    summary = {rid: (r["status"], r["error_type"], r["stream"]) for rid, r in got.items()}
    assert {
        "json": (200, None, False),
        "stream": (200, None, True),
        "upstream-500": (500, "server_error", False),  # the upstream's own type
        "cut": (200, None, True),
        "gone": (499, "client_disconnected", True),
        "bad": (400, "invalid_request_error", False),
        "unauth": (401, "authentication_error", False),
        "models": (200, None, False),
        "stored": (404, "invalid_request_error", False),
    } == summary
    json_rec = got["json"]
    assert (21, 3, 5, 0) == (
        json_rec["input_tokens"],
        json_rec["output_tokens"],
        json_rec["cached_tokens"],
        json_rec["reasoning_tokens"],
    )
    assert json_rec["cost_usd"] > 0
    assert ("openai", "gpt-4o-mini", "openai/gpt-4o-mini") == (
        json_rec["provider"],
        json_rec["model"],
        json_rec["model_requested"],
    )
    assert ("/v1/chat/completions", "chat_completion", 1, 0) == (
        json_rec["route"],
        json_rec["request_type"],
        json_rec["attempts"],
        json_rec["fallback_index"],
    )
    assert (None, None) == (json_rec["key_id"], json_rec["team_id"])
    assert (7, 4) == (got["stream"]["input_tokens"], got["stream"]["output_tokens"])
    assert got["stream"]["ttfb_ms"] is not None
    assert all(r["content"] is None for r in got.values())


async def test_content_is_stored_only_when_configured(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With ``log_content: true`` a record keeps the request's content fields and the JSON
    reply, or a stream's text."""
    gw = await start(make_gateway, fake_openai, store_url, log_content=True)
    sdk = gw.sdk(api_key=MASTER)
    await sdk.chat.completions.create(
        **CHAT, temperature=0.5, extra_headers={"x-request-id": "json"}
    )
    stream = await sdk.chat.completions.create(
        **CHAT, stream=True, extra_headers={"x-request-id": "stream"}
    )
    _ = [c async for c in stream]
    got = by_id(await wait_for(gw, {"json", "stream"}))
    content = got["json"]["content"]
    assert {"messages": USER} == content["request"]
    assert "Hello from the fake!" == content["response"]["choices"][0]["message"]["content"]
    assert {"request": {"messages": USER}, "stream_text": "Hello from the fake!"} == got["stream"][
        "content"
    ]


# --- the store failing and coming back ---------------------------------------------------------


async def rename_table(store_url: str, old: str, new: str) -> None:
    """Rename the usage table from outside the gateway: its inserts fail until it is back."""
    sql = f"ALTER TABLE {old} RENAME TO {new}"
    if store_url.startswith("sqlite:///"):
        async with aiosqlite.connect(store_url.removeprefix("sqlite:///")) as db:
            await db.execute(sql)
            await db.commit()
        return
    parts = urlsplit(store_url)
    schema = parse_qs(parts.query)["search_path"][0]
    conn = await asyncpg.connect(
        parts._replace(query="").geturl(), server_settings={"search_path": schema}
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def until_logged(entries: list[dict[str, Any]], event: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not any(e["event"] == event for e in entries):
        assert time.monotonic() < deadline, f"{event} was not logged"
        await asyncio.sleep(0.02)


async def test_records_wait_for_the_store_and_are_written_once_it_is_back(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """While the usage table is gone, records queue (the failure logged once); once it is
    back they are all written, each once."""
    gw = await start(make_gateway, fake_openai, store_url)
    sdk = gw.sdk(api_key=MASTER)
    await rename_table(store_url, "usage_records", "usage_records_away")
    with capture_logs() as entries:
        for n in range(3):
            await sdk.chat.completions.create(**CHAT, extra_headers={"x-request-id": f"r{n}"})
        await until_logged(entries, "usage_write_failed")
        assert 3 == value(await scrape(gw), "thruway_usage_queue_depth")
        await rename_table(store_url, "usage_records_away", "usage_records")
        got = by_id(await wait_for(gw, {"r0", "r1", "r2"}))
        await until_logged(entries, "usage_write_resumed")
    assert {"r0", "r1", "r2"} == set(got)
    assert 1 == sum(e["event"] == "usage_write_failed" for e in entries)
    assert 0 == value(await scrape(gw), "thruway_usage_queue_depth")


async def test_a_full_queue_drops_the_oldest_records(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With the store down and the queue full, the oldest records go, counted and logged once
    per burst; the newest are written when the store is back."""
    gw = await start(make_gateway, fake_openai, store_url, queue_size=2)
    sdk = gw.sdk(api_key=MASTER)
    await rename_table(store_url, "usage_records", "usage_records_away")
    with capture_logs() as entries:
        for n in range(5):
            await sdk.chat.completions.create(**CHAT, extra_headers={"x-request-id": f"r{n}"})
        await rename_table(store_url, "usage_records_away", "usage_records")
        got = by_id(await wait_for(gw, {"r3", "r4"}))
        await until_logged(entries, "usage_records_dropped")
    assert {"r3", "r4"} == set(got)
    assert 3 == value(await scrape(gw), "thruway_usage_records_dropped_total")
    assert 1 == sum(e["event"] == "usage_queue_full" for e in entries)
    (dropped,) = [e for e in entries if e["event"] == "usage_records_dropped"]
    assert 3 == dropped["count"]


async def test_shutdown_gives_up_on_a_failing_store_after_its_timeout(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A gateway closing while the store fails retries for ``shutdown_timeout_s``, then logs
    how many records it could not write, and closes."""
    gw = await start(make_gateway, fake_openai, store_url, shutdown_timeout_s=0.3)
    await rename_table(store_url, "usage_records", "usage_records_away")
    with capture_logs() as entries:
        for n in range(2):
            await gw.sdk(api_key=MASTER).chat.completions.create(
                **CHAT, extra_headers={"x-request-id": f"r{n}"}
            )
        await until_logged(entries, "usage_write_failed")
        await gw.close()
    (lost,) = [e for e in entries if e["event"] == "usage_records_lost"]
    assert 2 == lost["count"]


# --- /api/logs and /api/usage --------------------------------------------------------------------

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rec(n: int, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "created_at": T0 + n * 3600,
        "request_id": f"req-{n}",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "model_requested": "openai/gpt-4o-mini",
        "route": "/v1/chat/completions",
        "request_type": "chat_completion",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 2,
        "cost_usd": 0.25,
        "latency_ms": 12.5,
        "attempts": 1,
        **fields,
    }
    return UsageRecord(id=f"id{n:04d}", **values)


@pytest.fixture
async def seeded(store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> Gateway:
    """A gateway whose store holds 30 records across keys, teams, providers, statuses and days."""
    gw = await start(make_gateway, fake_openai, store_url)
    records = [
        rec(
            n,
            key_id=f"key_{n % 3}",
            team_id="team_a" if n % 2 else None,
            status=(200, 200, 429, 502)[n % 4],
            provider="anthropic" if n % 5 == 0 else "openai",
            model="claude-x" if n % 5 == 0 else "gpt-4o-mini",
        )
        for n in range(30)
    ]
    await gw.client.server.app[STORE].insert_usage(records)
    return gw


async def test_logs_pages_newest_first(seeded: Gateway) -> None:
    """``/api/logs`` pages by cursor, newest first, every record once."""
    first = await logs(seeded, limit="7")
    assert ("list", True, 7) == (first["object"], first["has_more"], len(first["data"]))
    assert "req-29" == first["data"][0]["request_id"]
    assert "usage_record" == first["data"][0]["object"]
    everything = await all_records(seeded)
    assert [f"req-{n}" for n in range(29, -1, -1)] == [r["request_id"] for r in everything]
    pages: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        page = await logs(seeded, limit="7", **cursor)
        pages += [r["request_id"] for r in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = {"cursor": page["next_cursor"]}
    assert [r["request_id"] for r in everything] == pages


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"key_id": "key_1"}, [n for n in range(30) if n % 3 == 1]),
        ({"team_id": "team_a"}, [n for n in range(30) if n % 2]),
        ({"provider": "anthropic"}, [n for n in range(30) if n % 5 == 0]),
        ({"model": "claude-x"}, [n for n in range(30) if n % 5 == 0]),
        ({"model": "openai/gpt-4o-mini"}, list(range(30))),
        ({"status": "429"}, [n for n in range(30) if n % 4 == 2]),
        ({"status": "5xx"}, [n for n in range(30) if n % 4 == 3]),
        ({"status": "error"}, [n for n in range(30) if n % 4 >= 2]),
        ({"status": "2xx", "key_id": "key_0"}, [n for n in range(30) if n % 4 < 2 and n % 3 == 0]),
        ({"since": str(T0 + 3600 * 25)}, list(range(25, 30))),
        ({"since": "2026-01-01T20:00:00Z", "until": "2026-01-01T22:00:00+00:00"}, [20, 21]),
        ({"request_id": "req-7"}, [7]),
    ],
)
async def test_logs_filters(seeded: Gateway, params: dict[str, str], expected: list[int]) -> None:
    """Each ``/api/logs`` filter selects exactly its records."""
    got = await all_records(seeded, **params)
    assert [f"req-{n}" for n in sorted(expected, reverse=True)] == [r["request_id"] for r in got]


async def test_usage_groups(seeded: Gateway) -> None:
    """``/api/usage`` sums requests, errors, tokens and cost per key, team, model, provider, day."""

    async def usage(**params: str) -> list[dict[str, Any]]:
        resp = await seeded.client.get("/api/usage", params=params, headers=ADMIN)
        body = await resp.json()
        assert 200 == resp.status, body
        assert params.get("group_by", "day") == body["group_by"]
        rows: list[dict[str, Any]] = body["data"]
        return rows

    by_key = await usage(group_by="key")
    assert ["key_0", "key_1", "key_2"] == [r["key_id"] for r in by_key]
    assert [10, 10, 10] == [r["requests"] for r in by_key]
    assert {
        "key_id": "key_0",
        "requests": 10,
        "errors": sum(1 for n in range(0, 30, 3) if n % 4 >= 2),
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    } == {k: v for k, v in by_key[0].items() if k != "cost_usd"}
    assert 2.5 == pytest.approx(by_key[0]["cost_usd"])
    by_team = await usage(group_by="team")
    assert [(None, 15), ("team_a", 15)] == [(r["team_id"], r["requests"]) for r in by_team]
    by_model = await usage(group_by="model")
    assert [("anthropic", "claude-x", 6), ("openai", "gpt-4o-mini", 24)] == [
        (r["provider"], r["model"], r["requests"]) for r in by_model
    ]
    by_provider = await usage(group_by="provider", status="error")
    assert [("anthropic", 2), ("openai", 12)] == [
        (r["provider"], r["requests"]) for r in by_provider
    ]
    by_day = await usage()
    assert [("2026-01-01", 24), ("2026-01-02", 6)] == [(r["day"], r["requests"]) for r in by_day]
    within = await usage(group_by="day", key_id="key_2", until="2026-01-02T00:00:00Z")
    assert [("2026-01-01", 8)] == [(r["day"], r["requests"]) for r in within]


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/logs", {"status": "6xx"}, "status"),
        ("/api/logs", {"status": "42"}, "status"),
        ("/api/logs", {"since": "yesterday"}, "since"),
        ("/api/logs", {"until": "nan"}, "until"),
        ("/api/logs", {"limit": "0"}, "limit"),
        ("/api/logs", {"limit": "1001"}, "limit"),
        ("/api/logs", {"limit": "ten"}, "limit"),
        ("/api/logs", {"cursor": "garbage"}, "cursor"),
        ("/api/logs", {"key": "key_1"}, "key"),
        ("/api/usage", {"group_by": "week"}, "group_by"),
        ("/api/usage", {"limit": "5"}, "limit"),
        ("/api/usage", {"since": "2026-13-01"}, "since"),
    ],
)
async def test_bad_query_parameters_are_400s_naming_them(
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    path: str,
    params: dict[str, str],
    param: str,
) -> None:
    """A bad or unknown query parameter is a 400 whose ``param`` names it."""
    gw = await start(make_gateway, fake_openai, "sqlite://:memory:")
    resp = await gw.client.get(path, params=params, headers=ADMIN)
    body = await resp.json()
    assert 400 == resp.status
    assert ("invalid_request_error", param) == (body["error"]["type"], body["error"]["param"])


@pytest.mark.parametrize("path", ["/api/logs", "/api/usage"])
async def test_admin_reads_need_the_master_key(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, path: str
) -> None:
    """Without the master key the usage API is a 401."""
    gw = await start(make_gateway, fake_openai, "sqlite://:memory:")
    resp = await gw.client.get(path, headers={"Authorization": "Bearer sk-wrong"})
    assert 401 == resp.status


# --- background responses ------------------------------------------------------------------------


async def test_a_background_response_has_its_own_record_with_its_cost(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A background response's run is accounted once, with its tokens and cost, besides the
    request that queued it."""
    gw = await start(make_gateway, fake_openai, store_url)
    sdk = gw.sdk(api_key=MASTER)
    fake_openai.enqueue(Behavior(content="Done.", usage=(30, 6)))
    queued = await sdk.responses.create(
        model="openai/gpt-4o-mini",
        input="Work.",
        background=True,
        extra_headers={"x-request-id": "queue-it"},
    )
    run_id = f"bg-{queued.id}-1"
    got = by_id(await wait_for(gw, {"queue-it", run_id}))
    run = got[run_id]
    assert ("background_response", 200, False) == (
        run["request_type"],
        run["status"],
        run["stream"],
    )
    assert (30, 6, "openai", "gpt-4o-mini") == (
        run["input_tokens"],
        run["output_tokens"],
        run["provider"],
        run["model"],
    )
    assert run["cost_usd"] > 0
    assert (200, "responses", 0) == (
        got["queue-it"]["status"],
        got["queue-it"]["request_type"],
        got["queue-it"]["input_tokens"],
    )


# --- metrics -------------------------------------------------------------------------------------


async def test_metrics_count_cost_upstream_latency_and_the_usage_queue(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """``/metrics`` parses with prometheus_client and counts the cost the records hold, each
    upstream call's time to headers, and the usage queue (empty once written)."""
    gw = await start(make_gateway, fake_openai, "sqlite://:memory:")
    sdk = gw.sdk(api_key=MASTER)
    fake_openai.enqueue(Behavior(usage=(1000, 200)), Behavior(status=503))
    await sdk.chat.completions.create(**CHAT, extra_headers={"x-request-id": "a"})
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(**CHAT, extra_headers={"x-request-id": "b"})
    got = by_id(await wait_for(gw, {"a", "b"}))
    resp = await gw.client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    assert "counter" == families["thruway_cost_usd"].type
    assert "histogram" == families["thruway_upstream_latency_seconds"].type
    assert "gauge" == families["thruway_usage_queue_depth"].type
    assert "counter" == families["thruway_usage_records_dropped"].type
    samples = await scrape(gw)
    cost = value(samples, "thruway_cost_usd_total", provider="openai", model="gpt-4o-mini")
    assert got["a"]["cost_usd"] == pytest.approx(cost)
    assert cost > 0
    assert 2 == value(samples, "thruway_upstream_latency_seconds_count", provider="openai")
    assert 2 == value(
        samples, "thruway_upstream_latency_seconds_bucket", provider="openai", le="+Inf"
    )
    assert 0 == value(samples, "thruway_usage_queue_depth")
    assert 0 == value(samples, "thruway_usage_records_dropped_total")


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        ({"queue_sise": 5}, "at $.usage: Object contains unknown field `queue_sise`"),
        ({"batch_size": 0}, "at $.usage.batch_size: Expected `int` >= 1"),
        ({"flush_interval_s": 0}, "at $.usage.flush_interval_s: Expected `float` > 0.0"),
    ],
)
def test_usage_config_is_checked(usage: dict[str, Any], message: str) -> None:
    """A mistake in the ``usage`` section names its key path."""
    with pytest.raises(ConfigError) as caught:
        build_config({"usage": usage}, source="t.yaml")
    assert f"t.yaml: {message}" == str(caught.value)


# --- retention -----------------------------------------------------------------------------------


async def test_records_past_the_retention_are_deleted_at_start(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With `retention_days`, an instance deletes older records when it starts (and hourly);
    newer ones stay."""
    from proxy.config import StoreConfig
    from proxy.store import open_store
    from proxy.store.usage import UsageRecord

    now = time.time()
    store = await open_store(StoreConfig(url=store_url))
    try:
        await store.insert_usage(
            [
                UsageRecord(id=f"old{n}", created_at=now - (40 + n) * 86400, request_id=f"old-{n}")
                for n in range(3)
            ]
            + [UsageRecord(id="recent", created_at=now - 5 * 86400, request_id="recent")]
        )
    finally:
        await store.close()
    gw = await start(make_gateway, fake_openai, store_url, retention_days=30)
    deadline = time.monotonic() + WAIT_S
    while True:
        ids = {r["request_id"] for r in await all_records(gw)}
        if "old-0" not in ids:
            break
        assert time.monotonic() < deadline, ids
        await asyncio.sleep(0.02)
    assert ids == {"recent"}
