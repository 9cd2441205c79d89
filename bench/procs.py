"""Processes the benchmark starts: spawn, wait until serving, CPU and memory from /proc, stop.

Every process is started through :class:`Procs`, which remembers it (and the descendants it has
been seen with) and stops all of them by PID in :meth:`Procs.stop_all`: SIGTERM, a bounded wait,
then SIGKILL for anything left. Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Proc",
    "Procs",
    "StartupError",
    "alive",
    "cpu_seconds",
    "descendants",
    "free_port",
    "machine_busy_s",
    "raise_fd_limit",
    "status_kb",
    "wait_http_ok",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A process exited or did not answer in time; the message carries its log's tail."""


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _child_setup() -> None:
    """In the child before exec: enough fds, and SIGTERM if the benchmark dies without cleaning
    up (a safety net; the normal path stops every process explicitly)."""
    raise_fd_limit()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [0] is field 3 (state)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data.rpartition(b")")[2].decode().split()


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children found by their ppid in /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    out: list[int] = []
    todo = [pid]
    for _ in range(10_000):  # bounded walk
        if not todo:
            break
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (all CPUs; /proc/stat minus idle)."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def status_kb(pids: Iterable[int], key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (``VmRSS``, ``VmHWM``), summed over ``pids``."""
    total = 0
    prefix = key.encode() + b":"
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(prefix):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def _log_tail(path: Path | None, limit: int = 2000) -> str:
    if path is None or not path.exists():
        return ""
    data = path.read_bytes()[-limit:]
    return "\n--- log tail ---\n" + data.decode(errors="replace")


@dataclass
class Proc:
    """A started process; ``seen`` collects every descendant observed, for the final stop."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[int]:
        pids = [self.pid, *descendants(self.pid)]
        self.seen.update(pids)
        return pids

    def cpu_s(self) -> float:
        return cpu_seconds(self.tree())

    def rss_kb(self) -> int:
        return status_kb(self.tree(), "VmRSS")

    def hwm_kb(self) -> int:
        return status_kb(self.tree(), "VmHWM")

    def check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise StartupError(f"{self.name} exited with {code}{_log_tail(self.log_path)}")


def _http_ok(port: int, path: str, timeout: float) -> bool:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        return False


def wait_http_ok(
    proc: Proc, port: int, *, path: str = "/health", timeout_s: float = 30.0, every_s: float = 0.005
) -> float:
    """Poll ``GET path`` every ``every_s`` until a 200; the seconds since the process was spawned
    are measured by the caller, this returns ``time.perf_counter()`` at the first 200."""
    deadline = time.perf_counter() + timeout_s
    for _ in range(int(timeout_s / every_s) + 1):
        if _http_ok(port, path, timeout=1.0):
            return time.perf_counter()
        proc.check_running()
        if time.perf_counter() > deadline:
            break
        time.sleep(every_s)
    raise StartupError(
        f"{proc.name} did not answer 200 in {timeout_s:.0f}s" + _log_tail(proc.log_path)
    )


class Procs:
    """Every process the benchmark starts; :meth:`stop_all` (in a ``finally``) stops them."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # a terminal's Ctrl-C reaches us only; we stop them
                preexec_fn=_child_setup,
            )
        finally:
            if log_path:
                log.close()  # type: ignore[union-attr]
        proc = Proc(name, popen, log_path, {popen.pid})
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the process, wait up to ``timeout_s``, then SIGKILL it and every descendant
        ever seen that is still alive. Returns its exit status."""
        with contextlib.suppress(OSError):
            proc.tree()  # remember the current descendants before they can be reparented
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait(5)
        deadline = time.monotonic() + 5.0
        for pid in sorted(proc.seen - {proc.pid}):  # workers outlive a killed supervisor
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return proc.popen.returncode

    def stop_all(self) -> list[int]:
        """Stop everything still running, newest first; the PIDs still alive afterwards."""
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                self.stop(proc)
        return [pid for proc in self.started for pid in sorted(proc.seen) if alive(pid)]

    def all_pids(self) -> list[int]:
        return sorted({pid for proc in self.started for pid in proc.seen})
