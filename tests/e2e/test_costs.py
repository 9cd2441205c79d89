"""Request costs through the gateway: ``extra_fields.cost_usd`` and the canonical log line."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from tests.conftest import MakeGateway, provider_for
from tests.fakes.openai import Behavior, FakeOpenAI

USER = [{"role": "user", "content": "Hello"}]


async def test_json_response_carries_the_cost(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A priced model's response has cost_usd in extra_fields, and the log line has it too."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    fake_openai.enqueue(Behavior(usage=(1000, 500), cached_tokens=200, reasoning_tokens=100))
    with capture_logs() as logs:
        result = await gateway.sdk().chat.completions.create(
            model="openai/gpt-4o-mini-2024-07-18", messages=USER
        )
    extra = result.model_extra["extra_fields"]
    # gpt-4o-mini: 800 * 0.15 + 200 * 0.075 + 500 * 0.6 (reasoning billed as output).
    assert 0.000435 == pytest.approx(extra["cost_usd"])
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert 0.000435 == pytest.approx(line["cost_usd"])
    assert (200, 100) == (line["cached_tokens"], line["reasoning_tokens"])
    assert not [entry for entry in logs if entry["event"] == "no_price"]


async def test_override_prices_reasoning_apart(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A config price with its own reasoning rate bills reasoning tokens at it."""
    gateway = await make_gateway(
        {
            "providers": {"openai": provider_for(fake_openai)},
            "pricing": {
                "openai/house-model": {
                    "input": 2,
                    "output": 8,
                    "cached_input": 1,
                    "reasoning": 20,
                }
            },
        }
    )
    fake_openai.enqueue(Behavior(usage=(1000, 500), cached_tokens=400, reasoning_tokens=300))
    result = await gateway.sdk().chat.completions.create(model="openai/house-model", messages=USER)
    # 600 * 2 + 400 * 1 + 200 * 8 + 300 * 20 micro-dollars.
    assert 0.0092 == pytest.approx(result.model_extra["extra_fields"]["cost_usd"])


async def test_unpriced_model_has_no_cost_and_is_logged_once(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """An unpriced model is served without cost_usd, and `no_price` is logged once for it."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    with capture_logs() as logs:
        for _ in range(2):
            result = await gateway.sdk().chat.completions.create(
                model="openai/house-model", messages=USER
            )
            assert "cost_usd" not in result.model_extra["extra_fields"]
            assert 12 == result.model_extra["extra_fields"]["billed_usage"]["prompt_tokens"]
    misses = [entry for entry in logs if entry["event"] == "no_price"]
    assert [("openai", "house-model")] == [(m["provider"], m["model"]) for m in misses]
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert [200, 200] == [line["status"] for line in lines]
    assert all("cost_usd" not in line for line in lines)


async def test_stream_usage_chunk_and_log_line_carry_the_cost(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """A stream with include_usage ends with extra_fields.cost_usd; the log line has the cost."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    fake_openai.enqueue(Behavior(usage=(2000, 1000)))
    with capture_logs() as logs:
        stream = await gateway.sdk().chat.completions.create(
            model="openai/gpt-4o",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    extra = chunks[-1].model_extra["extra_fields"]
    # gpt-4o: 2000 * 2.5 + 1000 * 10 micro-dollars.
    assert 0.015 == pytest.approx(extra["cost_usd"])
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert 0.015 == pytest.approx(line["cost_usd"])
