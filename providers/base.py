"""The contract between the gateway and a provider.

A provider answers :meth:`Provider.send` with one of three replies, and the dispatcher renders it
without knowing which provider made it:

- :class:`JSONReply`: an OpenAI-shaped JSON body (the gateway appends ``extra_fields``);
- :class:`EventStream`: OpenAI-shaped SSE ``data`` payloads, one per upstream event, as they arrive;
- :class:`ByteStream`: a body of another type (audio, plain text), forwarded chunk by chunk.

A provider raises only :class:`proxy.errors.GatewayError`; an error raised by a stream before its
first payload still allows a fallback, one raised later ends the stream with an error event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import msgspec

from proxy.operations import Inbound, Target
from proxy.schemas.common import BilledUsage

__all__ = [
    "ByteStream",
    "Call",
    "CountsTokens",
    "EventStream",
    "JSONReply",
    "ModelInfo",
    "Provider",
    "Reply",
]


class Call(msgspec.Struct, gc=False):
    """One attempt: the decoded request, where it goes, and what the client asked for."""

    inbound: Inbound
    target: Target
    request_id: str
    raw_response: bool = False
    # The client's request headers, for the few a provider passes on (``anthropic-beta``).
    client_headers: Mapping[str, str] = {}
    # Keys this attempt should not use (rate-limited earlier in this request, cooling down
    # after a 401/403, behind an open breaker); the provider writes the key it chose to ``key``.
    avoid_key: Callable[[int], bool] | None = None
    key: int | None = None
    # The client's limit for this attempt (``x-thruway-timeout-ms``), in seconds.
    timeout_s: float | None = None


class JSONReply(msgspec.Struct):
    body: bytes
    usage: BilledUsage | None = None
    headers: Mapping[str, str] = {}
    # The upstream's own body, when it differs from ``body`` (a translated response).
    raw: bytes | None = None


class EventStream:
    """OpenAI-shaped SSE payloads (the bytes after ``data: ``), without the final ``[DONE]``.

    Iterating gives batches: the payloads completed by one read from the upstream, in order (one
    write to the client then carries them all; nothing waits for later data). ``source`` is
    called with the stream itself, so the generator it returns can fill in ``usage`` as the
    upstream reports it. ``aclose`` stops the generator and releases the upstream response;
    it is safe to call more than once.
    """

    __slots__ = ("_close", "_events", "headers", "usage")

    def __init__(
        self,
        source: Callable[[EventStream], AsyncGenerator[list[bytes], None]],
        *,
        close: Callable[[], Awaitable[None]],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.usage: BilledUsage | None = None
        self.headers: Mapping[str, str] = headers or {}
        self._close = close
        self._events = source(self)

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._events

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            await self._close()


class ByteStream:
    """A non-JSON body (audio, text) forwarded as it arrives."""

    __slots__ = ("_close", "chunks", "content_type", "headers")

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        *,
        content_type: str,
        close: Callable[[], Awaitable[None]],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.content_type = content_type
        self._close = close
        self.headers: Mapping[str, str] = headers or {}

    async def aclose(self) -> None:
        try:
            await self.chunks.aclose()
        finally:
            await self._close()


Reply = JSONReply | EventStream | ByteStream


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    created: int = 0
    owned_by: str = ""


class Provider(Protocol):
    """One configured provider (``name`` is the prefix callers use in ``provider/model``)."""

    name: str
    # The request types (``Operation.name``) this provider serves.
    operations: frozenset[str]

    async def send(self, call: Call) -> Reply: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CountsTokens(Protocol):
    """A provider that can count a request's input tokens upstream (``POST /v1/responses/input_tokens``)."""  # noqa: E501

    async def count_tokens(self, call: Call) -> int: ...
