"""The metrics' bound on label sets, and the failure strings they parse."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from proxy.keys import Outcome
from proxy.metrics import Metrics


async def _families(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = (await metrics.render()).decode()
    return {
        f.name: [(s.labels, s.value) for s in f.samples if s.name.endswith("_total")]
        for f in text_string_to_metric_families(text)
    }


async def test_models_past_the_bound_are_counted_as_other() -> None:
    """Past 2,000 label sets, requests for new models are counted under model ``other``, so
    a client naming random models cannot grow the scrape without bound."""
    metrics = Metrics()
    request = make_mocked_request("POST", "/v1/chat/completions")
    for i in range(2005):
        metrics.started()
        outcome = Outcome(provider="openai", model=f"m-{i}")
        metrics.finished(request, "chat_completion", outcome, 200, None)
    requests = (await _families(metrics))["thruway_requests"]
    models = {labels["model"]: value for labels, value in requests}
    assert 2001 == len(models)
    assert 5 == models["other"]
    assert 1 == models["m-1999"]
    assert "m-2000" not in models


async def test_failed_attempts_are_counted_per_provider_and_outcome() -> None:
    """Each failure of a request counts one attempt of its provider: its status, or the reason
    a target was not called; a mid-stream failure counts by its status."""
    metrics = Metrics()
    request = make_mocked_request("POST", "/v1/chat/completions")
    outcome = Outcome(
        provider="backup",
        model="gpt-4o",
        failures=[
            "openai/gpt-4o-mini: 500 api_error",
            "openai/gpt-4o-mini: 503 circuit_open",
            "groq/llama/3: 429 rate_limit_error",
            "backup/gpt-4o: 502 api_connection_error mid-stream",
        ],
    )
    metrics.started()
    metrics.finished(request, "chat_completion", outcome, 502, "api_connection_error")
    attempts = (await _families(metrics))["thruway_upstream_attempts"]
    got = {(labels["provider"], labels["outcome"]): v for labels, v in attempts if v}
    expected = {
        ("openai", "500"): 1.0,
        ("openai", "circuit_open"): 1.0,
        ("groq", "429"): 1.0,
        ("backup", "502"): 1.0,
    }
    assert expected == got
