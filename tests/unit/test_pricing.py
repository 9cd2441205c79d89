"""The price table, model-id matching, config overrides and the cost arithmetic."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
import pytest

from proxy.config import ConfigError, ModelPrice, build_config
from proxy.pricing import Pricing, cost_usd, load_price_table, model_candidates
from proxy.schemas.common import BilledUsage

TABLE = load_price_table()


def pricing(document: dict[str, Any] | None = None) -> Pricing:
    return Pricing(build_config(document or {}, source="<test>"))


def test_shipped_table_parses_with_a_date_and_complete_entries() -> None:
    """The shipped table decodes; it has a date and every model has input and output prices."""
    assert datetime.date.fromisoformat(TABLE.as_of) <= datetime.date(2027, 1, 1)
    assert {"openai", "anthropic", "gemini", "bedrock"} <= set(TABLE.providers)
    for provider, models in TABLE.providers.items():
        assert models, provider
        for model, price in models.items():
            assert model == model.lower(), model
            assert model_candidates(model)[0] == model, model
            assert price.input >= 0, (provider, model)
            assert price.output >= 0, (provider, model)
            if price.cached_input is not None:
                assert price.cached_input <= price.input, (provider, model)
    for provider, lists in TABLE.also.items():
        assert all(name in TABLE.providers for name in lists), provider


def test_table_rejects_entries_without_required_prices() -> None:
    """An entry missing its output price, or with a negative one, fails to load."""
    with pytest.raises(msgspec.ValidationError, match="output"):
        load_price_table(b'{"as_of": "2026-01-01", "providers": {"x": {"m": {"input": 1}}}}')
    with pytest.raises(msgspec.ValidationError, match=">= 0"):
        load_price_table(
            b'{"as_of": "2026-01-01", "providers": {"x": {"m": {"input": -1, "output": 1}}}}'
        )


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("openai", "gpt-4o-mini", "gpt-4o-mini"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "GPT-4.1", "gpt-4.1"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("vertex", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("vertex", "gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini", "models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("bedrock", "us.amazon.nova-pro-v1:0", "nova-pro"),
        ("groq", "openai/gpt-oss-120b", "openai/gpt-oss-120b"),
        ("xai", "grok-4-latest", "grok-4"),
    ],
)
def test_dated_and_versioned_ids_find_the_model_price(
    provider: str, model: str, expected: str
) -> None:
    """Dated, versioned and prefixed ids resolve to the base model's price."""
    type_ = provider if provider in TABLE.providers else None
    sources = [type_] if type_ else []
    sources += list(TABLE.also.get(provider, ()))
    want = next(TABLE.providers[s][expected] for s in sources if expected in TABLE.providers[s])
    assert want == pricing().price(provider, model)


def test_unknown_models_have_no_price() -> None:
    """A model in no list, or a known model under a provider whose list lacks it, is unpriced."""
    p = pricing()
    assert p.price("openai", "gpt-4o-mini-tts-unknown") is None
    assert p.price("openai", "claude-sonnet-4-5") is None
    assert p.price("ollama", "llama3") is None
    assert p.cost_usd("ollama", "llama3", BilledUsage(prompt_tokens=10)) is None


def test_provider_name_resolves_to_its_type() -> None:
    """A provider configured under another name is priced by its ``type``."""
    p = pricing({"providers": {"work": {"type": "anthropic", "keys": [{"value": "k"}]}}})
    assert TABLE.providers["anthropic"]["claude-haiku-4-5"] == p.price("work", "claude-haiku-4-5")


def test_config_override_beats_the_table_and_matches_dated_ids() -> None:
    """An override (by provider name or type) takes precedence, also for dated ids."""
    p = pricing(
        {
            "providers": {"team": {"type": "openai", "keys": [{"value": "k"}]}},
            "pricing": {
                "openai/gpt-4o-mini": {"input": 1, "output": 2},
                "team/gpt-4.1": {"input": 3, "output": 4, "cached_input": 0.5, "reasoning": 9},
                "ollama/llama3": {"input": 0, "output": 0},
            },
        }
    )
    assert ModelPrice(input=1, output=2) == p.price("team", "gpt-4o-mini-2024-07-18")
    assert ModelPrice(input=3, output=4, cached_input=0.5, reasoning=9) == p.price(
        "team", "gpt-4.1"
    )
    assert 0.0 == p.cost_usd("ollama", "llama3", BilledUsage(prompt_tokens=500))


@pytest.mark.parametrize(
    "pricing_doc",
    [
        {"openai/gpt-4o": {"input": -1, "output": 1}},
        {"openai/gpt-4o": {"input": 1}},
        {"openai/gpt-4o": {"input": 1, "output": 1, "cache": 1}},
        {"gpt-4o": {"input": 1, "output": 1}},
    ],
)
def test_bad_overrides_fail_start_up(pricing_doc: dict[str, Any]) -> None:
    """Negative prices, missing or unknown fields and keys without a provider are refused."""
    with pytest.raises(ConfigError, match=r"\$\.pricing"):
        build_config({"pricing": pricing_doc}, source="<test>")


def test_cost_splits_cached_and_reasoning_tokens() -> None:
    """Cached prompt tokens are billed at cached_input, reasoning tokens at reasoning."""
    price = ModelPrice(input=2.0, output=8.0, cached_input=0.5, reasoning=10.0)
    usage = BilledUsage(
        prompt_tokens=1000, completion_tokens=500, cached_tokens=400, reasoning_tokens=200
    )
    # 600 * 2 + 400 * 0.5 + 300 * 8 + 200 * 10 = 1200 + 200 + 2400 + 2000 micro-dollars.
    assert 0.0058 == pytest.approx(cost_usd(price, usage))


def test_cost_defaults_cached_to_input_and_reasoning_to_output() -> None:
    """Without cached_input/reasoning prices, those tokens cost input/output."""
    price = ModelPrice(input=1.0, output=4.0)
    usage = BilledUsage(
        prompt_tokens=1000, completion_tokens=500, cached_tokens=400, reasoning_tokens=200
    )
    assert 0.003 == pytest.approx(cost_usd(price, usage))


def test_cost_never_bills_more_cached_or_reasoning_tokens_than_reported() -> None:
    """Counts above their totals are clamped, so no token is billed twice or negatively."""
    price = ModelPrice(input=1.0, output=1.0, cached_input=0.0, reasoning=0.0)
    usage = BilledUsage(
        prompt_tokens=10, completion_tokens=10, cached_tokens=50, reasoning_tokens=50
    )
    assert 0.0 == cost_usd(price, usage)


def test_real_price_for_gpt_4o_mini() -> None:
    """1000 prompt tokens (200 cached) and 500 completion tokens of gpt-4o-mini."""
    usage = BilledUsage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    # 800 * 0.15 + 200 * 0.075 + 500 * 0.6 = 120 + 15 + 300 micro-dollars.
    assert 0.000435 == pytest.approx(pricing().cost_usd("openai", "gpt-4o-mini", usage))


def test_lookups_are_cached_and_misses_reported_once() -> None:
    """A second lookup answers from the cache; an unpriced model is reported once."""
    p = pricing()
    first = p.price("openai", "gpt-4o-2024-08-06")
    assert first is p.price("openai", "gpt-4o-2024-08-06")
    assert p.first_miss("openai", "nope")
    assert not p.first_miss("openai", "nope")
    assert p.first_miss("openai", "other")


def test_candidates_strip_one_decoration_at_a_time() -> None:
    """The candidate ids go from the id as sent to the bare model name."""
    assert [
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
    ] == model_candidates("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
