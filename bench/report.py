"""Comparisons with the direct calls, warnings, and the markdown rendering of a report."""

from __future__ import annotations

from typing import Any

__all__ = ["add_comparisons", "render_markdown", "warnings_for"]

Row = dict[str, Any]

_NONSTREAM_KEYS = ("p50_ms", "p99_ms")
_STREAM_KEYS = ("ttfb_p50_ms", "ttfb_p99_ms", "p50_ms", "p99_ms")
# Upstream busier than this (in cores) during a gateway phase would make the ratios suspect.
UPSTREAM_BUSY_CORES = 0.8
LOADGEN_BUSY_CORES = 0.9
# Other processes on the machine busier than this during a phase: that row is noisy.
OTHER_BUSY_CORES = 0.3


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _compare(row: Row, direct: Row, keys: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"rps_ratio": _ratio(row["rps"], direct["rps"])}
    for key in keys:
        name = key.removesuffix("_ms")
        out[f"{name}_ratio"] = _ratio(row[key], direct[key])
        out[f"{name}_added_ms"] = row[key] - direct[key]
    return out


def add_comparisons(report: dict[str, Any]) -> None:
    """Give each gateway row ``vs_direct``: gateway/direct ratios for rps and latency, and the
    latency the gateway adds in ms (gateway - direct), against the direct row of the same shape."""
    direct = {r["concurrency"]: r for r in report["nonstream"] if r["target"] == "direct"}
    for row in report["nonstream"]:
        if row["target"] != "direct" and row["concurrency"] in direct:
            row["vs_direct"] = _compare(row, direct[row["concurrency"]], _NONSTREAM_KEYS)
    sdirect = {
        (r["gap_ms"], r["concurrency"]): r for r in report["stream"] if r["target"] == "direct"
    }
    for row in report["stream"]:
        key = (row["gap_ms"], row["concurrency"])
        if row["target"] != "direct" and key in sdirect:
            row["vs_direct"] = _compare(row, sdirect[key], _STREAM_KEYS)
    workers = report["workers"]["runs"]
    one = next((r for r in workers if r["workers"] == 1), None)
    for row in workers:
        row["rps_vs_one_worker"] = _ratio(row["rps"], one["rps"]) if one else None


def warnings_for(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    rows = [*report["nonstream"], *report["stream"], *report["workers"]["runs"]]
    for row in rows:
        where = _where(row)
        if row["errors"]:
            out.append(f"{where}: {row['errors']} failed requests")
        if row["target"] != "direct" and row["upstream_cpu_cores"] > UPSTREAM_BUSY_CORES:
            out.append(
                f"{where}: the upstream used {row['upstream_cpu_cores']:.2f} cores, so it may be "
                "what limits the gateway here"
            )
        if row["other_cpu_cores"] > OTHER_BUSY_CORES:
            out.append(
                f"{where}: other processes on the machine used {row['other_cpu_cores']:.2f} "
                "cores during this phase, so it is noisy"
            )
        if row["loadgen"] == "asyncio" and row["loadgen_cpu_cores"] > LOADGEN_BUSY_CORES:
            out.append(
                f"{where}: the asyncio load generator used {row['loadgen_cpu_cores']:.2f} cores, "
                "so it may be what limits this row"
            )
    for profile, mem in report["memory"].items():
        held = mem["open_streams"]
        if held["max_open"] < held["target"]:
            out.append(
                f"{profile}: only {held['max_open']} of {held['target']} streams were open at once "
                f"({held['errors']} failed)"
            )
    return out


def _where(row: Row) -> str:
    kind = "stream" if "gap_ms" in row else "non-streaming"
    gap = f" gap {row['gap_ms']:g} ms" if "gap_ms" in row else ""
    workers = f" workers {row['workers']}" if "workers" in row else ""
    return f"{row['target']} {kind}{gap} c{row['concurrency']}{workers}"


def _dirty(meta: dict[str, Any]) -> str:
    files = meta.get("git_dirty") or []
    return f" + uncommitted changes to {', '.join(files)}" if files else ""


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _plus(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _mb(kb: float | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    out = [
        f"# Thruway benchmark ({meta['mode']})",
        "",
        f"{meta['started_at']}, {meta['cpus']} CPUs, load average {meta['loadavg_before']}, "
        f"{meta['duration_s']:g} s per phase, non-streaming load by {meta['loadgen']}, streams by "
        f"the asyncio client; git {meta['git_rev']}{_dirty(meta)}; whole run "
        f"{meta['wall_s']:.0f} s.",
        "`floor` is a bare aiohttp + msgspec + uvloop pass-through (bench/floor.py): the gateway "
        "with every feature taken out. "
        "Ratios are gateway ÷ direct (the same request sent to the fake upstream itself); "
        "+ms is gateway - direct. CPU is the gateway's process tree (utime+stime) per request and "
        "in cores (CPU seconds per second of the phase); other cores = the rest of the machine "
        "during the phase (noise from other processes).",
        "",
        "## Non-streaming `POST /v1/chat/completions`",
        "",
    ]
    rows = []
    for r in report["nonstream"]:
        v = r.get("vs_direct", {})
        rows.append(
            [
                r["target"],
                str(r["concurrency"]),
                _f(r["rps"], 0),
                _f(r["p50_ms"]),
                _f(r["p99_ms"]),
                _x(v.get("rps_ratio")),
                _x(v.get("p50_ratio")),
                _x(v.get("p99_ratio")),
                _plus(v.get("p50_added_ms")),
                _plus(v.get("p99_added_ms")),
                _f(r.get("gateway_cpu_ms_per_request"), 3),
                _f(r.get("gateway_cpu_cores")),
                _f(r["upstream_cpu_cores"]),
                _f(r["other_cpu_cores"]),
                str(r["errors"]),
            ]
        )
    out += _table(
        [
            "target",
            "conc",
            "req/s",
            "p50 ms",
            "p99 ms",
            "req/s ÷ direct",
            "p50 ÷ direct",
            "p99 ÷ direct",
            "+p50 ms",
            "+p99 ms",
            "gw CPU ms/req",
            "gw cores",
            "upstream cores",
            "other cores",
            "errors",
        ],
        rows,
    )
    out += ["", f"## Streams ({report['stream_events']} events; TTFB = first `data:` event)", ""]
    rows = []
    for r in report["stream"]:
        v = r.get("vs_direct", {})
        rows.append(
            [
                r["target"],
                f"{r['gap_ms']:g}",
                str(r["concurrency"]),
                _f(r["rps"], 1),
                _f(r["ttfb_p50_ms"]),
                _f(r["ttfb_p99_ms"]),
                _f(r["p50_ms"]),
                _f(r["p99_ms"]),
                _x(v.get("ttfb_p50_ratio")),
                _plus(v.get("ttfb_p50_added_ms")),
                _x(v.get("p50_ratio")),
                _plus(v.get("p50_added_ms")),
                _f(r.get("gateway_cpu_ms_per_request"), 3),
                _f(r.get("gateway_cpu_cores")),
                _f(r["upstream_cpu_ms_per_request"], 3),
                _f(r["other_cpu_cores"]),
                str(r["errors"]),
            ]
        )
    out += _table(
        [
            "target",
            "gap ms",
            "conc",
            "streams/s",
            "TTFB p50",
            "TTFB p99",
            "total p50",
            "total p99",
            "TTFB p50 ÷ direct",
            "+TTFB p50 ms",
            "total p50 ÷ direct",
            "+total p50 ms",
            "gw CPU ms/stream",
            "gw cores",
            "upstream CPU ms/stream",
            "other cores",
            "errors",
        ],
        rows,
    )
    out += ["", "## Memory and start-up", ""]
    rows = []
    for profile, m in report["memory"].items():
        s = report["startup"][profile]
        held = m["open_streams"]
        rows.append(
            [
                profile,
                f"{_f(s['median_ms'], 0)} (n={len(s['samples_ms'])})",
                _mb(m["idle_rss_kb"]),
                _mb(m["peak_rss_kb"]),
                _mb(m["rss_after_load_kb"]),
                _mb(held["rss_kb_at_max"]),
                f"{held['max_open']}/{held['target']}",
                _mb(m["peak_rss_with_streams_kb"]),
            ]
        )
    out += _table(
        [
            "profile",
            "start-up ms (median)",
            "idle RSS MB",
            "peak RSS MB (VmHWM, load)",
            "RSS after load MB",
            "RSS MB, streams open",
            "streams open",
            "VmHWM MB, end",
        ],
        rows,
    )
    w = report["workers"]
    out += [
        "",
        f"## Workers ({w['profile']} profile, non-streaming, concurrency {w['concurrency']})",
        "",
    ]
    rows = [
        [
            str(r["workers"]),
            _f(r["rps"], 0),
            _f(r["p50_ms"]),
            _f(r["p99_ms"]),
            _x(r.get("rps_vs_one_worker")),
            _f(r["gateway_cpu_ms_per_request"], 3),
            _f(r["gateway_cpu_cores"]),
            _f(r["upstream_cpu_cores"]),
            _f(r["other_cpu_cores"]),
            _mb(r["rss_kb"]),
            str(r["errors"]),
        ]
        for r in w["runs"]
    ]
    out += _table(
        [
            "workers",
            "req/s",
            "p50 ms",
            "p99 ms",
            "req/s ÷ 1 worker",
            "gw CPU ms/req",
            "gw cores",
            "upstream cores",
            "other cores",
            "RSS MB (tree)",
            "errors",
        ],
        rows,
    )
    if report["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(out) + "\n"
