"""Usage records on PostgreSQL: the statements of :class:`PostgresUsage`, mixed into the
PostgreSQL store."""

from __future__ import annotations

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

__all__ = ["USAGE_MIGRATION", "PostgresUsage"]

USAGE_MIGRATION = usage_migration(
    {
        "text": "text",
        "int": "bigint",
        "real": "double precision",
        "bool": "boolean",
        "blob": "bytea",
        "table": "",
    }
)

_INSERT = (
    f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(USAGE_COLUMNS) + 1))})"
    " ON CONFLICT (id) DO NOTHING"
)
_DAY = "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _mark(n: int) -> str:
    return f"${n}"


class PostgresUsage:
    """Usage records, for :class:`proxy.store.postgres.PostgresStore` (its pool)."""

    if TYPE_CHECKING:
        _pool: Any

    async def insert_usage(self, records: list[UsageRecord]) -> None:
        """Insert records in one transaction; ids already stored are skipped."""
        if not records:
            return
        rows = [msgspec.structs.astuple(r) for r in records]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT, rows)

    async def query_usage_records(
        self, filters: UsageFilters, cursor: tuple[float, str] | None, limit: int
    ) -> UsagePage:
        check_limit(limit)
        sql, params = page_query(filters, cursor, limit, _mark)
        rows = await self._pool.fetch(sql, *params)
        return make_usage_page([UsageRecord(**dict(row.items())) for row in rows], limit)

    async def usage_totals(self, group_by: GroupBy, filters: UsageFilters) -> list[UsageTotal]:
        sql, params = totals_query(group_by, filters, _mark, _DAY)
        return [usage_total(row) for row in await self._pool.fetch(sql, *params)]

    async def delete_usage_before(self, before: float) -> int:
        tag = await self._pool.execute("DELETE FROM usage_records WHERE created_at < $1", before)
        return int(tag.rsplit(" ", 1)[-1])
