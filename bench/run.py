"""``python -m bench.run``: the gateway against a direct call to a fake upstream, in one run.

Starts ``bench/upstream.py`` and one gateway per profile (``bench/config-<profile>.yaml``) as
separate processes on 127.0.0.1, drives load at them, and writes ``report.json`` and ``report.md``
to ``--out`` (default ``bench/results/``). Every process is stopped by PID in a ``finally``.
See ``bench/README.md`` for what each number means.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench.loadgen import asyncio_load, hold_open_streams, wrk_load
from bench.plan import REPO, Plan, make_plan, parser
from bench.procs import (
    Proc,
    Procs,
    StartupError,
    free_port,
    machine_busy_s,
    raise_fd_limit,
    wait_http_ok,
)
from bench.report import add_comparisons, render_markdown, warnings_for
from bench.upstream import CONTENT_EVENTS

MODEL = "gpt-4o-mini"
UPSTREAM_KEY = "sk-bench-upstream"
MASTER_KEY = "sk-thruway-bench-master"
CHAT = "/v1/chat/completions"


@dataclass
class Target:
    """Where load goes: ``direct`` (the upstream itself) or a gateway profile."""

    name: str
    port: int
    proc: Proc | None  # the gateway process (None: direct)
    headers: dict[str, str]
    model: str
    fallbacks: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT}"

    def body(self, *, stream: bool = False, gap_ms: float = 0) -> bytes:
        """Compact JSON, so the upstream's byte searches (``"stream":true``) find the fields."""
        doc: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            "max_tokens": 32,
        }
        if stream:
            doc |= {"stream": True, "stream_options": {"include_usage": True}}
            doc["bench_gap_ms"] = gap_ms  # forwarded by the gateway as a field it does not model
        if self.fallbacks:
            doc["fallbacks"] = self.fallbacks
        return msgspec.json.encode(doc)


def _clean_env(upstream_url: str) -> dict[str, str]:
    """This environment without provider keys, local-server URLs or Thruway settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.endswith(("_API_KEY", "_BASE_URL")) or k.startswith(("THRUWAY_", "BENCH_")))
    }
    return env | {"BENCH_UPSTREAM_URL": f"{upstream_url}/v1", "BENCH_MASTER_KEY": MASTER_KEY}


def _listeners(port: int) -> int:
    """How many sockets listen on ``port`` (one per worker with SO_REUSEPORT)."""
    needle = f":{port:04X} 00000000:0000 0A"
    with open("/proc/net/tcp") as f:
        return sum(needle in line for line in f)


class Bench:
    def __init__(self, plan: Plan, procs: Procs, out: Path) -> None:
        self.plan, self.procs, self.out = plan, procs, out
        self.upstream: Proc | None = None
        self.upstream_port = 0

    # -- processes ---------------------------------------------------------------------------

    def start_upstream(self) -> None:
        self.upstream_port = free_port()
        argv = [sys.executable, "-m", "bench.upstream", "--port", str(self.upstream_port)]
        self.upstream = self.procs.start(
            "upstream", argv, log_path=self.out / "upstream.log", cwd=REPO
        )
        wait_http_ok(self.upstream, self.upstream_port)

    def start_gateway(
        self, profile: str, *, workers: int = 1, tag: str = ""
    ) -> tuple[Target, float]:
        """Spawn a gateway and time it from spawn to the first 200 on ``GET /health``."""
        port = free_port()
        argv = [sys.executable, "-m", "proxy", "--config", f"bench/config-{profile}.yaml"]
        argv += ["--port", str(port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        env = _clean_env(f"http://127.0.0.1:{self.upstream_port}")
        log = self.out / f"gateway-{profile}{tag}.log"
        started = time.perf_counter()
        proc = self.procs.start(f"gateway {profile}{tag}", argv, env=env, log_path=log, cwd=REPO)
        ready = wait_http_ok(proc, port)
        for _ in range(2000):  # every worker listening, bounded to ~20 s
            if _listeners(port) >= workers:
                break
            proc.check_running()
            time.sleep(0.01)
        headers = {"Content-Type": "application/json"}
        fallbacks: list[str] = []
        if profile == "default":
            headers["Authorization"] = f"Bearer {MASTER_KEY}"
            fallbacks = [f"backup/{MODEL}"]
        target = Target(profile, port, proc, headers, f"openai/{MODEL}", fallbacks)
        return target, (ready - started) * 1000.0

    def start_floor(self) -> Target:
        """The bare pass-through (``bench.floor``): the gateway with every feature taken out."""
        port = free_port()
        upstream = f"http://127.0.0.1:{self.upstream_port}"
        argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--upstream", upstream]
        proc = self.procs.start("floor", argv, log_path=self.out / "floor.log", cwd=REPO)
        wait_http_ok(proc, port)
        return Target("floor", port, proc, {"Content-Type": "application/json"}, MODEL, [])

    def direct(self) -> Target:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {UPSTREAM_KEY}"}
        return Target("direct", self.upstream_port, None, headers, MODEL, [])

    # -- phases ------------------------------------------------------------------------------

    async def phase(
        self, target: Target, concurrency: int, *, stream: bool = False, gap_ms: float = 0
    ) -> dict[str, Any]:
        """Warm up, then one measured load phase with CPU accounting around it."""
        assert self.upstream is not None
        plan = self.plan
        body = target.body(stream=stream, gap_ms=gap_ms)
        await asyncio_load(
            target.url,
            body,
            target.headers,
            concurrency=concurrency,
            duration_s=plan.warmup_s,
            stream=stream,
        )
        gw0 = target.proc.cpu_s() if target.proc else 0.0
        up0 = self.upstream.cpu_s()
        machine0 = machine_busy_s()
        start = time.perf_counter()
        if stream or plan.loadgen == "asyncio":
            result = await asyncio_load(
                target.url,
                body,
                target.headers,
                concurrency=concurrency,
                duration_s=plan.duration_s,
                stream=stream,
            )
        else:
            result = await wrk_load(
                target.url,
                body,
                target.headers,
                concurrency=concurrency,
                duration_s=plan.duration_s,
            )
        wall = time.perf_counter() - start
        machine = machine_busy_s() - machine0
        up = self.upstream.cpu_s() - up0
        n = max(1, result.requests)
        row: dict[str, Any] = {"target": target.name}
        if stream:
            row["gap_ms"] = gap_ms
        row |= result.as_dict()
        if not stream:
            row.pop("ttfb_p50_ms")
            row.pop("ttfb_p99_ms")
        row["loadgen_cpu_cores"] = result.loadgen_cpu_s / wall
        row["upstream_cpu_ms_per_request"] = up * 1000.0 / n
        row["upstream_cpu_cores"] = up / wall
        gw = 0.0
        if target.proc is not None:
            gw = target.proc.cpu_s() - gw0
            row["gateway_cpu_ms_per_request"] = gw * 1000.0 / n
            row["gateway_cpu_cores"] = gw / wall
        # Everything else on the machine (other users' work): the noise in this row.
        row["machine_cpu_cores"] = machine / wall
        row["other_cpu_cores"] = max(0.0, machine - gw - up - result.loadgen_cpu_s) / wall
        self._progress(row)
        return row

    @staticmethod
    def _progress(row: dict[str, Any]) -> None:
        gap = f" gap={row['gap_ms']:g}ms" if "gap_ms" in row else ""
        ttfb = f" ttfb50={row['ttfb_p50_ms']:.2f}ms" if row.get("ttfb_p50_ms") is not None else ""
        print(
            f"  {row['target']:>8} c={row['concurrency']:<3}{gap}: {row['rps']:9.1f}/s "
            f"p50={row['p50_ms']:.2f}ms p99={row['p99_ms']:.2f}ms{ttfb} errors={row['errors']}",
            flush=True,
        )

    async def idle_rss(self, proc: Proc) -> int:
        await asyncio.sleep(0.3)
        return proc.rss_kb()

    async def open_streams(self, target: Target) -> dict[str, Any]:
        assert target.proc is not None
        plan = self.plan
        gap = plan.open_stream_gap_ms
        ramp = min(2.0, plan.open_streams * 0.002)
        held = await hold_open_streams(
            target.url,
            target.body(stream=True, gap_ms=gap),
            target.headers,
            count=plan.open_streams,
            ramp_s=ramp,
            sample_rss_kb=target.proc.rss_kb,
            timeout_s=ramp + CONTENT_EVENTS * gap / 1000.0 + 15.0,
        )
        print(
            f"  {target.name:>8}: {held.max_open}/{held.target} streams open, "
            f"RSS {held.rss_kb_at_max / 1024:.1f} MB",
            flush=True,
        )
        return held.as_dict() | {"gap_ms": gap}

    # -- the whole run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        task = asyncio.current_task()
        assert task is not None
        # SIGTERM cancels the run like Ctrl-C does (asyncio.Runner), so every finally runs.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        report: dict[str, Any] = {"stream_events": CONTENT_EVENTS, "nonstream": [], "stream": []}
        print(f"thruway bench ({plan.mode}): upstream", flush=True)
        self.start_upstream()
        startup: dict[str, list[float]] = {p: [] for p in plan.profiles}
        for i in range(plan.startup_runs - 1):  # extra start-up samples, before any load
            for profile in plan.profiles:
                target, ms = self.start_gateway(profile, tag=f"-startup{i}")
                startup[profile].append(ms)
                assert target.proc is not None
                self.procs.stop(target.proc)
        gateways: dict[str, Target] = {}
        for profile in plan.profiles:
            gateways[profile], ms = self.start_gateway(profile)
            startup[profile].append(ms)
            print(f"  gateway {profile}: first 200 after {ms:.0f} ms", flush=True)
        report["startup"] = {
            p: {"samples_ms": s, "median_ms": statistics.median(s), "min_ms": min(s)}
            for p, s in startup.items()
        }
        memory: dict[str, dict[str, Any]] = {}
        for profile, gw in gateways.items():
            for stream in (False, True):
                await asyncio_load(
                    gw.url, gw.body(stream=stream), gw.headers, concurrency=1, duration_s=0.1
                )
            assert gw.proc is not None
            memory[profile] = {"idle_rss_kb": await self.idle_rss(gw.proc)}
        targets = [self.direct(), self.start_floor(), *gateways.values()]
        print("non-streaming", flush=True)
        for c in plan.concurrency:
            for target in targets:
                report["nonstream"].append(await self.phase(target, c))
        print("streams", flush=True)
        for gap in plan.gaps_ms:
            for c in plan.stream_concurrency:
                for target in targets:
                    report["stream"].append(await self.phase(target, c, stream=True, gap_ms=gap))
        for profile, gw in gateways.items():
            assert gw.proc is not None
            memory[profile]["peak_rss_kb"] = gw.proc.hwm_kb()
            memory[profile]["rss_after_load_kb"] = await self.idle_rss(gw.proc)
        report["workers"] = await self.workers(gateways)
        print(f"{plan.open_streams} open streams", flush=True)
        for profile, gw in gateways.items():
            assert gw.proc is not None
            memory[profile]["open_streams"] = await self.open_streams(gw)
            memory[profile]["peak_rss_with_streams_kb"] = gw.proc.hwm_kb()
        report["memory"] = memory
        return report

    async def workers(self, gateways: dict[str, Target]) -> dict[str, Any]:
        """The same profile with one worker and with ``--workers 2``, back to back."""
        plan = self.plan
        profile = "default" if "default" in gateways else next(iter(gateways))
        c = plan.workers_concurrency
        print(f"workers ({profile}, c={c})", flush=True)
        runs = []
        one = gateways[profile]
        assert one.proc is not None
        runs.append(await self.phase(one, c) | {"workers": 1, "rss_kb": one.proc.rss_kb()})
        two, ms = self.start_gateway(profile, workers=2, tag="-workers2")
        assert two.proc is not None
        try:
            row = await self.phase(two, c)
            runs.append(row | {"workers": 2, "rss_kb": two.proc.rss_kb(), "startup_ms": ms})
        finally:
            self.procs.stop(two.proc)
        return {"profile": profile, "concurrency": c, "runs": runs}


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, timeout=5)
        return out.stdout.decode().rstrip("\n")
    except (OSError, subprocess.SubprocessError):
        return ""


def _git_dirty() -> list[str]:
    """Tracked files with uncommitted changes: the measured code is HEAD plus these."""
    lines = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    return [line[3:] for line in lines if line[3:]]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: the same clean stop as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    plan = make_plan(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    fd_limit = raise_fd_limit()
    meta: dict[str, Any] = {
        "mode": plan.mode,
        "duration_s": plan.duration_s,
        "loadgen": plan.loadgen,
        "stream_loadgen": "asyncio",
        "plan": plan.__dict__,
        "cpus": os.cpu_count(),
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "git_rev": _git("rev-parse", "--short", "HEAD").strip() or "unknown",
        "git_dirty": _git_dirty(),
        "fd_limit": fd_limit,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    procs = Procs()
    started = time.perf_counter()
    report: dict[str, Any] | None = None
    status = 0
    try:
        import uvloop

        report = uvloop.run(Bench(plan, procs, out).run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted", file=sys.stderr)
        status = 130
    except StartupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        status = 1
    finally:
        left = procs.stop_all()
    if left:
        print(f"bench: processes still alive after stopping: {left}", file=sys.stderr)
        status = status or 1
    if report is None:
        return status or 1
    meta |= {
        "wall_s": time.perf_counter() - started,
        "processes": procs.all_pids(),
        "left_running": left,
        "loadavg_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    report = {"meta": meta, **report}
    add_comparisons(report)
    report["warnings"] = warnings_for(report)
    markdown = render_markdown(report)
    (out / "report.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    (out / "report.md").write_text(markdown, encoding="utf-8")
    print()
    print(markdown)
    print(f"bench: wrote {out / 'report.md'} and {out / 'report.json'} in {meta['wall_s']:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
