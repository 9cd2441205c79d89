"""The providers the conformance scenarios run against, and what each needs.

Each provider contributes a :class:`ProviderCase` (in ``case_<provider>.py``): how to start its
fake, the gateway config that points the provider at it, and how to read back, in a neutral
form, what the fake received (so one scenario can check the translation of any provider).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.fakes.script import Turn

__all__ = ["ConformanceFake", "ProviderCase", "Received"]


class ConformanceFake(Protocol):
    requests: list[Any]
    disconnects: int

    def script(self, *turns: Turn) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Received:
    """What a fake received, normalised by the case.

    - ``messages``: (role, text) in order, the system prompt first as ``("system", text)``
      (developer messages too), tool results excluded;
    - ``images``: ``"url:<url>"`` for an image sent by reference, ``"data:<mime>:<base64>"`` for
      inline bytes;
    - ``tools``: the declared function names;
    - ``tool_results``: (call id, or function name where the API pairs by name; content);
    - ``stream``: whether the upstream was asked to stream;
    - ``max_tokens``: the output limit sent, if any.
    """

    messages: list[tuple[str, str]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    tool_results: list[tuple[str, str]] = field(default_factory=list)
    stream: bool = False
    max_tokens: int | None = None


@dataclass
class ProviderCase:
    id: str  # the test id
    type: str  # the provider type (and the provider's name in the gateway config)
    model: str
    start: Callable[[], Awaitable[ConformanceFake]]
    config: Callable[[Any], dict[str, Any]]  # the providers.<type> entry for a started fake
    received: Callable[[Any], Received]  # one recorded request, normalised
    env: dict[str, str] = field(default_factory=dict)
    # Capabilities that change what a scenario expects:
    tool_ids_kept: bool = True  # the provider returns its own tool-call ids (else generated)
    streams_arguments: bool = True  # tool arguments arrive in several deltas (Gemini: whole)
    image_urls: bool = True  # image URLs are sent as URLs (else fetched and sent inline)
    reasoning: bool = True  # reasoning text is returned as reasoning_content
    embeddings: bool = False
    embedding_model: str = ""
