"""An incremental parser for server-sent events read from an upstream (pure, no I/O)."""

from __future__ import annotations

__all__ = ["SSEEvent", "SSEParser"]


class SSEEvent:
    __slots__ = ("data", "event")

    def __init__(self, event: bytes, data: bytes) -> None:
        self.event = event
        self.data = data

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data!r})"


class SSEParser:
    """Feed bytes as they arrive; get back the events they complete.

    Follows the SSE grammar: lines end in LF, CRLF or CR; an event ends at a blank line; ``data``
    lines are joined with LF; one space after the colon is dropped; comments (``:``) are skipped.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if not (self._data or self._event) and buf.startswith(b"data: ") and b"\r" not in buf:
            fast = self._feed_data_only(buf)
            if fast is not None:
                return fast
        return self._feed_lines(buf)

    def _feed_data_only(self, buf: bytes) -> list[SSEEvent] | None:
        """The common case, as OpenAI-style upstreams write it: only ``data: <one line>`` events
        separated by blank lines. ``None`` when ``buf`` holds anything else (the general parser
        then reads it all)."""
        parts = buf.split(b"\n\n")
        tail = parts.pop()
        out: list[SSEEvent] = []
        for part in parts:
            if not part:
                continue
            if b"\n" in part or not part.startswith(b"data: "):
                return None
            out.append(SSEEvent(b"message", part[6:]))
        self._buf = tail
        return out

    def _feed_lines(self, buf: bytes) -> list[SSEEvent]:
        if b"\r" in buf:
            # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    out.append(SSEEvent(self._event or b"message", b"\n".join(self._data)))
                self._data = []
                self._event = b""
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value
            # Comments (empty name), ``id`` and ``retry`` carry nothing the gateway uses.
        return out

    def close(self) -> list[SSEEvent]:
        """The event left when the stream ends without a final blank line."""
        tail = self.feed(b"\n\n") if (self._buf or self._data) else []
        return tail
