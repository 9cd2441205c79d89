"""Virtual keys and teams through the admin API, and what a key may do on inference routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import FakeOpenAI

MASTER = "sk-master-for-tests"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture(params=["memory", "redis"])
def state_url(request: pytest.FixtureRequest) -> str:
    """Counters in this process, or in the Redis on 127.0.0.1."""
    return "" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


async def _gateway(
    make_gateway: MakeGateway,
    fake: FakeOpenAI,
    *,
    store_url: str = "sqlite://:memory:",
    state_url: str = "",
    **extra: Any,
) -> Gateway:
    return await make_gateway(
        {
            "providers": {"openai": provider_for(fake), "backup": provider_for(fake)},
            "auth": {"master_key": MASTER, "key_cache_ttl_s": 0},
            "store": {"url": store_url},
            "state": {"url": state_url},
            **extra,
        }
    )


async def create_key(gateway: Gateway, **spec: Any) -> dict[str, Any]:
    response = await gateway.client.post("/api/keys", json={"name": "k", **spec}, headers=ADMIN)
    assert response.status == 201, await response.text()
    got: dict[str, Any] = await response.json()
    return got


async def create_team(gateway: Gateway, **spec: Any) -> dict[str, Any]:
    response = await gateway.client.post("/api/teams", json={"name": "t", **spec}, headers=ADMIN)
    assert response.status == 201, await response.text()
    got: dict[str, Any] = await response.json()
    return got


async def _chat(gateway: Gateway, key: str, **body: Any) -> Any:
    return await gateway.client.post(
        "/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": USER, **body},
        headers={"Authorization": f"Bearer {key}"},
    )


# -- lifecycle ---------------------------------------------------------------------------------


async def _stored_bytes(store_url: str, tmp_path: Path) -> bytes:
    """Everything the store holds of keys, as bytes to search."""
    if store_url.startswith("sqlite"):
        return Path(store_url.removeprefix("sqlite:///")).read_bytes()
    base, _, schema = store_url.partition("?search_path=")
    conn = await asyncpg.connect(base, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT id, hash, body FROM virtual_keys")
    finally:
        await conn.close()
    return b"".join(r["id"].encode() + r["hash"].encode() + bytes(r["body"]) for r in rows)


async def test_key_lifecycle(
    store_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """A key is made (its secret shown once), listed, read, changed, rotated and deleted; only
    its hash is stored, and its secret is never logged."""
    with capture_logs() as logs:
        gateway = await _gateway(make_gateway, fake_openai, store_url=store_url)
        made = await create_key(gateway, name="ci", metadata={"owner": "qa"})
        secret = made["key"]
        assert secret.startswith("sk-thr-")
        assert made["hint"] == f"{secret[:11]}...{secret[-4:]}"
        assert (await _chat(gateway, secret)).status == 200

        listed = await (await gateway.client.get("/api/keys", headers=ADMIN)).json()
        assert [k["id"] for k in listed["data"]] == [made["id"]]
        assert "key" not in listed["data"][0]
        got = await (await gateway.client.get(f"/api/keys/{made['id']}", headers=ADMIN)).json()
        assert (got["name"], got["metadata"]) == ("ci", {"owner": "qa"})

        patched = await gateway.client.patch(
            f"/api/keys/{made['id']}", json={"name": "renamed"}, headers=ADMIN
        )
        assert (await patched.json())["name"] == "renamed"
        assert (await _chat(gateway, secret)).status == 200  # a change keeps the secret

        rotated = await (
            await gateway.client.post(f"/api/keys/{made['id']}/rotate", headers=ADMIN)
        ).json()
        assert rotated["id"] == made["id"]
        assert rotated["key"] != secret
        assert (await _chat(gateway, secret)).status == 401
        assert (await _chat(gateway, rotated["key"])).status == 200

        stored = await _stored_bytes(store_url, tmp_path)
        deleted = await gateway.client.delete(f"/api/keys/{made['id']}", headers=ADMIN)
        assert (await deleted.json()) == {
            "id": made["id"],
            "object": "key.deleted",
            "deleted": True,
        }
        assert (await _chat(gateway, rotated["key"])).status == 401
        missing = await gateway.client.get(f"/api/keys/{made['id']}", headers=ADMIN)
        assert missing.status == 404
    for shown in (secret, rotated["key"]):
        assert shown.encode() not in stored
        assert shown[7:].encode() not in stored
        assert shown not in repr(logs)


async def test_keys_are_paged_and_filtered_by_team(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """`GET /api/keys` pages in creation order with `after` and `limit`, and filters by team."""
    gateway = await _gateway(make_gateway, fake_openai)
    team = await create_team(gateway)
    made = [await create_key(gateway, team=team["id"] if i % 2 else None) for i in range(5)]
    first = await (await gateway.client.get("/api/keys?limit=2", headers=ADMIN)).json()
    assert [k["id"] for k in first["data"]] == [m["id"] for m in made[:2]]
    assert first["has_more"]
    rest = await (
        await gateway.client.get(f"/api/keys?after={first['last_id']}", headers=ADMIN)
    ).json()
    assert [k["id"] for k in rest["data"]] == [m["id"] for m in made[2:]]
    assert not rest["has_more"]
    mine = await (await gateway.client.get(f"/api/keys?team={team['id']}", headers=ADMIN)).json()
    assert [k["id"] for k in mine["data"]] == [made[1]["id"], made[3]["id"]]
    bad = await gateway.client.get("/api/keys?limit=0", headers=ADMIN)
    assert (bad.status, (await bad.json())["error"]["param"]) == (400, "limit")


async def test_bad_admin_input(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """Bad key specs are 400s naming the field; an unknown team is refused; a team with keys
    cannot be deleted."""
    gateway = await _gateway(make_gateway, fake_openai)
    for spec, param in (
        ({"name": "k", "budget": {"max_usd": -1}}, "budget.max_usd"),
        ({"name": "k", "budget": {"max_usd": 1, "period": "1y"}}, "budget.period"),
        ({"name": "k", "rate_limit": {"rpm": 0}}, "rate_limit.rpm"),
        ({"name": "k", "team": "team_nope"}, "team"),
        ({"name": "k", "colour": "red"}, None),
        ({}, "name"),
    ):
        response = await gateway.client.post("/api/keys", json=spec, headers=ADMIN)
        error = (await response.json())["error"]
        assert response.status == 400, spec
        if param is not None:
            assert error["param"] == param, error
    team = await create_team(gateway)
    await create_key(gateway, team=team["id"])
    refused = await gateway.client.delete(f"/api/teams/{team['id']}", headers=ADMIN)
    assert refused.status == 409
    assert (await gateway.client.get(f"/api/teams/{team['id']}", headers=ADMIN)).status == 200


# -- authentication ----------------------------------------------------------------------------


async def test_who_may_call_what(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """No key or an unknown key is a 401; a virtual key cannot use the admin API (403); a
    disabled or expired key is a 401 saying so; every SDK's key header is accepted."""
    gateway = await _gateway(make_gateway, fake_openai)
    secret = (await create_key(gateway))["key"]
    no_key = await gateway.client.post("/v1/chat/completions", json={})
    assert (no_key.status, (await no_key.json())["error"]["type"]) == (401, "authentication_error")
    assert (await _chat(gateway, "sk-thr-unknown")).status == 401
    admin = await gateway.client.get("/api/keys", headers={"Authorization": f"Bearer {secret}"})
    assert admin.status == 403
    for header in ("x-api-key", "x-goog-api-key"):
        response = await gateway.client.post(
            "/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": USER},
            headers={header: secret},
        )
        assert response.status == 200, header
    result = await gateway.sdk(api_key=secret).chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER
    )
    assert result.choices[0].message.content

    disabled = await create_key(gateway)
    await gateway.client.patch(
        f"/api/keys/{disabled['id']}", json={"disabled": True}, headers=ADMIN
    )
    response = await _chat(gateway, disabled["key"])
    assert (response.status, "disabled" in (await response.json())["error"]["message"]) == (
        401,
        True,
    )
    expired = await create_key(gateway, expires_at=1.0)
    response = await _chat(gateway, expired["key"])
    assert (response.status, "expired" in (await response.json())["error"]["message"]) == (
        401,
        True,
    )


async def test_sidecar_stays_open_until_a_key_exists(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Without a master key, any key passes; the keys API needs a master key."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    assert (await _chat(gateway, "whatever")).status == 200
    refused = await gateway.client.post("/api/keys", json={"name": "k"}, headers=ADMIN)
    assert refused.status == 403
    assert "master_key" in (await refused.json())["error"]["message"]


# -- allow-lists -------------------------------------------------------------------------------


async def test_allow_lists(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """A key may use only its models and providers, and its team's: anything else is a 403
    naming what it may use; `/v1/models` lists only what it may use."""
    gateway = await _gateway(make_gateway, fake_openai)
    team = await create_team(gateway, providers=["openai"])
    key = (await create_key(gateway, team=team["id"], models=["openai/gpt-4o-mini", "backup/*"]))[
        "key"
    ]
    assert (await _chat(gateway, key)).status == 200
    other = await _chat(gateway, key, model="openai/gpt-4o")
    error = (await other.json())["error"]
    assert (other.status, error["type"], error["param"]) == (403, "permission_error", "model")
    assert "openai/gpt-4o-mini" in error["message"]
    # backup/* passes the key's list but not the team's providers.
    team_says_no = await _chat(gateway, key, model="backup/gpt-4o-mini")
    assert team_says_no.status == 403
    assert "team" in (await team_says_no.json())["error"]["message"]
    fallback = await _chat(gateway, key, fallbacks=["openai/gpt-4o"])
    assert (fallback.status, (await fallback.json())["error"]["param"]) == (403, "fallbacks")

    sdk = gateway.sdk(api_key=key)
    listed = [m.id async for m in sdk.models.list()]
    assert listed
    assert all(m == "openai/gpt-4o-mini" for m in listed)
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("openai/gpt-4o")
    everything = [m.id async for m in gateway.sdk(api_key=MASTER).models.list()]
    assert len(everything) > len(listed)


# -- rate limits -------------------------------------------------------------------------------


async def test_requests_per_minute(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, state_url: str
) -> None:
    """A key with `rpm: 3` gets three requests a minute, with `x-ratelimit-*` headers on each,
    then a 429 with `Retry-After`, counted as a rejection in `/metrics`; its team's limit
    counts the requests of all its keys."""
    gateway = await _gateway(make_gateway, fake_openai, state_url=state_url)
    key = (await create_key(gateway, rate_limit={"rpm": 3}))["key"]
    remaining = []
    for _ in range(3):
        response = await _chat(gateway, key)
        assert response.status == 200
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    refused = await _chat(gateway, key)
    body = await refused.json()
    assert (refused.status, body["error"]["type"]) == (429, "rate_limit_exceeded")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    scraped = await (await gateway.client.get("/metrics")).text()
    rejected = {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(scraped)
        if family.name == "thruway_rejections"
        for s in family.samples
        if s.name == "thruway_rejections_total"
    }
    assert rejected.get("rate_limit_exceeded") == 1

    team = await create_team(gateway, rate_limit={"rpm": 2})
    keys = [(await create_key(gateway, team=team["id"]))["key"] for _ in range(2)]
    assert [(await _chat(gateway, k)).status for k in (*keys, keys[0])] == [200, 200, 429]


async def test_stream_carries_the_headers_and_tokens_are_limited(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, state_url: str
) -> None:
    """A stream's headers carry the limits too; `tpm` counts billed tokens, so once a minute's
    tokens are used the next request is a 429."""
    gateway = await _gateway(make_gateway, fake_openai, state_url=state_url)
    key = (await create_key(gateway, rate_limit={"tpm": 30, "rpm": 100}))["key"]
    stream = await _chat(gateway, key, stream=True)
    assert stream.status == 200
    assert stream.headers["x-ratelimit-limit-tokens"] == "30"
    await stream.read()
    # The fake bills 17 tokens a request: 17, then 34 > 30.
    await asyncio.sleep(0.05)  # the settlement runs after the response
    assert (await _chat(gateway, key)).status == 200
    await asyncio.sleep(0.05)
    refused = await _chat(gateway, key)
    assert refused.status == 429
    assert "tokens per minute" in (await refused.json())["error"]["message"]


# -- budgets -----------------------------------------------------------------------------------

# $1 per thousand output tokens, input free: a request capped at 10 output tokens may cost
# $0.01, and the fake bills 10 (its usage below), so estimate and bill agree.
PRICED = {"pricing": {"openai/priced": {"input": 0, "output": 1000}}}


@pytest.fixture
async def priced_fake() -> AsyncIterator[FakeOpenAI]:
    from tests.fakes.openai import Behavior

    fake = await FakeOpenAI().start()
    fake.enqueue(*[Behavior(usage=(12, 10)) for _ in range(100)])
    try:
        yield fake
    finally:
        await fake.close()


async def test_budget_refuses_with_402(
    make_gateway: MakeGateway, priced_fake: FakeOpenAI, state_url: str
) -> None:
    """A key whose budget covers five requests is served five, then refused with 402
    `budget_exceeded`; its spend shows in the admin API; the team's budget binds its keys."""
    gateway = await _gateway(make_gateway, priced_fake, state_url=state_url, **PRICED)
    made = await create_key(gateway, budget={"max_usd": 0.05, "period": "1d"})
    statuses = []
    for _ in range(6):
        statuses.append(
            (await _chat(gateway, made["key"], model="openai/priced", max_tokens=10)).status
        )
        await asyncio.sleep(0.02)
    assert statuses == [200] * 5 + [402]
    refused = await _chat(gateway, made["key"], model="openai/priced", max_tokens=10)
    assert (await refused.json())["error"]["type"] == "budget_exceeded"
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.sdk(api_key=made["key"]).chat.completions.create(
            model="openai/priced", messages=USER, max_tokens=10
        )
    assert caught.value.status_code == 402
    got = await (await gateway.client.get(f"/api/keys/{made['id']}", headers=ADMIN)).json()
    assert got["spend"]["spent_usd"] == pytest.approx(0.05)
    assert got["spend"]["reserved_usd"] == 0
    scraped = await (await gateway.client.get("/metrics")).text()
    assert 'thruway_rejections_total{reason="budget_exceeded"} 3.0' in scraped

    team = await create_team(gateway, budget={"max_usd": 0.02, "period": "1mo"})
    keys = [(await create_key(gateway, team=team["id"]))["key"] for _ in range(2)]
    served = []
    for k in (*keys, *keys):
        served.append((await _chat(gateway, k, model="openai/priced", max_tokens=10)).status)
        await asyncio.sleep(0.02)
    assert served == [200, 200, 402, 402]


async def test_concurrent_requests_cannot_overrun_a_budget(
    make_gateway: MakeGateway, priced_fake: FakeOpenAI, state_url: str
) -> None:
    """Twenty requests at once on a budget of five: five are served, the rest refused, and the
    spend is the budget, not more."""
    gateway = await _gateway(make_gateway, priced_fake, state_url=state_url, **PRICED)
    made = await create_key(gateway, budget={"max_usd": 0.05, "period": "total"})
    responses = await asyncio.gather(
        *(_chat(gateway, made["key"], model="openai/priced", max_tokens=10) for _ in range(20))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 5 + [402] * 15
    await asyncio.sleep(0.1)
    got = await (await gateway.client.get(f"/api/keys/{made['id']}", headers=ADMIN)).json()
    assert got["spend"]["spent_usd"] == pytest.approx(0.05)


# -- several instances, and a lost Redis -------------------------------------------------------


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_change_reaches_every_instance_at_once(
    store_url: str, redis_url: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Two instances sharing PostgreSQL and Redis: a key deleted or disabled through one is
    refused by the other at once, though the other had it cached."""
    document = {
        "providers": {"openai": provider_for(fake_openai)},
        "auth": {"master_key": MASTER, "key_cache_ttl_s": 300},
        "store": {"url": store_url},
        "state": {"url": redis_url},
    }
    first, second = await make_gateway(document), await make_gateway(document)
    made = await create_key(first)
    assert (await _chat(second, made["key"])).status == 200  # now cached by the second
    await first.client.patch(f"/api/keys/{made['id']}", json={"disabled": True}, headers=ADMIN)
    for _ in range(100):
        if (await _chat(second, made["key"])).status == 401:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the second instance still accepts a key disabled through the first")


async def test_lost_counters_refuse_or_pass_as_configured(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With Redis unreachable, a limited key's requests are 503 `state_unavailable`, or pass
    uncounted with `fail_open`; a key without limits never needs Redis."""
    for fail_open, expected in ((False, 503), (True, 200)):
        gateway = await make_gateway(
            {
                "providers": {"openai": provider_for(fake_openai)},
                "auth": {"master_key": MASTER},
                "state": {"url": "redis://127.0.0.1:1/0", "fail_open": fail_open},
            }
        )
        limited = (await create_key(gateway, rate_limit={"rpm": 5}))["key"]
        free = (await create_key(gateway))["key"]
        response = await _chat(gateway, limited)
        assert response.status == expected
        if expected == 503:
            assert (await response.json())["error"]["code"] == "state_unavailable"
        assert (await _chat(gateway, free)).status == 200


async def test_spend_survives_a_restart_and_is_in_the_records(
    make_gateway: MakeGateway, priced_fake: FakeOpenAI, tmp_path: Path
) -> None:
    """A restarted gateway starts a budget from the usage records, so what was spent before
    still counts; each request's record names its key and team; admin calls leave none."""
    store_url = f"sqlite:///{tmp_path / 'thruway.db'}"
    first = await _gateway(make_gateway, priced_fake, store_url=store_url, **PRICED)
    team = await create_team(first)
    made = await create_key(first, team=team["id"], budget={"max_usd": 0.05, "period": "1d"})
    for _ in range(3):
        assert (await _chat(first, made["key"], model="openai/priced", max_tokens=10)).status == 200
    await first.close()  # a graceful stop writes every usage record

    second = await _gateway(make_gateway, priced_fake, store_url=store_url, **PRICED)
    statuses = []
    for _ in range(3):
        response = await _chat(second, made["key"], model="openai/priced", max_tokens=10)
        statuses.append(response.status)
        await asyncio.sleep(0.02)
    assert statuses == [200, 200, 402]
    await second.close()
    third = await _gateway(make_gateway, priced_fake, store_url=store_url, **PRICED)
    logs = await (
        await third.client.get(f"/api/logs?key_id={made['id']}&limit=100", headers=ADMIN)
    ).json()
    assert len(logs["data"]) == 6
    assert {(r["key_id"], r["team_id"]) for r in logs["data"]} == {(made["id"], team["id"])}
    assert sum(r["cost_usd"] or 0 for r in logs["data"]) == pytest.approx(0.05)
    everything = await (await third.client.get("/api/logs?limit=1000", headers=ADMIN)).json()
    assert not [r for r in everything["data"] if r["route"].startswith("/api/")]


async def test_a_background_response_holds_its_reservation_until_it_ends(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A queued background response keeps its budget reservation while it runs, then is
    charged what it cost; its usage record names its key."""
    from tests.fakes.openai import Behavior

    gateway = await _gateway(make_gateway, fake_openai, **PRICED)
    made = await create_key(gateway, budget={"max_usd": 0.015, "period": "1d"})
    fake_openai.enqueue(Behavior(usage=(12, 10), delay_s=0.5))
    sdk = gateway.sdk(api_key=made["key"])
    queued = await sdk.responses.create(
        model="openai/priced", input="Work.", background=True, max_output_tokens=10
    )
    # $0.01 is held for the running response: another $0.01 does not fit in $0.015.
    refused = await _chat(gateway, made["key"], model="openai/priced", max_tokens=10)
    assert refused.status == 402
    for _ in range(200):
        if (await sdk.responses.retrieve(queued.id)).status == "completed":
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    got = await (await gateway.client.get(f"/api/keys/{made['id']}", headers=ADMIN)).json()
    assert (got["spend"]["spent_usd"], got["spend"]["reserved_usd"]) == (pytest.approx(0.01), 0)
    for _ in range(100):
        logs = await (
            await gateway.client.get(f"/api/logs?key_id={made['id']}", headers=ADMIN)
        ).json()
        runs = [r for r in logs["data"] if r["request_type"] == "background_response"]
        if runs:
            break
        await asyncio.sleep(0.05)
    assert [r["cost_usd"] for r in runs] == [pytest.approx(0.01)]


async def test_known_keys_ride_out_a_store_outage(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """With the store unreachable, a key read before keeps working (what was read stands); a
    key never seen is a 503 `state_unavailable`, not a 401 or a 500; both recover with it."""
    import sqlite3

    path = tmp_path / "thruway.db"
    gateway = await _gateway(make_gateway, fake_openai, store_url=f"sqlite:///{path}")
    known = (await create_key(gateway))["key"]
    other = (await create_key(gateway))["key"]
    assert (await _chat(gateway, known)).status == 200

    def rename(old: str, new: str) -> None:
        with sqlite3.connect(path) as db:
            db.execute(f"ALTER TABLE {old} RENAME TO {new}")

    rename("virtual_keys", "virtual_keys_away")
    with capture_logs() as logs:
        assert (await _chat(gateway, known)).status == 200
        unseen = await _chat(gateway, other)
        assert unseen.status == 503
        assert (await unseen.json())["error"]["code"] == "state_unavailable"
        assert (await _chat(gateway, other)).status == 503
    assert [e["event"] for e in logs if e["event"].startswith("key_store")] == [
        "key_store_unreachable"
    ]
    rename("virtual_keys_away", "virtual_keys")
    assert (await _chat(gateway, other)).status == 200
    assert (await _chat(gateway, "sk-thr-nobody")).status == 401


async def test_a_requests_only_limit_costs_one_round_trip(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, redis_url: str
) -> None:
    """A key limited in requests per minute only is admitted in one Redis script call per
    request and has nothing to settle; a token limit adds the settlement."""
    import redis.asyncio as redis

    client = redis.from_url(redis_url)

    async def scripts_run() -> int:
        stats = await client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

    try:
        gateway = await _gateway(make_gateway, fake_openai, state_url=redis_url)
        rpm_only = (await create_key(gateway, rate_limit={"rpm": 50}))["key"]
        with_tpm = (await create_key(gateway, rate_limit={"rpm": 50, "tpm": 10_000}))["key"]
        await _chat(gateway, rpm_only)  # loads the scripts
        before = await scripts_run()
        for _ in range(3):
            assert (await _chat(gateway, rpm_only)).status == 200
        await asyncio.sleep(0.05)
        assert await scripts_run() - before == 3
        before = await scripts_run()
        for _ in range(3):
            assert (await _chat(gateway, with_tpm)).status == 200
        await asyncio.sleep(0.05)
        assert await scripts_run() - before == 6
    finally:
        await client.aclose()
