"""Resolving a model name into targets: routes and their strategies, then fallbacks."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from middlewares.fallback import resolve_targets
from proxy.config import ConfigError, RouteConfig, build_config
from proxy.errors import InvalidRequestError
from proxy.keys import Directory
from proxy.operations import Target
from proxy.reliability import Reliability

DIRECTORY = Directory(available=frozenset({"a", "b", "c"}), unavailable={"d": "no key"})
PROVIDERS = {name: {"type": "openai", "keys": [{"value": "k"}]} for name in "abcd"}


@pytest.fixture
def seeded() -> Iterator[None]:
    """The global ``random`` (what the ``weighted`` strategy draws from) seeded, and restored."""
    state = random.getstate()
    random.seed(1717)
    yield
    random.setstate(state)


def _route(strategy: str, *targets: str | tuple[str, float], **extra: Any) -> RouteConfig:
    listed = [
        {"model": t} if isinstance(t, str) else {"model": t[0], "weight": t[1]} for t in targets
    ]
    document = {
        "providers": PROVIDERS,
        "routes": {"r": {"targets": listed, "strategy": strategy, **extra}},
    }
    return build_config(document, source="<test>").routes["r"]


def _reliability() -> Reliability:
    return Reliability(build_config({"providers": PROVIDERS}, source="<test>"))


def _labels(targets: list[Target]) -> list[str]:
    return [t.label for t in targets]


def test_plain_model_is_one_target() -> None:
    """``provider/model`` without a route is the only target, at index 0."""
    assert [Target("a", "gpt-4o-mini", 0)] == resolve_targets("a/gpt-4o-mini", [], DIRECTORY)


def test_ordered_keeps_the_listed_order() -> None:
    """``ordered`` tries the targets as listed, whatever the statistics say."""
    route = _route("ordered", "c/x", "a/y", "b/z")
    rel = _reliability()
    rel.stats("a", "y").observe(1)
    rel.stats("c", "x").in_flight = 9
    for _ in range(20):
        targets = resolve_targets("r", [], DIRECTORY, {"r": route}, rel)
        assert [Target("c", "x", 0), Target("a", "y", 1), Target("b", "z", 2)] == targets


def test_weighted_first_choice_follows_the_weights(seeded: None) -> None:
    """``weighted`` picks its first target in proportion to the weights (within 1.5 points over
    20,000 requests), and every request still lists every target once."""
    route = _route("weighted", ("a/x", 1), ("b/x", 2), ("c/x", 5))
    draws = 20_000
    firsts: Counter[str] = Counter()
    for _ in range(draws):
        targets = resolve_targets("r", [], DIRECTORY, {"r": route}, _reliability())
        assert [0, 1, 2] == [t.index for t in targets]
        assert {"a/x", "b/x", "c/x"} == set(_labels(targets))
        firsts[targets[0].label] += 1
    for label, share in (("a/x", 1 / 8), ("b/x", 2 / 8), ("c/x", 5 / 8)):
        assert abs(firsts[label] / draws - share) < 0.015, firsts


def test_weighted_is_the_default_strategy(seeded: None) -> None:
    """A route without ``strategy`` spreads its first choice by weight too."""
    document = {
        "providers": PROVIDERS,
        "routes": {"r": {"targets": [{"model": "a/x"}, {"model": "b/x", "weight": 3}]}},
    }
    route = build_config(document, source="<test>").routes["r"]
    firsts = Counter(
        resolve_targets("r", [], DIRECTORY, {"r": route})[0].label for _ in range(4000)
    )
    assert abs(firsts["b/x"] / 4000 - 0.75) < 0.03, firsts


def test_least_latency_prefers_the_lowest_ewma_unmeasured_first() -> None:
    """``least-latency`` orders by the moving average of time to first byte, with targets never
    measured first so that each gets measured."""
    route = _route("least-latency", "a/x", "b/x", "c/x")
    rel = _reliability()
    rel.stats("a", "x").observe(300)
    rel.stats("c", "x").observe(100)
    targets = resolve_targets("r", [], DIRECTORY, {"r": route}, rel)
    assert ["b/x", "c/x", "a/x"] == _labels(targets)
    assert [0, 1, 2] == [t.index for t in targets]
    rel.stats("b", "x").observe(200)
    assert ["c/x", "b/x", "a/x"] == _labels(resolve_targets("r", [], DIRECTORY, {"r": route}, rel))
    # c slows down: its average moves past b's.
    for _ in range(10):
        rel.stats("c", "x").observe(1000)
    assert ["b/x", "a/x", "c/x"] == _labels(resolve_targets("r", [], DIRECTORY, {"r": route}, rel))


def test_least_busy_prefers_the_fewest_in_flight() -> None:
    """``least-busy`` orders by requests in flight to each target."""
    route = _route("least-busy", "a/x", "b/x", "c/x")
    rel = _reliability()
    rel.stats("a", "x").in_flight = 4
    rel.stats("b", "x").in_flight = 7
    rel.stats("c", "x").in_flight = 1
    assert ["c/x", "a/x", "b/x"] == _labels(resolve_targets("r", [], DIRECTORY, {"r": route}, rel))
    rel.stats("c", "x").in_flight = 9
    assert ["a/x", "b/x", "c/x"] == _labels(resolve_targets("r", [], DIRECTORY, {"r": route}, rel))


def test_route_then_request_fallbacks_with_increasing_indexes() -> None:
    """The route's targets, then its own fallbacks, then the request's, indexed 0, 1, 2..."""
    route = _route("ordered", "a/x", "b/x", fallbacks=["c/y"])
    targets = resolve_targets("r", ["a/z", "d/w"], DIRECTORY, {"r": route}, _reliability())
    assert [
        Target("a", "x", 0),
        Target("b", "x", 1),
        Target("c", "y", 2),
        Target("a", "z", 3),
        Target("d", "w", 4),  # configured but unavailable: kept, skipped when its turn comes
    ] == targets


def test_request_fallbacks_after_a_plain_model() -> None:
    """Without a route, the request's fallbacks follow the model at indexes 1, 2..."""
    targets = resolve_targets("a/x", ["b/y", "c/z"], DIRECTORY, {"r": _route("ordered", "b/q")})
    assert [Target("a", "x", 0), Target("b", "y", 1), Target("c", "z", 2)] == targets


@pytest.mark.parametrize(
    ("fallbacks", "param"),
    [(["nope/x"], "fallbacks[0]"), (["a/x", "b/y", "zzz/m"], "fallbacks[2]")],
)
def test_unknown_provider_in_a_fallback_is_a_400(fallbacks: list[str], param: str) -> None:
    """A fallback naming no configured provider fails before any attempt, naming its position."""
    route = _route("ordered", "a/x")
    with pytest.raises(InvalidRequestError) as info:
        resolve_targets("r", fallbacks, DIRECTORY, {"r": route}, _reliability())
    assert 400 == info.value.status
    assert param == info.value.param
    assert "Unknown provider" in info.value.message
    assert "Configured providers: a, b, c." in info.value.message


def test_fallback_without_a_provider_is_a_400() -> None:
    """A fallback that is not ``provider/model`` is refused with its position."""
    with pytest.raises(InvalidRequestError) as info:
        resolve_targets("a/x", ["b/y", "gpt-4o"], DIRECTORY)
    assert ("fallbacks[1]", "model_not_found") == (info.value.param, info.value.code)


def test_route_target_of_an_unknown_provider_is_a_config_error() -> None:
    """A route whose target names a provider that is not configured is refused at load."""
    document = {"providers": PROVIDERS, "routes": {"r": {"targets": [{"model": "nope/x"}]}}}
    with pytest.raises(ConfigError, match=r"routes\.r"):
        build_config(document, source="<test>")
