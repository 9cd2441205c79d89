"""``GET /metrics``: the Prometheus text format, updated by requests through the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import Behavior, FakeOpenAI

USER = [{"role": "user", "content": "Hello"}]
CHAT = {"provider": "openai", "model": "gpt-4o-mini", "request_type": "chat_completion"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gateway: Gateway) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus_client's own parser."""
    resp = await gateway.client.get("/metrics")
    assert 200 == resp.status
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_success_counts_request_tokens_attempt_and_latency(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A successful chat completion adds one request, its tokens, one successful attempt and
    one latency observation; nothing stays in flight."""
    before = await scrape(gateway)
    assert 0 == value(before, "thruway_requests_total", status="200", **CHAT)
    fake_openai.enqueue(Behavior(usage=(21, 3), cached_tokens=5, reasoning_tokens=2))
    await gateway.sdk().chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    after = await scrape(gateway)
    assert 1 == value(after, "thruway_requests_total", status="200", **CHAT)
    tokens = {
        kind: value(
            after, "thruway_tokens_total", provider="openai", model="gpt-4o-mini", kind=kind
        )
        for kind in ("input", "output", "cached", "reasoning")
    }
    assert {"input": 21, "output": 3, "cached": 5, "reasoning": 2} == tokens
    outcome = {"provider": "openai", "outcome": "success"}
    assert 1 == value(after, "thruway_upstream_attempts_total", **outcome)
    assert 1 == value(after, "thruway_request_duration_seconds_count", **CHAT)
    assert 0 == value(after, "thruway_ttfb_seconds_count", **CHAT)
    assert 0 == value(after, "thruway_in_flight_requests")
    assert 0 == value(after, "thruway_open_streams")


async def test_upstream_500_counts_the_status_and_the_failed_attempt(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An upstream 500 is a request with status 500 and a failed attempt with outcome 500."""
    fake_openai.enqueue(Behavior(status=500))
    with pytest.raises(openai.InternalServerError):
        await gateway.sdk().chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    samples = await scrape(gateway)
    assert 1 == value(samples, "thruway_requests_total", status="500", **CHAT)
    assert 0 == value(samples, "thruway_requests_total", status="200", **CHAT)
    assert 1 == value(samples, "thruway_upstream_attempts_total", provider="openai", outcome="500")
    assert 0 == value(
        samples, "thruway_upstream_attempts_total", provider="openai", outcome="success"
    )
    assert 0 == value(samples, "thruway_rejections_total", reason="provider_unavailable")


async def test_stream_is_open_and_in_flight_until_it_ends(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """During a stream the in-flight and open-stream gauges are 1; after it they are 0, and its
    time to first byte is observed."""
    fake_openai.enqueue(
        Behavior(content="one two three", deltas=["one", " two", " three"], gap_s=0.3)
    )
    stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, stream=True
    )
    chunks = aiter(stream)
    await anext(chunks)
    during = await scrape(gateway)
    assert (1, 1) == (
        value(during, "thruway_in_flight_requests"),
        value(during, "thruway_open_streams"),
    )
    async for _ in chunks:
        pass
    after = await scrape(gateway)
    assert (0, 0) == (
        value(after, "thruway_in_flight_requests"),
        value(after, "thruway_open_streams"),
    )
    assert 1 == value(after, "thruway_ttfb_seconds_count", **CHAT)
    assert 0 < value(after, "thruway_ttfb_seconds_sum", **CHAT) < 0.9
    assert 1 == value(after, "thruway_requests_total", status="200", **CHAT)


async def test_overloaded_is_a_rejection(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A request the gateway refuses as ``overloaded`` counts as a rejection with that reason,
    and as no upstream call."""
    gateway = await make_gateway(
        {"providers": {"openai": provider_for(fake_openai, max_in_flight=1, max_queue=0)}}
    )
    fake_openai.enqueue(Behavior(delay_s=0.5))
    sdk = gateway.sdk()
    slow = asyncio.ensure_future(
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    )
    while not fake_openai.requests:
        await asyncio.sleep(0.01)
    with pytest.raises(openai.APIStatusError) as info:
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert 503 == info.value.status_code
    await slow
    samples = await scrape(gateway)
    assert 1 == value(samples, "thruway_rejections_total", reason="overloaded")
    assert 1 == value(samples, "thruway_requests_total", status="503", **CHAT)
    assert 1 == value(
        samples, "thruway_upstream_attempts_total", provider="openai", outcome="overloaded"
    )


async def test_metrics_needs_no_master_key(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """``/metrics`` answers without the master key that inference routes require, and is not
    itself counted as a request."""
    gateway = await make_gateway(
        {"providers": {"openai": provider_for(fake_openai)}, "auth": {"master_key": "mk-1"}}
    )
    refused = await gateway.client.post("/v1/chat/completions", json={})
    assert 401 == refused.status
    await scrape(gateway)
    samples = await scrape(gateway)
    requests: Any = {k: v for k, v in samples.items() if k[0] == "thruway_requests_total"}
    assert [401] == [int(dict(k[1])["status"]) for k in requests]
