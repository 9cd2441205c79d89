"""OpenAI itself: the reference the unified schema follows, so no translation at all; it also
serves the Responses API natively (``_openai_responses``)."""

from __future__ import annotations

from providers._forward import PASSTHROUGH
from providers._openai_compat import ALL_OPERATIONS, CompatSpec, compat_type
from providers._openai_responses import ResponsesProvider
from providers._types import ProviderType

__all__ = ["SPEC", "TYPES"]

SPEC = CompatSpec(
    base_url="https://api.openai.com/v1",
    key_env="OPENAI_API_KEY",
    operations=ALL_OPERATIONS | {"responses", PASSTHROUGH},
)

TYPES: dict[str, ProviderType] = {"openai": compat_type(SPEC, ResponsesProvider)}
