"""Schema migrations on both backends, and a store that outlives its process."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest

from proxy.store import StoreError
from proxy.store.base import Migration, check_migrations, pending_migrations
from tests.store.conftest import Backend
from tests.store.helpers import item, record

TABLES = {
    "schema_migrations",
    "responses",
    "response_events",
    "conversations",
    "conversation_items",
    "teams",
    "virtual_keys",
    "usage_records",
}


async def test_fresh_database_gets_every_step(backend: Backend) -> None:
    """Opening an empty database applies every migration, in order, once."""
    await backend.open()
    versions = await backend.versions()
    assert [v for v, _ in versions] == [m.version for m in backend.migrations]
    assert await backend.tables() == TABLES


async def test_reopening_a_migrated_database_changes_nothing(backend: Backend) -> None:
    """A second start-up on a migrated database applies nothing (applied_at unchanged)."""
    first = await backend.open()
    await first.close()
    before = await backend.versions()
    await backend.open()
    assert await backend.versions() == before


async def test_older_database_gets_only_the_missing_steps(backend: Backend) -> None:
    """A database at version 1 gets only the later steps and keeps its data and history."""
    old = await backend.open(backend.migrations[:1])
    await old.insert_response(record("resp_1"))
    await old.close()
    assert await backend.tables() == {"schema_migrations", "responses", "response_events"}
    (v1,) = await backend.versions()
    store = await backend.open()
    versions = await backend.versions()
    assert versions[0] == v1
    assert [v for v, _ in versions] == [m.version for m in backend.migrations]
    assert await store.get_response("resp_1", "alice") is not None
    await store.create_conversation("conv_1", "alice", b"{}", [item("a")], 1.0)
    assert await store.get_conversation("conv_1", "alice") == (b"{}", 1.0)


async def test_failed_step_rolls_back_the_whole_start_up(backend: Backend) -> None:
    """When a step fails, no step of that start-up stays applied, and a later start-up works."""
    broken = (
        backend.migrations[0],
        Migration(2, "broken", ("CREATE TABLE half_done (a integer)", "NOT SQL AT ALL")),
    )
    with pytest.raises((sqlite3.OperationalError, asyncpg.PostgresSyntaxError)):
        await backend.open(broken)
    assert await backend.tables() == set()
    await backend.open()
    assert await backend.tables() == TABLES


async def test_newer_database_is_refused(backend: Backend) -> None:
    """A database migrated by a newer gateway fails start-up with a message that says so."""
    store = await backend.open()
    await store.close()
    await backend.query("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
    with pytest.raises(StoreError, match="version 99, newer than this gateway knows"):
        await backend.open()


async def test_concurrent_start_ups_are_safe(backend: Backend) -> None:
    """Several instances starting at once on an empty database all open, each step applied once."""
    stores = await asyncio.gather(*(backend.open() for _ in range(4)))
    assert [v for v, _ in await backend.versions()] == [m.version for m in backend.migrations]
    await stores[0].insert_response(record("resp_1"))
    assert await stores[3].get_response("resp_1", "alice") is not None


async def test_store_survives_close_and_reopen(backend: Backend) -> None:
    """What one store wrote is there after it closes and the configured store opens again."""
    store = await backend.open_configured()
    # PostgreSQL: the URL's ?search_path put the tables in this test's schema.
    assert await backend.tables() == TABLES
    rec = record("resp_1", background=True, input_items=b'[{"id":"in_0"}]')
    await store.insert_response(rec)
    assert await store.append_events("resp_1", [(0, b"a")])
    await store.create_conversation("conv_1", "alice", b'{"k":1}', [item("m0")], 2.0)
    await store.close()
    again = await backend.open_configured()
    assert await again.get_response("resp_1", "alice") == rec
    assert await again.events_after("resp_1", "alice", -1) == [(0, b"a")]
    assert await again.get_conversation("conv_1", "alice") == (b'{"k":1}', 2.0)
    assert await again.get_item("conv_1", "alice", "m0") == item("m0")[1]


def test_migration_versions_must_be_consecutive() -> None:
    """A list with a gap or out of order is refused before anything runs."""
    one, two = Migration(1, "a", ()), Migration(2, "b", ())
    check_migrations((one, two))
    with pytest.raises(StoreError, match="1, 2, 3"):
        check_migrations((one, Migration(3, "c", ())))
    with pytest.raises(StoreError, match="1, 2, 3"):
        check_migrations((two, one))
    assert pending_migrations((one, two), {1}) == [two]
