"""Secrets never reach a log line or an error body."""

from __future__ import annotations

import io
import logging

import msgspec
import structlog

from proxy.logging import configure_logging
from proxy.redact import Redactor


def test_known_secrets_and_key_shapes_are_scrubbed() -> None:
    """Configured values and anything shaped like a provider key are replaced."""
    scrub = Redactor(["my-custom-secret-value"])
    text = (
        "key my-custom-secret-value, openai sk-proj-abcdEFGH1234, masked sk-ab***wxyz, "
        "groq gsk_0123456789abcdef, header Bearer abc.def-123"
    )
    out = scrub(text)
    for secret in ("my-custom-secret-value", "sk-proj-abcd", "sk-ab***", "gsk_0123", "abc.def"):
        assert secret not in out
    assert 5 == out.count("[redacted]")


def test_ordinary_text_is_untouched() -> None:
    """Model names and messages without secrets pass unchanged."""
    text = "openai: The model `gpt-4o-mini` does not exist (task-force, skip-list)"
    assert text == Redactor()(text)


def test_log_lines_are_redacted() -> None:
    """A log line mentioning a secret, by value or by field name, is written without it."""
    out = io.StringIO()
    configure_logging(
        level="info", fmt="json", secrets=["sk-live-TOPSECRET99"], stream=out, cache=False
    )
    log = structlog.get_logger("test")
    log.info("upstream_said", error="bad key sk-live-TOPSECRET99", authorization="Bearer x")
    log.info("list", failures=["openai: sk-live-TOPSECRET99 rejected"])
    lines = [msgspec.json.decode(line) for line in out.getvalue().splitlines()]
    assert "TOPSECRET" not in out.getvalue()
    assert "bad key [redacted]" == lines[0]["error"]
    assert "[redacted]" == lines[0]["authorization"]
    assert "info" == lines[0]["level"]
    assert ["openai: [redacted] rejected"] == lines[1]["failures"]


def test_exceptions_are_one_line_outside_debug() -> None:
    """Outside debug level an exception is logged as one scrubbed line, never a traceback."""
    out = io.StringIO()
    configure_logging(
        level="info", fmt="json", secrets=["sk-live-TOPSECRET99"], stream=out, cache=False
    )
    try:
        raise ConnectionResetError("lost while using sk-live-TOPSECRET99")
    except ConnectionResetError:
        structlog.get_logger("test").error("failed", exc_info=True)
        logging.getLogger("aiohttp.server").exception("Error handling request")
    lines = [msgspec.json.decode(line) for line in out.getvalue().splitlines()]
    assert 2 == len(lines)
    for line in lines:
        assert "ConnectionResetError: lost while using [redacted]" == line["exception"]
    assert "Traceback" not in out.getvalue()
    assert "aiohttp.server" == lines[1]["logger"]


def test_debug_level_keeps_tracebacks() -> None:
    """At debug level the whole traceback is kept, still scrubbed."""
    out = io.StringIO()
    configure_logging(
        level="debug", fmt="json", secrets=["sk-live-TOPSECRET99"], stream=out, cache=False
    )
    try:
        raise ValueError("sk-live-TOPSECRET99")
    except ValueError:
        structlog.get_logger("test").error("failed", exc_info=True)
    line = msgspec.json.decode(out.getvalue())
    assert line["exception"].startswith("Traceback")
    assert "TOPSECRET" not in out.getvalue()


def test_masked_keys_of_any_shape_are_scrubbed() -> None:
    """A provider echoing a masked key of an unknown shape ("tok-S***8877") loses it too."""
    scrub = Redactor()
    out = scrub("openai: Incorrect API key provided: tok-S***8877. You can find your key ...")
    assert "openai: Incorrect API key provided: [redacted]. You can find your key ..." == out
