"""OpenAI's Responses API (``POST /responses``) served natively, for OpenAI and Azure OpenAI.

The caller (the gateway's Responses layer) hands over a body it already prepared: history
expanded into ``input``, stored-state fields removed, ``store`` false. This module changes only
``model`` (the upstream's name), removes the gateway's own fields, and removes
``stream_options.include_usage``: the chat API's option, which the Responses API refuses with a
400 ("Unknown parameter: 'stream_options.include_usage'") and does not need, since its
``response.completed`` event always carries ``usage``.

A JSON answer passes through unchanged. A stream's events go out as their ``data`` payloads (the
``event:`` line repeats the payload's ``type``); an ``error`` event, OpenAI's report of a failure
after the stream began, is raised as the upstream's error once the events before it went out.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp
import msgspec

from providers._forward import PASSTHROUGH, ForwardRequest, SSEUsage, json_usage
from providers._openai_compat import INPUT_TOKENS, OpenAICompatProvider, map_error
from providers._sse import SSEParser
from providers._upstream import (
    Attempt,
    StreamAttempt,
    Upstream,
    forwardable_headers,
    release_when_done,
)
from providers.base import ByteStream, Call, EventStream, JSONReply, Reply
from proxy.errors import InvalidRequestError, UpstreamError
from proxy.operations import GATEWAY_FIELDS
from proxy.schemas.common import BilledUsage

__all__ = ["COUNT_FIELDS", "ResponsesProvider", "billed", "responses_body"]

# What ``POST /responses/input_tokens`` takes (the openai SDK's ``responses.input_tokens.count``);
# it refuses anything else as an unknown parameter.
COUNT_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "parallel_tool_calls",
        "truncation",
        "personality",
        "conversation",
        "previous_response_id",
    }
)
# Events whose ``response`` is final and carries the usage.
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _InputDetails(msgspec.Struct):
    cached_tokens: int | None = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int | None = 0


class _ResponseUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int | None = None
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class _ResponseView(msgspec.Struct):
    usage: _ResponseUsage | None = None


class _EventView(msgspec.Struct):
    type: str = ""
    response: _ResponseView | None = None


class _ErrorFields(msgspec.Struct, omit_defaults=True):
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None


class _ErrorEvent(msgspec.Struct):
    """``{"type": "error", "code", "message", "param"}``; some servers nest OpenAI's usual
    ``error`` object instead."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    error: _ErrorFields | None = None


class _Count(msgspec.Struct):
    input_tokens: int


_encode = msgspec.json.Encoder().encode
_response_view = msgspec.json.Decoder(_ResponseView).decode
_event_view = msgspec.json.Decoder(_EventView).decode
_error_event = msgspec.json.Decoder(_ErrorEvent).decode
_count = msgspec.json.Decoder(_Count).decode
_options = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def _responses_usage(data: bytes) -> BilledUsage | None:
    usage = _response_view(data).usage
    return billed(usage) if usage else None


def billed(usage: _ResponseUsage) -> BilledUsage:
    """A Responses ``usage`` object in the gateway's accounting terms."""
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else 0
    total = usage.total_tokens
    return BilledUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=total if total is not None else usage.input_tokens + usage.output_tokens,
        cached_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def responses_body(raw: dict[str, msgspec.Raw], model: msgspec.Raw) -> bytes:
    """The body sent upstream: the caller's, with the upstream's model name, without the
    gateway's fields, and without ``stream_options.include_usage``."""
    out = {k: v for k, v in raw.items() if k not in GATEWAY_FIELDS}
    out["model"] = model
    options = out.get("stream_options")
    if options is not None and b'"include_usage"' in bytes(options):
        try:
            kept = _options(options)
        except msgspec.DecodeError:
            kept = None  # not an object: the upstream says what is wrong with it
        if kept is not None:
            kept.pop("include_usage", None)
            if kept:
                out["stream_options"] = msgspec.Raw(_encode(kept))
            else:
                del out["stream_options"]
    return _encode(out)


def _count_body(raw: dict[str, msgspec.Raw], model: msgspec.Raw) -> bytes:
    out = {k: v for k, v in raw.items() if k in COUNT_FIELDS}
    out["model"] = model
    return _encode(out)


class ResponsesProvider(OpenAICompatProvider):
    """An OpenAI-wire provider whose upstream also serves the Responses API and its input-token
    count (OpenAI; Azure OpenAI subclasses it), and every other endpoint of OpenAI's API
    through a transparent forward (``/openai/v1/...``, ``providers._forward``)."""

    async def send(self, call: Call) -> Reply:
        if call.inbound.op.name == PASSTHROUGH:
            return await self.forward(call)
        return await super().send(call)

    def forward_url(self, path: str, query: str) -> str:
        """The upstream URL of ``path`` (under the API root) with the client's query."""
        url = f"{self._base}/{path}"
        return f"{url}?{query}" if query else url

    async def forward(self, call: Call) -> Reply:
        """The client's request sent on as it came, with this provider's key; the answer
        passed back as it comes (module docstring of ``providers._forward``)."""
        req = call.inbound.typed
        assert isinstance(req, ForwardRequest)
        model = call.target.model
        try:
            key = self._keys.choose(model, call.avoid_key) if model else self._keys.any_key()
        except LookupError:
            raise InvalidRequestError(
                f"No API key of provider `{self.name}` is allowed to use model `{model}`.",
                param="model",
                code="model_not_allowed",
            ) from None
        call.key = key
        # The client's ``accept`` and content type win over the provider's defaults.
        headers = {**self._headers[key or 0], **req.headers}
        timeout = self._timeouts.body(call.timeout_s)
        url = self.forward_url(req.path, req.query)
        resp = await self._open(req.method, url, headers, timeout, req.body)
        passed = forwardable_headers(resp.headers)
        content_type = resp.headers.get("Content-Type", "application/octet-stream")
        if resp.content_type == "application/json":
            try:
                data = await Upstream.read(resp, self.name, timeout)
            finally:
                resp.release()
            return JSONReply(body=data, usage=json_usage(data), headers=passed)
        if resp.content_type == "text/event-stream":
            passed["Content-Type"] = content_type
            return EventStream(
                lambda stream: self._forwarded_events(resp, stream, timeout),
                close=release_when_done(resp),
                headers=passed,
            )
        return ByteStream(
            Upstream.chunks(resp, self.name, timeout),
            content_type=content_type,
            close=release_when_done(resp),
            headers=passed,
        )

    async def _forwarded_events(
        self, resp: aiohttp.ClientResponse, stream: EventStream, timeout: Attempt
    ) -> AsyncGenerator[list[bytes], None]:
        """An event stream's bytes, one batch per read, as they came; its usage read on the
        way (the usage of a stream cut short is what it had reported)."""
        usage = SSEUsage()
        read = resp.content.readany
        while True:
            with timeout:
                chunk = await read()
            usage.feed(chunk)
            if usage.usage is not None:
                stream.usage = usage.usage
            if not chunk:
                return
            yield [chunk]

    async def _respond(self, call: Call, url: str, key: int, model: str) -> Reply:
        inbound = call.inbound
        body = responses_body(inbound.raw or {}, self._model_json(model))
        if inbound.stream:
            guard = self._timeouts.stream(call.timeout_s)
            resp = await self._post(url, body, key, guard)
            self._expect_event_stream(resp, guard)
            return EventStream(
                lambda stream: self._response_events(resp, stream, guard),
                close=guard.close,
                headers=forwardable_headers(resp.headers),
            )
        return await self._json(url, body, key, call.timeout_s, _responses_usage)

    async def count_tokens(self, call: Call) -> int:
        """``input_tokens`` of ``POST /responses/input_tokens`` for the request's fields that
        endpoint takes."""
        key = self._key_index(call)
        model, url = self._route(INPUT_TOKENS, call.target.model)
        body = _count_body(call.inbound.raw or {}, self._model_json(model))
        timeout = self._timeouts.json(call.timeout_s)
        resp = await self._post(url, body, key, timeout)
        try:
            data = await Upstream.read(resp, self.name, timeout)
        finally:
            resp.release()
        try:
            return _count(data).input_tokens
        except msgspec.DecodeError as exc:
            raise self._not_json("input token count") from exc

    async def _response_events(
        self, resp: aiohttp.ClientResponse, stream: EventStream, guard: StreamAttempt
    ) -> AsyncGenerator[list[bytes], None]:
        """The stream's ``data`` payloads in batches, one batch per read."""
        parser = SSEParser()
        read = resp.content.readany
        waiting = True
        while True:
            with guard:
                chunk = await read()
            completed = parser.feed(chunk) if chunk else parser.close()
            batch: list[bytes] = []
            for event in completed:
                data = event.data
                if data == b"[DONE]":
                    continue
                try:
                    view = _event_view(data)
                except msgspec.DecodeError:
                    view = _EventView()  # not ours to judge: forwarded as it came
                if view.type == "error":
                    if batch:
                        yield batch
                    raise self._stream_error(data)
                if view.type in _FINAL and view.response and view.response.usage:
                    stream.usage = billed(view.response.usage)
                batch.append(data)
            if batch:
                if waiting:
                    guard.first_event()
                    waiting = False
                yield batch
            if not chunk:
                return

    def _stream_error(self, data: bytes) -> UpstreamError:
        try:
            event = _error_event(data)
        except msgspec.DecodeError:
            event = _ErrorEvent()
        fields = event.error or _ErrorFields(event.message, code=event.code, param=event.param)
        # Without a message, the event's own text says more than an empty error object.
        body = _encode({"error": fields}) if fields.message is not None else data
        return map_error(500, body, {}, provider=self.name, scrub=self._scrub)
