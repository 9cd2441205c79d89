"""Types shared by several endpoints: token usage and the gateway's ``extra_fields``."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "BilledUsage",
    "CompletionTokensDetails",
    "ExtraFields",
    "PromptTokensDetails",
    "Usage",
]


class PromptTokensDetails(msgspec.Struct, omit_defaults=True):
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct, omit_defaults=True):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(msgspec.Struct, omit_defaults=True):
    """OpenAI's usage object (chat, completions and embeddings share it)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class BilledUsage(msgspec.Struct):
    """What the upstream billed, flattened; the gateway's own accounting uses it too."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    audio_seconds: float = 0.0

    @classmethod
    def from_usage(cls, usage: Usage) -> BilledUsage:
        p = usage.prompt_tokens_details
        c = usage.completion_tokens_details
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
            cached_tokens=(p.cached_tokens or 0) if p else 0,
            reasoning_tokens=(c.reasoning_tokens or 0) if c else 0,
        )


class ExtraFields(msgspec.Struct):
    """What the gateway adds to every JSON response as ``extra_fields``.

    ``model_params`` holds the request's parameters without its content (messages, input, tools);
    ``raw_response`` is present only when the client asked for it.
    """

    provider: str
    request_type: str
    model_requested: str
    model_params: msgspec.Raw
    latency: float
    billed_usage: BilledUsage | None
    fallback_index: int
    # Attempts made for this request, retries and fallbacks included (1: the first worked).
    attempts: int = 1
    # USD, from the gateway's price table; absent when the model has no known price.
    cost_usd: float | UnsetType = UNSET
    raw_response: msgspec.Raw | UnsetType = UNSET
