"""The benchmark harness (bench/) cannot rot: a very short run end to end, and the wrk parser.

The run forces the asyncio load generator, so it does not depend on wrk being installed, and
checks the report's shape (keys present, numbers positive, ratios computed), never a speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import parse_wrk, percentile
from bench.procs import alive

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 25

# Captured from `wrk -t1 -c16 -d1s --latency -s post.lua URL` (wrk 4.1.0, Debian).
WRK_OK = """\
Running 1s test @ http://127.0.0.1:18002/v1/chat/completions
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   596.03us  318.43us   5.31ms   81.84%
    Req/Sec    27.35k     6.02k   32.24k    80.00%
  Latency Distribution
     50%  487.00us
     75%  593.00us
     90%    1.01ms
     99%    1.48ms
  27155 requests in 1.00s, 14.45MB read
Requests/sec:  27130.09
Transfer/sec:     14.44MB
"""

# Captured against a path that answers 404, with a socket-errors line in wrk's format added and
# latencies in seconds (wrk switches units past 1000 ms).
WRK_ERRORS = """\
Running 1s test @ http://127.0.0.1:18002/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   199.46ms    2.21s    98.35%
    Req/Sec    46.41k     8.65k   63.84k    63.64%
  Latency Distribution
     50%  710.00ms
     75%    1.10s
     90%    1.49s
     99%    2.01s
  50580 requests in 1.10s, 6.56MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 50580
Requests/sec:  45995.41
Transfer/sec:      5.97MB
"""


def test_wrk_output_is_parsed() -> None:
    got = parse_wrk(WRK_OK)
    assert got["rps"] == pytest.approx(27130.09)
    assert got["p50_ms"] == pytest.approx(0.487)
    assert got["p75_ms"] == pytest.approx(0.593)
    assert got["p90_ms"] == pytest.approx(1.01)
    assert got["p99_ms"] == pytest.approx(1.48)
    assert got["mean_ms"] == pytest.approx(0.59603)
    assert got["max_ms"] == pytest.approx(5.31)
    assert got["requests"] == 27155
    assert got["duration_s"] == pytest.approx(1.0)
    assert got["errors"] == 0


def test_wrk_errors_and_second_units_are_parsed() -> None:
    got = parse_wrk(WRK_ERRORS)
    assert got["p50_ms"] == pytest.approx(710.0)
    assert got["p99_ms"] == pytest.approx(2010.0)
    assert got["mean_ms"] == pytest.approx(1200.0)
    assert got["duration_s"] == pytest.approx(1.1)
    assert got["non2xx"] == 50580
    assert got["socket_errors"] == 6
    assert got["errors"] == 50586


def test_unrecognised_wrk_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="unrecognised wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


def _positive(row: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(row[key], int | float), (key, row)
        assert row[key] > 0, (key, row)


def _ratios(row: dict[str, Any], *names: str) -> None:
    compared = row["vs_direct"]
    for name in names:
        _positive(compared, f"{name}_ratio")
        assert isinstance(compared[f"{name}_added_ms"], float), (name, compared)


@pytest.mark.timeout(RUN_TIMEOUT_S + 5)
def test_a_tiny_run_writes_the_whole_report(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.run", "--quick", "--duration", "0.3"]
    argv += ["--loadgen", "asyncio", "--out", str(tmp_path), "--concurrency", "1,4"]
    argv += ["--stream-concurrency", "2", "--gaps", "0,2", "--workers-concurrency", "4"]
    argv += ["--open-streams", "30", "--open-stream-gap-ms", "20", "--startup-runs", "1"]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the harness stops its processes on Ctrl-C
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"bench.run took over {RUN_TIMEOUT_S}s:\n{out.decode(errors='replace')}")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text

    report = json.loads((tmp_path / "report.json").read_text())
    meta = report["meta"]
    assert meta["mode"] == "quick"
    assert meta["loadgen"] == "asyncio"
    _positive(meta, "wall_s", "duration_s", "cpus")
    assert meta["processes"], "the run started no processes?"
    assert meta["left_running"] == []
    assert not [pid for pid in meta["processes"] if alive(pid)]

    shapes = {(r["target"], r["concurrency"]) for r in report["nonstream"]}
    assert shapes == {(t, c) for t in ("direct", "floor", "bare", "default") for c in (1, 4)}
    for row in report["nonstream"]:
        _positive(row, "rps", "requests", "p50_ms", "p99_ms", "mean_ms", "elapsed_s")
        assert row["errors"] == 0, row
        assert row["upstream_cpu_cores"] >= 0
        assert row["other_cpu_cores"] >= 0
        _positive(row, "machine_cpu_cores")
        if row["target"] != "direct":
            assert row["gateway_cpu_ms_per_request"] >= 0
            assert row["gateway_cpu_cores"] >= 0
            _ratios(row, "p50", "p99")
            _positive(row["vs_direct"], "rps_ratio")

    stream_shapes = {(r["target"], r["gap_ms"], r["concurrency"]) for r in report["stream"]}
    assert stream_shapes == {
        (t, g, 2) for t in ("direct", "floor", "bare", "default") for g in (0.0, 2.0)
    }
    for row in report["stream"]:
        _positive(row, "rps", "requests", "p50_ms", "p99_ms", "ttfb_p50_ms", "ttfb_p99_ms")
        assert row["errors"] == 0, row
        if row["target"] != "direct":
            assert row["gateway_cpu_ms_per_request"] >= 0
            _ratios(row, "ttfb_p50", "ttfb_p99", "p50", "p99")

    for profile in ("bare", "default"):
        _positive(report["startup"][profile], "median_ms", "min_ms")
        memory = report["memory"][profile]
        _positive(memory, "idle_rss_kb", "peak_rss_kb", "rss_after_load_kb")
        _positive(memory, "peak_rss_with_streams_kb")
        held = memory["open_streams"]
        assert held["target"] == 30
        _positive(held, "max_open", "rss_kb_at_max", "max_rss_kb", "completed")

    workers = report["workers"]
    assert workers["profile"] == "default"
    assert [r["workers"] for r in workers["runs"]] == [1, 2]
    for row in workers["runs"]:
        _positive(row, "rps", "p50_ms", "rss_kb", "rps_vs_one_worker")
        assert row["errors"] == 0, row

    markdown = (tmp_path / "report.md").read_text()
    for heading in ("## Non-streaming", "## Streams", "## Memory and start-up", "## Workers"):
        assert heading in markdown
    assert "| target | conc | req/s |" in markdown
    assert markdown in text  # printed too
