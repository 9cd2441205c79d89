"""Virtual keys and teams on PostgreSQL (a mixin of :class:`proxy.store.postgres.PostgresStore`)."""

from __future__ import annotations

from typing import Any

from proxy.store.base import KEY_TABLES, TeamDeletion, check_limit

__all__ = ["KEY_STATEMENTS", "PostgresKeys"]

KEY_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE teams (
        id text PRIMARY KEY,
        created_at double precision NOT NULL,
        body bytea NOT NULL
    )""",
    """CREATE TABLE virtual_keys (
        id text PRIMARY KEY,
        hash text NOT NULL UNIQUE,
        team_id text REFERENCES teams (id),
        created_at double precision NOT NULL,
        body bytea NOT NULL
    )""",
    "CREATE INDEX virtual_keys_team ON virtual_keys (team_id, created_at, id)",
    "CREATE INDEX virtual_keys_created ON virtual_keys (created_at, id)",
    "CREATE INDEX teams_created ON teams (created_at, id)",
)
assert {s.split()[2] for s in KEY_STATEMENTS if s.startswith("CREATE TABLE")} == KEY_TABLES

_PAGE = """SELECT body FROM {table}
WHERE {team} ($2::text IS NULL OR (created_at, id) > (
    SELECT created_at, id FROM {table} WHERE id = $2))
ORDER BY created_at, id LIMIT $3"""


class PostgresKeys:
    _pool: Any

    async def insert_key(
        self, id: str, hash: str, team: str | None, created_at: float, body: bytes
    ) -> None:
        await self._pool.execute(
            "INSERT INTO virtual_keys (id, hash, team_id, created_at, body)"
            " VALUES ($1, $2, $3, $4, $5)",
            id,
            hash,
            team,
            created_at,
            body,
        )

    async def get_key(self, id: str) -> bytes | None:
        got: bytes | None = await self._pool.fetchval(
            "SELECT body FROM virtual_keys WHERE id = $1", id
        )
        return got

    async def key_by_hash(self, hash: str) -> bytes | None:
        got: bytes | None = await self._pool.fetchval(
            "SELECT body FROM virtual_keys WHERE hash = $1", hash
        )
        return got

    async def list_keys(self, *, team: str | None, after: str | None, limit: int) -> list[bytes]:
        check_limit(limit)
        sql = _PAGE.format(table="virtual_keys", team="($1::text IS NULL OR team_id = $1) AND")
        return [row[0] for row in await self._pool.fetch(sql, team, after, limit)]

    async def update_key(
        self, id: str, team: str | None, body: bytes, *, hash: str | None = None
    ) -> bool:
        tag = await self._pool.execute(
            "UPDATE virtual_keys SET hash = coalesce($2, hash), team_id = $3, body = $4"
            " WHERE id = $1",
            id,
            hash,
            team,
            body,
        )
        return bool(tag == "UPDATE 1")

    async def delete_key(self, id: str) -> bool:
        tag = await self._pool.execute("DELETE FROM virtual_keys WHERE id = $1", id)
        return bool(tag == "DELETE 1")

    async def has_keys(self) -> bool:
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM virtual_keys)"))

    async def insert_team(self, id: str, created_at: float, body: bytes) -> None:
        await self._pool.execute(
            "INSERT INTO teams (id, created_at, body) VALUES ($1, $2, $3)", id, created_at, body
        )

    async def get_team(self, id: str) -> bytes | None:
        got: bytes | None = await self._pool.fetchval("SELECT body FROM teams WHERE id = $1", id)
        return got

    async def list_teams(self, *, after: str | None, limit: int) -> list[bytes]:
        check_limit(limit)
        sql = _PAGE.format(table="teams", team="$1::text IS NULL AND")
        return [row[0] for row in await self._pool.fetch(sql, None, after, limit)]

    async def update_team(self, id: str, body: bytes) -> bool:
        tag = await self._pool.execute("UPDATE teams SET body = $2 WHERE id = $1", id, body)
        return bool(tag == "UPDATE 1")

    async def delete_team(self, id: str) -> TeamDeletion:
        async with self._pool.acquire() as conn, conn.transaction():
            # The team's row lock keeps a key from joining it while it is deleted.
            if await conn.fetchval("SELECT 1 FROM teams WHERE id = $1 FOR UPDATE", id) is None:
                return "missing"
            if await conn.fetchval("SELECT 1 FROM virtual_keys WHERE team_id = $1 LIMIT 1", id):
                return "in_use"
            await conn.execute("DELETE FROM teams WHERE id = $1", id)
        return "deleted"
