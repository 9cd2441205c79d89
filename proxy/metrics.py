"""Prometheus metrics, updated once per request from what its canonical log line sees.

One process: the values live in this process and ``GET /metrics`` renders them. Several
workers (``--workers N``): the supervisor gives every worker the same ``PROMETHEUS_MULTIPROC_DIR``;
prometheus_client then keeps each worker's values in memory-mapped files there (it chooses
this when it is first imported, from that variable), and any worker's ``/metrics`` sums them all.
The supervisor removes a dead worker's gauges (``mark_process_dead``) and the directory at exit.

``.labels()`` parses its arguments and takes a lock on every call: each distinct label set
gets one :class:`_Series` (every child it touches, looked up once) cached by a plain tuple.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.keys import Outcome
from proxy.usage import UsageWriter

__all__ = ["CONTENT_TYPE", "METRICS", "MULTIPROC_DIR", "REJECTIONS", "Metrics"]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# What ``generate_latest`` writes (prometheus_client's CONTENT_TYPE_LATEST may name a newer
# version, for content negotiation we do not do).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Errors the gateway answers itself to refuse work (load shedding, no provider to serve it;
# rate limits and budgets once they exist), counted by ``thruway_rejections_total{reason}``.
REJECTIONS = frozenset(
    {"overloaded", "provider_unavailable", "rate_limit_exceeded", "budget_exceeded"}
)
# Failures that were no upstream call: the target was skipped or had no room.
_SKIPPED = frozenset({"circuit_open", "provider_unavailable", "overloaded"})
# LLM calls take from milliseconds (embeddings, cache hits) to minutes (long generations).
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_TTFB_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
# An upstream's time to response headers: a non-streamed answer's whole generation included.
_UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Past this many label sets, models are counted as "other": a client naming random models
# of a pass-through provider must not grow the scrape without bound.
_MAX_SERIES = 2000
_OVERFLOW_MODEL = "other"
_STREAM_OPEN = web.RequestKey("metrics_stream_open", bool)
# How often counted values are handed to prometheus_client (and a scrape flushes first).
_FLUSH_S = 1.0


class _Series:
    """The children of one (provider, model, status, request type), and what this process
    counted for them since the last flush (plain numbers: prometheus_client takes a lock on
    every update, which cost more than the rest of a request's accounting)."""

    __slots__ = (
        "cached",
        "cost",
        "d_counts",
        "d_sum",
        "duration",
        "input",
        "n",
        "n_cached",
        "n_cost",
        "n_input",
        "n_output",
        "n_reasoning",
        "n_success",
        "output",
        "reasoning",
        "requests",
        "success",
        "t_counts",
        "t_sum",
        "ttfb",
    )

    def __init__(self, m: Metrics, provider: str, model: str, status: str, op: str) -> None:
        self.requests = m.requests.labels(provider, model, status, op)
        self.duration = m.duration.labels(provider, model, op)
        self.ttfb = m.ttfb.labels(provider, model, op)
        tokens = m.tokens
        self.input = tokens.labels(provider, model, "input")
        self.output = tokens.labels(provider, model, "output")
        self.cached = tokens.labels(provider, model, "cached")
        self.reasoning = tokens.labels(provider, model, "reasoning")
        self.cost = m.cost.labels(provider, model)
        self.success = m.attempts.labels(provider, "success") if provider else None
        self._reset()

    def _reset(self) -> None:
        self.n = self.n_input = self.n_output = self.n_cached = self.n_reasoning = 0
        self.n_success = 0
        self.d_sum = self.t_sum = self.n_cost = 0.0
        self.d_counts = [0] * (len(_DURATION_BUCKETS) + 1)
        self.t_counts = [0] * (len(_TTFB_BUCKETS) + 1)

    def flush(self) -> None:
        """Hand what was counted to prometheus_client (one update per value, not per request)."""
        if self.n:
            self.requests.inc(self.n)
            _add_histogram(self.duration, self.d_counts, self.d_sum)
            if self.t_sum or any(self.t_counts):
                _add_histogram(self.ttfb, self.t_counts, self.t_sum)
            for child, n in (
                (self.input, self.n_input),
                (self.output, self.n_output),
                (self.cached, self.n_cached),
                (self.reasoning, self.n_reasoning),
            ):
                if n:
                    child.inc(n)
            if self.n_cost:
                self.cost.inc(self.n_cost)
            if self.n_success and self.success is not None:
                self.success.inc(self.n_success)
        self._reset()


def _add_histogram(child: Histogram, counts: list[int], total: float) -> None:
    """Observations counted per bucket, added to a histogram child at once (its per-bucket
    values are what ``observe`` increments)."""
    buckets = child._buckets
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    child._sum.inc(total)


class Metrics:
    """Every metric of one app, in its own registry (several apps may share a process)."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self._dir = multiprocess_dir
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "thruway_requests",
            "Requests answered, by provider, model, HTTP status and request type.",
            ("provider", "model", "status", "request_type"),
            registry=r,
        )
        self.duration = Histogram(
            "thruway_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream's last byte).",
            ("provider", "model", "request_type"),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "thruway_ttfb_seconds",
            "Time from a streamed request's arrival to its first byte.",
            ("provider", "model", "request_type"),
            buckets=_TTFB_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "thruway_tokens",
            "Tokens billed by the upstream (cached: of the input, reasoning: of the output).",
            ("provider", "model", "kind"),
            registry=r,
        )
        self.in_flight = Gauge(
            "thruway_in_flight_requests",
            "Requests being served.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.open_streams = Gauge(
            "thruway_open_streams",
            "Streamed responses whose headers are sent and whose end is not.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.attempts = Counter(
            "thruway_upstream_attempts",
            "Upstream attempts by outcome: success, the failure's HTTP status, or "
            "circuit_open / provider_unavailable / overloaded for a target not called.",
            ("provider", "outcome"),
            registry=r,
        )
        self.rejections = Counter(
            "thruway_rejections",
            "Requests the gateway refused itself, by reason (the error type).",
            ("reason",),
            registry=r,
        )
        self.cost = Counter(
            "thruway_cost_usd",
            "Cost of the requests answered in USD, by provider and model (priced models only).",
            ("provider", "model"),
            registry=r,
        )
        self.upstream_latency = Histogram(
            "thruway_upstream_latency_seconds",
            "Each upstream request's time to its response headers, by provider.",
            ("provider",),
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.usage_queue = Gauge(
            "thruway_usage_queue_depth",
            "Usage records waiting to be written to the store.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.usage_dropped = Counter(
            "thruway_usage_records_dropped",
            "Usage records dropped because the queue was full (the store down too long).",
            registry=r,
        )
        # The usage writer whose queue is shown (the app sets it once its store is open).
        self.usage: UsageWriter | None = None
        self._usage_dropped = 0
        self._upstream: dict[str, tuple[Histogram, list[int], list[float]]] = {}
        self._series: dict[tuple[str, str, int, str], _Series] = {}
        self._dirty: dict[tuple[str, str, int, str], _Series] = {}
        self._live = 0  # requests in flight
        self._streams = 0  # streamed responses open
        self._handle: asyncio.TimerHandle | None = None

    def started(self) -> None:
        self._live += 1
        self._schedule()

    def finished(
        self,
        request: web.Request,
        request_type: str,
        outcome: Outcome,
        status: int,
        error_type: str | None,
    ) -> None:
        """Account one request that ``started``: called once, after its response ended."""
        self._live -= 1
        if request.get(_STREAM_OPEN):
            self._streams -= 1
        key = (outcome.provider, outcome.model, status, request_type)
        series = self._series.get(key) or self._new_series(key)
        series.n += 1
        seconds = outcome.elapsed_ms() / 1000
        series.d_sum += seconds
        series.d_counts[bisect_left(_DURATION_BUCKETS, seconds)] += 1
        if outcome.stream and outcome.ttfb_ms is not None:
            ttfb = outcome.ttfb_ms / 1000
            series.t_sum += ttfb
            series.t_counts[bisect_left(_TTFB_BUCKETS, ttfb)] += 1
        cost = outcome.log_fields.get("cost_usd")
        if isinstance(cost, float):
            series.n_cost += cost
        billed = outcome.usage
        if billed is not None:
            series.n_input += billed.prompt_tokens
            series.n_output += billed.completion_tokens
            series.n_cached += billed.cached_tokens
            series.n_reasoning += billed.reasoning_tokens
        self._dirty[key] = series
        if self._handle is None:
            self._schedule()
        if outcome.failures:
            self._failed_attempts(outcome.failures)
        if status < 400:
            series.n_success += 1
        elif error_type in REJECTIONS:
            self.rejections.labels(error_type).inc()

    def flush(self) -> None:
        """Everything counted since the last flush, to prometheus_client (every second, and
        before each scrape)."""
        self._handle = None
        dirty, self._dirty = self._dirty, {}
        for series in dirty.values():
            series.flush()
        for child, counts, total in self._upstream.values():
            if total[0] or any(counts):
                _add_histogram(child, counts, total[0])
                counts[:] = [0] * len(counts)
                total[0] = 0.0
        self.in_flight.set(self._live)
        self.open_streams.set(self._streams)
        if self.usage is not None:
            self.usage_queue.set(self.usage.depth)
            if self.usage.dropped > self._usage_dropped:
                self.usage_dropped.inc(self.usage.dropped - self._usage_dropped)
                self._usage_dropped = self.usage.dropped

    def upstream_answered(self, provider: str, seconds: float) -> None:
        """Count one upstream request's time to its response headers (``Upstream`` calls it)."""
        got = self._upstream.get(provider)
        if got is None:
            if len(self._upstream) >= _MAX_SERIES:
                return
            got = self._upstream[provider] = (
                self.upstream_latency.labels(provider),
                [0] * (len(_UPSTREAM_BUCKETS) + 1),
                [0.0],
            )
        got[1][bisect_left(_UPSTREAM_BUCKETS, seconds)] += 1
        got[2][0] += seconds
        if self._handle is None:
            self._schedule()

    def _schedule(self) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(_FLUSH_S, self.flush)

    def finished_other(self, request: web.Request, error_type: str | None) -> None:
        """Account a request outside the routes that have a request type (no ``started``)."""
        if request.get(_STREAM_OPEN):
            self._streams -= 1
        if error_type in REJECTIONS:
            self.rejections.labels(error_type).inc()

    def _new_series(self, key: tuple[str, str, int, str]) -> _Series:
        provider, model, status, op = key
        if len(self._series) >= _MAX_SERIES:
            model = _OVERFLOW_MODEL
        series = _Series(self, provider, model, str(status), op)
        if len(self._series) < _MAX_SERIES:
            self._series[key] = series
        return series

    def _failed_attempts(self, failures: list[str]) -> None:
        # Each failure reads "provider/model: status type[ mid-stream]" (the fallback
        # middleware and the stream handlers write them).
        for failure in failures:
            label, _, rest = failure.partition(": ")
            status, _, kind = rest.partition(" ")
            kind = kind.partition(" ")[0]
            provider = label.partition("/")[0]
            self.attempts.labels(provider, kind if kind in _SKIPPED else status).inc()

    def stream_opened(self, request: web.Request) -> None:
        """Count a streamed response as open once its headers went out (the terminal handlers
        call it: a signal on every response would cost every request)."""
        request[_STREAM_OPEN] = True
        self._streams += 1

    async def render(self) -> bytes:
        """The text exposition format; with workers, summed over every worker's files (each
        worker's values as of its last flush, at most a second old)."""
        self.flush()
        if self._dir is None:
            return generate_latest(self.registry)
        # Reading every worker's files is blocking I/O: off the event loop.
        return await asyncio.to_thread(_render_multiprocess, self._dir)

    @classmethod
    def from_environ(cls) -> Metrics:
        """Multi-process mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (as prometheus_client
        decides it itself on import)."""
        return cls(multiprocess_dir=os.environ.get(MULTIPROC_DIR) or None)


def _render_multiprocess(path: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


METRICS = web.AppKey("metrics", Metrics)
