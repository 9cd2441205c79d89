"""The PostgreSQL store: an asyncpg pool; several gateway instances may share one database.

Cross-instance safety rests on the database: jobs are claimed with ``FOR UPDATE SKIP LOCKED``,
lease changes are single ``UPDATE``s whose ``WHERE`` PostgreSQL re-checks after waiting on a row
lock, appends to a conversation lock its row first so that concurrent appends do not interleave
positions, and start-up migrations hold an advisory lock for the current schema.
Any libpq-style URL works; query parameters asyncpg does not know become server settings, so
``?search_path=thruway`` keeps the tables in the schema ``thruway``.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import msgspec

from proxy.store.base import (
    INTERRUPTED_ERROR,
    ItemPage,
    Migration,
    Order,
    Recovered,
    ResponseRecord,
    Status,
    check_limit,
    make_page,
    page_json_array,
    pending_migrations,
)
from proxy.store.postgres_keys import KEY_STATEMENTS, PostgresKeys
from proxy.store.postgres_usage import USAGE_MIGRATION, PostgresUsage

__all__ = ["MIGRATIONS", "PostgresStore"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "responses and their stream events",
        (
            """CREATE TABLE responses (
                id text PRIMARY KEY,
                owner text NOT NULL,
                created_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                status text NOT NULL CHECK (status IN
                    ('queued', 'in_progress', 'completed', 'incomplete', 'failed', 'cancelled')),
                model text NOT NULL,
                background boolean NOT NULL DEFAULT false,
                stream boolean NOT NULL DEFAULT false,
                previous_response_id text,
                conversation_id text,
                request bytea NOT NULL,
                input_items bytea NOT NULL,
                response bytea,
                error bytea,
                attempts integer NOT NULL DEFAULT 0,
                lease_owner text,
                lease_until double precision,
                cancel_requested boolean NOT NULL DEFAULT false
            )""",
            """CREATE INDEX responses_queued ON responses (created_at, id)
                WHERE status = 'queued' AND background""",
            """CREATE INDEX responses_leased ON responses (lease_until)
                WHERE status = 'in_progress'""",
            """CREATE TABLE response_events (
                response_id text NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
                seq bigint NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (response_id, seq)
            )""",
        ),
    ),
    Migration(
        2,
        "conversations and their items",
        (
            """CREATE TABLE conversations (
                id text PRIMARY KEY,
                owner text NOT NULL,
                created_at double precision NOT NULL,
                metadata bytea NOT NULL
            )""",
            # seq is the insertion position within the conversation: the page order.
            """CREATE TABLE conversation_items (
                conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
                seq bigint NOT NULL,
                item_id text NOT NULL,
                item bytea NOT NULL,
                PRIMARY KEY (conversation_id, seq),
                UNIQUE (conversation_id, item_id)
            )""",
        ),
    ),
    Migration(3, "virtual keys and teams", KEY_STATEMENTS),
    USAGE_MIGRATION,
)

# pg_advisory_xact_lock(int, int): this constant ("thry") and a hash of the schema, so that
# instances sharing a schema take turns while other schemas (tests) do not wait on each other.
_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(1953002105, hashtext(coalesce(current_schema(), '')))"
)

# Spliced into the statements below (hence the noqa S608): a constant, never input.
_COLUMNS = (
    "id, owner, created_at, updated_at, status, model, background, stream, "
    "previous_response_id, conversation_id, request, input_items, response, error, attempts, "
    "lease_owner, lease_until, cancel_requested"
)

_INSERT_RESPONSE = f"""INSERT INTO responses ({_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"""  # noqa: S608

_UPDATE_RESPONSE = """UPDATE responses SET
    status = coalesce($2, status),
    response = coalesce($3, response),
    error = coalesce($4, error),
    input_items = coalesce($5, input_items),
    lease_owner = CASE WHEN $6 THEN $7 ELSE lease_owner END,
    lease_until = CASE WHEN $8 THEN $9 ELSE lease_until END,
    updated_at = $10
WHERE id = $1 AND ($11::text IS NULL OR lease_owner = $11)"""

_SELECT_RESPONSE = f"SELECT {_COLUMNS} FROM responses WHERE id = $1 AND owner = $2"  # noqa: S608

_CANCEL = f"""UPDATE responses SET
    cancel_requested = true,
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    updated_at = $3
WHERE id = $1 AND owner = $2 AND status IN ('queued', 'in_progress')
RETURNING {_COLUMNS}"""  # noqa: S608

# SKIP LOCKED: a claimer passes over the row another claimer is taking instead of waiting for it
# and then finding it no longer queued.
_CLAIM = f"""UPDATE responses SET
    status = 'in_progress', lease_owner = $1, lease_until = $2,
    attempts = attempts + 1, updated_at = $3
WHERE id = (
    SELECT id FROM responses WHERE status = 'queued' AND background
    ORDER BY created_at, id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {_COLUMNS}"""  # noqa: S608

_RENEW = """UPDATE responses SET lease_until = $3
WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress'"""

_RECOVER = """UPDATE responses SET
    status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts < $1 THEN 'queued' ELSE 'failed' END,
    error = CASE WHEN NOT cancel_requested AND attempts >= $1 THEN $2 ELSE error END,
    lease_owner = NULL, lease_until = NULL, updated_at = $3
WHERE status = 'in_progress' AND lease_until < $3
RETURNING id, status"""

_APPEND_EVENTS = """INSERT INTO response_events (response_id, seq, data)
SELECT $1, e.seq, e.data FROM unnest($2::bigint[], $3::bytea[]) AS e (seq, data)
ON CONFLICT DO NOTHING"""

# FOR SHARE holds off recover_expired (an UPDATE) until the events are in, so that it cannot
# requeue the response, and clear its events, between this check and the insert.
_APPENDABLE = """SELECT 1 FROM responses WHERE id = $1 AND ($2::text IS NULL OR lease_owner = $2)
FOR SHARE"""

_EVENTS_AFTER = """SELECT e.seq, e.data FROM response_events e
JOIN responses r ON r.id = e.response_id
WHERE e.response_id = $1 AND r.owner = $2 AND e.seq > $3
ORDER BY e.seq LIMIT $4"""

_INSERT_ITEMS = """INSERT INTO conversation_items (conversation_id, seq, item_id, item)
SELECT $1, $2 + i.n - 1, i.item_id, i.item
FROM unnest($3::text[], $4::bytea[]) WITH ORDINALITY AS i (item_id, item, n)"""

_LIST_ITEMS: dict[Order, str] = {
    "asc": """SELECT item_id, item FROM conversation_items
        WHERE conversation_id = $1 AND ($2::text IS NULL OR seq > (
            SELECT seq FROM conversation_items WHERE conversation_id = $1 AND item_id = $2))
        ORDER BY seq LIMIT $3""",
    "desc": """SELECT item_id, item FROM conversation_items
        WHERE conversation_id = $1 AND ($2::text IS NULL OR seq < (
            SELECT seq FROM conversation_items WHERE conversation_id = $1 AND item_id = $2))
        ORDER BY seq DESC LIMIT $3""",
}

_GET_ITEM = """SELECT i.item FROM conversation_items i
JOIN conversations c ON c.id = i.conversation_id
WHERE i.conversation_id = $1 AND c.owner = $2 AND i.item_id = $3"""

_DELETE_ITEM = """DELETE FROM conversation_items
WHERE conversation_id = $1 AND item_id = $3
  AND EXISTS (SELECT 1 FROM conversations WHERE id = $1 AND owner = $2)"""


def _count(status: str) -> int:
    """The row count of a command tag: ``"UPDATE 1"``, ``"INSERT 0 3"``."""
    return int(status.rsplit(" ", 1)[-1])


def _record(row: Any) -> ResponseRecord:
    return ResponseRecord(**dict(row.items()))


class PostgresStore(PostgresKeys, PostgresUsage):
    """:class:`proxy.store.base.Store` on PostgreSQL; open it with :meth:`open`."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        pool_size: int = 10,
        server_settings: dict[str, str] | None = None,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> PostgresStore:
        """Connect a pool to ``dsn`` and apply the missing ``migrations``."""
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, server_settings=server_settings
        )
        try:
            store = cls(pool)
            await store._migrate(migrations)
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Taken before anything else: a second instance starting at the same moment waits
            # here and then finds every step applied.
            await conn.execute(_MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version integer PRIMARY KEY, applied_at double precision NOT NULL)"
            )
            applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for step in pending_migrations(migrations, applied):
                for statement in step.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    step.version,
                    time.time(),
                )

    # -- responses ----------------------------------------------------------------------------

    async def insert_response(self, rec: ResponseRecord) -> None:
        await self._pool.execute(_INSERT_RESPONSE, *msgspec.structs.astuple(rec))

    async def update_response(
        self,
        id: str,
        *,
        status: Status | None = None,
        response: bytes | None = None,
        error: bytes | None = None,
        input_items: bytes | None = None,
        lease_owner: str | msgspec.UnsetType | None = msgspec.UNSET,
        lease_until: float | msgspec.UnsetType | None = msgspec.UNSET,
        worker: str | None = None,
    ) -> bool:
        tag = await self._pool.execute(
            _UPDATE_RESPONSE,
            id,
            status,
            response,
            error,
            input_items,
            lease_owner is not msgspec.UNSET,
            None if lease_owner is msgspec.UNSET else lease_owner,
            lease_until is not msgspec.UNSET,
            None if lease_until is msgspec.UNSET else lease_until,
            time.time(),
            worker,
        )
        return _count(tag) == 1

    async def get_response(self, id: str, owner: str) -> ResponseRecord | None:
        row = await self._pool.fetchrow(_SELECT_RESPONSE, id, owner)
        return None if row is None else _record(row)

    async def delete_response(self, id: str, owner: str) -> bool:
        tag = await self._pool.execute(
            "DELETE FROM responses WHERE id = $1 AND owner = $2", id, owner
        )
        return _count(tag) == 1

    async def input_items(
        self, id: str, owner: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        check_limit(limit)
        array = await self._pool.fetchval(
            "SELECT input_items FROM responses WHERE id = $1 AND owner = $2", id, owner
        )
        if array is None:
            return None
        return page_json_array(array, after=after, limit=limit, order=order)

    async def request_cancel(self, id: str, owner: str) -> ResponseRecord | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_CANCEL, id, owner, time.time())
            if row is None:
                row = await conn.fetchrow(_SELECT_RESPONSE, id, owner)
        return None if row is None else _record(row)

    # -- background jobs ----------------------------------------------------------------------

    async def claim_next(self, worker: str, lease_s: float) -> ResponseRecord | None:
        now = time.time()
        row = await self._pool.fetchrow(_CLAIM, worker, now + lease_s, now)
        return None if row is None else _record(row)

    async def renew_lease(self, id: str, worker: str, lease_s: float) -> bool:
        tag = await self._pool.execute(_RENEW, id, worker, time.time() + lease_s)
        return _count(tag) == 1

    async def recover_expired(self, *, max_attempts: int, now: float | None = None) -> Recovered:
        outcome = Recovered([], [], [])
        at = time.time() if now is None else now
        async with self._pool.acquire() as conn, conn.transaction():
            for row in await conn.fetch(_RECOVER, max_attempts, INTERRUPTED_ERROR, at):
                if row["status"] == "queued":
                    outcome.requeued.append(row["id"])
                elif row["status"] == "failed":
                    outcome.failed.append(row["id"])
                else:
                    outcome.cancelled.append(row["id"])
            if outcome.requeued:
                await conn.execute(
                    "DELETE FROM response_events WHERE response_id = ANY($1::text[])",
                    outcome.requeued,
                )
        return outcome

    # -- stream event log ---------------------------------------------------------------------

    async def append_events(
        self, id: str, events: list[tuple[int, bytes]], *, worker: str | None = None
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_APPENDABLE, id, worker) is None:
                return False
            if events:
                seqs = [seq for seq, _ in events]
                await conn.execute(_APPEND_EVENTS, id, seqs, [data for _, data in events])
        return True

    async def events_after(
        self, id: str, owner: str, after: int, limit: int = 1000
    ) -> list[tuple[int, bytes]]:
        check_limit(limit)
        rows = await self._pool.fetch(_EVENTS_AFTER, id, owner, after, limit)
        return [(row[0], row[1]) for row in rows]

    # -- conversations ------------------------------------------------------------------------

    async def create_conversation(
        self,
        id: str,
        owner: str,
        metadata: bytes,
        items: list[tuple[str, bytes]],
        created_at: float,
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO conversations (id, owner, created_at, metadata)"
                " VALUES ($1, $2, $3, $4)",
                id,
                owner,
                created_at,
                metadata,
            )
            await self._insert_items(conn, id, 0, items)

    @staticmethod
    async def _insert_items(conn: Any, id: str, first: int, items: list[tuple[str, bytes]]) -> None:
        if items:
            await conn.execute(
                _INSERT_ITEMS, id, first, [i for i, _ in items], [item for _, item in items]
            )

    async def get_conversation(self, id: str, owner: str) -> tuple[bytes, float] | None:
        row = await self._pool.fetchrow(
            "SELECT metadata, created_at FROM conversations WHERE id = $1 AND owner = $2",
            id,
            owner,
        )
        return None if row is None else (row[0], row[1])

    async def update_conversation(self, id: str, owner: str, metadata: bytes) -> bool:
        tag = await self._pool.execute(
            "UPDATE conversations SET metadata = $3 WHERE id = $1 AND owner = $2",
            id,
            owner,
            metadata,
        )
        return _count(tag) == 1

    async def delete_conversation(self, id: str, owner: str) -> bool:
        tag = await self._pool.execute(
            "DELETE FROM conversations WHERE id = $1 AND owner = $2", id, owner
        )
        return _count(tag) == 1

    async def add_items(
        self, conversation_id: str, owner: str, items: list[tuple[str, bytes]]
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            # The row lock serialises appends to one conversation, so positions never collide.
            found = await conn.fetchval(
                "SELECT 1 FROM conversations WHERE id = $1 AND owner = $2 FOR UPDATE",
                conversation_id,
                owner,
            )
            if found is None:
                return False
            last = await conn.fetchval(
                "SELECT coalesce(max(seq), -1) FROM conversation_items WHERE conversation_id = $1",
                conversation_id,
            )
            await self._insert_items(conn, conversation_id, last + 1, items)
        return True

    async def list_items(
        self, conversation_id: str, owner: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        check_limit(limit)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            found = await conn.fetchval(
                "SELECT 1 FROM conversations WHERE id = $1 AND owner = $2", conversation_id, owner
            )
            if found is None:
                return None
            rows = await conn.fetch(_LIST_ITEMS[order], conversation_id, after, limit + 1)
        return make_page([(row[0], row[1]) for row in rows], limit)

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> bytes | None:
        item = await self._pool.fetchval(_GET_ITEM, conversation_id, owner, item_id)
        return None if item is None else bytes(item)

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool:
        tag = await self._pool.execute(_DELETE_ITEM, conversation_id, owner, item_id)
        return _count(tag) == 1
