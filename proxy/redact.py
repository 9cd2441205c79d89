"""Scrubbing secrets out of text that may reach a client or a log."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[redacted]"

# Key shapes of the common providers (OpenAI sk-, Groq gsk_, xAI xai-, Perplexity pplx-,
# Anthropic sk-ant-, Fireworks fw_, Cerebras csk-, Google AIza, the gateway's own sk-thr-),
# including the masked forms providers echo in 401 messages ("Incorrect API key provided:
# sk-ab***wxyz"), and bearer tokens. A key starts a word: "task-forces" is not a key.
_KEY_SHAPES = (
    r"(?<![A-Za-z0-9])(?:sk|gsk|xai|pplx|fw|csk|nvapi)[-_][A-Za-z0-9*_\-]{6,}"
    r"|(?<![A-Za-z0-9])AIza[A-Za-z0-9_\-]{20,}"
    r"|[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/\-]+=*"
    # A token with a run of asterisks is a masked secret whatever its shape ("tok-S***8877").
    r"|[A-Za-z0-9_\-]*\*{3,}[A-Za-z0-9_\-]*"
)
# Every match of _KEY_SHAPES contains one of these; testing for them first (a C-speed substring
# search) spares the regex on the ordinary text that makes up nearly every log line.
_TRIGGERS = (
    "sk-",
    "sk_",
    "gsk_",
    "xai-",
    "xai_",
    "pplx",
    "fw_",
    "fw-",
    "csk",
    "nvapi",
    "AIza",
    "earer",
    "EARER",
    "***",
)


_CLEAN_CACHE = 4096


class Redactor:
    """Replaces known secret values and anything shaped like an API key with ``[redacted]``."""

    __slots__ = ("_clean", "_pattern", "_triggers")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        exact = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        parts = [re.escape(s) for s in exact] + [_KEY_SHAPES]
        self._pattern = re.compile("|".join(parts))
        self._triggers = (*exact, *_TRIGGERS)
        # Short texts seen clean before (model names, paths: the same few on every log line).
        self._clean: set[str] = set()

    def found_in(self, text: str) -> bool:
        """Whether ``text`` holds anything to redact."""
        if text in self._clean:
            return False
        for trigger in self._triggers:
            if trigger in text:
                return self._pattern.search(text) is not None
        if len(text) <= 256 and len(self._clean) < _CLEAN_CACHE:
            self._clean.add(text)
        return False

    def __call__(self, text: str) -> str:
        if not self.found_in(text):
            return text
        return self._pattern.sub(REDACTED, text)
