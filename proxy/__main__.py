"""The ``thruway`` command (also ``python -m proxy``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence

import msgspec
import structlog
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from providers.registry import check_providers, local_base_url_variables, standard_key_variables
from proxy.app import create_app
from proxy.config import ConfigError, GatewayConfig, config_from_env, load_config
from proxy.logging import configure_logging
from proxy.metrics import MULTIPROC_DIR

__all__ = ["main"]

log = structlog.get_logger("thruway")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="thruway", description="An LLM gateway with one OpenAI-compatible API."
    )
    p.add_argument(
        "--config",
        default=os.environ.get("THRUWAY_CONFIG"),
        help="YAML or JSON config file (default: $THRUWAY_CONFIG; none: providers from the "
        "environment's API-key variables)",
    )
    p.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    p.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "console"])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def _load(args: argparse.Namespace) -> GatewayConfig:
    if args.config:
        config = load_config(args.config)
    else:
        config = config_from_env(standard_key_variables(), local_base_url_variables())
    check_providers(config)
    server = msgspec.structs.replace(
        config.server,
        host=args.host or config.server.host,
        port=config.server.port if args.port is None else args.port,
    )
    logging = msgspec.structs.replace(
        config.logging,
        level=args.log_level or config.logging.level,
        format=args.log_format or config.logging.format,
    )
    return msgspec.structs.replace(config, server=server, logging=logging)


# Secret variables some provider may read besides its standard key variable.
_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AZURE_OPENAI_API_KEY",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_API_KEY",
    "CO_API_KEY",
)
# Credential fields that are identifiers, not secrets.
_NOT_SECRET = frozenset(
    {"tenant_id", "client_id", "authority", "scope", "access_key_id", "profile", "region"}
)


def _secrets(config: GatewayConfig) -> list[str]:
    """Every secret the configuration and environment hold, for the log redactor."""
    values = [k.value for p in config.providers.values() for k in p.keys or ()]
    for provider in config.providers.values():
        for field, value in provider.credentials.items():
            if field in _NOT_SECRET:
                continue
            values.append(value)
            # A service-account key inline: its private key is the secret part.
            if value.lstrip().startswith("{"):
                with contextlib.suppress(ValueError, AttributeError):
                    values.append(msgspec.json.decode(value).get("private_key") or "")
    names = [*standard_key_variables().values(), *_SECRET_VARIABLES]
    values += [os.environ[v] for v in names if os.environ.get(v)]
    values.append(config.auth.master_key)
    return [v for v in values if v]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: GatewayConfig, *, reuse_port: bool = False) -> int:
    """Run one gateway process until SIGTERM/SIGINT, then drain and return 0."""
    logs = configure_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        secrets=_secrets(config),
        flush_interval_s=config.logging.flush_interval_s,
    )
    app = create_app(config, debug=config.logging.level == "debug", request_line=logs.request_line)
    server = config.server

    async def started(app: web.Application) -> None:
        log.info(
            "started",
            host=server.host,
            port=server.port,
            pid=os.getpid(),
            config=config.source,
            providers=sorted(config.providers),
        )

    app.on_startup.append(started)
    app.on_startup.append(_tune_gc)
    if reuse_port:
        app.cleanup_ctx.append(_exit_when_orphaned)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        app,
        host=server.host,
        port=server.port,
        shutdown_timeout=server.drain_timeout_s,
        keepalive_timeout=server.keepalive_timeout_s,
        access_log=None,
        print=None,
        reuse_port=reuse_port or None,
        handler_cancellation=True,
        loop=loop,
    )
    log.info("stopped", pid=os.getpid())
    logs.flush()
    return 0


async def _tune_gc(app: web.Application) -> None:
    """Move everything built at start-up out of the collector's reach (it lives as long as the
    process) and collect the young generation less often: a request allocates many short-lived
    objects, and each collection would otherwise walk the whole start-up heap again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def _exit_when_orphaned(app: web.Application) -> AsyncIterator[None]:
    """A worker whose supervisor is gone stops itself the graceful way (as on SIGTERM)."""
    parent = os.getppid()

    async def watch() -> None:
        # Nothing signals a parent's death portably (Linux has PR_SET_PDEATHSIG): poll.
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        log.warning("supervisor_gone", pid=os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.create_task(watch())
    yield
    task.cancel()


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` processes on one port; restart one that dies; stop all on SIGTERM/SIGINT.

    Workers run in their own session, so a terminal's Ctrl-C reaches them once, through this
    process; a worker whose supervisor vanishes (SIGKILL) drains and exits by itself.

    The workers share a fresh ``PROMETHEUS_MULTIPROC_DIR``, so that any worker's ``/metrics``
    sums them all; a dead worker's live gauges are dropped from it, and it is removed at exit.
    """
    metrics_dir = tempfile.mkdtemp(prefix="thruway-metrics-")
    try:
        return _supervise(argv, workers, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(argv: Sequence[str], workers: int, metrics_dir: str) -> int:
    command = [sys.executable, "-m", "proxy", *argv, "--worker"]
    env = {**os.environ, MULTIPROC_DIR: metrics_dir}
    stopping = False
    procs: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, start_new_session=True, env=env)
        if stopping:  # the signal came while it was starting
            proc.send_signal(signal.SIGTERM)
        return proc

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs.extend(spawn() for _ in range(workers))
    while not stopping:
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is not None and not stopping:
                print(f"thruway: worker {proc.pid} exited with {code}; restarting", file=sys.stderr)
                mark_process_dead(proc.pid, metrics_dir)
                time.sleep(0.5)
                if not stopping:
                    procs[i] = spawn()
        time.sleep(0.2)
    codes = [proc.wait() for proc in procs]
    return 0 if all(c == 0 for c in codes) else 1


def _without_workers(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"thruway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("thruway: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and not args.worker:
        return supervise(_without_workers(argv), args.workers)
    return serve(config, reuse_port=args.worker)


if __name__ == "__main__":
    sys.exit(main())
