"""One attempt at one target: natively when the provider serves ``responses`` (OpenAI, Azure),
otherwise through its chat translation.

Both ways give the same things: an :class:`Answer` (a whole ``Response``) or an
:class:`EventRun` (Responses events in batches as the upstream sends them, then the final
``Response``). The ``Response`` always carries the gateway's id and echoes the request's
``previous_response_id``/``conversation``/``store``/``background``: the upstream never sees those,
as the gateway keeps the state itself and sends the whole history.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Mapping
from typing import NamedTuple

import msgspec
from msgspec import UNSET

from providers.base import Call, CountsTokens, EventStream, JSONReply, Provider, Reply
from proxy.errors import GatewayError, UnsupportedCapabilityError, UpstreamError
from proxy.keys import AttemptState
from proxy.operations import CHAT, RESPONSES, Inbound, Target
from proxy.respond.prepare import Prepared
from proxy.responses.output import new_response
from proxy.responses.stream import ERROR_CODES, ResponsesStream
from proxy.responses.translate import drop_gateway_reasoning, from_chat, to_chat
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ChatRequest, StreamOptions
from proxy.schemas.common import BilledUsage
from proxy.schemas.response_events import ResponseFailed, StreamEvent
from proxy.schemas.responses import (
    RESPONSE_DECODER,
    ConversationRef,
    InputItem,
    MessageItem,
    ReasoningItem,
    Response,
    ResponseError,
    ResponseStatus,
)

__all__ = [
    "TERMINAL_EVENTS",
    "Answer",
    "Attempt",
    "EventRun",
    "Frame",
    "answer",
    "count_input_tokens",
    "error_code",
    "frame_bytes",
    "start_events",
    "too_long",
    "truncated",
]

_encode = msgspec.json.Encoder().encode
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_CHAT = msgspec.json.Decoder(ChatCompletion)
_CHUNK = msgspec.json.Decoder(ChatCompletionChunk)

# The events after which a response stream has nothing more to say.
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_LIFECYCLE = TERMINAL_EVENTS | {"response.created", "response.in_progress", "response.queued"}
# What the gateway keeps to itself: the upstream gets the whole history, unstored.
_GATEWAY_ONLY = ("previous_response_id", "conversation", "background", "store", "fallbacks")
_ENCRYPTED_REASONING = "reasoning.encrypted_content"


class Attempt(NamedTuple):
    """Who asks: the request id, the client's headers, whether it wants the raw reply, and the
    fallback middleware's set-up of this attempt (keys to avoid, time limit; the key used is
    written back to it)."""

    request_id: str
    client_headers: Mapping[str, str]
    raw_response: bool = False
    state: AttemptState | None = None


class Answer(msgspec.Struct):
    response: Response
    usage: BilledUsage | None
    raw: bytes | None = None
    headers: Mapping[str, str] = {}


class Frame(NamedTuple):
    """One Responses event: its number, its type and its JSON."""

    seq: int
    type: str
    data: bytes


def frame_bytes(frames: list[Frame]) -> bytes:
    """Frames as SSE, ``event:`` and ``data:`` lines each, in one buffer."""
    return b"".join(b"event: " + f.type.encode() + b"\ndata: " + f.data + b"\n\n" for f in frames)


def error_code(exc: GatewayError) -> str:
    """``response.failed``'s ``error.code`` for a gateway error (OpenAI's codes only)."""
    if exc.status == 429:
        return "rate_limit_exceeded"
    code = exc.code or ""
    return code if code in ERROR_CODES else "server_error"


# --- the request each way -------------------------------------------------------------------


def native(provider: Provider) -> bool:
    return RESPONSES.name in provider.operations


def _native_items(prep: Prepared) -> list[InputItem]:
    """The history and input as OpenAI takes them unstored: reasoning only when it carries
    OpenAI's own encrypted content, and no ids on the caller's messages."""
    out: list[InputItem] = []
    for item in drop_gateway_reasoning(prep.all_items):
        if isinstance(item, ReasoningItem) and not isinstance(item.encrypted_content, str):
            continue
        if isinstance(item, MessageItem) and item.role != "assistant":
            item = msgspec.structs.replace(item, id=UNSET, status=UNSET)
        out.append(item)
    return out


def _native_body(prep: Prepared, stream: bool) -> dict[str, msgspec.Raw]:
    body = _RAW.decode(prep.body)
    for name in _GATEWAY_ONLY:
        body.pop(name, None)
    body["input"] = msgspec.Raw(_encode(_native_items(prep)))
    body["store"] = msgspec.Raw(b"false")
    if stream:
        body["stream"] = msgspec.Raw(b"true")
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    reasoning = prep.req.reasoning
    if prep.req.stores and reasoning is not UNSET and reasoning is not None:
        # Unstored upstream, a reasoning model's next turn needs its reasoning back encrypted.
        include = list(prep.req.include or [])
        if _ENCRYPTED_REASONING not in include:
            body["include"] = msgspec.Raw(_encode([*include, _ENCRYPTED_REASONING]))
    return body


def _chat_request(prep: Prepared, stream: bool) -> ChatRequest:
    chat = to_chat(prep.req, prep.history)
    chat.fallbacks = UNSET
    if stream:
        chat.stream = True
        chat.stream_options = StreamOptions(include_usage=True)
    else:
        chat.stream = UNSET
        chat.stream_options = UNSET
    return chat


def _call(provider: Provider, prep: Prepared, target: Target, ask: Attempt, stream: bool) -> Call:
    if native(provider):
        inbound = Inbound(
            op=RESPONSES,
            typed=prep.req,
            model=prep.req.model,
            fallbacks=[],
            stream=stream,
            wants_usage=True,
            raw=_native_body(prep, stream),
        )
    else:
        if CHAT.name not in provider.operations:
            raise UnsupportedCapabilityError(provider.name, "responses")
        chat = _chat_request(prep, stream)
        inbound = Inbound(
            op=CHAT,
            typed=chat,
            model=prep.req.model,
            fallbacks=[],
            stream=stream,
            wants_usage=True,
            raw=_RAW.decode(_encode(chat)),
        )
    state = ask.state
    return Call(
        inbound=inbound,
        target=target,
        request_id=ask.request_id,
        raw_response=ask.raw_response,
        client_headers=ask.client_headers,
        avoid_key=state.avoid_key if state is not None else None,
        timeout_s=state.timeout_s if state is not None else None,
    )


async def _send(provider: Provider, call: Call, ask: Attempt) -> Reply:
    """``provider.send``, telling the fallback middleware which key it used."""
    try:
        return await provider.send(call)
    finally:
        if ask.state is not None:
            ask.state.key = call.key


def own(resp: Response, prep: Prepared) -> Response:
    """The response under the gateway's id, echoing what the gateway kept from the upstream."""
    req = prep.req
    resp.id = prep.response_id
    resp.created_at = prep.created_at
    resp.previous_response_id = (
        req.previous_response_id if isinstance(req.previous_response_id, str) else None
    )
    conversation = prep.conversation_id
    resp.conversation = ConversationRef(conversation) if conversation else UNSET
    resp.background = req.background is True
    resp.store = req.stores
    if isinstance(req.metadata, dict):
        resp.metadata = req.metadata
    return resp


def _unreadable(provider: str) -> UpstreamError:
    return UpstreamError(
        f"{provider}: a stream event from the upstream could not be read.",
        status=502,
        provider=provider,
    )


def _bad_reply(provider: Provider, what: str) -> UpstreamError:
    return UpstreamError(
        f"{provider.name}: the upstream's {what} could not be read.",
        status=502,
        provider=provider.name,
    )


# --- truncation ----------------------------------------------------------------------------

# How providers say the input is over the context window (OpenAI, Anthropic, Gemini, Bedrock,
# Cohere, Mistral, vLLM...).
_TOO_LONG = re.compile(
    r"context[ _]length|context window|maximum context|prompt is too long|input is too long"
    r"|too many (input )?tokens|exceeds the (maximum|max)[^.]*tokens|input token count"
    r"|reduce the length",
    re.IGNORECASE,
)


def too_long(exc: GatewayError) -> bool:
    """Whether an upstream refused the request because its input does not fit the model."""
    if exc.status not in (400, 413, 422):
        return False
    return exc.code == "context_length_exceeded" or bool(_TOO_LONG.search(exc.message))


def truncated(prep: Prepared, exc: GatewayError) -> Prepared | None:
    """With ``truncation: auto`` and an input too long for the model: the request without its
    oldest turn (a user message and all that followed it before the next). None when that
    does not apply or no earlier turn is left to drop (the error then stands)."""
    if prep.req.truncation != "auto" or not too_long(exc) or not prep.history:
        return None
    history = prep.history
    starts = [
        i
        for i, item in enumerate(history)
        if i > 0 and isinstance(item, MessageItem) and item.role == "user"
    ]
    rest = history[starts[0] :] if starts else []
    return msgspec.structs.replace(prep, history=rest)


# --- whole answers --------------------------------------------------------------------------


async def answer(provider: Provider, prep: Prepared, target: Target, ask: Attempt) -> Answer:
    while True:
        try:
            return await _answer(provider, prep, target, ask)
        except GatewayError as exc:
            shorter = truncated(prep, exc)
            if shorter is None:
                raise
            prep = shorter


async def _answer(provider: Provider, prep: Prepared, target: Target, ask: Attempt) -> Answer:
    call = _call(provider, prep, target, ask, stream=False)
    reply = await _send(provider, call, ask)
    if not isinstance(reply, JSONReply):
        raise _bad_reply(provider, "answer")
    try:
        if call.inbound.op is RESPONSES:
            resp = RESPONSE_DECODER.decode(reply.body)
        else:
            completion = _CHAT.decode(reply.body)
            resp = from_chat(
                completion,
                prep.req,
                response_id=prep.response_id,
                created_at=prep.created_at,
                completed_at=int(time.time()),
            )
    except (msgspec.DecodeError, ValueError):
        raise _bad_reply(provider, "answer") from None
    raw = (reply.raw if reply.raw is not None else reply.body) if ask.raw_response else None
    return Answer(own(resp, prep), reply.usage, raw, reply.headers)


async def count_input_tokens(
    provider: Provider, prep: Prepared, target: Target, ask: Attempt
) -> int | None:
    """The provider's own count of the request's input tokens; None when it cannot count."""
    if not isinstance(provider, CountsTokens):
        return None
    try:
        return await provider.count_tokens(_call(provider, prep, target, ask, stream=False))
    except UnsupportedCapabilityError:
        # This provider counts only some requests (an API version without a counting endpoint).
        return None


# --- streams --------------------------------------------------------------------------------


class EventRun(abc.ABC):
    """One attempt's stream of Responses events. ``next`` gives the next batch of frames (maybe
    empty) or None at the end; it raises a :class:`GatewayError` when the upstream fails, and
    ``fail`` then gives the frames that end the stream with ``response.failed``."""

    def __init__(self, stream: EventStream, prep: Prepared, provider: str) -> None:
        self._provider = provider
        self._stream = stream
        self._batches = aiter(stream)
        self._prep = prep
        self.final: Response | None = None  # the terminal event's response, once sent
        self.last_seq = -1

    @property
    def usage(self) -> BilledUsage | None:
        return self._stream.usage

    @property
    def headers(self) -> Mapping[str, str]:
        return self._stream.headers

    @abc.abstractmethod
    async def next(self) -> list[Frame] | None: ...

    @abc.abstractmethod
    def fail(self, exc: GatewayError) -> list[Frame]: ...

    @abc.abstractmethod
    def snapshot(self, status: ResponseStatus) -> Response:
        """The response as built so far, with ``status`` (what to store if the run stops)."""

    async def aclose(self) -> None:
        await self._stream.aclose()

    def _failed_frame(self, exc: GatewayError) -> list[Frame]:
        resp = self.snapshot("failed")
        resp.error = ResponseError(code=error_code(exc), message=exc.message)
        self.final = resp
        self.last_seq += 1
        event = ResponseFailed(sequence_number=self.last_seq, response=resp)
        return [Frame(self.last_seq, "response.failed", _encode(event))]


class _TranslatedRun(EventRun):
    """Chat chunks in, Responses events out."""

    def __init__(self, stream: EventStream, prep: Prepared, provider: str) -> None:
        super().__init__(stream, prep, provider)
        self._rs = ResponsesStream(
            prep.req, response_id=prep.response_id, created_at=prep.created_at
        )
        self._done = False

    async def next(self) -> list[Frame] | None:
        if self._done:
            return None
        try:
            payloads = await anext(self._batches)
        except StopAsyncIteration:
            self._done = True
            return self._frames(self._rs.finish(completed_at=int(time.time())))
        events: list[StreamEvent] = []
        for payload in payloads:
            try:
                chunk = _CHUNK.decode(payload)
            except msgspec.DecodeError:
                raise _unreadable(self._provider) from None
            events += self._rs.feed(chunk)
        return self._frames(events)

    def fail(self, exc: GatewayError) -> list[Frame]:
        self._done = True
        return self._frames(self._rs.fail(exc.message, error_code(exc)))

    def snapshot(self, status: ResponseStatus) -> Response:
        return own(self._rs.snapshot(status), self._prep)

    def _frames(self, events: list[StreamEvent]) -> list[Frame]:
        out = []
        for ev in events:
            kind = type(ev).__struct_config__.tag
            assert isinstance(kind, str)
            if kind in _LIFECYCLE:
                own(ev.response, self._prep)  # type: ignore[union-attr]
                if kind in TERMINAL_EVENTS:
                    self.final = ev.response  # type: ignore[union-attr]
            out.append(Frame(ev.sequence_number, kind, _encode(ev)))
            self.last_seq = ev.sequence_number
        return out


class _Head(msgspec.Struct):
    type: str = ""
    sequence_number: int = -1


class _Lifecycle(msgspec.Struct):
    type: str
    sequence_number: int
    response: msgspec.Raw


class _LifecycleOut(msgspec.Struct):
    type: str
    sequence_number: int
    response: Response


_HEAD = msgspec.json.Decoder(_Head)
_LIFE = msgspec.json.Decoder(_Lifecycle)


class _NativeRun(EventRun):
    """OpenAI's own events, forwarded; the lifecycle ones carry the gateway's response id."""

    def __init__(self, stream: EventStream, prep: Prepared, provider: str) -> None:
        super().__init__(stream, prep, provider)
        self._latest = new_response(
            prep.req, response_id=prep.response_id, created_at=prep.created_at
        )
        own(self._latest, prep)

    async def next(self) -> list[Frame] | None:
        try:
            payloads = await anext(self._batches)
        except StopAsyncIteration:
            return None
        out = []
        for payload in payloads:
            try:
                head = _HEAD.decode(payload)
                data = payload
                if head.type in _LIFECYCLE:
                    life = _LIFE.decode(payload)
                    resp = own(RESPONSE_DECODER.decode(life.response), self._prep)
                    self._latest = resp
                    if head.type in TERMINAL_EVENTS:
                        self.final = resp
                    data = _encode(_LifecycleOut(head.type, head.sequence_number, resp))
            except (msgspec.DecodeError, ValueError):
                raise _unreadable(self._provider) from None
            out.append(Frame(head.sequence_number, head.type, data))
            self.last_seq = max(self.last_seq, head.sequence_number)
        return out

    def fail(self, exc: GatewayError) -> list[Frame]:
        return self._failed_frame(exc)

    def snapshot(self, status: ResponseStatus) -> Response:
        resp = msgspec.structs.replace(self._latest, status=status)
        return resp


async def start_events(
    provider: Provider, prep: Prepared, target: Target, ask: Attempt
) -> tuple[EventRun, list[Frame] | None]:
    """The stream opened and its first batch read: until then a failure is raised (and the
    next target may try); ``truncation: auto`` retries without the oldest turns while the
    upstream says the input is too long."""
    while True:
        try:
            run = await _open_events(provider, prep, target, ask)
        except GatewayError as exc:
            shorter = truncated(prep, exc)
            if shorter is None:
                raise
            prep = shorter
            continue
        try:
            return run, await run.next()
        except GatewayError as exc:
            await run.aclose()
            shorter = truncated(prep, exc)
            if shorter is None:
                raise
            prep = shorter
        except BaseException:
            await run.aclose()
            raise


async def _open_events(
    provider: Provider, prep: Prepared, target: Target, ask: Attempt
) -> EventRun:
    call = _call(provider, prep, target, ask, stream=True)
    reply = await _send(provider, call, ask)
    if not isinstance(reply, EventStream):
        raise _bad_reply(provider, "stream")
    if call.inbound.op is RESPONSES:
        return _NativeRun(reply, prep, provider.name)
    return _TranslatedRun(reply, prep, provider.name)
