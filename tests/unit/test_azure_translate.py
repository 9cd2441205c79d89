"""Azure OpenAI's pure parts: endpoint styles from the config, the config checks, the
environment path, and the stream-chunk repairs (golden SSE fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers._upstream import Upstream
from providers.azure import (
    DEFAULT_API_VERSION,
    Endpoint,
    _prompt_annotation,
    _with_delta,
    endpoint_of,
)
from providers.registry import (
    build_registry,
    check_providers,
    local_base_url_variables,
    standard_key_variables,
)
from proxy.config import ConfigError, build_config, config_from_env

FIXTURES = Path(__file__).parent.parent / "fixtures" / "azure"
ROOT = "https://contoso.openai.azure.com"


@pytest.mark.parametrize(
    ("base_url", "api_version", "expected"),
    [
        (ROOT, None, Endpoint(ROOT, v1=False, api_version=DEFAULT_API_VERSION)),
        (ROOT + "/", "2024-06-01", Endpoint(ROOT, v1=False, api_version="2024-06-01")),
        (ROOT + "/openai", "2025-04-01-preview", Endpoint(ROOT, False, "2025-04-01-preview")),
        (ROOT, "v1", Endpoint(ROOT, v1=True, api_version=None)),
        (ROOT, "preview", Endpoint(ROOT, v1=True, api_version="preview")),
        (ROOT + "/openai/v1/", None, Endpoint(ROOT, v1=True, api_version=None)),
        (ROOT + "/openai/v1", "preview", Endpoint(ROOT, v1=True, api_version="preview")),
    ],
)
def test_endpoint_styles(base_url: str, api_version: str | None, expected: Endpoint) -> None:
    """The API style and query follow from api_version, or from a base_url ending in /openai/v1."""
    assert expected == endpoint_of(base_url, api_version)


def _check(settings: dict[str, Any]) -> str:
    config = build_config({"providers": {"azure": settings}}, source="t.yaml")
    with pytest.raises(ConfigError) as info:
        check_providers(config)
    return str(info.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keys": [{"value": "k"}]}, "at $.providers.azure.base_url: required"),
        ({"base_url": ROOT, "api_version": "latest"}, "expected `v1`, `preview`, or a dated"),
        (
            {"base_url": ROOT + "/openai/v1", "api_version": "2024-10-21"},
            "base_url ends in /openai/v1",
        ),
        (
            {"base_url": ROOT, "keys": [{"value": "k"}], "credentials": {"token": "t"}},
            "either keys (API keys) or credentials (Entra ID)",
        ),
        (
            {"base_url": ROOT, "credentials": {"tenant_id": "t", "client_id": "c"}},
            "Entra ID client credentials need client_secret",
        ),
        (
            {"base_url": ROOT, "credentials": {"token": "t", "tenant_id": "x"}},
            "`token` is a bearer token on its own",
        ),
        ({"base_url": ROOT, "credentials": {"secret": "s"}}, "credentials.secret: unknown field"),
    ],
)
def test_config_mistakes(settings: dict[str, Any], message: str) -> None:
    """Each unusable Azure setting fails start-up with a message saying what to fix."""
    assert message in _check(settings)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with aiohttp.ClientSession() as session:
        yield Upstream(session)


async def test_environment_enables_azure(upstream: Upstream) -> None:
    """AZURE_OPENAI_ENDPOINT enables Azure with no config, keyed by AZURE_OPENAI_API_KEY; a key
    variable alone does not (it says nothing about where the resource is)."""
    keys, urls = standard_key_variables(), local_base_url_variables()
    assert "azure" not in keys
    env = {"AZURE_OPENAI_ENDPOINT": ROOT, "AZURE_OPENAI_API_KEY": "k-env"}
    registry = build_registry(config_from_env(keys, urls, env=env), upstream, env=env)
    assert ["azure"] == sorted(registry.directory.available)
    env = {"AZURE_OPENAI_ENDPOINT": ROOT}
    registry = build_registry(config_from_env(keys, urls, env=env), upstream, env=env)
    assert "AZURE_OPENAI_API_KEY" in registry.directory.unavailable["azure"]
    env = {"AZURE_OPENAI_API_KEY": "k-env"}
    assert {} == config_from_env(keys, urls, env=env).providers


async def test_empty_entra_secret_makes_azure_unavailable(upstream: Upstream) -> None:
    """Client credentials whose variable is unset leave the provider unavailable, saying which."""
    credentials = {"tenant_id": "t", "client_id": "c", "client_secret": ""}
    config = build_config(
        {"providers": {"azure": {"base_url": ROOT, "credentials": credentials}}}, source="t"
    )
    registry = build_registry(config, upstream, env={})
    assert "client_secret" in registry.directory.unavailable["azure"]


def _events(name: str) -> list[bytes]:
    raw = (FIXTURES / name).read_bytes()
    return [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e and e != b"data: [DONE]"]


@pytest.mark.parametrize("fixture", ["stream_async_filter", "stream_async_filter_blocked"])
def test_annotations_get_an_empty_delta(fixture: str) -> None:
    """Each native chunk becomes the expected one: annotations gain "delta":{}, others as is."""
    native, expected = _events(f"{fixture}.sse"), _events(f"{fixture}.out.sse")
    assert expected == [_with_delta(e) for e in native]


def test_prompt_annotation_is_recognised() -> None:
    """Only the choice-less prompt-filter chunk counts as the stream's opening annotation."""
    events = _events("stream_async_filter.sse")
    assert [True, False, False, False, False, False, False] == [
        _prompt_annotation(e) for e in events
    ]
    assert not _prompt_annotation(b'{"prompt_filter_results":[],"choices":[{"index":0}]}')
