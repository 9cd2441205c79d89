"""OpenAI itself: the reference the unified schema follows, so no translation at all."""

from __future__ import annotations

from providers._openai_compat import CompatSpec, compat_type
from providers._types import ProviderType

__all__ = ["SPEC", "TYPES"]

SPEC = CompatSpec(base_url="https://api.openai.com/v1", key_env="OPENAI_API_KEY")

TYPES: dict[str, ProviderType] = {"openai": compat_type(SPEC)}
