"""Reliability through the official SDK: retries with backoff and Retry-After, key rotation and
cooldown, circuit breakers (and their health endpoint), the client's per-attempt time limit, and
routes, each against fake OpenAI upstreams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import openai
import pytest

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import Behavior, FakeOpenAI

USER = [{"role": "user", "content": "Hi"}]
MODEL = "openai/gpt-4o-mini"
WITH_FALLBACK = {"fallbacks": ["backup/gpt-4o-mini"]}
FAST_RETRY = {"max_retries": 2, "initial_ms": 1, "max_ms": 5}
MASTER = "sk-thruway-master-reltests"
GOOD_KEY = "sk-fake-upstream"


@pytest.fixture
async def open_fake() -> AsyncIterator[FakeOpenAI]:
    """A fake that accepts any key, so that each of several keys reaches the scripted answer."""
    fake = await FakeOpenAI(api_key=None).start()
    try:
        yield fake
    finally:
        await fake.close()


def _document(primary: dict[str, Any], backup: FakeOpenAI | None = None) -> dict[str, Any]:
    providers = {"openai": primary}
    if backup is not None:
        providers["backup"] = provider_for(backup, "sk-fake-backup")
    return {"auth": {"master_key": MASTER}, "providers": providers}


async def _health(gateway: Gateway) -> dict[str, Any]:
    resp = await gateway.client.get(
        "/api/health/providers", headers={"Authorization": f"Bearer {MASTER}"}
    )
    body = await resp.read()
    assert 200 == resp.status, body
    providers: dict[str, Any] = msgspec.json.decode(body)["providers"]
    return providers


def _auth(fake: FakeOpenAI) -> list[str]:
    return [r.headers["authorization"] for r in fake.requests]


# --- retries ------------------------------------------------------------------------------------


async def test_retryable_errors_are_retried_until_success(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Two 503s then a success: one 200 for the caller, saying it took three attempts."""
    gateway = await make_gateway(_document(provider_for(fake_openai, retry=FAST_RETRY)))
    fake_openai.enqueue(Behavior(status=503), Behavior(status=503), Behavior(content="third"))
    raw = await gateway.sdk(MASTER).chat.completions.with_raw_response.create(
        model=MODEL, messages=USER
    )
    result = raw.parse()
    assert "third" == result.choices[0].message.content
    assert "3" == raw.headers["x-thruway-attempts"]
    assert "0" == raw.headers["x-thruway-fallback-index"]
    extra = result.model_extra["extra_fields"]
    assert (3, 0) == (extra["attempts"], extra["fallback_index"])
    assert 3 == len(fake_openai.requests)


async def test_stream_is_retried_before_its_first_byte(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A streaming request whose first two tries get 503 streams the third, saying so."""
    gateway = await make_gateway(_document(provider_for(fake_openai, retry=FAST_RETRY)))
    fake_openai.enqueue(Behavior(status=503), Behavior(status=503), Behavior(deltas=["o", "k"]))
    raw = await gateway.sdk(MASTER).chat.completions.with_raw_response.create(
        model=MODEL, messages=USER, stream=True
    )
    assert "3" == raw.headers["x-thruway-attempts"]
    stream = raw.parse()
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "ok" == text
    assert 3 == len(fake_openai.requests)


async def test_retries_exhausted_return_the_upstream_error(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With ``max_retries: 2`` a third 503 is the caller's answer, after exactly three tries."""
    gateway = await make_gateway(_document(provider_for(fake_openai, retry=FAST_RETRY)))
    fake_openai.enqueue(*(Behavior(status=503) for _ in range(4)))
    with pytest.raises(openai.InternalServerError) as info:
        await gateway.sdk(MASTER).chat.completions.create(model=MODEL, messages=USER)
    assert 503 == info.value.status_code
    assert 3 == len(fake_openai.requests)


async def test_bad_request_is_not_retried(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A 400 is the caller's to fix: returned after one upstream request."""
    gateway = await make_gateway(_document(provider_for(fake_openai, retry=FAST_RETRY)))
    fake_openai.enqueue(Behavior(status=400))
    with pytest.raises(openai.BadRequestError):
        await gateway.sdk(MASTER).chat.completions.create(model=MODEL, messages=USER)
    assert 1 == len(fake_openai.requests)


async def test_retry_after_ms_is_waited(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """A 429 asking ``retry-after-ms: 50`` is retried after at least 50 ms (and the millisecond
    header wins over the fake's ``retry-after: 1``)."""
    gateway = await make_gateway(_document(provider_for(fake_openai, retry=FAST_RETRY)))
    fake_openai.enqueue(Behavior(status=429, headers={"retry-after-ms": "50"}))
    sdk = gateway.sdk(MASTER)
    started = time.monotonic()
    raw = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    elapsed = time.monotonic() - started
    assert "2" == raw.headers["x-thruway-attempts"]
    assert 2 == len(fake_openai.requests)
    assert 0.05 <= elapsed < 0.9


async def test_long_retry_after_moves_to_the_fallback_at_once(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A Retry-After above ``max_after_s`` is not waited for: the fallback answers at once."""
    retry = {**FAST_RETRY, "max_after_s": 1}
    gateway = await make_gateway(_document(provider_for(fake_openai, retry=retry), fake_backup))
    fake_openai.enqueue(Behavior(status=429, headers={"retry-after": "30"}))
    fake_backup.enqueue(Behavior(content="from backup"))
    sdk = gateway.sdk(MASTER)
    started = time.monotonic()
    raw = await sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=USER, extra_body=WITH_FALLBACK
    )
    elapsed = time.monotonic() - started
    result = raw.parse()
    assert "from backup" == result.choices[0].message.content
    assert ("2", "1") == (
        raw.headers["x-thruway-attempts"],
        raw.headers["x-thruway-fallback-index"],
    )
    assert (1, 1) == (len(fake_openai.requests), len(fake_backup.requests))
    assert elapsed < 0.5


# --- keys ---------------------------------------------------------------------------------------


async def test_429_moves_the_next_attempt_to_another_key(
    make_gateway: MakeGateway, open_fake: FakeOpenAI
) -> None:
    """After a 429 the retry goes out with the provider's other key."""
    keys = [{"value": "sk-first"}, {"value": "sk-second"}]
    primary = {"type": "openai", "base_url": open_fake.base_url, "keys": keys, "retry": FAST_RETRY}
    gateway = await make_gateway(_document(primary))
    for _ in range(5):
        open_fake.requests.clear()
        open_fake.enqueue(Behavior(status=429, headers={"retry-after-ms": "1"}))
        result = await gateway.sdk(MASTER).chat.completions.create(model=MODEL, messages=USER)
        assert 2 == result.model_extra["extra_fields"]["attempts"]
        first, second = _auth(open_fake)
        assert first != second
        assert {first, second} == {"Bearer sk-first", "Bearer sk-second"}


async def test_401_takes_the_key_out_of_rotation(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A key the upstream refuses (401) cools down: the request is served with the other key,
    every later request uses only that one, and the health endpoint lists the key."""
    # The revoked key is by far the heavier, so the first request all but surely tries it.
    keys = [{"value": "sk-revoked", "weight": 1_000_000}, {"value": GOOD_KEY}]
    primary = {
        "type": "openai",
        "base_url": fake_openai.base_url,
        "keys": keys,
        "retry": FAST_RETRY,
    }
    gateway = await make_gateway(_document(primary))
    sdk = gateway.sdk(MASTER)
    first = await sdk.chat.completions.create(model=MODEL, messages=USER)
    assert 2 == first.model_extra["extra_fields"]["attempts"]
    assert ["Bearer sk-revoked", f"Bearer {GOOD_KEY}"] == _auth(fake_openai)
    for _ in range(10):
        result = await sdk.chat.completions.create(model=MODEL, messages=USER)
        assert 1 == result.model_extra["extra_fields"]["attempts"]
    assert [f"Bearer {GOOD_KEY}"] * 10 == _auth(fake_openai)[2:]
    cooling = (await _health(gateway))["openai"]["keys_cooling_down"]
    assert [0] == [k["key"] for k in cooling]
    assert 55 < cooling[0]["cooling_down_s"] <= 60
    assert "sk-revoked" not in str(cooling)


async def test_401_with_one_key_is_returned(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """With a single key a 401 is the caller's answer: not retried, and no fallback."""
    gateway = await make_gateway(
        _document(provider_for(fake_openai, "sk-revoked", retry=FAST_RETRY), fake_backup)
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await gateway.sdk(MASTER).chat.completions.create(
            model=MODEL, messages=USER, extra_body=WITH_FALLBACK
        )
    assert 401 == info.value.status_code
    assert ["Bearer sk-revoked"] == _auth(fake_openai)
    assert [] == fake_backup.requests


# --- circuit breaker ----------------------------------------------------------------------------


async def test_breaker_opens_skips_the_primary_and_closes_after_a_probe(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """Three failures open the primary's circuit; while open the fallback answers without the
    primary being asked; after the cooldown a probe reaches it, and its success closes it."""
    primary = provider_for(fake_openai, breaker={"failures": 3, "cooldown_s": 0.3})
    gateway = await make_gateway(_document(primary, fake_backup))
    sdk = gateway.sdk(MASTER)

    async def ask() -> tuple[str, int]:
        result = await sdk.chat.completions.create(
            model=MODEL, messages=USER, extra_body=WITH_FALLBACK
        )
        extra = result.model_extra["extra_fields"]
        return extra["provider"], extra["fallback_index"]

    fake_openai.enqueue(*(Behavior(status=503) for _ in range(3)))
    for i in range(3):
        assert ("backup", 1) == await ask()
        state = (await _health(gateway))["openai"]["breakers"][0]["state"]
        assert ("open" if i == 2 else "closed") == state
    breaker = (await _health(gateway))["openai"]["breakers"][0]
    assert (0, "gpt-4o-mini", "open", 3) == (
        breaker["key"],
        breaker["model"],
        breaker["state"],
        breaker["failures"],
    )
    assert 0 < breaker["retry_in_s"] <= 0.3

    assert ("backup", 1) == await ask()
    assert 3 == len(fake_openai.requests)

    await asyncio.sleep(0.35)
    assert ("openai", 0) == await ask()
    assert 4 == len(fake_openai.requests)
    breaker = (await _health(gateway))["openai"]["breakers"][0]
    assert ("closed", 0) == (breaker["state"], breaker["failures"])


async def test_breaker_open_without_fallback_answers_503_at_once(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """With no fallback, an open circuit answers 503 with Retry-After, without asking upstream."""
    primary = provider_for(fake_openai, breaker={"failures": 1, "cooldown_s": 30})
    gateway = await make_gateway(_document(primary))
    fake_openai.enqueue(Behavior(status=500))
    sdk = gateway.sdk(MASTER)
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model=MODEL, messages=USER)
    with pytest.raises(openai.APIStatusError) as info:
        await sdk.chat.completions.create(model=MODEL, messages=USER)
    assert 503 == info.value.status_code
    assert "30" == info.value.response.headers["retry-after"]
    body = info.value.body
    assert isinstance(body, dict)
    assert "circuit_open" == body["code"]
    assert 1 == len(fake_openai.requests)


async def test_one_keys_open_circuit_leaves_the_other_key(
    make_gateway: MakeGateway, open_fake: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A provider with two keys keeps serving through the second when the first's circuit opens."""
    keys = [{"value": "sk-first"}, {"value": "sk-second"}]
    primary = {
        "type": "openai",
        "base_url": open_fake.base_url,
        "keys": keys,
        "breaker": {"failures": 1, "cooldown_s": 30},
    }
    gateway = await make_gateway(_document(primary, fake_backup))
    open_fake.enqueue(Behavior(status=503))
    sdk = gateway.sdk(MASTER)
    first = await sdk.chat.completions.create(model=MODEL, messages=USER, extra_body=WITH_FALLBACK)
    assert "backup" == first.model_extra["extra_fields"]["provider"]
    second = await sdk.chat.completions.create(model=MODEL, messages=USER, extra_body=WITH_FALLBACK)
    assert "openai" == second.model_extra["extra_fields"]["provider"]
    assert 2 == len(set(_auth(open_fake)))


async def test_provider_health_needs_the_master_key(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """``/api/health/providers`` refuses a request without the master key (or with another key)
    and lists every configured provider for one with it."""
    gateway = await make_gateway(_document(provider_for(fake_openai), fake_backup))
    for headers in ({}, {"Authorization": "Bearer sk-not-the-master"}):
        resp = await gateway.client.get("/api/health/providers", headers=headers)
        assert 401 == resp.status
        assert b"breakers" not in await resp.read()
    providers = await _health(gateway)
    assert {"openai", "backup"} == set(providers)
    assert {"breakers": [], "keys_cooling_down": [], "in_flight": 0, "queued": 0} == providers[
        "openai"
    ]


# --- the client's time limit --------------------------------------------------------------------


async def test_timeout_header_limits_each_attempt(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """``x-thruway-timeout-ms: 100`` against an upstream that takes a second: a 504, quickly."""
    gateway = await make_gateway(_document(provider_for(fake_openai)))
    fake_openai.enqueue(Behavior(delay_s=1))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk(MASTER).chat.completions.create(
            model=MODEL, messages=USER, extra_headers={"x-thruway-timeout-ms": "100"}
        )
    elapsed = time.monotonic() - started
    assert 504 == info.value.status_code
    assert 0.1 <= elapsed < 0.5


async def test_timeout_header_leaves_time_for_the_fallback(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """The limit is per attempt: the primary times out and the fallback still answers."""
    gateway = await make_gateway(_document(provider_for(fake_openai), fake_backup))
    fake_openai.enqueue(Behavior(delay_s=1))
    fake_backup.enqueue(Behavior(content="from backup"))
    started = time.monotonic()
    raw = await gateway.sdk(MASTER).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=USER,
        extra_body=WITH_FALLBACK,
        extra_headers={"x-thruway-timeout-ms": "100"},
    )
    elapsed = time.monotonic() - started
    assert "from backup" == raw.parse().choices[0].message.content
    assert "1" == raw.headers["x-thruway-fallback-index"]
    assert elapsed < 0.6


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
async def test_bad_timeout_header_is_a_400(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, value: str
) -> None:
    """A timeout header that is not a positive whole number is refused, naming the header."""
    gateway = await make_gateway(_document(provider_for(fake_openai)))
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk(MASTER).chat.completions.create(
            model=MODEL, messages=USER, extra_headers={"x-thruway-timeout-ms": value}
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert "x-thruway-timeout-ms" == body["param"]
    assert "x-thruway-timeout-ms" in body["message"]
    assert [] == fake_openai.requests


# --- routes -------------------------------------------------------------------------------------


async def test_route_served_by_its_first_target_then_its_fallback(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """An ``ordered`` route answers from its first target, and from its second when the first
    fails, saying so in ``fallback_index`` and ``x-thruway-fallback-index``."""
    gateway = await make_gateway(
        {
            "auth": {"master_key": MASTER},
            "providers": {
                "a": provider_for(fake_openai),
                "b": provider_for(fake_backup, "sk-fake-backup"),
            },
            "routes": {
                "smart": {
                    "targets": [{"model": "a/gpt-4o-mini"}, {"model": "b/gpt-4o-mini"}],
                    "strategy": "ordered",
                }
            },
        }
    )
    sdk = gateway.sdk(MASTER)
    fake_openai.enqueue(Behavior(content="from a"))
    raw = await sdk.chat.completions.with_raw_response.create(model="smart", messages=USER)
    result = raw.parse()
    assert "from a" == result.choices[0].message.content
    assert ("a", "0") == (
        raw.headers["x-thruway-provider"],
        raw.headers["x-thruway-fallback-index"],
    )
    extra = result.model_extra["extra_fields"]
    assert ("a", 0, "smart") == (
        extra["provider"],
        extra["fallback_index"],
        extra["model_requested"],
    )
    assert "gpt-4o-mini" == fake_openai.requests[-1].json["model"]
    assert [] == fake_backup.requests

    fake_openai.enqueue(Behavior(status=503))
    fake_backup.enqueue(Behavior(content="from b"))
    raw = await sdk.chat.completions.with_raw_response.create(model="smart", messages=USER)
    result = raw.parse()
    assert "from b" == result.choices[0].message.content
    assert ("b", "1") == (
        raw.headers["x-thruway-provider"],
        raw.headers["x-thruway-fallback-index"],
    )
    extra = result.model_extra["extra_fields"]
    assert (1, 2) == (extra["fallback_index"], extra["attempts"])
    assert "gpt-4o-mini" == fake_backup.requests[-1].json["model"]
    assert "Bearer sk-fake-backup" == fake_backup.requests[-1].headers["authorization"]
