"""Scrubbing secrets out of text that may reach a client or a log."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[redacted]"

# Key shapes of the common providers (OpenAI sk-, Groq gsk_, xAI xai-, Perplexity pplx-,
# Anthropic sk-ant-, Fireworks fw_, Cerebras csk-, Google AIza, the gateway's own sk-thr-),
# including the masked forms providers echo in 401 messages ("Incorrect API key provided:
# sk-ab***wxyz").
_KEY_SHAPES = (
    r"(?:sk|gsk|xai|pplx|fw|csk|nvapi|sk-or)[-_][A-Za-z0-9*_\-]{6,}"
    r"|AIza[A-Za-z0-9_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]+=*"
)


class Redactor:
    """Replaces known secret values and anything shaped like an API key with ``[redacted]``."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        exact = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        parts = [re.escape(s) for s in exact] + [_KEY_SHAPES]
        self._pattern = re.compile("|".join(parts))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)
