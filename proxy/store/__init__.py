"""The gateway's durable state for the Responses API: :func:`open_store` picks the backend from
``store.url`` and returns a :class:`Store` with its schema migrated. See :mod:`proxy.store.base`
for the contract."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proxy.config import StoreConfig, parse_store_url
from proxy.store.base import (
    INTERRUPTED_ERROR,
    ItemPage,
    Recovered,
    ResponseRecord,
    Store,
    StoreError,
)
from proxy.store.sqlite import SQLiteStore
from proxy.store.usage import GroupBy, UsageFilters, UsagePage, UsageRecord, UsageTotal

if TYPE_CHECKING:
    from proxy.store.postgres import PostgresStore

__all__ = [
    "INTERRUPTED_ERROR",
    "GroupBy",
    "ItemPage",
    "PostgresStore",
    "Recovered",
    "ResponseRecord",
    "SQLiteStore",
    "Store",
    "StoreError",
    "UsageFilters",
    "UsagePage",
    "UsageRecord",
    "UsageTotal",
    "open_store",
]


async def open_store(config: StoreConfig) -> Store:
    """Open the configured store and apply its missing migrations; the caller closes it.

    A relative SQLite path is resolved against the working directory, and its parent directory
    is created. A database that cannot be reached, opened or migrated raises
    :class:`StoreError` naming it (never with the URL's credentials).
    """
    parsed = parse_store_url(config.url)
    if parsed is None:
        raise StoreError("store.url: expected a sqlite:// or postgresql:// URL")
    backend, where = parsed
    if backend == "postgresql":
        # Imported here: asyncpg costs memory that a SQLite gateway (the default) never needs.
        import asyncpg

        from proxy.store.postgres import PostgresStore

        try:
            return await PostgresStore.open(where, pool_size=config.pool_size)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"store: cannot use PostgreSQL at {_safe_url(where)}: {exc}") from exc
    if where != ":memory:":
        where = str(Path.cwd() / where)
    try:
        if where != ":memory:":
            await asyncio.to_thread(Path(where).parent.mkdir, parents=True, exist_ok=True)
        return await SQLiteStore.open(where)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"store: cannot use the SQLite database {where}: {exc}") from exc


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from proxy.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _safe_url(url: str) -> str:
    """``scheme://host:port/database``: a URL's user, password and query left out."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
