"""What a transparent forward to OpenAI's API (the gateway's ``/openai/v1/...`` routes) carries,
and the usage read from what comes back. Served by OpenAI and Azure OpenAI providers
(``_openai_responses.ResponsesProvider.forward``).

The request goes upstream as the client sent it (method, path under the API root, query, body,
a few headers), with the provider's key in place of the client's. A JSON answer is read whole,
its ``usage`` (chat, embeddings, Responses, images: ``prompt_tokens``/``completion_tokens`` or
``input_tokens``/``output_tokens``) read for accounting; an event stream is passed on read by
read, ``usage`` read from the events that carry it (a chat stream's last chunk, a Responses
stream's ``response.completed``); any other body (file content, audio) as it arrives.
"""

from __future__ import annotations

from typing import Any

import msgspec

from providers._sse import SSEParser
from proxy.schemas.common import BilledUsage

__all__ = ["PASSTHROUGH", "ForwardRequest", "SSEUsage", "json_usage"]

# The request type (``Operation.name``) of the ``/openai/v1/...`` routes.
PASSTHROUGH = "openai_passthrough"


class ForwardRequest(msgspec.Struct, frozen=True):
    """One request to forward. ``path``: under the API root, percent-encoded as received,
    without a leading ``/``; ``query``: the raw query string; ``headers``: the client's headers
    that go along (content type, ``accept``, ``openai-beta``); ``body``: the bytes, or the
    client's body stream (forwarded as it arrives), or None."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any = None


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    input_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None
    output_tokens_details: _Details | None = None


class _Nested(msgspec.Struct):
    usage: _Usage | None = None


class _View(msgspec.Struct):
    """A body or event that may carry ``usage`` (a Responses event: in its ``response``)."""

    usage: _Usage | None = None
    response: _Nested | None = None


_view = msgspec.json.Decoder(_View).decode


def _billed(u: _Usage) -> BilledUsage:
    prompt = u.prompt_tokens if u.prompt_tokens is not None else u.input_tokens or 0
    completion = u.completion_tokens if u.completion_tokens is not None else u.output_tokens or 0
    cached = u.prompt_tokens_details or u.input_tokens_details
    reasoning = u.completion_tokens_details or u.output_tokens_details
    return BilledUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.total_tokens if u.total_tokens is not None else prompt + completion,
        cached_tokens=(cached.cached_tokens or 0) if cached else 0,
        reasoning_tokens=(reasoning.reasoning_tokens or 0) if reasoning else 0,
    )


def json_usage(body: bytes) -> BilledUsage | None:
    """The ``usage`` of a JSON answer (or of a Responses event), if it has one."""
    if b'"usage"' not in body:
        return None
    try:
        view = _view(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    usage = view.usage or (view.response.usage if view.response is not None else None)
    return _billed(usage) if usage is not None else None


class SSEUsage:
    """Reads an event stream passed on byte for byte, for the last ``usage`` it reports."""

    __slots__ = ("_parser", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage: BilledUsage | None = None

    def feed(self, chunk: bytes) -> None:
        events = self._parser.feed(chunk) if chunk else self._parser.close()
        for event in events:
            got = json_usage(event.data)
            if got is not None:
                self.usage = got
