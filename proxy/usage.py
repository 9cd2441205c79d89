"""The usage writer: usage records go from requests to the store in batches, off the request path.

``submit`` appends to a bounded in-memory queue and returns (it never awaits); one task per app
writes what is queued in batches of up to ``usage.batch_size``, as soon as a batch is full and at
least every ``usage.flush_interval_s``. When the store fails, the batch goes back to the front of
the queue and the writer retries with exponential backoff (0.1 s doubling to 5 s), logging the
outage once and its end once; records keep queuing meanwhile. A full queue drops its oldest
record for each new one, counted (``dropped``, ``thruway_usage_records_dropped_total``) and
logged once per burst. ``stop`` writes everything still queued, retrying a failing store for up
to ``usage.shutdown_timeout_s``; the app stops the writer before it closes the store.

Re-sending a batch cannot duplicate records: each has its own id, and the store skips ids it
already has (a commit whose answer was lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping

import msgspec
import structlog
from aiohttp import web

from proxy.config import UsageConfig
from proxy.store import Store, UsageRecord

__all__ = ["STREAM_CAPTURE", "USAGE_WRITER", "UsageWriter", "stream_text", "usage_content"]

log = structlog.get_logger("thruway.usage")

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 5.0
# How often records past ``usage.retention_days`` are deleted.
_PRUNE_EVERY_S = 3600.0


class UsageWriter:
    """Batches usage records into the store; see the module docstring."""

    def __init__(self, store: Store, config: UsageConfig) -> None:
        self._store = store
        self._config = config
        self.log_content = config.log_content
        self._queue: deque[UsageRecord] = deque()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self._burst = 0  # dropped since the queue was last written out
        self.dropped = 0
        self.written = 0

    @property
    def depth(self) -> int:
        """Records waiting to be written (the batch being written included)."""
        return len(self._queue) + self._in_flight

    def submit(self, record: UsageRecord) -> None:
        """Queue a record; O(1), never waits. A full queue drops its oldest record."""
        queue = self._queue
        if len(queue) >= self._config.queue_size:
            queue.popleft()
            self._dropped_one()
        queue.append(record)
        if len(queue) >= self._config.batch_size and not self._failing:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="thruway-usage-writer")
        if self._config.retention_days > 0:
            self._pruner = asyncio.create_task(self._prune(), name="thruway-usage-pruner")

    async def _prune(self) -> None:
        """Delete what is past its retention: at start, then every hour. A failure is logged
        and tried again next time."""
        while True:
            before = time.time() - self._config.retention_days * 86400
            try:
                deleted = await self._store.delete_usage_before(before)
            except Exception as exc:  # the store's own errors differ by backend
                log.warning("usage_prune_failed", error_type=type(exc).__name__, error=str(exc))
            else:
                if deleted:
                    log.info("usage_records_pruned", count=deleted, before=before)
            await asyncio.sleep(_PRUNE_EVERY_S)

    async def stop(self) -> None:
        """Write out everything queued, then end the task. A failing (or hanging) store is
        retried for up to ``shutdown_timeout_s`` in all; what is left then is logged as lost."""
        self._stopping = True
        self._wake.set()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        try:
            async with asyncio.timeout(self._config.shutdown_timeout_s):
                if self._task is not None:
                    await self._task
                backoff = _FIRST_BACKOFF_S
                while not await self._drain():
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
        except TimeoutError:
            log.error("usage_records_lost", count=len(self._queue))
            self._queue.clear()

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff or self._config.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return
            if await self._drain():
                backoff = 0.0
            else:
                backoff = min(max(backoff * 2, _FIRST_BACKOFF_S), _MAX_BACKOFF_S)

    async def _drain(self) -> bool:
        """Write batches until the queue is empty (True) or the store fails (False)."""
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(len(queue), self._config.batch_size))]
            self._in_flight = len(batch)
            try:
                await self._store.insert_usage(batch)
            except BaseException as exc:
                self._put_back(batch)  # cancelled too: ``stop`` counts what is left
                if not isinstance(exc, Exception):
                    raise
                if not self._failing:
                    self._failing = True
                    log.error(
                        "usage_write_failed",
                        error_type=type(exc).__name__,
                        error=str(exc),
                        queued=len(queue),
                    )
                return False
            finally:
                self._in_flight = 0
            self.written += len(batch)
            if self._failing:
                self._failing = False
                log.warning("usage_write_resumed", queued=len(queue))
        if self._burst:
            log.warning("usage_records_dropped", count=self._burst)
            self._burst = 0
        return True

    def _put_back(self, batch: list[UsageRecord]) -> None:
        queue = self._queue
        queue.extendleft(reversed(batch))
        while len(queue) > self._config.queue_size:
            queue.popleft()
            self._dropped_one()

    def _dropped_one(self) -> None:
        self.dropped += 1
        if not self._burst:
            log.warning("usage_queue_full", queue_size=self._config.queue_size)
        self._burst += 1


class _Content(msgspec.Struct, omit_defaults=True):
    request: dict[str, msgspec.Raw | str] = {}
    response: msgspec.Raw | None = None
    stream_text: str | None = None


_encode_content = msgspec.json.Encoder().encode


def usage_content(
    fields: Mapping[str, msgspec.Raw | str], reply: bytes | None, streamed: str | None = None
) -> bytes | None:
    """A record's ``content`` (``usage.log_content``): ``{"request": {content fields},
    "response": reply JSON, "stream_text": a stream's text}``, None when there is nothing."""
    if not fields and reply is None and streamed is None:
        return None
    raw = msgspec.Raw(reply) if reply is not None else None
    return _encode_content(_Content(dict(fields), raw, streamed))


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None  # legacy completions


class _Event(msgspec.Struct):
    choices: list[_Choice] = []


_event = msgspec.json.Decoder(_Event)


def stream_text(events: list[bytes]) -> str:
    """The text a chat or completions stream sent: its deltas' content, concatenated (events
    that are not chunks, such as an error event, add nothing)."""
    parts: list[str] = []
    for payload in events:
        try:
            chunk = _event.decode(payload)
        except msgspec.DecodeError:
            continue
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                parts.append(choice.delta.content)
            elif choice.text:
                parts.append(choice.text)
    return "".join(parts)


USAGE_WRITER = web.AppKey("usage_writer", UsageWriter)
# With ``usage.log_content``: the payloads of the events a chat or completions stream sent
# (request_context creates it, the stream handler fills it).
STREAM_CAPTURE = web.RequestKey[list[bytes]]("usage_stream_capture")
