"""The SQLite store: one file (or ``:memory:``), one connection, for a single gateway instance.

Every statement runs on aiosqlite's thread, never on the event loop. The connection is in
autocommit mode with WAL journaling; a method that runs more than one statement, or claims a
job, opens its own ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock at once, so
that two stores on the same file (tests, a second process) still claim jobs atomically. One
``asyncio.Lock`` keeps the coroutines sharing the connection from interleaving statements inside
each other's transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
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
from proxy.store.sqlite_keys import KEY_STATEMENTS, SQLiteKeys
from proxy.store.sqlite_usage import USAGE_MIGRATION, SQLiteUsage

__all__ = ["MIGRATIONS", "SQLiteStore"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "responses and their stream events",
        (
            """CREATE TABLE responses (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                status TEXT NOT NULL CHECK (status IN
                    ('queued', 'in_progress', 'completed', 'incomplete', 'failed', 'cancelled')),
                model TEXT NOT NULL,
                background INTEGER NOT NULL DEFAULT 0,
                stream INTEGER NOT NULL DEFAULT 0,
                previous_response_id TEXT,
                conversation_id TEXT,
                request BLOB NOT NULL,
                input_items BLOB NOT NULL,
                response BLOB,
                error BLOB,
                attempts INTEGER NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_until REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0
            ) STRICT""",
            """CREATE INDEX responses_queued ON responses (created_at, id)
                WHERE status = 'queued' AND background = 1""",
            """CREATE INDEX responses_leased ON responses (lease_until)
                WHERE status = 'in_progress'""",
            """CREATE TABLE response_events (
                response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (response_id, seq)
            ) STRICT, WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "conversations and their items",
        (
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                created_at REAL NOT NULL,
                metadata BLOB NOT NULL
            ) STRICT""",
            # seq is the insertion position within the conversation: the page order.
            """CREATE TABLE conversation_items (
                conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                item_id TEXT NOT NULL,
                item BLOB NOT NULL,
                PRIMARY KEY (conversation_id, seq),
                UNIQUE (conversation_id, item_id)
            ) STRICT, WITHOUT ROWID""",
        ),
    ),
    Migration(3, "virtual keys and teams", KEY_STATEMENTS),
    USAGE_MIGRATION,
)

_WAL_ATTEMPTS = 20  # about 2 s of retries in all

# Spliced into the statements below (hence the noqa S608): a constant, never input.
_COLUMNS = (
    "id, owner, created_at, updated_at, status, model, background, stream, "
    "previous_response_id, conversation_id, request, input_items, response, error, attempts, "
    "lease_owner, lease_until, cancel_requested"
)

_INSERT_RESPONSE = """INSERT INTO responses (
    id, owner, created_at, updated_at, status, model, background, stream, previous_response_id,
    conversation_id, request, input_items, response, error, attempts, lease_owner, lease_until,
    cancel_requested
) VALUES (
    :id, :owner, :created_at, :updated_at, :status, :model, :background, :stream,
    :previous_response_id, :conversation_id, :request, :input_items, :response, :error,
    :attempts, :lease_owner, :lease_until, :cancel_requested
)"""

_UPDATE_RESPONSE = """UPDATE responses SET
    status = coalesce(:status, status),
    response = coalesce(:response, response),
    error = coalesce(:error, error),
    input_items = coalesce(:input_items, input_items),
    lease_owner = CASE WHEN :set_lease_owner THEN :lease_owner ELSE lease_owner END,
    lease_until = CASE WHEN :set_lease_until THEN :lease_until ELSE lease_until END,
    updated_at = :now
WHERE id = :id AND (:worker IS NULL OR lease_owner = :worker)"""

_SELECT_RESPONSE = f"SELECT {_COLUMNS} FROM responses WHERE id = ? AND owner = ?"  # noqa: S608

_CANCEL = f"""UPDATE responses SET
    cancel_requested = 1,
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    updated_at = :now
WHERE id = :id AND owner = :owner AND status IN ('queued', 'in_progress')
RETURNING {_COLUMNS}"""  # noqa: S608

_CLAIM = f"""UPDATE responses SET
    status = 'in_progress', lease_owner = :worker, lease_until = :until,
    attempts = attempts + 1, updated_at = :now
WHERE id = (
    SELECT id FROM responses WHERE status = 'queued' AND background = 1
    ORDER BY created_at, id LIMIT 1
)
RETURNING {_COLUMNS}"""  # noqa: S608

_RECOVER = """UPDATE responses SET
    status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts < :max_attempts THEN 'queued' ELSE 'failed' END,
    error = CASE WHEN NOT cancel_requested AND attempts >= :max_attempts THEN :error
                 ELSE error END,
    lease_owner = NULL, lease_until = NULL, updated_at = :now
WHERE status = 'in_progress' AND lease_until < :now
RETURNING id, status"""

_APPEND_EVENT = (
    "INSERT INTO response_events (response_id, seq, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)

_EVENTS_AFTER = """SELECT e.seq, e.data FROM response_events e
JOIN responses r ON r.id = e.response_id
WHERE e.response_id = ? AND r.owner = ? AND e.seq > ?
ORDER BY e.seq LIMIT ?"""

_OWNS_CONVERSATION = "SELECT 1 FROM conversations WHERE id = ? AND owner = ?"

_INSERT_ITEM = (
    "INSERT INTO conversation_items (conversation_id, seq, item_id, item) VALUES (?, ?, ?, ?)"
)

# A cursor id not in the conversation makes the sub-select NULL, so the page is empty.
_LIST_ITEMS: dict[Order, str] = {
    "asc": """SELECT item_id, item FROM conversation_items
        WHERE conversation_id = :cid AND (:after IS NULL OR seq > (
            SELECT seq FROM conversation_items WHERE conversation_id = :cid AND item_id = :after))
        ORDER BY seq LIMIT :n""",
    "desc": """SELECT item_id, item FROM conversation_items
        WHERE conversation_id = :cid AND (:after IS NULL OR seq < (
            SELECT seq FROM conversation_items WHERE conversation_id = :cid AND item_id = :after))
        ORDER BY seq DESC LIMIT :n""",
}

_GET_ITEM = """SELECT i.item FROM conversation_items i
JOIN conversations c ON c.id = i.conversation_id
WHERE i.conversation_id = ? AND c.owner = ? AND i.item_id = ?"""

_DELETE_ITEM = """DELETE FROM conversation_items
WHERE conversation_id = ? AND item_id = ?
  AND EXISTS (SELECT 1 FROM conversations WHERE id = ? AND owner = ?)"""


def _record(row: Any) -> ResponseRecord:
    return ResponseRecord(
        id=row[0],
        owner=row[1],
        created_at=row[2],
        updated_at=row[3],
        status=row[4],
        model=row[5],
        background=bool(row[6]),
        stream=bool(row[7]),
        previous_response_id=row[8],
        conversation_id=row[9],
        request=row[10],
        input_items=row[11],
        response=row[12],
        error=row[13],
        attempts=row[14],
        lease_owner=row[15],
        lease_until=row[16],
        cancel_requested=bool(row[17]),
    )


class SQLiteStore(SQLiteKeys, SQLiteUsage):
    """:class:`proxy.store.base.Store` on SQLite; open it with :meth:`open`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str, *, migrations: tuple[Migration, ...] = MIGRATIONS
    ) -> SQLiteStore:
        """Connect to ``path`` (``:memory:`` for a private database) and apply the missing
        ``migrations``."""
        db = await aiosqlite.connect(path, isolation_level=None)
        store = cls(db)
        try:
            # busy_timeout first: switching to WAL needs a moment of exclusive access, and
            # another process may be starting on the same file.
            await store._change("PRAGMA busy_timeout = 10000")
            await store._switch_to_wal()
            # With WAL, NORMAL loses nothing when the process dies and at most the last commits
            # on power loss, never the file's consistency; FULL would fsync every commit.
            await store._change("PRAGMA synchronous = NORMAL")
            await store._change("PRAGMA foreign_keys = ON")
            await store._migrate(migrations)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    async def _switch_to_wal(self) -> None:
        """``PRAGMA journal_mode = WAL``, retried: when several connections open a new file at
        once, SQLite answers "database is locked" at once instead of waiting busy_timeout (it
        would deadlock otherwise), and the switch succeeds a moment later."""
        for attempt in range(_WAL_ATTEMPTS):
            try:
                await self._change("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                    raise
            await asyncio.sleep(0.01 * (attempt + 1))

    async def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        async with self._transaction():
            await self._change(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            applied = {row[0] for row in await self._rows("SELECT version FROM schema_migrations")}
            for step in pending_migrations(migrations, applied):
                for statement in step.statements:
                    await self._change(statement)
                await self._change(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (step.version, time.time()),
                )

    # -- helpers: callers hold the lock -------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """The lock and one write transaction, committed on success, rolled back otherwise."""
        async with self._lock:
            try:
                # Inside the try: if the task is cancelled while BEGIN is queued, BEGIN still runs
                # on the thread, and the rollback queued after it must end that transaction.
                await self._change("BEGIN IMMEDIATE")
                yield
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise

    async def _rows(
        self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
    ) -> list[sqlite3.Row]:
        return list(await self._db.execute_fetchall(sql, params))

    async def _change(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        async with self._db.execute(sql, params) as cursor:
            return cursor.rowcount

    async def _many(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        async with self._db.executemany(sql, params):
            pass

    async def _read(
        self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
    ) -> list[sqlite3.Row]:
        async with self._lock:
            return await self._rows(sql, params)

    async def _write(self, sql: str, params: Iterable[Any] | Mapping[str, Any]) -> int:
        async with self._lock:
            return await self._change(sql, params)

    # -- responses ----------------------------------------------------------------------------

    async def insert_response(self, rec: ResponseRecord) -> None:
        await self._write(_INSERT_RESPONSE, msgspec.structs.asdict(rec))

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
        params = {
            "id": id,
            "status": status,
            "response": response,
            "error": error,
            "input_items": input_items,
            "set_lease_owner": lease_owner is not msgspec.UNSET,
            "lease_owner": None if lease_owner is msgspec.UNSET else lease_owner,
            "set_lease_until": lease_until is not msgspec.UNSET,
            "lease_until": None if lease_until is msgspec.UNSET else lease_until,
            "worker": worker,
            "now": time.time(),
        }
        return await self._write(_UPDATE_RESPONSE, params) == 1

    async def get_response(self, id: str, owner: str) -> ResponseRecord | None:
        rows = await self._read(_SELECT_RESPONSE, (id, owner))
        return _record(rows[0]) if rows else None

    async def delete_response(self, id: str, owner: str) -> bool:
        deleted = await self._write("DELETE FROM responses WHERE id = ? AND owner = ?", (id, owner))
        return deleted == 1

    async def input_items(
        self, id: str, owner: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        check_limit(limit)
        rows = await self._read(
            "SELECT input_items FROM responses WHERE id = ? AND owner = ?", (id, owner)
        )
        if not rows:
            return None
        return page_json_array(rows[0][0], after=after, limit=limit, order=order)

    async def request_cancel(self, id: str, owner: str) -> ResponseRecord | None:
        async with self._transaction():
            rows = await self._rows(_CANCEL, {"id": id, "owner": owner, "now": time.time()})
            if not rows:
                rows = await self._rows(_SELECT_RESPONSE, (id, owner))
        return _record(rows[0]) if rows else None

    # -- background jobs ----------------------------------------------------------------------

    async def claim_next(self, worker: str, lease_s: float) -> ResponseRecord | None:
        now = time.time()
        async with self._transaction():
            rows = await self._rows(_CLAIM, {"worker": worker, "until": now + lease_s, "now": now})
        return _record(rows[0]) if rows else None

    async def renew_lease(self, id: str, worker: str, lease_s: float) -> bool:
        renewed = await self._write(
            "UPDATE responses SET lease_until = ? WHERE id = ? AND lease_owner = ?"
            " AND status = 'in_progress'",
            (time.time() + lease_s, id, worker),
        )
        return renewed == 1

    async def recover_expired(self, *, max_attempts: int, now: float | None = None) -> Recovered:
        params = {
            "max_attempts": max_attempts,
            "error": INTERRUPTED_ERROR,
            "now": time.time() if now is None else now,
        }
        outcome = Recovered([], [], [])
        async with self._transaction():
            for id, status in await self._rows(_RECOVER, params):
                if status == "queued":
                    outcome.requeued.append(id)
                elif status == "failed":
                    outcome.failed.append(id)
                else:
                    outcome.cancelled.append(id)
            if outcome.requeued:
                await self._many(
                    "DELETE FROM response_events WHERE response_id = ?",
                    [(id,) for id in outcome.requeued],
                )
        return outcome

    # -- stream event log ---------------------------------------------------------------------

    async def append_events(
        self, id: str, events: list[tuple[int, bytes]], *, worker: str | None = None
    ) -> bool:
        async with self._transaction():
            live = await self._rows(
                "SELECT 1 FROM responses WHERE id = ? AND (? IS NULL OR lease_owner = ?)",
                (id, worker, worker),
            )
            if not live:
                return False
            await self._many(_APPEND_EVENT, [(id, seq, data) for seq, data in events])
        return True

    async def events_after(
        self, id: str, owner: str, after: int, limit: int = 1000
    ) -> list[tuple[int, bytes]]:
        check_limit(limit)
        return [
            (row[0], row[1]) for row in await self._read(_EVENTS_AFTER, (id, owner, after, limit))
        ]

    # -- conversations ------------------------------------------------------------------------

    async def create_conversation(
        self,
        id: str,
        owner: str,
        metadata: bytes,
        items: list[tuple[str, bytes]],
        created_at: float,
    ) -> None:
        async with self._transaction():
            await self._change(
                "INSERT INTO conversations (id, owner, created_at, metadata) VALUES (?, ?, ?, ?)",
                (id, owner, created_at, metadata),
            )
            await self._insert_items(id, 0, items)

    async def _insert_items(self, id: str, first: int, items: list[tuple[str, bytes]]) -> None:
        await self._many(
            _INSERT_ITEM,
            [(id, first + n, item_id, item) for n, (item_id, item) in enumerate(items)],
        )

    async def get_conversation(self, id: str, owner: str) -> tuple[bytes, float] | None:
        rows = await self._read(
            "SELECT metadata, created_at FROM conversations WHERE id = ? AND owner = ?",
            (id, owner),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def update_conversation(self, id: str, owner: str, metadata: bytes) -> bool:
        updated = await self._write(
            "UPDATE conversations SET metadata = ? WHERE id = ? AND owner = ?",
            (metadata, id, owner),
        )
        return updated == 1

    async def delete_conversation(self, id: str, owner: str) -> bool:
        deleted = await self._write(
            "DELETE FROM conversations WHERE id = ? AND owner = ?", (id, owner)
        )
        return deleted == 1

    async def add_items(
        self, conversation_id: str, owner: str, items: list[tuple[str, bytes]]
    ) -> bool:
        async with self._transaction():
            if not await self._rows(_OWNS_CONVERSATION, (conversation_id, owner)):
                return False
            rows = await self._rows(
                "SELECT coalesce(max(seq), -1) FROM conversation_items WHERE conversation_id = ?",
                (conversation_id,),
            )
            await self._insert_items(conversation_id, rows[0][0] + 1, items)
        return True

    async def list_items(
        self, conversation_id: str, owner: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        check_limit(limit)
        async with self._lock:
            if not await self._rows(_OWNS_CONVERSATION, (conversation_id, owner)):
                return None
            rows = await self._rows(
                _LIST_ITEMS[order], {"cid": conversation_id, "after": after, "n": limit + 1}
            )
        return make_page([(row[0], row[1]) for row in rows], limit)

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> bytes | None:
        rows = await self._read(_GET_ITEM, (conversation_id, owner, item_id))
        return rows[0][0] if rows else None

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool:
        deleted = await self._write(
            _DELETE_ITEM, (conversation_id, item_id, conversation_id, owner)
        )
        return deleted == 1
