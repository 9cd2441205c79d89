"""The one place that names providers, and the registry built from the configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping

from aiohttp import web

from providers import anthropic, azure, bedrock, cohere, compat, gemini, openai, vertex
from providers._types import BuildContext, ProviderType
from providers._upstream import Upstream
from providers.base import Provider
from proxy.config import ConfigError, GatewayConfig
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

# Provider type -> how to check and build it. A configured provider's ``type`` defaults to its
# own name.
PROVIDER_TYPES: Mapping[str, ProviderType] = {
    **openai.TYPES,
    **compat.TYPES,
    **gemini.TYPES,
    **cohere.TYPES,
    **anthropic.TYPES,
    **azure.TYPES,
    **bedrock.TYPES,
    **vertex.TYPES,
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
    return {name: t.key_env for name, t in PROVIDER_TYPES.items() if t.key_env}


def local_base_url_variables() -> dict[str, str]:
    """Keyless local servers' base-URL variables (``{"ollama": "OLLAMA_BASE_URL", ...}``)."""
    return {name: t.base_url_env for name, t in PROVIDER_TYPES.items() if t.base_url_env}


def check_providers(config: GatewayConfig) -> None:
    """Raise :class:`ConfigError` for a provider of unknown type or with unusable settings."""
    for name, settings in config.providers.items():
        type_ = settings.type or name
        kind = PROVIDER_TYPES.get(type_)
        if kind is None:
            known = ", ".join(sorted(PROVIDER_TYPES))
            field = "type" if settings.type else "name"
            raise ConfigError(
                f"{config.source}: at $.providers.{name}: unknown provider {field} `{type_}`; "
                f"set `type:` to one of: {known}"
            )
        try:
            kind.check(name, settings)
        except ConfigError as exc:
            raise ConfigError(f"{config.source}: {exc}") from None


def build_registry(
    config: GatewayConfig, upstream: Upstream, env: Mapping[str, str] | None = None
) -> Registry:
    """Instantiate every configured provider; raise :class:`ConfigError` for an unknown type."""
    check_providers(config)
    ctx = BuildContext(upstream, os.environ if env is None else env)
    providers: dict[str, Provider] = {}
    unavailable: dict[str, str] = {}
    for name, settings in config.providers.items():
        built = PROVIDER_TYPES[settings.type or name].create(name, settings, ctx)
        if isinstance(built, str):
            unavailable[name] = built
        else:
            providers[name] = built
    return Registry(providers, Directory(frozenset(providers), unavailable))
