"""Leak probes for long runs: this process's open file descriptors, asyncio tasks, and TCP
sockets connected to a given port (the gateway's upstream connections to a fake).

Sockets are read from the kernel, not from aiohttp's connector internals: ``/proc/self/fd``
names each socket the process holds by inode, ``/proc/net/tcp`` and ``tcp6`` give each inode's
addresses and state. A socket the process has closed (``TIME_WAIT``, an orphaned ``FIN_WAIT``)
has no descriptor any more and is not counted; one the peer closed but the process did not is
``CLOSE_WAIT``, the signature of a leaked connection.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Snapshot", "open_fds", "settle", "snapshot", "sockets_to", "tcp_sockets"]

# The kernel's TCP state numbers (include/net/tcp_states.h) as /proc/net/tcp prints them.
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}
T = TypeVar("T")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets() -> list[tuple[int, int, str]]:
    """This process's TCP sockets: (local port, remote port, state)."""
    mine, out = _socket_inodes(), []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                rows = lines.readlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] in mine:
                local, remote = (int(c.rsplit(":", 1)[1], 16) for c in cols[1:3])
                out.append((local, remote, _TCP_STATES.get(cols[3], cols[3])))
    return out


def sockets_to(port: int) -> Counter[str]:
    """The states of this process's TCP sockets whose remote end is ``port`` (on any address)."""
    return Counter(state for _, remote, state in tcp_sockets() if remote == port)


@dataclass(frozen=True)
class Snapshot:
    fds: int
    tasks: int
    sockets: dict[int, Counter[str]]  # remote port -> states of this process's sockets to it


def snapshot(*ports: int) -> Snapshot:
    """The probes now; call it from a coroutine (tasks are those of the running loop)."""
    return Snapshot(
        fds=open_fds(),
        tasks=len(asyncio.all_tasks()),
        sockets={port: sockets_to(port) for port in ports},
    )


async def settle(probe: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 5) -> T:
    """Poll ``probe`` until ``done`` holds of its value or ``timeout_s`` passes; the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    value = probe()
    while not done(value) and loop.time() < deadline:
        await asyncio.sleep(0.02)
        value = probe()
    return value
