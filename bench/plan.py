"""What a benchmark run measures: the full and quick matrices, and the command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import wrk_available

__all__ = ["PROFILES", "REPO", "Plan", "make_plan", "parser"]

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("bare", "default")


@dataclass
class Plan:
    mode: str
    duration_s: float
    concurrency: list[int]
    stream_concurrency: list[int]
    gaps_ms: list[float]
    profiles: list[str]
    workers_concurrency: int
    open_streams: int
    open_stream_gap_ms: float
    startup_runs: int
    loadgen: str

    @property
    def warmup_s(self) -> float:
        return max(0.1, min(1.0, self.duration_s * 0.2))


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 s phases and fewer combinations")
    p.add_argument("--duration", type=float, help="seconds per measured phase")
    p.add_argument("--loadgen", choices=["auto", "wrk", "asyncio"], default="auto")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--concurrency", type=_csv(int), help="non-streaming levels, e.g. 1,16,64")
    p.add_argument("--stream-concurrency", type=_csv(int), help="stream levels, e.g. 1,16")
    p.add_argument("--gaps", type=_csv(float), help="ms between stream events, e.g. 0,5")
    p.add_argument("--profiles", type=_csv(str), help=f"gateway profiles ({', '.join(PROFILES)})")
    p.add_argument("--workers-concurrency", type=int)
    p.add_argument("--open-streams", type=int, help="streams held open at once")
    p.add_argument("--open-stream-gap-ms", type=float, help="gap that keeps them open")
    p.add_argument("--startup-runs", type=int, help="start-up samples per profile")
    return p


def make_plan(args: argparse.Namespace) -> Plan:
    if args.loadgen == "wrk" and not wrk_available():
        raise SystemExit("bench: --loadgen wrk, but wrk is not installed")
    loadgen = args.loadgen if args.loadgen != "auto" else "wrk" if wrk_available() else "asyncio"
    quick = bool(args.quick)
    profiles = args.profiles or list(PROFILES)
    unknown = set(profiles) - set(PROFILES)
    if unknown:
        raise SystemExit(f"bench: unknown profiles {sorted(unknown)}")

    def pick(value: Any, full: Any, fast: Any) -> Any:
        return value if value is not None else fast if quick else full

    return Plan(
        mode="quick" if quick else "full",
        duration_s=pick(args.duration, 5.0, 1.0),
        concurrency=pick(args.concurrency, [1, 16, 64], [1, 64]),
        stream_concurrency=pick(args.stream_concurrency, [1, 16], [16]),
        gaps_ms=pick(args.gaps, [0.0, 5.0], [0.0, 5.0]),
        profiles=profiles,
        workers_concurrency=pick(args.workers_concurrency, 64, 64),
        open_streams=pick(args.open_streams, 1000, 1000),
        open_stream_gap_ms=pick(args.open_stream_gap_ms, 400.0, 400.0),
        startup_runs=max(1, pick(args.startup_runs, 3, 1)),
        loadgen=loadgen,
    )
