"""Helpers for the Responses tests: predictable ids, and the openai SDK's own models as judge."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import msgspec
import pydantic
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ParsedResponse, Response, ResponseStreamEvent

from proxy.responses.envelope import IdFactory
from proxy.schemas.response_events import StreamEvent
from proxy.schemas.responses import REQUEST_DECODER, ResponsesRequest

__all__ = ["accumulate", "as_json", "counter_ids", "request", "sdk_event", "sdk_response"]

_EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)


def counter_ids() -> IdFactory:
    """Ids ``<prefix>_0``, ``<prefix>_1``, ... (one counter across prefixes)."""
    numbers = itertools.count()
    return lambda prefix: f"{prefix}_{next(numbers)}"


def request(doc: dict[str, Any]) -> ResponsesRequest:
    """A request decoded as the gateway decodes a body."""
    return REQUEST_DECODER.decode(msgspec.json.encode({"model": "anthropic/claude", **doc}))


def as_json(value: Any) -> Any:
    """A Struct as plain JSON values (what goes on the wire)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def sdk_response(value: Any) -> Response:
    """The SDK's strict validation of a ``Response`` we produced."""
    return Response.model_validate_json(msgspec.json.encode(value))


def sdk_event(event: StreamEvent) -> Any:
    """The SDK's strict validation of one stream event we produced."""
    return _EVENTS.validate_json(msgspec.json.encode(event))


def accumulate(events: Iterable[StreamEvent]) -> ParsedResponse[None]:
    """Our events through the SDK's own stream accumulator (what ``responses.stream()`` runs);
    returns its final response."""
    state: ResponseStreamState[None] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(sdk_event(event))
    final = state._completed_response
    assert final is not None, "the SDK saw no response.completed"
    return final
