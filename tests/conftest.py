"""Shared fixtures: fake upstreams, and a gateway in front of them.

``gateway`` starts the real app (every middleware, real sockets) on 127.0.0.1 with providers
pointed at the fakes: ``openai`` at ``fake_openai`` and ``backup`` (an OpenAI-compatible custom
provider) at ``fake_backup``. Tests that need another configuration call ``make_gateway``.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import build_config
from tests.fakes.openai import FakeOpenAI, fake_openai

__all__ = ["Gateway", "fake_backup", "fake_openai", "gateway", "make_gateway"]

UPSTREAM_KEY = "sk-fake-upstream"


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    base_url: str  # ".../v1", what an OpenAI SDK takes
    sdks: list[openai.AsyncOpenAI | openai.OpenAI] = field(default_factory=list)

    def sdk(self, api_key: str = "sk-anything", **kwargs: Any) -> openai.AsyncOpenAI:
        """An async SDK client for this gateway, closed with the gateway."""
        client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, **kwargs
        )
        self.sdks.append(client)
        return client

    def sync_sdk(self, api_key: str = "sk-anything", **kwargs: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, **kwargs)
        self.sdks.append(client)
        return client

    async def close(self) -> None:
        for sdk in self.sdks:
            if isinstance(sdk, openai.AsyncOpenAI):
                await sdk.close()
            else:
                sdk.close()
        await self.client.close()


_PG_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


async def _reachable_postgres() -> str | None:
    configured = os.environ.get("THRUWAY_TEST_POSTGRES_URL")
    for url in (configured,) if configured else _PG_URLS:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            continue
        await conn.close()
        return url
    return None


REDIS_URL = os.environ.get("THRUWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_url() -> str:
    """The Redis the tests share (keys they make are random, so tests do not collide)."""
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, redis.RedisError):
        pytest.skip(f"no Redis server answered at {REDIS_URL} (set THRUWAY_TEST_REDIS_URL)")
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A gateway store URL on each backend: a SQLite file, or a PostgreSQL schema of its own
    (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'thruway.db'}"
        return
    url = await _reachable_postgres()
    if url is None:
        pytest.skip("no PostgreSQL server answered (set THRUWAY_TEST_POSTGRES_URL)")
    schema = f"thruway_e2e_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield f"{url}?search_path={schema}"
    finally:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def fake_backup() -> AsyncIterator[FakeOpenAI]:
    fake = await FakeOpenAI(api_key="sk-fake-backup").start()
    try:
        yield fake
    finally:
        await fake.close()


def provider_for(fake: FakeOpenAI, key: str = UPSTREAM_KEY, **extra: Any) -> dict[str, Any]:
    return {"type": "openai", "base_url": fake.base_url, "keys": [{"value": key}], **extra}


MakeGateway = Callable[..., Awaitable[Gateway]]


def _without_retries(document: dict[str, Any]) -> dict[str, Any]:
    """Each provider without its own ``retry`` gets ``max_retries: 0``: most tests script one
    failure and look at what the fallback did; the retry tests set ``retry`` themselves."""
    providers = {
        name: settings if "retry" in settings else {**settings, "retry": {"max_retries": 0}}
        for name, settings in document.get("providers", {}).items()
    }
    return {**document, "providers": providers}


@pytest.fixture
async def make_gateway() -> AsyncIterator[MakeGateway]:
    """Start gateways from config documents; all are closed after the test."""
    gateways: list[Gateway] = []

    async def make(document: dict[str, Any], env: dict[str, str] | None = None) -> Gateway:
        # Each gateway gets its own in-memory store unless the test names one.
        document = {"store": {"url": "sqlite://:memory:"}, **document}
        document = _without_retries(document)
        config = build_config(document, source="<test>")
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(config, env=env or {})))
        await client.start_server()
        gateway = Gateway(client=client, base_url=str(client.make_url("/v1")))
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        await gateway.close()


@pytest.fixture
async def gateway(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> Gateway:
    return await make_gateway(
        {
            "providers": {
                "openai": provider_for(fake_openai),
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            },
        }
    )


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Each test starts with structlog's defaults and empty context, and leaves the standard
    library's root logger as it found it (``configure_logging`` replaces its handlers)."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = False
    structlog.reset_defaults()
