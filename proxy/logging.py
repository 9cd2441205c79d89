"""structlog set-up: JSON lines (or console output), with secrets scrubbed from every event.

The standard library's loggers (aiohttp, asyncio) go through the same processors, so there is one
format and one redaction for every line the process writes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Literal, TextIO

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from proxy.redact import REDACTED, Redactor

__all__ = ["RedactSecrets", "configure_logging"]

_SECRET_NAMES = ("authorization", "api_key", "x-api-key", "key", "master_key", "password", "secret")
_SECRET_FIELDS = frozenset(
    [*_SECRET_NAMES, *(n.upper() for n in _SECRET_NAMES), *(n.title() for n in _SECRET_NAMES)]
)
# Fields whose values the gateway itself makes (or has checked): nothing secret can be in them.
_GATEWAY_MADE = frozenset(
    {"event", "level", "timestamp", "request_id", "method", "request_type", "provider", "logger"}
)
_encode = msgspec.json.Encoder().encode


class RedactSecrets:
    """A processor that blanks secret-named fields and scrubs secret values from all others."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._scrub = Redactor(secrets)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        # The common case (nothing to scrub) costs one search over all the strings at once.
        texts = []
        for field, value in event_dict.items():
            if isinstance(value, str):
                if field not in _GATEWAY_MADE:
                    texts.append(value)
            elif isinstance(value, list):
                texts.extend(v for v in value if isinstance(v, str))
        if _SECRET_FIELDS.isdisjoint(event_dict) and not self._scrub.found_in("\n".join(texts)):
            return event_dict
        for field, value in event_dict.items():
            if field in _SECRET_FIELDS and value:
                event_dict[field] = REDACTED
            elif isinstance(value, str):
                event_dict[field] = self._scrub(value)
            elif isinstance(value, list):
                event_dict[field] = [self._scrub(v) if isinstance(v, str) else v for v in value]
        return event_dict


class _Timestamp:
    """ISO-8601 UTC timestamps with microseconds; the date and time of the current second are
    formatted once per second, not once per line."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


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


def _render_json(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
    return _encode(event_dict).decode()


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["json", "console"] = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    cache: bool = True,
) -> None:
    """Configure structlog and the standard library's root logger once, at start-up."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _Timestamp(),
        # Exceptions are rendered before redaction, so a secret in their text is scrubbed too.
        structlog.processors.format_exc_info if numeric <= logging.DEBUG else _summarize_exception,
        RedactSecrets(secrets),
    ]
    renderer: Processor = (
        _render_json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    out = stream or sys.stderr
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # The canonical request line replaces aiohttp's access log.
    logging.getLogger("aiohttp.access").disabled = True
