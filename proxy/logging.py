"""structlog set-up: JSON lines (or console output), with secrets scrubbed from every event.

The standard library's loggers (aiohttp, asyncio) go through the same processors, so there is one
format and one redaction for every line the process writes.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO, Literal, TextIO

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from proxy.redact import REDACTED, Redactor

__all__ = [
    "CanonicalLine",
    "Logs",
    "RedactSecrets",
    "RedactingJSONRenderer",
    "RequestLine",
    "configure_logging",
]

_SECRET_NAMES = (
    "authorization",
    "api_key",
    "x-api-key",
    "key",
    "master_key",
    "password",
    "secret",
    "token",
)
_SECRET_FIELDS = frozenset(
    [*_SECRET_NAMES, *(n.upper() for n in _SECRET_NAMES), *(n.title() for n in _SECRET_NAMES)]
)
_encode = msgspec.json.Encoder().encode


class RedactSecrets:
    """A processor that blanks secret-named fields and scrubs secret values from all others."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._scrub = Redactor(secrets)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        for field, value in event_dict.items():
            if field in _SECRET_FIELDS and value:
                event_dict[field] = REDACTED
            elif isinstance(value, str):
                event_dict[field] = self._scrub(value)
            elif isinstance(value, list):
                event_dict[field] = [self._scrub(v) if isinstance(v, str) else v for v in value]
        return event_dict


_LEVEL_NAMES = {"warn": "warning", "exception": "error", "err": "error", "fatal": "critical"}


class _Timestamp:
    """The level, and an ISO-8601 UTC timestamp with microseconds (the date and time of the
    current second are formatted once per second, not once per line)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        event_dict["level"] = _LEVEL_NAMES.get(name, name)
        event_dict["timestamp"] = self.now()
        return event_dict

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1e6):06d}Z"


def _summarize_exception(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """Replace ``exc_info`` by one line naming the exception: no tracebacks outside debug."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
        if exc is not None:
            event_dict["exception"] = f"{type(exc).__name__}: {exc}"
    return event_dict


class RedactingJSONRenderer:
    """Renders an event as one JSON line, secrets scrubbed field by field.

    Every line but the canonical one (``RequestLine``) comes here; those are few, so the plain
    per-field scrub is cheap enough.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._redact = RedactSecrets(secrets)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> bytes:
        return _encode(self._redact(logger, name, event_dict))

    def as_text(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        return self(logger, name, event_dict).decode()


class _LineLogger:
    """Writes each rendered line to a binary stream without flushing it: a flusher thread does
    that every ``flush_interval_s`` (one write syscall per request would cost more than the
    line itself)."""

    __slots__ = ("_write",)

    def __init__(self, out: BinaryIO) -> None:
        self._write = out.write

    def msg(self, line: bytes | str) -> None:
        self._write((line if type(line) is bytes else str(line).encode()) + b"\n")

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


class _TextLineLogger:
    """The same for a text stream (tests, captured output): flushed on every line."""

    __slots__ = ("_out",)

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def msg(self, line: bytes | str) -> None:
        self._out.write((line.decode() if type(line) is bytes else str(line)) + "\n")
        self._out.flush()

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


def _flush_every(out: BinaryIO, interval: float) -> None:
    def flush() -> None:
        with contextlib.suppress(ValueError, OSError):  # closed at exit
            out.flush()

    def run() -> None:
        while True:
            time.sleep(interval)
            flush()

    threading.Thread(target=run, name="log-flusher", daemon=True).start()
    atexit.register(flush)


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["json", "console"] = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    cache: bool = True,
    flush_interval_s: float = 0.2,
) -> Logs:
    """Configure structlog and the standard library's root logger once, at start-up."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _Timestamp(),
        # Exceptions are rendered before redaction, so a secret in their text is scrubbed too.
        structlog.processors.format_exc_info if numeric <= logging.DEBUG else _summarize_exception,
    ]
    json_renderer = RedactingJSONRenderer(secrets)
    renderers: list[Processor]
    if fmt == "json":
        renderers = [json_renderer]
    else:
        renderers = [RedactSecrets(secrets), structlog.dev.ConsoleRenderer(colors=False)]
    out = stream or sys.stderr
    binary: BinaryIO | None = getattr(out, "buffer", None)
    logger: _LineLogger | _TextLineLogger
    if binary is not None and flush_interval_s > 0:
        logger = _LineLogger(binary)
        _flush_every(binary, flush_interval_s)
    else:
        logger = _TextLineLogger(out)
    structlog.configure(
        processors=[*shared, *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: logger,
        cache_logger_on_first_use=cache,
    )
    # The standard library's records are rare (aiohttp, asyncio): written and flushed at once,
    # after what structlog has buffered.
    handler = _FlushingHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *([json_renderer.as_text] if fmt == "json" else renderers),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # The canonical request line replaces aiohttp's access log.
    logging.getLogger("aiohttp.access").disabled = True

    def flush() -> None:
        if binary is not None:
            binary.flush()
        out.flush()

    fast = logger.msg if fmt == "json" and isinstance(logger, _LineLogger) else None
    return Logs(flush=flush, request_line=RequestLine(fast, secrets=secrets, threshold=numeric))


class CanonicalLine(
    msgspec.Struct, omit_defaults=True, kw_only=True, tag_field="event", tag="request"
):
    """The one log line per request (absent values are left out; ``event`` is always
    ``"request"``)."""

    level: Literal["debug", "info"]
    request_id: str
    method: str
    path: str
    status: int
    request_type: str | None = None
    model_requested: str | None = None
    provider: str | None = None
    model: str | None = None
    stream: bool | None = None
    attempts: int | None = None
    fallback_index: int | None = None
    latency_ms: float | None = None
    ttfb_ms: float | None = None
    error_type: str | None = None
    failures: list[str] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_seconds: float | None = None
    # USD, when the model has a price (proxy/pricing.py).
    cost_usd: float | None = None
    # A hedged request's losing attempt, when it had finished with usage before it was closed.
    hedge_loser_input_tokens: int | None = None
    hedge_loser_output_tokens: int | None = None
    timestamp: str = ""


class RequestLine:
    """Writes the canonical line, one per request.

    structlog's generic call path costs about 10 µs a call whatever the processors do, a fifth of
    the gateway's own CPU budget per request; this one line is therefore encoded and written
    directly, in the same JSON format, to the same buffered stream, with the same timestamp,
    level and redaction. Without a stream (in-process tests, console format) it goes through
    structlog like every other line.
    """

    __slots__ = ("_scrub", "_stamp", "_threshold", "_write")

    def __init__(
        self,
        write: Callable[[bytes | str], None] | None = None,
        *,
        secrets: Iterable[str] = (),
        threshold: int = logging.INFO,
    ) -> None:
        self._write = write
        self._scrub = Redactor(secrets)
        self._threshold = threshold
        self._stamp = _Timestamp()

    def __call__(self, line: CanonicalLine) -> None:
        if self._write is None:
            fields = {k: v for k, v in msgspec.structs.asdict(line).items() if v is not None}
            del fields["timestamp"]
            getattr(_request_log, fields.pop("level"))("request", **fields)
            return
        if _LEVELS[line.level] < self._threshold:
            return
        # Only these fields hold text from outside the gateway (the client, the upstream).
        scrub = self._scrub
        for name in ("model_requested", "model", "path"):
            value = getattr(line, name)
            if value is not None and scrub.found_in(value):
                setattr(line, name, scrub(value))
        if line.failures:
            line.failures = [scrub(f) for f in line.failures]
        line.timestamp = self._stamp.now()
        self._write(_encode(line))


class Logs:
    """What ``configure_logging`` set up: a flush for the way out, and the canonical line."""

    __slots__ = ("flush", "request_line")

    def __init__(self, *, flush: Callable[[], None], request_line: RequestLine) -> None:
        self.flush = flush
        self.request_line = request_line


_request_log = structlog.get_logger("thruway.request")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _FlushingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes standard-library records after flushing what structlog has buffered."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = getattr(self.stream, "buffer", None)
        if buffer is not None:
            with contextlib.suppress(ValueError, OSError):
                buffer.flush()
        super().emit(record)
