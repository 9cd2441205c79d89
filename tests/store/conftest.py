"""Real databases for the store tests: every test runs once on SQLite and once on PostgreSQL.

SQLite lives in ``tmp_path``. PostgreSQL is the server at ``THRUWAY_TEST_POSTGRES_URL`` (else
``postgresql://postgres@127.0.0.1:5432/test``, else the same as user ``root``); the test session
works in its own schema ``thruway_test_<random>`` (``search_path`` set through the connection's
server settings), emptied before each test and dropped at the end, so parallel runs and other
sessions never see each other's rows. When no server answers, the PostgreSQL cases are skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from proxy.config import StoreConfig
from proxy.store import PostgresStore, SQLiteStore, Store, open_store
from proxy.store.base import Migration
from proxy.store.postgres import MIGRATIONS as PG_MIGRATIONS
from proxy.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

_PG_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


@dataclass
class PgServer:
    url: str
    schema: str


async def _first_reachable(urls: tuple[str, ...]) -> str | None:
    for url in urls:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            continue
        await conn.close()
        return url
    return None


async def _pg_execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | None]:
    """The session's PostgreSQL schema (None: no server); dropped when the session ends."""
    configured = os.environ.get("THRUWAY_TEST_POSTGRES_URL")
    url = asyncio.run(_first_reachable((configured,) if configured else _PG_URLS))
    if url is None:
        yield None
        return
    server = PgServer(url=url, schema=f"thruway_test_{secrets.token_hex(6)}")
    try:
        yield server
    finally:
        asyncio.run(_pg_execute(url, f'DROP SCHEMA IF EXISTS "{server.schema}" CASCADE'))


@dataclass
class Backend:
    """One test's empty database on one backend: open stores on it, and look inside it."""

    name: str
    config: StoreConfig
    migrations: tuple[Migration, ...]
    sqlite_path: str = ""
    pg: PgServer | None = None
    stores: list[Store] = field(default_factory=list)

    async def open(self, migrations: tuple[Migration, ...] | None = None) -> Store:
        """A store on this database (another connection each time), closed after the test."""
        steps = self.migrations if migrations is None else migrations
        store: Store
        if self.pg is not None:
            store = await PostgresStore.open(
                self.pg.url, server_settings={"search_path": self.pg.schema}, migrations=steps
            )
        else:
            store = await SQLiteStore.open(self.sqlite_path, migrations=steps)
        self.stores.append(store)
        return store

    async def open_configured(self) -> Store:
        """A store opened as the gateway opens it: ``open_store`` on ``config``."""
        store = await open_store(self.config)
        self.stores.append(store)
        return store

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a raw statement run on its own connection, outside any store."""
        if self.pg is not None:
            conn = await asyncpg.connect(
                self.pg.url, server_settings={"search_path": self.pg.schema}
            )
            try:
                return [tuple(row) for row in await conn.fetch(sql)]
            finally:
                await conn.close()
        async with aiosqlite.connect(self.sqlite_path, isolation_level=None) as db:
            return [tuple(row) for row in await db.execute_fetchall(sql)]

    async def tables(self) -> set[str]:
        if self.pg is not None:
            rows = await self.query(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        else:
            rows = await self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}

    async def versions(self) -> list[tuple[int, float]]:
        return [
            (row[0], row[1])
            for row in await self.query(
                "SELECT version, applied_at FROM schema_migrations ORDER BY version"
            )
        ]

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer | None
) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = str(tmp_path / "thruway.db")
        made = Backend(
            name="sqlite",
            config=StoreConfig(url=f"sqlite:///{path}"),
            migrations=SQLITE_MIGRATIONS,
            sqlite_path=path,
        )
    else:
        if pg_server is None:
            pytest.skip("no PostgreSQL server answered (set THRUWAY_TEST_POSTGRES_URL)")
        await _pg_execute(
            pg_server.url,
            f'DROP SCHEMA IF EXISTS "{pg_server.schema}" CASCADE;'
            f' CREATE SCHEMA "{pg_server.schema}"',
        )
        made = Backend(
            name="postgresql",
            config=StoreConfig(url=f"{pg_server.url}?search_path={pg_server.schema}"),
            migrations=PG_MIGRATIONS,
            pg=pg_server,
        )
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
