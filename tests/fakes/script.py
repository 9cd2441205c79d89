"""A provider-neutral script of what a fake model answers, rendered by each provider's fake in
its own wire format, so one conformance scenario list runs against every provider."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ToolCallSpec", "Turn", "prompt_tokens", "split"]


@dataclass
class ToolCallSpec:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class Turn:
    """One answer. With ``error`` set, the provider's native error for that kind instead:

    - ``rate_limit``: the provider's rate-limit answer (429, Bedrock ThrottlingException, Gemini
      RESOURCE_EXHAUSTED), with its retry-after header where the provider sends one;
    - ``overloaded``: the provider's overload answer (Anthropic 529, 503 elsewhere);
    - ``server``: a 500 internal error;
    - ``auth``: an invalid-key answer (401/403);
    - ``invalid``: a 400 for a bad request, with a message naming ``error_param``.

    Streams split ``text`` into ``pieces`` deltas and each tool call's arguments into
    ``arg_pieces``; ``cut_after`` drops the connection after that many writes (events).
    """

    text: str = "Hello from the fake!"
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    reasoning: str | None = None
    reasoning_signature: str = "sig-fake-0001"
    finish: Literal["stop", "length", "tool_calls", "content_filter"] | None = None
    prompt_tokens: int = 12
    completion_tokens: int = 5
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    pieces: int = 3
    arg_pieces: int = 4
    error: Literal["rate_limit", "overloaded", "server", "auth", "invalid"] | None = None
    error_message: str = "scripted failure"
    error_param: str | None = None
    delay_s: float = 0
    gap_s: float = 0
    stall_after_headers_s: float = 0
    cut_after: int | None = None

    @property
    def finish_reason(self) -> str:
        if self.finish is not None:
            return self.finish
        return "tool_calls" if self.tool_calls else "stop"


def split(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` consecutive non-empty parts (fewer when it is shorter)."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def prompt_tokens(texts: Iterable[str], *, messages: int, tools: int = 0) -> int:
    """The fakes' input-token count for what a counting endpoint received: the whitespace-
    separated words of every text, 3 per message and 10 per tool declared. Deterministic, so a
    test can tell from the number which texts were counted."""
    return sum(len(t.split()) for t in texts) + 3 * messages + 10 * tools
