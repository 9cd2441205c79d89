"""What the registry knows about a kind of provider (its ``type:`` in the config).

A :class:`ProviderType` checks a provider's settings at start-up and builds the provider. Each
provider module exports ``TYPES``: its type name(s) and their :class:`ProviderType`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from providers._keys import KeyRing
from providers._upstream import Upstream, proxy_for
from providers.base import Provider
from proxy.config import ConfigError, KeyConfig, ProviderConfig

__all__ = ["BuildContext", "KeyedType", "ProviderType", "check_credentials", "resolve_keys"]


class BuildContext:
    """What building a provider may use: the shared upstream session and the environment."""

    __slots__ = ("env", "upstream")

    def __init__(self, upstream: Upstream, env: Mapping[str, str]) -> None:
        self.upstream = upstream
        self.env = env

    def proxy_for(self, url: str) -> str | None:
        return proxy_for(url, self.env)


class ProviderType(Protocol):
    # The environment variable holding the key when the config gives none (``OPENAI_API_KEY``).
    key_env: str | None
    # The variable that, set, enables the provider with no config and gives its base URL (keyless
    # local servers; Azure's resource endpoint).
    base_url_env: str | None

    def check(self, name: str, settings: ProviderConfig) -> None:
        """Raise :class:`ConfigError` (``at $.providers.<name>...: why``) for unusable settings."""

    def create(self, name: str, settings: ProviderConfig, ctx: BuildContext) -> Provider | str:
        """The provider, or why it cannot serve (no key, no credentials): it is then listed as
        unavailable rather than failing start-up."""


def resolve_keys(
    name: str,
    settings: ProviderConfig,
    *,
    key_env: str | None,
    env: Mapping[str, str],
    keyless: bool = False,
) -> tuple[KeyConfig, ...] | str:
    """The usable API keys, or why there are none. ``keyless``: no keys is fine."""
    if settings.keys is None:
        if key_env and env.get(key_env):
            return (KeyConfig(value=env[key_env]),)
        if keyless:
            return ()
        hint = f"set {key_env} or " if key_env else ""
        return f"it has no API key ({hint}add providers.{name}.keys)"
    usable = tuple(k for k in settings.keys if k.value)
    if settings.keys and not usable:
        hint = f" (is {key_env} set?)" if key_env else ""
        return f"its API keys are empty{hint}"
    return usable


def check_credentials(name: str, settings: ProviderConfig, allowed: Collection[str]) -> None:
    """Refuse ``credentials`` fields the provider type does not read (a typo would otherwise
    silently fall back to another credential source)."""
    for field in settings.credentials:
        if field not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"at $.providers.{name}.credentials.{field}: unknown field; "
                f"this provider type reads: {known}"
            )


class KeyedType:
    """A provider type authenticated by API keys (the common case).

    ``factory(name, settings, ctx, keys)`` builds the provider once keys are resolved;
    ``base_url`` is the default API root; ``credentials`` the extra fields it reads.
    """

    __slots__ = ("_factory", "base_url", "base_url_env", "credentials", "key_env", "keyless")

    def __init__(
        self,
        factory: Callable[[str, ProviderConfig, BuildContext, KeyRing], Provider],
        *,
        base_url: str | None,
        key_env: str | None = None,
        base_url_env: str | None = None,
        keyless: bool = False,
        credentials: Collection[str] = (),
    ) -> None:
        self._factory = factory
        self.base_url = base_url
        self.key_env = key_env
        self.base_url_env = base_url_env
        self.keyless = keyless
        self.credentials = frozenset(credentials)

    def check(self, name: str, settings: ProviderConfig) -> None:
        if not (settings.base_url or self.base_url):
            raise ConfigError(f"at $.providers.{name}.base_url: required")
        check_credentials(name, settings, self.credentials)

    def create(self, name: str, settings: ProviderConfig, ctx: BuildContext) -> Provider | str:
        keys = resolve_keys(name, settings, key_env=self.key_env, env=ctx.env, keyless=self.keyless)
        if isinstance(keys, str):
            return keys
        return self._factory(name, settings, ctx, KeyRing(keys))
