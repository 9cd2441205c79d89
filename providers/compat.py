"""Hosted and local OpenAI-compatible services: each is a spec over ``_openai_compat``.

Each entry records the service's API root, its key variable, the endpoints it serves, and how its
request format differs from OpenAI's. Differences are handled three ways: a field the upstream
refuses but that does not change the answer (``store``, ``metadata`` on a service that 422s on
unknown fields) is dropped; a field that needs another name is renamed; a field the upstream
documents as refused and that would change the answer (``n``, ``logprobs``) is refused here with a
400 naming it. Anything not documented is forwarded, and the upstream's own error comes back.
"""

from __future__ import annotations

from providers._openai_compat import ALL_OPERATIONS, CompatSpec, ParamRule, compat_type
from providers._types import ProviderType

__all__ = ["SPECS", "TYPES"]

_CHAT = frozenset({"chat_completion"})
_LOCAL = frozenset({"chat_completion", "text_completion", "embedding"})
# OpenAI-only request fields that carry no instruction for the model.
_OPENAI_ONLY = frozenset(
    {"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"}
)
# Services that know only the older name of the output limit.
_MAX_TOKENS = (("max_completion_tokens", "max_tokens"),)


def _off(param: str, why: str) -> ParamRule:
    return ParamRule(param, why, frozenset({b"null", b"false"}))


SPECS: dict[str, CompatSpec] = {
    # console.groq.com/docs/openai: logprobs, logit_bias, top_logprobs and n != 1 "will result in
    # a 400 error". Usage also arrives in ``x_groq.usage``; ``stream_options`` is accepted.
    "groq": CompatSpec(
        base_url="https://api.groq.com/openai/v1",
        key_env="GROQ_API_KEY",
        operations=frozenset({"chat_completion", "speech", "transcription"}),
        drop_params=_OPENAI_ONLY,
        rejected=(
            _off("logprobs", "Groq does not return log probabilities."),
            ParamRule("top_logprobs", "Groq does not return log probabilities."),
            ParamRule("logit_bias", "Groq does not support logit_bias."),
            ParamRule("n", "Groq supports only n=1.", frozenset({b"null", b"1"})),
        ),
    ),
    "deepseek": CompatSpec(
        base_url="https://api.deepseek.com/v1",
        key_env="DEEPSEEK_API_KEY",
        operations=_CHAT,
        drop_params=_OPENAI_ONLY,
        renames=_MAX_TOKENS,
    ),
    # xAI marks ``max_tokens`` deprecated and reports usage on the finish chunk.
    "xai": CompatSpec(
        base_url="https://api.x.ai/v1",
        key_env="XAI_API_KEY",
        operations=frozenset({"chat_completion", "text_completion", "embedding"}),
        drop_params=_OPENAI_ONLY - {"store"},
    ),
    # Mistral answers 422 "extra_forbidden" ("Extra inputs are not permitted") for any field it
    # does not know, ``stream_options`` and ``max_completion_tokens`` included; its streams carry
    # usage on the last chunk unasked, and it calls the seed ``random_seed``.
    "mistral": CompatSpec(
        base_url="https://api.mistral.ai/v1",
        key_env="MISTRAL_API_KEY",
        operations=frozenset({"chat_completion", "embedding"}),
        drop_params=_OPENAI_ONLY | {"user", "stream_options", "verbosity"},
        renames=(*_MAX_TOKENS, ("seed", "random_seed")),
        stream_options=False,
    ),
    "together": CompatSpec(
        base_url="https://api.together.xyz/v1",
        key_env="TOGETHER_API_KEY",
        operations=frozenset(
            {"chat_completion", "text_completion", "embedding", "speech", "transcription"}
        ),
        drop_params=_OPENAI_ONLY,
        renames=_MAX_TOKENS,
    ),
    "fireworks": CompatSpec(
        base_url="https://api.fireworks.ai/inference/v1",
        key_env="FIREWORKS_API_KEY",
        operations=_LOCAL,
        drop_params=_OPENAI_ONLY,
        renames=_MAX_TOKENS,
    ),
    # OpenRouter ignores unknown fields and always includes usage.
    "openrouter": CompatSpec(
        base_url="https://openrouter.ai/api/v1",
        key_env="OPENROUTER_API_KEY",
        operations=frozenset({"chat_completion", "text_completion", "embedding"}),
        renames=_MAX_TOKENS,
    ),
    "cerebras": CompatSpec(
        base_url="https://api.cerebras.ai/v1",
        key_env="CEREBRAS_API_KEY",
        operations=frozenset({"chat_completion", "text_completion"}),
        drop_params=_OPENAI_ONLY,
    ),
    # Perplexity's API has no /v1 prefix, no ``stream_options`` (usage comes in the chunks) and
    # only ``max_tokens``.
    "perplexity": CompatSpec(
        base_url="https://api.perplexity.ai",
        key_env="PERPLEXITY_API_KEY",
        operations=_CHAT,
        drop_params=_OPENAI_ONLY | {"stream_options", "user"},
        renames=_MAX_TOKENS,
        stream_options=False,
        has_model_list=False,
    ),
    # Ollama ignores ``max_completion_tokens`` silently, so the limit would be lost.
    "ollama": CompatSpec(
        base_url="http://127.0.0.1:11434/v1",
        base_url_env="OLLAMA_BASE_URL",
        auth="none",
        operations=_LOCAL,
        renames=_MAX_TOKENS,
    ),
    "vllm": CompatSpec(
        base_url="http://127.0.0.1:8000/v1",
        base_url_env="VLLM_BASE_URL",
        auth="none",
        operations=_LOCAL | {"transcription"},
    ),
    "lmstudio": CompatSpec(
        base_url="http://127.0.0.1:1234/v1",
        base_url_env="LMSTUDIO_BASE_URL",
        auth="none",
        operations=_LOCAL,
        renames=_MAX_TOKENS,
    ),
    "sglang": CompatSpec(
        base_url="http://127.0.0.1:30000/v1",
        base_url_env="SGLANG_BASE_URL",
        auth="none",
        operations=_LOCAL,
    ),
}

assert all(spec.operations <= ALL_OPERATIONS for spec in SPECS.values())

TYPES: dict[str, ProviderType] = {name: compat_type(spec) for name, spec in SPECS.items()}
