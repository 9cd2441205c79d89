"""Load generators: wrk (when installed) and an asyncio client of the benchmark's own.

Both keep ``concurrency`` requests in flight over keep-alive connections until a deadline, and
return a :class:`Result`. Only the asyncio client measures streams (time to the first ``data:``
event, and to the end of the stream), so streams always use it. Every loop is bounded in time and
in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

__all__ = [
    "OpenStreams",
    "Result",
    "asyncio_load",
    "hold_open_streams",
    "parse_wrk",
    "percentile",
    "wrk_available",
    "wrk_load",
]

MAX_REQUESTS = 5_000_000  # per phase, on top of the deadline
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Result:
    """One phase of load. Latencies are milliseconds; ``ttfb_*`` only for streams."""

    loadgen: str
    concurrency: int
    requests: int  # completed successfully
    errors: int
    elapsed_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    loadgen_cpu_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted list; 0.0 when empty."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the asyncio client ---------------------------------------------------------------------------


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str], stream: bool
) -> tuple[float, float] | None:
    """One request: (ttfb_s, total_s), or None when it failed. For a plain request the TTFB is
    the total."""
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if not stream:
                await resp.read()
                total = time.perf_counter() - start
                return (total, total) if resp.status == 200 else None
            ttfb = 0.0
            tail = b""
            async for chunk in resp.content.iter_any():
                if not ttfb and b"data:" in chunk:
                    ttfb = time.perf_counter() - start
                tail = (tail + chunk)[-32:]
            total = time.perf_counter() - start
            ok = resp.status == 200 and ttfb > 0 and b"data: [DONE]" in tail
            return (ttfb, total) if ok else None
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def asyncio_load(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    concurrency: int,
    duration_s: float,
    stream: bool = False,
    max_requests: int = MAX_REQUESTS,
) -> Result:
    """``concurrency`` workers, each sending requests back to back until the deadline."""
    ttfbs: list[float] = []
    totals: list[float] = []
    errors = 0
    budget = [max_requests]

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            got = await _one(session, url, body, headers, stream)
            if got is None:
                errors += 1
                await asyncio.sleep(0.01)  # a failing target must not become a busy loop
            else:
                ttfbs.append(got[0])
                totals.append(got[1])

    cpu0 = _own_cpu_s()
    async with _session(concurrency) as session:
        start = time.perf_counter()
        deadline = start + duration_s
        workers = [asyncio.create_task(worker(session, deadline)) for _ in range(concurrency)]
        try:
            await asyncio.wait(workers, timeout=duration_s + REQUEST_TIMEOUT_S + 5)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.wait(workers)
        elapsed = time.perf_counter() - start
    for w in workers:
        if not w.cancelled() and w.exception() is not None:
            raise RuntimeError("a load worker failed") from w.exception()
    totals.sort()
    ttfbs.sort()
    ms = 1000.0
    return Result(
        loadgen="asyncio",
        concurrency=concurrency,
        requests=len(totals),
        errors=errors,
        elapsed_s=elapsed,
        rps=len(totals) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(totals, 50) * ms,
        p99_ms=percentile(totals, 99) * ms,
        mean_ms=(sum(totals) / len(totals) * ms) if totals else 0.0,
        max_ms=(totals[-1] * ms) if totals else 0.0,
        ttfb_p50_ms=percentile(ttfbs, 50) * ms if stream else None,
        ttfb_p99_ms=percentile(ttfbs, 99) * ms if stream else None,
        loadgen_cpu_s=_own_cpu_s() - cpu0,
    )


# -- many streams held open at once ----------------------------------------------------------------


@dataclass
class OpenStreams:
    target: int
    max_open: int  # streams open (first event received, not yet finished) at one time
    rss_kb_at_max: int  # the sampled RSS when ``max_open`` was reached
    max_rss_kb: int  # the highest RSS sampled while streams were open
    completed: int
    errors: int
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def hold_open_streams(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    count: int,
    ramp_s: float,
    sample_rss_kb: Callable[[], int],
    timeout_s: float,
    every_s: float = 0.05,
) -> OpenStreams:
    """Open ``count`` streams (started evenly over ``ramp_s``), sampling RSS while they are open.

    The upstream's gap must make a stream last longer than the ramp, so that all are open at once.
    """
    state = {"open": 0, "done": 0, "errors": 0}

    async def one(session: aiohttp.ClientSession, delay: float) -> None:
        await asyncio.sleep(delay)
        opened = False
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                async for chunk in resp.content.iter_any():
                    if not opened and b"data:" in chunk:
                        opened = True
                        state["open"] += 1
                ok = resp.status == 200 and opened
            state["done" if ok else "errors"] += 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            state["errors"] += 1
        finally:
            if opened:
                state["open"] -= 1

    best = (0, 0)
    max_rss = 0
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(one(session, ramp_s * i / count)) for i in range(count)]
        try:
            for _ in range(int(timeout_s / every_s) + 1):
                if all(t.done() for t in tasks) or time.perf_counter() - start > timeout_s:
                    break
                if state["open"]:
                    rss = sample_rss_kb()
                    max_rss = max(max_rss, rss)
                    if state["open"] > best[0]:
                        best = (state["open"], rss)
                await asyncio.sleep(every_s)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks)
    return OpenStreams(
        target=count,
        max_open=best[0],
        rss_kb_at_max=best[1],
        max_rss_kb=max_rss,
        completed=state["done"],
        errors=state["errors"],
        elapsed_s=time.perf_counter() - start,
    )


# -- wrk -------------------------------------------------------------------------------------------


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua(body: bytes, headers: Mapping[str, str]) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("request body cannot be quoted for Lua")
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{text}]==]"]
    lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items()]
    return "\n".join(lines) + "\n"


_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_AVG = re.compile(r"^\s*Latency\s+([\d.]+)(us|ms|s|m|h)\s+\S+\s+([\d.]+)(us|ms|s|m|h)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str) -> dict[str, float]:
    """The numbers of ``wrk --latency`` output: rps, p50/p75/p90/p99 and mean/max latency (ms),
    requests (wrk counts non-2xx answers as requests), duration (s), non2xx, socket_errors, and
    errors (their sum)."""
    out: dict[str, float] = {}
    for pct, value, unit in _LATENCY.findall(text):
        out[f"p{pct}_ms"] = float(value) * _UNITS_S[unit] * 1000.0
    avg = _AVG.search(text)
    if avg:
        out["mean_ms"] = float(avg.group(1)) * _UNITS_S[avg.group(2)] * 1000.0
        out["max_ms"] = float(avg.group(3)) * _UNITS_S[avg.group(4)] * 1000.0
    total = _TOTAL.search(text)
    rps = _RPS.search(text)
    if not (total and rps and "p50_ms" in out and "p99_ms" in out):
        raise ValueError(f"unrecognised wrk output:\n{text}")
    out["requests"] = float(total.group(1))
    out["duration_s"] = float(total.group(2)) * _UNITS_S[total.group(3)]
    out["rps"] = float(rps.group(1))
    non2xx = _NON2XX.search(text)
    out["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    sock = _SOCKET.search(text)
    out["socket_errors"] = float(sum(int(g) for g in sock.groups())) if sock else 0.0
    out["errors"] = out["non2xx"] + out["socket_errors"]
    return out


async def wrk_load(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    concurrency: int,
    duration_s: float,
    threads: int = 1,
) -> Result:
    """One wrk run (whole seconds, at least 1); the process is killed by PID if it overruns."""
    seconds = max(1, round(duration_s))
    fd, script = tempfile.mkstemp(prefix="thruway-bench-", suffix=".lua")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_lua(body, headers))
        argv = ["wrk", f"-t{min(threads, concurrency)}", f"-c{concurrency}", f"-d{seconds}s"]
        argv += ["--latency", "--timeout", f"{int(REQUEST_TIMEOUT_S)}s", "-s", script, url]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + 15)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(script)
    numbers = parse_wrk(out.decode(errors="replace"))
    good = max(0.0, numbers["requests"] - numbers["non2xx"])
    return Result(
        loadgen="wrk",
        concurrency=concurrency,
        requests=int(good),
        errors=int(numbers["errors"]),
        elapsed_s=numbers["duration_s"],
        rps=good / numbers["duration_s"] if numbers["duration_s"] else numbers["rps"],
        p50_ms=numbers["p50_ms"],
        p99_ms=numbers["p99_ms"],
        mean_ms=numbers.get("mean_ms", 0.0),
        max_ms=numbers.get("max_ms", 0.0),
        loadgen_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
