"""AWS Bedrock through its Converse API (chat) and InvokeModel (Titan and Cohere embeddings).

The provider type checks the settings; the provider itself (``provider.py``, which loads
botocore) is imported only when a Bedrock provider is configured.

Settings: ``region`` (else ``AWS_REGION``/``AWS_DEFAULT_REGION``; none: the provider is
unavailable); ``base_url`` (default ``https://bedrock-runtime.{region}.amazonaws.com``);
``deployments`` (a name callers use -> a model id, inference profile or ARN); ``models`` (what
``/v1/models`` lists: Bedrock Runtime has no model list endpoint). Authentication, first match
wins: ``credentials`` (``access_key_id``/``secret_access_key``/``session_token``, or
``profile``), ``keys`` (Bedrock API keys, sent as bearer tokens), ``AWS_BEARER_TOKEN_BEDROCK``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, botocore's standard chain.
"""

from __future__ import annotations

import re

from providers._types import BuildContext, ProviderType, check_credentials
from providers.base import Provider
from proxy.config import ConfigError, ProviderConfig

__all__ = ["TYPES", "BedrockType"]

CREDENTIAL_FIELDS = ("access_key_id", "secret_access_key", "session_token", "profile")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


class BedrockType:
    """The ``bedrock`` provider type: AWS credentials or Bedrock API keys, and a region."""

    key_env: str | None = "AWS_BEARER_TOKEN_BEDROCK"
    base_url_env: str | None = None

    def check(self, name: str, settings: ProviderConfig) -> None:
        at = f"at $.providers.{name}"
        check_credentials(name, settings, CREDENTIAL_FIELDS)
        creds = settings.credentials
        keyed = [f for f in ("access_key_id", "secret_access_key", "session_token") if f in creds]
        if "profile" in creds and keyed:
            raise ConfigError(f"{at}.credentials: give a profile or access keys, not both")
        if keyed and not {"access_key_id", "secret_access_key"} <= set(keyed):
            raise ConfigError(f"{at}.credentials: access_key_id and secret_access_key go together")
        if settings.keys is not None and creds:
            raise ConfigError(f"{at}: give keys (Bedrock API keys) or credentials (AWS), not both")
        if settings.region is not None and not _REGION.fullmatch(settings.region):
            raise ConfigError(f"{at}.region: expected an AWS region such as us-east-1")

    def create(self, name: str, settings: ProviderConfig, ctx: BuildContext) -> Provider | str:
        from providers.bedrock.provider import build  # botocore loads only when used

        return build(name, settings, ctx)


TYPES: dict[str, ProviderType] = {"bedrock": BedrockType()}
