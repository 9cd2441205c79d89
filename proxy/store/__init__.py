"""The gateway's durable state for the Responses API: :func:`open_store` picks the backend from
``store.url`` and returns a :class:`Store` with its schema migrated. See :mod:`proxy.store.base`
for the contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.config import StoreConfig, parse_store_url
from proxy.store.base import (
    INTERRUPTED_ERROR,
    ItemPage,
    Recovered,
    ResponseRecord,
    Store,
    StoreError,
)
from proxy.store.postgres import PostgresStore
from proxy.store.sqlite import SQLiteStore

__all__ = [
    "INTERRUPTED_ERROR",
    "ItemPage",
    "PostgresStore",
    "Recovered",
    "ResponseRecord",
    "SQLiteStore",
    "Store",
    "StoreError",
    "open_store",
]


async def open_store(config: StoreConfig) -> Store:
    """Open the configured store and apply its missing migrations; the caller closes it.

    A relative SQLite path is resolved against the working directory, and its parent directory
    is created.
    """
    parsed = parse_store_url(config.url)
    if parsed is None:
        raise StoreError("store.url: expected a sqlite:// or postgresql:// URL")
    backend, where = parsed
    if backend == "postgresql":
        return await PostgresStore.open(where, pool_size=config.pool_size)
    if where != ":memory:":
        path = Path.cwd() / where
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        where = str(path)
    return await SQLiteStore.open(where)
