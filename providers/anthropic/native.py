"""The ``/anthropic`` route's requests sent to Anthropic as they came (pure; no I/O).

A client that speaks Anthropic's Messages API to an Anthropic model gets Anthropic itself:
the body is forwarded field for field (thinking signatures, ``cache_control``, server tools,
betas), only ``model`` becoming the upstream's id and the gateway's own fields (``fallbacks``)
dropped; the answer comes back unchanged. The gateway reads only the usage, from the message
or from the stream's ``message_start`` and ``message_delta`` events.

:class:`NativeStream` passes a stream's events on whole (so a keep-alive ``ping`` written
between two of them can never split one). It holds ``message_start`` and ``ping`` until the
first event that carries content, so an ``error`` event right at the start (Anthropic reports
overload that way) is raised before the client has a byte and the request can fall back; a
later ``error`` event is raised too, for the route to end the stream with it.
"""

from __future__ import annotations

import msgspec

from providers._sse import SSEEvent
from providers._translated import stream_cut
from providers.anthropic import wire
from providers.anthropic.errors import event_error
from providers.anthropic.response import merge_usage, unified_usage
from proxy.errors import UpstreamError
from proxy.operations import GATEWAY_FIELDS
from proxy.redact import Redactor
from proxy.responses.envelope import PREFIX, is_gateway_envelope
from proxy.schemas.common import BilledUsage

__all__ = ["NATIVE_COUNT", "NATIVE_MESSAGES", "NativeStream", "message_usage", "native_body"]

# The request types (``Operation.name``) of the ``/anthropic`` route that Anthropic serves as
# they are.
NATIVE_MESSAGES = "anthropic_messages"
NATIVE_COUNT = "anthropic_count_tokens"

_encode = msgspec.json.Encoder().encode
_message = msgspec.json.Decoder(wire.Message).decode
_event = msgspec.json.Decoder(wire.Event).decode
# Events that carry nothing for the client yet: held until one that does.
_PREAMBLE = frozenset({b"message_start", b"ping"})


def native_body(raw: dict[str, msgspec.Raw], model: str) -> bytes:
    """The client's body for Anthropic: its fields as sent, ``model`` the upstream's id.

    One exception: thinking blocks this gateway signed (another provider's reasoning, carried
    in the gateway's envelope while the conversation was served elsewhere, say by a fallback)
    would be refused by Anthropic as forged, so they are left out; Anthropic then refuses
    ``thinking`` on a tool-use turn that lost its thinking, so ``thinking`` goes too. Only a
    body that holds the envelope's prefix is read that far.
    """
    body = {k: v for k, v in raw.items() if k not in GATEWAY_FIELDS}
    body["model"] = msgspec.Raw(_encode(model))
    messages = raw.get("messages")
    if messages is not None and _ENVELOPE in bytes(messages):
        kept, dropped = _without_gateway_thinking(messages)
        if dropped:
            body["messages"] = kept
            body.pop("thinking", None)
    return _encode(body)


_ENVELOPE = PREFIX.encode()


class _Message(msgspec.Struct):
    role: str
    content: str | list[msgspec.Raw]


class _BlockHead(msgspec.Struct):
    type: str = ""
    signature: str = ""


_messages = msgspec.json.Decoder(list[_Message]).decode
_block_head = msgspec.json.Decoder(_BlockHead).decode


def _without_gateway_thinking(raw: msgspec.Raw) -> tuple[msgspec.Raw, int]:
    """The messages without the thinking blocks the gateway signed, and how many went."""
    try:
        messages = _messages(raw)
    except msgspec.DecodeError:
        return raw, 0  # Anthropic will say what is wrong with them
    dropped = 0
    for message in messages:
        if isinstance(message.content, str):
            continue
        blocks = [b for b in message.content if not _gateway_thinking(b)]
        if blocks:  # a turn of thinking alone keeps it: Anthropic refuses an empty turn
            dropped += len(message.content) - len(blocks)
            message.content = blocks
    return msgspec.Raw(_encode(messages)), dropped


def _gateway_thinking(block: msgspec.Raw) -> bool:
    try:
        head = _block_head(block)
    except msgspec.DecodeError:
        return False
    return head.type == "thinking" and is_gateway_envelope(head.signature)


def message_usage(body: bytes) -> BilledUsage | None:
    """The usage of Anthropic's message JSON (a ``DecodeError`` when it is not one)."""
    message = _message(body)
    if message.usage is None:
        return None
    return BilledUsage.from_usage(unified_usage(message.usage))


class NativeStream:
    """Anthropic's stream events in, the same events out (as SSE bytes), the usage read on
    the way."""

    def __init__(self, *, provider: str, scrub: Redactor) -> None:
        self._provider = provider
        self._scrub = scrub
        self._held: list[bytes] = []
        self._started = False
        self._stopped = False
        self._usage: wire.Usage | None = None
        self.usage: BilledUsage | None = None

    def feed(self, events: list[SSEEvent]) -> tuple[bytes, UpstreamError | None]:
        """The bytes to send for ``events`` (empty while held), and the mapped error of an
        ``error`` event among them, which ends the stream after those bytes. Before anything
        was sent the error is raised instead (the request may still fall back)."""
        out: list[bytes] = []
        for event in events:
            name = event.event
            if name == b"message":
                # Written without an ``event:`` line: the type is in the data.
                name = self._type(event.data).encode()
            if name in (b"message_start", b"message_delta"):
                self._count(event.data)
            elif name == b"message_stop":
                self._stopped = True
            elif name == b"error":
                body = self._decode(event.data).error or wire.ErrorBody()
                error = event_error(body, provider=self._provider, scrub=self._scrub)
                if not self._started:
                    raise error
                return b"".join(out), error
            data = b"event: " + name + b"\ndata: " + event.data + b"\n\n"
            if not self._started and name in _PREAMBLE:
                self._held.append(data)
                continue
            if not self._started:
                self._started = True
                out += self._held
                self._held = []
            out.append(data)
        return b"".join(out), None

    def finish(self) -> bytes:
        """What is still held when the stream ended; a stream cut before ``message_stop`` is a
        connection error."""
        if not self._stopped:
            raise stream_cut(self._provider)
        held, self._held = b"".join(self._held), []
        return held

    def _type(self, data: bytes) -> str:
        return self._decode(data).type

    def _count(self, data: bytes) -> None:
        ev = self._decode(data)
        if ev.type == "message_delta":
            usage = ev.usage
        else:
            usage = ev.message.usage if ev.message is not None else None
        if usage is not None:
            self._usage = merge_usage(self._usage, usage)
            self.usage = BilledUsage.from_usage(unified_usage(self._usage))

    def _decode(self, data: bytes) -> wire.Event:
        try:
            return _event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(
                f"{self._provider}: the upstream's stream event is not in the expected format.",
                status=502,
                provider=self._provider,
            ) from exc
