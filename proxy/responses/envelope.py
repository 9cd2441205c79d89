"""Reasoning continuity through Responses items, and item ids.

A chat answer may carry what its provider needs back on the next turn: Anthropic ``thinking``
blocks with their ``signature`` (a tool-use turn whose thinking lost it is refused), and Gemini
thought signatures on tool calls (``extra_content.google.thought_signature``). Responses has one
standard place for opaque reasoning state that clients keep and echo: a reasoning item's
``encrypted_content`` (clients that run with ``store: false`` already send it back). The gateway
puts an :class:`Envelope` there: ``thruway.r1:`` then the base64url (unpadded) JSON of the
envelope, which holds the thinking blocks and the tool calls' ``extra_content`` keyed by
``call_id``. The prefix is outside the base64url alphabet, so the gateway's envelopes are told
from OpenAI's own encrypted content (which is opaque to the gateway and ignored off OpenAI).

The data is not secret (the client could send ``thinking_blocks`` through chat), so it is only
encoded; providers check their own signatures.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping, Sequence

import msgspec

from proxy.errors import InvalidRequestError
from proxy.schemas.chat import ThinkingBlock

__all__ = [
    "PREFIX",
    "Envelope",
    "IdFactory",
    "decode_envelope",
    "encode_envelope",
    "is_gateway_envelope",
    "new_item_id",
]

PREFIX = "thruway.r1:"
# Makes an id from a prefix (``msg``, ``fc``, ``rs``, ``resp``, ``conv``); tests pass a counter.
IdFactory = Callable[[str], str]


class Envelope(msgspec.Struct, tag_field="kind", tag="thruway.reasoning", omit_defaults=True):
    thinking_blocks: list[ThinkingBlock] = []
    # call_id -> the tool call's ``extra_content``, as the provider returned it.
    tool_extras: dict[str, msgspec.Raw] = {}


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Envelope).decode


def new_item_id(prefix: str) -> str:
    """``<prefix>_`` and 48 random hex digits, as OpenAI's ids look."""
    return f"{prefix}_{secrets.token_hex(24)}"


def encode_envelope(
    blocks: Sequence[ThinkingBlock], extras: Mapping[str, msgspec.Raw]
) -> str | None:
    """The envelope for ``encrypted_content``; ``None`` when there is nothing to carry."""
    if not blocks and not extras:
        return None
    data = _encode(Envelope(thinking_blocks=list(blocks), tool_extras=dict(extras)))
    return PREFIX + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def is_gateway_envelope(encrypted_content: object) -> bool:
    return isinstance(encrypted_content, str) and encrypted_content.startswith(PREFIX)


def decode_envelope(encrypted_content: object, *, param: str | None) -> Envelope | None:
    """The gateway's envelope, ``None`` for anything else (OpenAI's, or none); a 400 when it has
    the gateway's prefix but was altered."""
    if not is_gateway_envelope(encrypted_content):
        return None
    assert isinstance(encrypted_content, str)
    text = encrypted_content[len(PREFIX) :]
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _decode(data)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidRequestError(
            "The reasoning item's `encrypted_content` was issued by this gateway but has been "
            "altered; send it back exactly as it was returned.",
            param=f"{param}.encrypted_content" if param else None,
            code="invalid_encrypted_content",
        ) from None
