"""Loading the configuration: env substitution, the documented shapes, and errors that say where."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers._upstream import Upstream
from providers.registry import (
    build_registry,
    check_providers,
    local_base_url_variables,
    standard_key_variables,
)
from proxy.config import (
    AuthConfig,
    ConfigError,
    GatewayConfig,
    KeyConfig,
    ProviderConfig,
    ServerConfig,
    build_config,
    config_from_env,
    load_config,
)
from tests.fakes.openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str, name: str = "thruway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _master_key(tmp_path: Path, value: str, env: Mapping[str, str]) -> str:
    path = _write(tmp_path, f'auth:\n  master_key: "{value}"\n')
    return load_config(path, env=env).auth.master_key


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        check_providers(load_config(path, env={}))
    return str(info.value)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with aiohttp.ClientSession() as session:
        yield Upstream(session)


# -- ${VAR} substitution ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${MK}", {"MK": "from-env"}, "from-env"),
        ("${MK}", {}, ""),
        ("${MK}", {"MK": ""}, ""),
        ("${MK:-fallback}", {"MK": "from-env"}, "from-env"),
        ("${MK:-fallback}", {}, "fallback"),
        ("${MK:-fallback}", {"MK": ""}, "fallback"),
        ("${MK:-}", {}, ""),
        ("pre-${A}-${B:-b}-post", {"A": "a"}, "pre-a-b-post"),
        ("no variables $MK {MK}", {"MK": "x"}, "no variables $MK {MK}"),
    ],
)
def test_env_substitution(tmp_path: Path, value: str, env: dict[str, str], expected: str) -> None:
    """`${VAR}` is the variable or empty; `${VAR:-d}` is `d` when the variable is unset or empty."""
    assert expected == _master_key(tmp_path, value, env)


def test_substituted_strings_convert_to_numbers(tmp_path: Path) -> None:
    """A number field may be given by a variable, with or without a default."""
    path = _write(
        tmp_path,
        'server:\n  port: "${PORT:-9001}"\n  drain_timeout_s: "${DRAIN}"\n',
    )
    server = load_config(path, env={"DRAIN": "2.5"}).server
    assert (9001, 2.5) == (server.port, server.drain_timeout_s)


def test_substitution_reaches_nested_lists(tmp_path: Path) -> None:
    """Strings inside lists of mappings (a provider's keys) are substituted too."""
    path = _write(
        tmp_path,
        'providers:\n  openai:\n    keys:\n      - {value: "${K1}"}\n'
        '      - {value: "${K2:-k2}"}\n',
    )
    keys = load_config(path, env={"K1": "sk-one"}).providers["openai"].keys
    assert (KeyConfig(value="sk-one"), KeyConfig(value="k2")) == keys


# -- the documented shapes --------------------------------------------------------------------


def test_example_config_loads_with_an_empty_environment() -> None:
    """`config.example.yaml` loads with no variables set; its providers pass the type check."""
    config = load_config(REPO / "config.example.yaml", env={})
    check_providers(config)
    assert ServerConfig(host="127.0.0.1", port=8080) == config.server
    assert AuthConfig(master_key="") == config.auth
    assert ["openai", "groq", "local-llm"] == list(config.providers)
    assert (KeyConfig(value=""),) == config.providers["openai"].keys
    assert "http://127.0.0.1:11434/v1" == config.providers["local-llm"].base_url
    assert () == config.providers["local-llm"].keys


def test_issue_config_shape(tmp_path: Path) -> None:
    """Server, auth, weighted keys with model patterns, base URL, timeout and a custom provider."""
    path = _write(
        tmp_path,
        """
server:
  host: 0.0.0.0
  port: 9000
auth:
  master_key: "${THRUWAY_MASTER_KEY}"
providers:
  openai:
    keys:
      - {value: "${OPENAI_KEY_A}", weight: 3, models: ["gpt-4o*"]}
      - {value: "${OPENAI_KEY_B}", weight: 1}
    base_url: https://openai.example.com/v1
    timeout_s: 30
  local-llm:
    type: openai
    base_url: "${LOCAL_LLM_BASE_URL:-http://127.0.0.1:11434/v1}"
    keys: []
""",
    )
    env = {"THRUWAY_MASTER_KEY": "mk-1", "OPENAI_KEY_A": "sk-a", "OPENAI_KEY_B": "sk-b"}
    config = load_config(path, env=env)
    check_providers(config)
    assert ServerConfig(host="0.0.0.0", port=9000) == config.server
    assert "mk-1" == config.auth.master_key
    expected_openai = ProviderConfig(
        keys=(
            KeyConfig(value="sk-a", weight=3.0, models=("gpt-4o*",)),
            KeyConfig(value="sk-b", weight=1.0, models=("*",)),
        ),
        base_url="https://openai.example.com/v1",
        timeout_s=30.0,
    )
    assert expected_openai == config.providers["openai"]
    expected_local = ProviderConfig(type="openai", base_url="http://127.0.0.1:11434/v1", keys=())
    assert expected_local == config.providers["local-llm"]
    assert str(path) == config.source


def test_json_config_by_extension(tmp_path: Path) -> None:
    """A `.json` file is read as JSON, with the same substitution."""
    path = _write(
        tmp_path,
        '{"server": {"port": 9002}, "auth": {"master_key": "${MK:-json-key}"}}',
        name="thruway.json",
    )
    config = load_config(path, env={})
    assert (9002, "json-key") == (config.server.port, config.auth.master_key)


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    """An empty YAML file gives the default configuration."""
    path = _write(tmp_path, "")
    assert GatewayConfig(source=str(path)) == load_config(path, env={})


# -- mistakes ---------------------------------------------------------------------------------


def test_unknown_key(tmp_path: Path) -> None:
    """An unknown key names the file, the mapping it is in, and the key."""
    path = _write(tmp_path, "server:\n  prot: 8080\n")
    message = _error(path)
    assert message.startswith(f"{path}: at $.server: ")
    assert "unknown field `prot`" in message


def test_wrong_type(tmp_path: Path) -> None:
    """A value of the wrong type names the file, the key path and the expected type."""
    path = _write(tmp_path, 'server:\n  port: "abc"\n')
    assert f"{path}: at $.server.port: Expected `int`, got `str`" == _error(path)


def test_wrong_type_inside_a_provider(tmp_path: Path) -> None:
    """A wrong type inside a provider names the provider and the key's index."""
    path = _write(
        tmp_path, "providers:\n  openai:\n    keys: [{value: a}, {value: b, weight: x}]\n"
    )
    assert f"{path}: at $.providers.openai.keys[1].weight: Expected `float`, got `str`" == (
        _error(path)
    )


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("{bogus: 1}", "at $.providers.groq: Object contains unknown field `bogus`"),
        ("5", "at $.providers.groq: Expected `object`, got `int`"),
    ],
)
def test_mistake_at_a_providers_top_level(tmp_path: Path, provider: str, expected: str) -> None:
    """A mistake in a provider's own mapping names the provider too."""
    path = _write(tmp_path, f"providers:\n  groq: {provider}\n")
    assert f"{path}: {expected}" == _error(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    """Invalid YAML names the file, the line and the column."""
    path = _write(tmp_path, "server:\n  port: 8080\n  host: [127.0.0.1\n")
    message = _error(path)
    assert message.startswith(f"{path}: not valid YAML (line 4, column 1): ")


def test_invalid_json(tmp_path: Path) -> None:
    """Invalid JSON names the file."""
    path = _write(tmp_path, '{"server": ', name="thruway.json")
    assert _error(path).startswith(f"{path}: not valid JSON: ")


def test_missing_file(tmp_path: Path) -> None:
    """A file that cannot be read names the file."""
    path = tmp_path / "absent.yaml"
    assert _error(path).startswith(f"{path}: cannot read the config file: ")


def test_non_mapping_document(tmp_path: Path) -> None:
    """A document that is not a mapping is refused at `$`."""
    path = _write(tmp_path, "- server\n- providers\n")
    assert f"{path}: at $: expected a mapping at the top level" == _error(path)


def test_unknown_provider_type(tmp_path: Path) -> None:
    """An unknown `type:` names the provider, the type and the known types."""
    path = _write(tmp_path, "providers:\n  mine:\n    type: nosuch\n    base_url: http://x\n")
    message = _error(path)
    assert message.startswith(f"{path}: at $.providers.mine: unknown provider type `nosuch`; ")
    assert "groq" in message
    assert "openai" in message


def test_unknown_provider_name_without_type(tmp_path: Path) -> None:
    """A custom name without `type:` says to set `type:`."""
    path = _write(tmp_path, "providers:\n  mine:\n    base_url: http://x\n")
    message = _error(path)
    assert message.startswith(f"{path}: at $.providers.mine: unknown provider name `mine`; ")
    assert "set `type:`" in message


def test_bad_base_url(tmp_path: Path) -> None:
    """A base URL that is not http(s) names the provider's `base_url`."""
    path = _write(tmp_path, "providers:\n  mine:\n    type: openai\n    base_url: localhost:8000\n")
    assert f"{path}: at $.providers.mine.base_url: expected an http:// or https:// URL" == (
        _error(path)
    )


@pytest.mark.parametrize("weight", ["0", "-1"])
def test_non_positive_key_weight(tmp_path: Path, weight: str) -> None:
    """A key weight of zero or less names the key by index."""
    path = _write(tmp_path, f"providers:\n  openai:\n    keys: [{{value: a, weight: {weight}}}]\n")
    assert f"{path}: at $.providers.openai.keys[0].weight: expected a positive number" == (
        _error(path)
    )


def test_port_out_of_range(tmp_path: Path) -> None:
    """A port above 65535 names `server.port`."""
    path = _write(tmp_path, "server:\n  port: 70000\n")
    assert f"{path}: at $.server.port: expected a port from 0 to 65535" == _error(path)


# -- no file: providers from the environment --------------------------------------------------


def test_config_from_env_enables_the_set_providers() -> None:
    """Exactly the providers whose key or base-URL variable is set, and the master key."""
    env = {
        "GROQ_API_KEY": "gsk_from_env",
        "OLLAMA_BASE_URL": "http://127.0.0.1:11500/v1",
        "OPENAI_API_KEY": "",
        "THRUWAY_MASTER_KEY": "mk-env",
    }
    config = config_from_env(standard_key_variables(), local_base_url_variables(), env=env)
    check_providers(config)
    assert {
        "groq": ProviderConfig(keys=(KeyConfig(value="gsk_from_env"),)),
        "ollama": ProviderConfig(base_url="http://127.0.0.1:11500/v1"),
    } == config.providers
    assert "mk-env" == config.auth.master_key
    assert "<environment>" == config.source


def test_config_from_an_empty_environment() -> None:
    """With no variables set there are no providers and no master key."""
    config = config_from_env(standard_key_variables(), local_base_url_variables(), env={})
    assert ({}, "") == (config.providers, config.auth.master_key)


def test_standard_variables() -> None:
    """The standard variables are the providers' usual names."""
    keys, urls = standard_key_variables(), local_base_url_variables()
    assert ("OPENAI_API_KEY", "GROQ_API_KEY") == (keys["openai"], keys["groq"])
    assert "OLLAMA_BASE_URL" == urls["ollama"]
    assert "ollama" not in keys


# -- the registry built from a configuration --------------------------------------------------


async def test_unset_key_variable_makes_a_provider_unavailable(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A provider with all keys empty, or none, is unavailable with a reason naming the variable."""
    path = _write(
        tmp_path,
        'providers:\n  openai:\n    keys: [{value: "${OPENAI_API_KEY}"}]\n  groq: {}\n',
    )
    registry = build_registry(load_config(path, env={}), upstream, env={})
    assert frozenset() == registry.directory.available
    assert {
        "openai": "its API keys are empty (is OPENAI_API_KEY set?)",
        "groq": "it has no API key (set GROQ_API_KEY or add providers.groq.keys)",
    } == registry.directory.unavailable


async def test_example_config_registry_with_an_empty_environment(upstream: Upstream) -> None:
    """With no variables, the example's keyless local provider is the only available one."""
    config = load_config(REPO / "config.example.yaml", env={})
    registry = build_registry(config, upstream, env={})
    assert frozenset({"local-llm"}) == registry.directory.available
    assert ["groq", "openai"] == sorted(registry.directory.unavailable)


async def test_empty_keys_list_is_keyless(tmp_path: Path, upstream: Upstream) -> None:
    """`keys: []` is available and sends no Authorization header."""
    async with FakeOpenAI(api_key=None) as fake:
        path = _write(
            tmp_path,
            f"providers:\n  local-llm:\n    type: openai\n    base_url: {fake.base_url}\n"
            "    keys: []\n",
        )
        registry = build_registry(load_config(path, env={}), upstream, env={})
        assert frozenset({"local-llm"}) == registry.directory.available
        models = await registry["local-llm"].list_models()
        await registry.aclose()
    assert "gpt-4o-mini" in [m.id for m in models]
    assert "authorization" not in fake.requests[0].headers


async def test_key_from_the_standard_variable(tmp_path: Path, upstream: Upstream) -> None:
    """A known provider with no `keys` takes its key from its standard variable."""
    async with FakeOpenAI(api_key="gsk_from_the_env_123") as fake:
        path = _write(tmp_path, f"providers:\n  groq:\n    base_url: {fake.base_url}\n")
        env = {"GROQ_API_KEY": "gsk_from_the_env_123"}
        registry = build_registry(load_config(path, env={}), upstream, env=env)
        assert ({}, frozenset({"groq"})) == (
            registry.directory.unavailable,
            registry.directory.available,
        )
        await registry["groq"].list_models()
        await registry.aclose()
    assert "Bearer gsk_from_the_env_123" == fake.requests[0].headers["authorization"]


async def test_configured_keys_win_over_the_standard_variable(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Keys given in the file are used even when the standard variable is set."""
    async with FakeOpenAI(api_key="gsk_from_the_file") as fake:
        path = _write(
            tmp_path,
            f"providers:\n  groq:\n    base_url: {fake.base_url}\n"
            "    keys: [{value: gsk_from_the_file}]\n",
        )
        env = {"GROQ_API_KEY": "gsk_from_the_env"}
        registry = build_registry(load_config(path, env={}), upstream, env=env)
        await registry["groq"].list_models()
        await registry.aclose()
    assert "Bearer gsk_from_the_file" == fake.requests[0].headers["authorization"]


async def test_build_registry_refuses_an_unknown_type(tmp_path: Path, upstream: Upstream) -> None:
    """`build_registry` runs the provider check itself."""
    path = _write(tmp_path, "providers:\n  mine:\n    type: nosuch\n    base_url: http://x\n")
    with pytest.raises(ConfigError, match=r"at \$\.providers\.mine: unknown provider type"):
        build_registry(load_config(path, env={}), upstream, env={})


def test_credential_secrets_reach_the_log_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credential fields that are secrets, an inline key's private key, and the extra secret
    variables are all handed to the redactor; identifiers are not."""
    from proxy.__main__ import _secrets

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value-1234")
    config = build_config(
        {
            "providers": {
                "az": {
                    "type": "openai",
                    "base_url": "http://127.0.0.1:1/v1",
                    "keys": [{"value": "sk-key-1234567"}],
                    "credentials": {"client_id": "client-abc", "client_secret": "shh-secret-99"},
                },
                "vx": {
                    "type": "openai",
                    "base_url": "http://127.0.0.1:1/v1",
                    "keys": [{"value": "sk-key-7654321"}],
                    "credentials": {
                        "service_account_json": '{"private_key": "-----BEGIN KEY-----x"}'
                    },
                },
            }
        },
        source="<test>",
    )
    got = _secrets(config)
    assert "shh-secret-99" in got
    assert "-----BEGIN KEY-----x" in got
    assert "aws-secret-value-1234" in got
    assert "client-abc" not in got


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"targets": []}, "at $.routes.smart.targets: a route needs at least one target"),
        ({"targets": [{"model": "gpt-4o"}]}, "targets[0].model: expected `provider/model`"),
        (
            {"targets": [{"model": "nope/gpt-4o"}]},
            "targets[0].model: unknown provider `nope` (configured: openai)",
        ),
        (
            {"targets": [{"model": "openai/gpt-4o"}], "fallbacks": ["x/y"]},
            "fallbacks[0]: unknown provider `x`",
        ),
        (
            {"targets": [{"model": "openai/gpt-4o"}], "hedge": "p95", "hedge_after_ms": 100},
            "set `hedge_after_ms` or `hedge`, not both",
        ),
        (
            {"targets": [{"model": "openai/gpt-4o"}], "strategy": "fastest"},
            "$.routes.smart.strategy",
        ),
    ],
)
def test_routes_are_checked(route: dict[str, Any], message: str) -> None:
    document = {"providers": {"openai": {"keys": [{"value": "k"}]}}, "routes": {"smart": route}}
    with pytest.raises(ConfigError) as caught:
        build_config(document, source="<test>")
    assert message in str(caught.value)


def test_a_route_parses() -> None:
    document = {
        "providers": {"openai": {"keys": [{"value": "k"}]}, "groq": {"keys": [{"value": "g"}]}},
        "routes": {
            "smart": {
                "targets": [{"model": "openai/gpt-4o", "weight": 3}, {"model": "groq/llama"}],
                "strategy": "least-latency",
                "fallbacks": ["groq/mixtral"],
                "hedge_after_ms": 250,
            }
        },
    }
    route = build_config(document, source="<test>").routes["smart"]
    assert [t.weight for t in route.targets] == [3, 1]
    assert (route.strategy, route.hedge_after_ms) == ("least-latency", 250)
