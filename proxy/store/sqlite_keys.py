"""Virtual keys and teams on SQLite (a mixin of :class:`proxy.store.sqlite.SQLiteStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from proxy.store.base import KEY_TABLES, TeamDeletion, check_limit

__all__ = ["KEY_STATEMENTS", "SQLiteKeys"]

KEY_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE teams (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        body BLOB NOT NULL
    ) STRICT""",
    """CREATE TABLE virtual_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        team_id TEXT REFERENCES teams (id),
        created_at REAL NOT NULL,
        body BLOB NOT NULL
    ) STRICT""",
    "CREATE INDEX virtual_keys_team ON virtual_keys (team_id, created_at, id)",
    "CREATE INDEX virtual_keys_created ON virtual_keys (created_at, id)",
    "CREATE INDEX teams_created ON teams (created_at, id)",
)
assert {s.split()[2] for s in KEY_STATEMENTS if s.startswith("CREATE TABLE")} == KEY_TABLES

# A cursor id that does not exist makes the sub-select NULL, so the page is empty.
_PAGE = """SELECT body FROM {table}
WHERE (:team IS NULL OR team_id = :team) AND (:after IS NULL OR (created_at, id) > (
    SELECT created_at, id FROM {table} WHERE id = :after))
ORDER BY created_at, id LIMIT :n"""


class SQLiteKeys:
    if TYPE_CHECKING:

        def _transaction(self) -> Any: ...
        async def _rows(
            self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
        ) -> list[sqlite3.Row]: ...
        async def _change(
            self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
        ) -> int: ...
        async def _read(
            self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
        ) -> list[sqlite3.Row]: ...
        async def _write(self, sql: str, params: Iterable[Any] | Mapping[str, Any]) -> int: ...

    async def insert_key(
        self, id: str, hash: str, team: str | None, created_at: float, body: bytes
    ) -> None:
        await self._write(
            "INSERT INTO virtual_keys (id, hash, team_id, created_at, body) VALUES (?, ?, ?, ?, ?)",
            (id, hash, team, created_at, body),
        )

    async def get_key(self, id: str) -> bytes | None:
        rows = await self._read("SELECT body FROM virtual_keys WHERE id = ?", (id,))
        return rows[0][0] if rows else None

    async def key_by_hash(self, hash: str) -> bytes | None:
        rows = await self._read("SELECT body FROM virtual_keys WHERE hash = ?", (hash,))
        return rows[0][0] if rows else None

    async def list_keys(self, *, team: str | None, after: str | None, limit: int) -> list[bytes]:
        check_limit(limit)
        sql = _PAGE.format(table="virtual_keys")
        rows = await self._read(sql, {"team": team, "after": after, "n": limit})
        return [row[0] for row in rows]

    async def update_key(
        self, id: str, team: str | None, body: bytes, *, hash: str | None = None
    ) -> bool:
        changed = await self._write(
            "UPDATE virtual_keys SET hash = coalesce(?, hash), team_id = ?, body = ? WHERE id = ?",
            (hash, team, body, id),
        )
        return changed == 1

    async def delete_key(self, id: str) -> bool:
        return await self._write("DELETE FROM virtual_keys WHERE id = ?", (id,)) == 1

    async def has_keys(self) -> bool:
        return bool(await self._read("SELECT 1 FROM virtual_keys LIMIT 1"))

    async def insert_team(self, id: str, created_at: float, body: bytes) -> None:
        await self._write(
            "INSERT INTO teams (id, created_at, body) VALUES (?, ?, ?)", (id, created_at, body)
        )

    async def get_team(self, id: str) -> bytes | None:
        rows = await self._read("SELECT body FROM teams WHERE id = ?", (id,))
        return rows[0][0] if rows else None

    async def list_teams(self, *, after: str | None, limit: int) -> list[bytes]:
        check_limit(limit)
        sql = _PAGE.format(table="teams").replace("(:team IS NULL OR team_id = :team)", "1")
        return [row[0] for row in await self._read(sql, {"after": after, "n": limit})]

    async def update_team(self, id: str, body: bytes) -> bool:
        return await self._write("UPDATE teams SET body = ? WHERE id = ?", (body, id)) == 1

    async def delete_team(self, id: str) -> TeamDeletion:
        async with self._transaction():
            if await self._rows("SELECT 1 FROM virtual_keys WHERE team_id = ? LIMIT 1", (id,)):
                return "in_use"
            deleted = await self._change("DELETE FROM teams WHERE id = ?", (id,))
        return "deleted" if deleted == 1 else "missing"
