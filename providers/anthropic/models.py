"""What differs between Claude model generations, read from the model id.

Anthropic requires ``max_tokens`` and has changed how thinking and JSON output are asked for
over time, so a few choices depend on the model's version (``claude-3-5-haiku-20241022`` is
3.5, ``claude-sonnet-4-20250514`` 4.0, ``claude-opus-4-6`` 4.6). An id with no version (an alias
of the caller's own) is treated as the oldest behaviour where that is the safe side, as noted.

``max_tokens`` when the caller sets none:

- Claude 3 (3.0): 4,096 and Claude 3.5: 8,192, each family's whole output limit;
- Claude 3.7 and later: 32,000, within every one of those models' output limits (Opus 4 and
  4.1, the smallest, allow 32,000), so a default never causes a 400;
- no version in the id: 4,096, which every Claude model accepts.

``reasoning_effort`` (``none`` asks for no thinking):

- Claude 4.6 and later take adaptive thinking (Opus 4.7 and later refuse ``budget_tokens``):
  ``thinking: {type: adaptive, display: summarized}`` (so the thinking text comes back, which
  Opus 4.7 otherwise omits) and ``output_config.effort``: minimal and low -> ``low``, medium ->
  ``medium``, high -> ``high``, xhigh -> ``xhigh``;
- older models (and ids with no version) take a budget: minimal 1,024 (Anthropic's minimum),
  low 2,048, medium 8,192, high 16,384, xhigh 24,576 tokens. ``max_tokens`` must exceed it: a
  default ``max_tokens`` is raised to budget + 4,096 where needed; a caller's smaller
  ``max_tokens`` (which in OpenAI's terms includes reasoning) shrinks the budget to half of it,
  never below 1,024.

``response_format`` ``json_schema`` uses structured outputs (``output_config.format``) on
Claude 4.5 and later and on ids with no version; older models get a forced tool instead.
"""

from __future__ import annotations

import re

__all__ = [
    "ADAPTIVE_EFFORT",
    "BUDGETS",
    "MIN_BUDGET",
    "claude_version",
    "default_max_tokens",
    "has_structured_outputs",
    "takes_adaptive_thinking",
]

Version = tuple[int, int]

MIN_BUDGET = 1024
BUDGETS = {"minimal": MIN_BUDGET, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576}
ADAPTIVE_EFFORT = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
}
_SEPARATORS = re.compile(r"[-@.:_/]")


def claude_version(model: str) -> Version | None:
    """(major, minor) from a Claude model id; ``None`` when it names no version.

    The major version is the first number of one or two digits; the minor the single digit
    right after it (a date such as ``20250514`` is not one).
    """
    parts = _SEPARATORS.split(model.lower())
    for i, part in enumerate(parts):
        if part.isdigit() and len(part) <= 2:
            following = parts[i + 1] if i + 1 < len(parts) else ""
            minor = int(following) if following.isdigit() and len(following) == 1 else 0
            return int(part), minor
    return None


def default_max_tokens(version: Version | None) -> int:
    if version is None or version < (3, 5):
        return 4096
    if version < (3, 7):
        return 8192
    return 32000


def takes_adaptive_thinking(version: Version | None) -> bool:
    return version is not None and version >= (4, 6)


def has_structured_outputs(version: Version | None) -> bool:
    return version is None or version >= (4, 5)
