"""The usage a forwarded OpenAI answer reports, read without changing a byte of it."""

from __future__ import annotations

from providers._forward import SSEUsage, json_usage
from proxy.schemas.common import BilledUsage


def test_chat_usage() -> None:
    """A chat or embeddings body's prompt and completion tokens, cached and reasoning ones."""
    body = (
        b'{"id":"x","usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,'
        b'"prompt_tokens_details":{"cached_tokens":2},'
        b'"completion_tokens_details":{"reasoning_tokens":1}}}'
    )
    assert json_usage(body) == BilledUsage(9, 4, 13, cached_tokens=2, reasoning_tokens=1)


def test_responses_and_images_usage() -> None:
    """Input and output tokens (Responses, images), and a Responses event's nested usage."""
    assert json_usage(b'{"usage":{"input_tokens":3,"output_tokens":5}}') == BilledUsage(3, 5, 8)
    event = (
        b'{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":2}}}'
    )
    assert json_usage(event) == BilledUsage(1, 2, 3)


def test_no_usage() -> None:
    """A body without usage, a null usage, or not a JSON object has none."""
    assert json_usage(b'{"object":"list","data":[]}') is None
    assert json_usage(b'{"usage":null}') is None
    assert json_usage(b'[{"usage":1}]') is None
    assert json_usage(b"\x00\x01binary") is None


def test_sse_usage_across_reads() -> None:
    """An event split across reads is read once whole; the last usage reported wins."""
    reader = SSEUsage()
    reader.feed(b'data: {"choices":[]}\n\ndata: {"choices":[],"usa')
    assert reader.usage is None
    reader.feed(b'ge":{"prompt_tokens":4,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
    reader.feed(b"")
    assert reader.usage == BilledUsage(4, 2, 6)
