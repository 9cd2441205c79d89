"""Usage records on SQLite: the statements of :class:`SQLiteUsage`, mixed into the SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.store.base import check_limit
from proxy.store.usage import (
    USAGE_COLUMNS,
    GroupBy,
    UsageFilters,
    UsagePage,
    UsageRecord,
    UsageTotal,
    make_usage_page,
    page_query,
    totals_query,
    usage_migration,
    usage_total,
)

__all__ = ["USAGE_MIGRATION", "SQLiteUsage"]

USAGE_MIGRATION = usage_migration(
    {
        "text": "TEXT",
        "int": "INTEGER",
        "real": "REAL",
        "bool": "INTEGER",
        "blob": "BLOB",
        "table": " STRICT",
    }
)

_INSERT = (
    f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' for _ in USAGE_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
_DAY = "date(created_at, 'unixepoch')"
_STREAM = USAGE_COLUMNS.index("stream")


def _mark(_: int) -> str:
    return "?"


def _record(row: Any) -> UsageRecord:
    values = list(row)
    values[_STREAM] = bool(values[_STREAM])
    return UsageRecord(**dict(zip(USAGE_COLUMNS, values, strict=True)))


class SQLiteUsage:
    """Usage records, for :class:`proxy.store.sqlite.SQLiteStore` (whose helpers it uses)."""

    if TYPE_CHECKING:
        _lock: asyncio.Lock

        def _transaction(self) -> AbstractAsyncContextManager[None]: ...

        async def _many(self, sql: str, params: Iterable[Iterable[Any]]) -> None: ...

        async def _read(
            self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
        ) -> list[sqlite3.Row]: ...

        async def _write(self, sql: str, params: Iterable[Any] | Mapping[str, Any]) -> int: ...

    async def insert_usage(self, records: list[UsageRecord]) -> None:
        """Insert records in one transaction; ids already stored are skipped."""
        if not records:
            return
        rows = [msgspec.structs.astuple(r) for r in records]
        async with self._transaction():
            await self._many(_INSERT, rows)

    async def query_usage_records(
        self, filters: UsageFilters, cursor: tuple[float, str] | None, limit: int
    ) -> UsagePage:
        check_limit(limit)
        sql, params = page_query(filters, cursor, limit, _mark)
        return make_usage_page([_record(row) for row in await self._read(sql, params)], limit)

    async def usage_totals(self, group_by: GroupBy, filters: UsageFilters) -> list[UsageTotal]:
        sql, params = totals_query(group_by, filters, _mark, _DAY)
        return [usage_total(row) for row in await self._read(sql, params)]

    async def delete_usage_before(self, before: float) -> int:
        return await self._write("DELETE FROM usage_records WHERE created_at < ?", (before,))
