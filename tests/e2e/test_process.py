"""The real `thruway` command in a subprocess: start-up errors, serving, shutdown, workers, logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from providers.registry import local_base_url_variables, standard_key_variables
from tests.fakes.openai import Behavior, FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "sk-test-SECRETKEY-123456"
MASTER_KEY = "thruway-master-SECRET-987654"
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
THRUWAY = Path(sys.executable).with_name("thruway")  # the console script beside the venv's python


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _env() -> dict[str, str]:
    """This environment without provider keys, local-server URLs or Thruway settings."""
    drop = {*standard_key_variables().values(), *local_base_url_variables().values()}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("THRUWAY_")}


def _write_config(tmp_path: Path, fake: FakeOpenAI, **sections: Any) -> Path:
    """A config with provider `openai` pointed at `fake`, plus the given top-level sections."""
    document = {
        "providers": {
            "openai": {"base_url": fake.base_url, "keys": [{"value": fake.api_key}]},
        },
        "store": {"url": f"sqlite:///{tmp_path / 'thruway.db'}"},
        **sections,
    }
    path = tmp_path / "thruway.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _children(pid: int) -> set[int]:
    """The pids of a process's direct children (Linux)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(p) for p in f.read().split())
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Process:
    """A gateway subprocess, its port, and the lines it has written to stderr so far."""

    proc: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)
    workers: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines are skipped)."""
        out = []
        for line in self.lines:
            with contextlib.suppress(msgspec.DecodeError):
                record = msgspec.json.decode(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    async def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def terminate(self) -> int:
        """SIGTERM, and the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return await self.wait()


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for line in stream:
        lines.append(line.decode(errors="replace").rstrip("\n"))


async def _wait_healthy(gw: Process, session: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if gw.proc.returncode is not None:
            break
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(gw.url + "/health") as resp:
                if 200 == resp.status:
                    return
        await asyncio.sleep(0.05)
    log = "\n".join(gw.lines)
    pytest.fail(f"the gateway did not become healthy (exit {gw.proc.returncode}):\n{log}")


async def _stop(gw: Process) -> None:
    """SIGTERM, then SIGKILL after a grace period; workers in their own sessions too."""
    gw.workers |= _children(gw.proc.pid)
    if gw.proc.returncode is None:
        gw.proc.terminate()
        try:
            await asyncio.wait_for(gw.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            gw.proc.kill()
            await gw.proc.wait()
    for pid in gw.workers:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def gateway_process(config: Path, *args: str) -> AsyncIterator[Process]:
    """Run `python -m proxy --config config --port <free> *args` until the block ends."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "--config",
        str(config),
        "--port",
        str(port),
        *args,
        cwd=REPO,
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    gw = Process(proc, port)
    reader = asyncio.create_task(_collect(proc.stderr, gw.lines))
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_healthy(gw, session)
        yield gw
    finally:
        await _stop(gw)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, STOP_TIMEOUT_S)
        reader.cancel()


async def _run(*args: str, timeout: float = 10.0) -> tuple[int, str, str]:
    """Run a command to completion; its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=REPO,
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as fake:
        yield fake


def _session() -> aiohttp.ClientSession:
    """A client that opens a new connection for every request."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("server:\n  prot: 8080\n", "at $.server: ", "unknown field `prot`"),
        ('server:\n  port: "abc"\n', "at $.server.port: ", "Expected `int`, got `str`"),
    ],
    ids=["unknown-key", "wrong-type"],
)
async def test_bad_config_exits_2_with_one_message(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    """A bad config file exits with status 2 and one stderr line naming the file and key path."""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = await _run(sys.executable, "-m", "proxy", "--config", str(path))
    assert 2 == code
    assert "" == out
    lines = err.splitlines()
    assert 1 == len(lines), err
    assert lines[0].startswith(f"thruway: configuration error: {path}: {where}")
    assert what in lines[0]


async def test_unknown_provider_type_exits_2(tmp_path: Path) -> None:
    """A provider of unknown type is refused at start-up like any other config mistake."""
    path = tmp_path / "bad.yaml"
    path.write_text("providers:\n  mine:\n    type: nosuch\n    base_url: http://x\n")
    code, _, err = await _run(sys.executable, "-m", "proxy", "--config", str(path))
    assert 2 == code
    [line] = err.splitlines()
    assert line.startswith(f"thruway: configuration error: {path}: at $.providers.mine: ")
    assert "unknown provider type `nosuch`" in line


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "proxy"],
        pytest.param(
            [str(THRUWAY)],
            marks=pytest.mark.skipif(not THRUWAY.exists(), reason="no `thruway` script"),
        ),
    ],
    ids=["python-m-proxy", "thruway"],
)
async def test_help_exits_0(command: list[str]) -> None:
    """`--help` prints the usage and exits 0."""
    code, out, _ = await _run(*command, "--help")
    assert 0 == code
    assert out.startswith("usage: thruway ")
    assert "--workers" in out


# -- serving ----------------------------------------------------------------------------------


def _assert_gateway_headers(headers: Any, request_id: str) -> None:
    assert request_id == headers["x-request-id"]
    assert "openai" == headers["x-thruway-provider"]
    assert "gpt-4o-mini" == headers["x-thruway-model"]
    assert 0 <= float(headers["x-thruway-latency-ms"])


async def test_serves_chat_stream_and_models(tmp_path: Path, fake: FakeOpenAI) -> None:
    """The CLI-started gateway serves chat (plain and streamed) and the model list."""
    fake.enqueue(Behavior(content="plain answer"), Behavior(deltas=["str", "eam"]))
    async with gateway_process(_write_config(tmp_path, fake)) as gw, _session() as session:
        async with session.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers={"x-request-id": "plain-1"}
        ) as resp:
            assert 200 == resp.status
            _assert_gateway_headers(resp.headers, "plain-1")
            body = await resp.json()
        async with session.post(
            gw.url + "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-request-id": "stream-1"},
        ) as resp:
            assert 200 == resp.status
            _assert_gateway_headers(resp.headers, "stream-1")
            raw = await resp.read()
        async with session.get(gw.url + "/v1/models") as resp:
            assert 200 == resp.status
            assert resp.headers["x-request-id"]
            models = await resp.json()
    assert "plain answer" == body["choices"][0]["message"]["content"]
    extra = body["extra_fields"]
    assert ("openai", "chat_completion", "openai/gpt-4o-mini", 0) == (
        extra["provider"],
        extra["request_type"],
        extra["model_requested"],
        extra["fallback_index"],
    )
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = [msgspec.json.decode(e.removeprefix(b"data: ")) for e in raw[:-2].split(b"\n\n")[:-1]]
    assert "stream" == "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "openai/gpt-4o-mini" in [m["id"] for m in models["data"]]
    assert "list" == models["object"]


async def _first_event(resp: aiohttp.ClientResponse) -> bytes:
    async for line in resp.content:
        if line.startswith(b"data: "):
            return line
    raise AssertionError("the stream ended before its first event")


async def _refused(port: int, deadline_s: float) -> bool:
    """Whether a new connection to the port is refused within the deadline.

    A connection still in the listen backlog when the listener closes is reset instead.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await asyncio.sleep(0.02)
    return False


async def test_sigterm_drains_an_inflight_stream(tmp_path: Path, fake: FakeOpenAI) -> None:
    """After SIGTERM new connections are refused; a running stream still ends with [DONE]."""
    deltas = ["one ", "two ", "three ", "four ", "five ", "six"]
    fake.enqueue(Behavior(deltas=deltas, gap_s=0.2))  # 9 events, 1.6 s
    config = _write_config(tmp_path, fake, server={"drain_timeout_s": 10})
    async with gateway_process(config) as gw, _session() as session:
        async with session.post(
            gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as resp:
            assert 200 == resp.status
            first = await _first_event(resp)
            gw.proc.send_signal(signal.SIGTERM)
            rest = asyncio.create_task(resp.content.read())
            try:
                refused = await _refused(gw.port, deadline_s=1.0)
                still_streaming = not rest.done()
                body = first + await asyncio.wait_for(rest, 10)
            finally:
                rest.cancel()
        code = await gw.wait()
    assert refused
    assert still_streaming
    assert body.endswith(b"data: [DONE]\n\n")
    chunks = [
        msgspec.json.decode(e.removeprefix(b"data: ").strip())
        for e in body.split(b"\n\n")
        if e.strip() and e.strip() != b"data: [DONE]"
    ]
    assert "".join(deltas) == "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert 0 == code
    assert [200] == [r["status"] for r in gw.events("request")]
    assert 1 == len(gw.events("stopped"))


async def test_sigterm_cuts_a_stream_past_the_drain_timeout(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    """A stream still running when the drain time is up is cut, upstream too, and exit is 0."""
    fake.enqueue(Behavior(deltas=["a", "b", "c", "d", "e", "f"], gap_s=0.3))  # 2.4 s
    config = _write_config(tmp_path, fake, server={"drain_timeout_s": 0.3})
    async with gateway_process(config) as gw, _session() as session:
        async with session.post(
            gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as resp:
            await _first_event(resp)
            gw.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.content.read(), 10)
            cut_after_s = time.monotonic() - signalled
        code = await gw.wait()
        await asyncio.wait_for(fake.disconnected.wait(), 5)
    assert 0 == code
    # aiohttp waits up to the timeout for the handler, cancels it, then waits again at most that.
    assert cut_after_s < 2 * 0.3 + 1.0
    assert 1 == fake.disconnects
    (line,) = gw.events("request")
    assert (503, "gateway_shutdown") == (line["status"], line["error_type"])


def _upstream_connections(pids: set[int], upstream_port: int) -> dict[int, int]:
    """How many established TCP connections to 127.0.0.1:upstream_port each process holds."""
    inodes: set[str] = set()
    with open("/proc/net/tcp") as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            remote, state, inode = cols[2], cols[3], cols[9]
            if state == "01" and int(remote.split(":")[1], 16) == upstream_port:  # ESTABLISHED
                inodes.add(inode)
    counts: dict[int, int] = {}
    for pid in pids:
        n = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        n += 1
        counts[pid] = n
    return counts


async def _started(gw: Process, n: int) -> bool:
    """Wait until `n` workers have logged `started`."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(gw.events("started")) < n:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_two_workers_share_the_port(tmp_path: Path, fake: FakeOpenAI) -> None:
    """With `--workers 2` two processes serve the port; SIGTERM to the parent stops both, exit 0."""
    config = _write_config(tmp_path, fake)
    async with gateway_process(config, "--workers", "2") as gw, _session() as session:
        assert await _started(gw, 2)
        started = {r["pid"] for r in gw.events("started")}
        gw.workers |= started
        assert 2 == len(started)
        assert started == _children(gw.proc.pid)
        for i in range(20):
            async with session.post(
                gw.url + "/v1/chat/completions", json=CHAT, headers={"x-request-id": f"w-{i}"}
            ) as resp:
                assert 200 == resp.status
                await resp.read()
        # Each worker that served keeps its pooled connection to the upstream open.
        served = _upstream_connections(started, urlsplit(fake.base_url).port or 0)
        code = await gw.terminate()
        still_running = {pid for pid in started if _alive(pid)}
    assert {pid: True for pid in started} == {pid: n >= 1 for pid, n in served.items()}
    assert 0 == code
    assert set() == still_running
    assert 20 == len(fake.requests)
    assert sorted(f"w-{i}" for i in range(20)) == sorted(
        r["request_id"] for r in gw.events("request")
    )
    assert started == {r["pid"] for r in gw.events("stopped")}


# -- logs -------------------------------------------------------------------------------------


async def _post(
    session: aiohttp.ClientSession, url: str, request_id: str, key: str | None
) -> tuple[int, bytes]:
    headers = {"x-request-id": request_id}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with session.post(url + "/v1/chat/completions", json=CHAT, headers=headers) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_secrets_never_reach_the_logs(tmp_path: Path, fake: FakeOpenAI, level: str) -> None:
    """Neither the provider key (nor its masked form) nor the master key is ever logged."""
    masked = f"{PROVIDER_KEY[:5]}***{PROVIDER_KEY[-4:]}"
    config = _write_config(tmp_path, fake, auth={"master_key": MASTER_KEY})
    # The upstream answers a chat and the model list with a 401 that echoes the masked key.
    fake.enqueue(Behavior(status=401), Behavior(), Behavior(status=401))
    async with (
        gateway_process(config, "--log-format", "json", "--log-level", level) as gw,
        _session() as session,
    ):
        results = {
            "no-key": await _post(session, gw.url, "no-key", None),
            "wrong-key": await _post(session, gw.url, "wrong-key", "sk-wrong-gateway-key"),
            "provider-key-as-gateway-key": await _post(
                session, gw.url, "provider-key-as-gateway-key", PROVIDER_KEY
            ),
            "upstream-401": await _post(session, gw.url, "upstream-401", MASTER_KEY),
            "ok": await _post(session, gw.url, "ok", MASTER_KEY),
        }
        async with session.get(
            gw.url + "/v1/models",
            headers={"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": "models"},
        ) as resp:
            models = (resp.status, await resp.read())
        code = await gw.terminate()
    assert 0 == code
    statuses = {name: status for name, (status, _) in results.items()}
    assert {
        "no-key": 401,
        "wrong-key": 401,
        "provider-key-as-gateway-key": 401,
        "upstream-401": 401,
        "ok": 200,
    } == statuses
    assert (200, []) == (models[0], msgspec.json.decode(models[1])["data"])
    # The upstream's 401 echoed the (masked) key; the client never sees it.
    upstream_error = results["upstream-401"][1].decode()
    assert "Incorrect API key provided" in upstream_error
    assert PROVIDER_KEY not in upstream_error
    assert masked not in upstream_error
    assert 3 == len(fake.requests)
    log = "\n".join(gw.lines)
    for secret in (PROVIDER_KEY, masked, MASTER_KEY, "SECRETKEY", "SECRET-987654"):
        assert secret not in log
    # The model-list failure is logged with the upstream's message, the key scrubbed from it.
    [failed] = gw.events("model_list_failed")
    assert failed["error"].startswith("openai: Incorrect API key provided: [redacted]. ")
    request_lines = {r["request_id"]: r["status"] for r in gw.events("request")}
    assert {**statuses, "models": 200} == {
        k: v for k, v in request_lines.items() if k in {*statuses, "models"}
    }
    assert len(results) + 1 == len([r for r in gw.events("request") if r["path"] != "/health"])


async def test_console_log_format(tmp_path: Path, fake: FakeOpenAI) -> None:
    """`--log-format console` writes human-readable lines, not JSON."""
    config = _write_config(tmp_path, fake)
    async with gateway_process(config, "--log-format", "console") as gw, _session() as session:
        status, _ = await _post(session, gw.url, "console-1", None)
        code = await gw.terminate()
    assert (0, 200) == (code, status)
    assert [] == gw.records()
    request_lines = [line for line in gw.lines if " request " in line]
    assert 1 == len(request_lines), gw.lines
    assert "[info" in request_lines[0]
    assert "request_id=console-1" in request_lines[0]
    assert "status=200" in request_lines[0]
    assert any(" started " in line for line in gw.lines)


async def test_warning_level_drops_request_lines(tmp_path: Path, fake: FakeOpenAI) -> None:
    """At `--log-level warning` there are no info lines, but warnings are still written."""
    config = _write_config(tmp_path, fake)
    fake.enqueue(Behavior(), Behavior(cut_after=3))
    async with gateway_process(config, "--log-level", "warning") as gw, _session() as session:
        ok, _ = await _post(session, gw.url, "warn-ok", None)
        async with session.post(
            gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as resp:
            cut = await resp.read()
        code = await gw.terminate()
    assert (0, 200) == (code, ok)
    assert cut.endswith(b"data: [DONE]\n\n")
    levels = {r["level"] for r in gw.records()}
    assert {"warning"} == levels
    assert [] == gw.events("request")
    assert [] == gw.events("started")
    assert 1 == len(gw.events("stream_failed"))


async def test_a_dead_worker_is_restarted(tmp_path: Path, fake: FakeOpenAI) -> None:
    """A worker that dies is replaced by a new one; SIGTERM then stops both and the exit is 0."""
    config = _write_config(tmp_path, fake)
    async with gateway_process(config, "--workers", "2") as gw, _session() as session:
        assert await _started(gw, 2)
        first = {r["pid"] for r in gw.events("started")}
        gw.workers |= first
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        assert await _started(gw, 3)
        workers = _children(gw.proc.pid)
        gw.workers |= workers
        async with session.post(gw.url + "/v1/chat/completions", json=CHAT) as resp:
            status = resp.status
        code = await gw.terminate()
        alive = {pid for pid in gw.workers if _alive(pid)}
    restarted = {r["pid"] for r in gw.events("started")} - first
    assert 1 == len(restarted)
    assert (first - {victim}) | restarted == workers
    assert [f"thruway: worker {victim} exited with -9; restarting"] == [
        line for line in gw.lines if line.startswith("thruway: ")
    ]
    assert (200, 0) == (status, code)
    assert set() == alive


async def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, fake: FakeOpenAI) -> None:
    """Workers whose supervisor dies by SIGKILL drain and exit on their own, freeing the port."""
    config = _write_config(tmp_path, fake)
    async with gateway_process(config, "--workers", "2") as gw:
        assert await _started(gw, 2)
        workers = {r["pid"] for r in gw.events("started")}
        gw.workers |= workers
        gw.proc.kill()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        alive = {pid for pid in workers if _alive(pid)}
    assert set() == alive
    assert 2 == len(gw.events("supervisor_gone"))


# -- metrics ----------------------------------------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [entry.decode().partition("=") for entry in f.read().split(b"\0") if entry]
    return {name: value for name, _, value in pairs}


async def _served_total(session: aiohttp.ClientSession, url: str) -> float:
    """The sum of `thruway_requests_total` with status 200 in one scrape of `/metrics`."""
    async with session.get(url + "/metrics") as resp:
        assert 200 == resp.status
        text = await resp.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "thruway_requests_total" and s.labels["status"] == "200"
    )


async def test_metrics_sum_over_workers(tmp_path: Path, fake: FakeOpenAI) -> None:
    """With `--workers 2` any worker's `/metrics` counts what both served, also after one is
    killed and replaced (its live gauges are dropped); the shared directory goes at exit."""
    config = _write_config(tmp_path, fake)
    async with gateway_process(config, "--workers", "2") as gw, _session() as session:
        assert await _started(gw, 2)
        started = {r["pid"] for r in gw.events("started")}
        gw.workers |= started
        directory = _environ(min(started))["PROMETHEUS_MULTIPROC_DIR"]
        for i in range(20):
            assert 200 == (await _post(session, gw.url, f"m-{i}", None))[0]
        served = _upstream_connections(started, urlsplit(fake.base_url).port or 0)
        # Each worker hands its counts to the shared files at most a second after a request.
        await asyncio.sleep(1.3)
        totals = [await _served_total(session, gw.url) for _ in range(6)]
        killed = min(started)
        assert f"gauge_livesum_{killed}.db" in os.listdir(directory)
        os.kill(killed, signal.SIGKILL)
        assert await _started(gw, 3)
        gw.workers |= {r["pid"] for r in gw.events("started")}
        totals_after = [await _served_total(session, gw.url) for _ in range(6)]
        live_files = [n for n in os.listdir(directory) if n.startswith("gauge_livesum_")]
        code = await gw.terminate()
    assert {pid: True for pid in started} == {pid: n >= 1 for pid, n in served.items()}
    assert [20.0] * 6 == totals
    assert [20.0] * 6 == totals_after
    assert f"gauge_livesum_{killed}.db" not in live_files
    assert 2 == len(live_files)
    assert 0 == code
    assert not os.path.exists(directory)
