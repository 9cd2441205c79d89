"""AWS event-stream messages, encoded: what ``/bedrock/.../converse-stream`` answers with.

A message is a prelude (total length, headers length, both big-endian uint32, and the CRC-32 of
those 8 bytes), the headers (name length as one byte, the name, value type 7 = string, value
length as uint16, the value), the payload, and the CRC-32 of everything before it. This is the
framing botocore's ``EventStreamBuffer`` decodes (and ``FrameReader`` reads from Bedrock).
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["CONTENT_TYPE", "event_message", "exception_message", "message"]

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_JSON = b"application/json"
_STRING = b"\x07"
_U32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">II")


def _header(name: bytes, value: bytes) -> bytes:
    return bytes((len(name),)) + name + _STRING + len(value).to_bytes(2, "big") + value


def message(headers: list[tuple[bytes, bytes]], payload: bytes) -> bytes:
    """One message with string-typed ``headers`` and ``payload``."""
    encoded = b"".join(_header(k, v) for k, v in headers)
    prelude = _PRELUDE.pack(16 + len(encoded) + len(payload), len(encoded))
    head = prelude + _U32.pack(zlib.crc32(prelude)) + encoded + payload
    return head + _U32.pack(zlib.crc32(head))


def event_message(event_type: str, payload: bytes) -> bytes:
    """An ``event`` message: ``:event-type`` names the ConverseStream member (``messageStart``,
    ``contentBlockDelta``, ...) and ``payload`` is its JSON."""
    return message(
        [
            (b":event-type", event_type.encode()),
            (b":content-type", _JSON),
            (b":message-type", b"event"),
        ],
        payload,
    )


def exception_message(exception_type: str, payload: bytes) -> bytes:
    """An ``exception`` message: ``:exception-type`` names the ConverseStream member
    (``throttlingException``...), ``payload`` is ``{"message": ...}``; botocore raises it as
    that modelled error."""
    return message(
        [
            (b":exception-type", exception_type.encode()),
            (b":content-type", _JSON),
            (b":message-type", b"exception"),
        ],
        payload,
    )
