"""The one place that names providers, and the registry built from the configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping

from aiohttp import web

from providers import compat, openai
from providers._keys import KeyRing
from providers._openai_compat import CompatSpec, OpenAICompatProvider
from providers._upstream import Upstream, proxy_for
from providers.base import Provider
from proxy.config import ConfigError, GatewayConfig, KeyConfig, ProviderConfig
from proxy.keys import Directory

__all__ = [
    "PROVIDERS",
    "PROVIDER_TYPES",
    "Registry",
    "build_registry",
    "check_providers",
    "local_base_url_variables",
    "standard_key_variables",
]

# Provider type -> its wire format. A configured provider's ``type`` defaults to its own name.
PROVIDER_TYPES: Mapping[str, CompatSpec] = {
    "openai": openai.SPEC,
    **compat.SPECS,
}


class Registry:
    """The providers that can serve requests, by the name callers use as the model prefix."""

    __slots__ = ("directory", "providers")

    def __init__(self, providers: dict[str, Provider], directory: Directory) -> None:
        self.providers = providers
        self.directory = directory

    def __getitem__(self, name: str) -> Provider:
        return self.providers[name]

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


PROVIDERS = web.AppKey("providers", Registry)


def standard_key_variables() -> dict[str, str]:
    """Each known provider's standard API-key variable (``{"groq": "GROQ_API_KEY", ...}``)."""
    return {name: spec.key_env for name, spec in PROVIDER_TYPES.items() if spec.key_env}


def local_base_url_variables() -> dict[str, str]:
    """Keyless local servers' base-URL variables (``{"ollama": "OLLAMA_BASE_URL", ...}``)."""
    return {name: spec.base_url_env for name, spec in PROVIDER_TYPES.items() if spec.base_url_env}


def check_providers(config: GatewayConfig) -> None:
    """Raise :class:`ConfigError` for a provider of unknown type or without a base URL."""
    for name, settings in config.providers.items():
        type_ = settings.type or name
        spec = PROVIDER_TYPES.get(type_)
        if spec is None:
            known = ", ".join(sorted(PROVIDER_TYPES))
            field = "type" if settings.type else "name"
            raise ConfigError(
                f"{config.source}: at $.providers.{name}: unknown provider {field} `{type_}`; "
                f"set `type:` to one of: {known}"
            )
        if not (settings.base_url or spec.base_url):
            raise ConfigError(f"{config.source}: at $.providers.{name}.base_url: required")


def _keys_for(
    name: str, settings: ProviderConfig, spec: CompatSpec, env: Mapping[str, str]
) -> tuple[KeyConfig, ...] | str:
    """The usable keys, or why there are none."""
    if spec.auth == "none" and settings.keys is None:
        return ()
    if settings.keys is None:
        if spec.key_env and env.get(spec.key_env):
            return (KeyConfig(value=env[spec.key_env]),)
        hint = f"set {spec.key_env} or " if spec.key_env else ""
        return f"it has no API key ({hint}add providers.{name}.keys)"
    usable = tuple(k for k in settings.keys if k.value)
    if settings.keys and not usable:
        hint = f" (is {spec.key_env} set?)" if spec.key_env else ""
        return f"its API keys are empty{hint}"
    return usable


def build_registry(
    config: GatewayConfig, upstream: Upstream, env: Mapping[str, str] | None = None
) -> Registry:
    """Instantiate every configured provider; raise :class:`ConfigError` for an unknown type."""
    check_providers(config)
    env = os.environ if env is None else env
    providers: dict[str, Provider] = {}
    unavailable: dict[str, str] = {}
    for name, settings in config.providers.items():
        spec = PROVIDER_TYPES[settings.type or name]
        keys = _keys_for(name, settings, spec, env)
        if isinstance(keys, str):
            unavailable[name] = keys
            continue
        base_url = settings.base_url or spec.base_url or ""
        providers[name] = OpenAICompatProvider(
            name, spec, settings, upstream, KeyRing(keys), proxy=proxy_for(base_url, env)
        )
    return Registry(providers, Directory(frozenset(providers), unavailable))
