"""The upstream SSE parser: events complete only at a blank line, whatever the chunking."""

from __future__ import annotations

import pytest

from providers._sse import SSEParser

STREAM = (
    b": comment\n"
    b"event: message_start\n"
    b'data: {"a":1}\n'
    b"\n"
    b"data: line one\n"
    b"data: line two\n"
    b"id: 7\n"
    b"\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    (b"message_start", b'{"a":1}'),
    (b"message", b"line one\nline two"),
    (b"message", b"no-space"),
    (b"message", b"[DONE]"),
]


def _parse(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    events += parser.close()
    return [(e.event, e.data) for e in events]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    """Splitting the byte stream anywhere yields the same events."""
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert EXPECTED == _parse(chunks)


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_crlf_and_cr_line_endings(size: int) -> None:
    """CRLF and lone CR end lines too, even when a CRLF is split across chunks."""
    for newline in (b"\r\n", b"\r"):
        data = STREAM.replace(b"\n", newline)
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert EXPECTED == _parse(chunks)


def test_unterminated_last_event_is_flushed_on_close() -> None:
    """An event not followed by a blank line is still delivered when the stream ends."""
    assert [(b"message", b"tail")] == _parse([b"data: tail"])


def test_nothing_until_the_blank_line() -> None:
    """A partial event stays buffered until its terminating blank line arrives."""
    parser = SSEParser()
    assert [] == parser.feed(b'data: {"x":')
    assert [] == parser.feed(b" 1}\n")
    assert [b'{"x": 1}'] == [e.data for e in parser.feed(b"\n")]
