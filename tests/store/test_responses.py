"""Stored responses: round trips, updates, owner scoping, input-item pages, cancellation."""

from __future__ import annotations

import sqlite3

import asyncpg
import msgspec
import pytest

from proxy.store import Store
from proxy.store.base import ResponseRecord
from tests.store.conftest import Backend
from tests.store.helpers import item, record, walk

INPUT = [item(f"in_{n}") for n in range(5)]
INPUT_ARRAY = b"[" + b",".join(data for _, data in INPUT) + b"]"


async def test_insert_and_get_round_trip(store: Store) -> None:
    """Every field of a response comes back exactly as inserted."""
    rec = ResponseRecord(
        id="resp_1",
        owner="alice",
        created_at=1700000000.125,
        updated_at=1700000001.5,
        status="in_progress",
        model="gpt-test",
        background=True,
        stream=True,
        previous_response_id="resp_0",
        conversation_id="conv_1",
        request=b'{"model":"gpt-test","input":"hi"}',
        input_items=INPUT_ARRAY,
        response=b'{"id":"resp_1","status":"in_progress"}',
        error=b'{"code":"x","message":"y"}',
        attempts=3,
        lease_owner="worker-1",
        lease_until=1700000031.25,
        cancel_requested=True,
    )
    await store.insert_response(rec)
    assert await store.get_response("resp_1", "alice") == rec


async def test_defaults_round_trip(store: Store) -> None:
    """A response with only the required fields comes back with the documented defaults."""
    rec = record("resp_1")
    await store.insert_response(rec)
    got = await store.get_response("resp_1", "alice")
    assert got == rec
    assert got is not None
    assert (got.request, got.input_items, got.response, got.lease_owner) == (
        b"{}",
        b"[]",
        None,
        None,
    )


async def test_get_is_scoped_to_owner(store: Store) -> None:
    """Another owner, like an unknown id, gets None."""
    await store.insert_response(record("resp_1"))
    assert await store.get_response("resp_1", "bob") is None
    assert await store.get_response("resp_nope", "alice") is None


async def test_duplicate_id_is_refused(store: Store) -> None:
    """Inserting an id that exists raises the database's integrity error."""
    await store.insert_response(record("resp_1"))
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await store.insert_response(record("resp_1", owner="bob"))


async def test_update_changes_only_given_fields(store: Store) -> None:
    """update_response sets the given fields and updated_at and keeps the rest."""
    rec = record("resp_1", created_at=1.0, updated_at=1.0, lease_owner="w", lease_until=9.0)
    await store.insert_response(rec)
    assert await store.update_response(
        "resp_1",
        status="failed",
        response=b'{"status":"failed"}',
        error=b'{"code":"e"}',
        input_items=INPUT_ARRAY,
    )
    got = await store.get_response("resp_1", "alice")
    assert got is not None
    assert got.updated_at > 1.0
    assert got == msgspec.structs.replace(
        rec,
        status="failed",
        response=b'{"status":"failed"}',
        error=b'{"code":"e"}',
        input_items=INPUT_ARRAY,
        updated_at=got.updated_at,
    )


async def test_update_lease_fields_unset_keeps_none_clears(store: Store) -> None:
    """For the lease fields UNSET keeps the stored value and None clears it."""
    await store.insert_response(record("resp_1"))
    assert await store.update_response("resp_1", lease_owner="w", lease_until=5.0)
    assert await store.update_response("resp_1", status="in_progress")
    got = await store.get_response("resp_1", "alice")
    assert got is not None
    assert (got.status, got.lease_owner, got.lease_until) == ("in_progress", "w", 5.0)
    assert await store.update_response("resp_1", lease_owner=None)
    got = await store.get_response("resp_1", "alice")
    assert got is not None
    assert (got.lease_owner, got.lease_until) == (None, 5.0)


async def test_update_unknown_response_is_false(store: Store) -> None:
    """Updating an id that does not exist reports False."""
    assert not await store.update_response("resp_nope", status="completed")


async def test_update_with_worker_is_fenced_by_the_lease(store: Store) -> None:
    """With worker, only the lease holder's update applies."""
    await store.insert_response(record("resp_1", status="in_progress", lease_owner="w1"))
    assert not await store.update_response("resp_1", status="completed", worker="w2")
    got = await store.get_response("resp_1", "alice")
    assert got is not None
    assert got.status == "in_progress"
    assert await store.update_response("resp_1", status="completed", worker="w1")
    got = await store.get_response("resp_1", "alice")
    assert got is not None
    assert got.status == "completed"


async def test_delete_removes_response_and_events(store: Store, backend: Backend) -> None:
    """delete_response removes the response and its events, only for its owner, once."""
    await store.insert_response(record("resp_1"))
    await store.insert_response(record("resp_2"))
    assert await store.append_events("resp_1", [(0, b"a"), (1, b"b")])
    assert await store.append_events("resp_2", [(0, b"c")])
    assert not await store.delete_response("resp_1", "bob")
    assert await store.get_response("resp_1", "alice") is not None
    assert await store.delete_response("resp_1", "alice")
    assert await store.get_response("resp_1", "alice") is None
    assert not await store.delete_response("resp_1", "alice")
    rows = await backend.query("SELECT response_id, seq FROM response_events ORDER BY seq")
    assert rows == [("resp_2", 0)]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_input_items_pages_in_both_orders(store: Store, order: str) -> None:
    """input_items pages through the response's items by id cursor, in either order."""
    await store.insert_response(record("resp_1", input_items=INPUT_ARRAY))
    pages = await walk(
        lambda after: store.input_items(
            "resp_1",
            "alice",
            after=after,
            limit=2,
            order="asc" if order == "asc" else "desc",
        ),
        limit=2,
    )
    ids = [item_id for item_id, _ in INPUT]
    expected = ids if order == "asc" else ids[::-1]
    assert pages == [expected[0:2], expected[2:4], expected[4:5]]


async def test_input_items_returns_exact_item_bytes(store: Store) -> None:
    """Each item comes back as the exact JSON it was stored with."""
    await store.insert_response(record("resp_1", input_items=INPUT_ARRAY))
    page = await store.input_items("resp_1", "alice", after="in_1", limit=10, order="asc")
    assert page is not None
    assert page.items == [data for _, data in INPUT[2:]]
    assert (page.has_more, page.first_id, page.last_id) == (False, "in_2", "in_4")


async def test_input_items_scoping_and_unknown_cursor(store: Store) -> None:
    """Another owner or an unknown response gets None; an unknown cursor an empty page."""
    await store.insert_response(record("resp_1", input_items=INPUT_ARRAY))
    assert await store.input_items("resp_1", "bob", after=None, limit=5, order="asc") is None
    assert await store.input_items("resp_x", "alice", after=None, limit=5, order="asc") is None
    page = await store.input_items("resp_1", "alice", after="in_x", limit=5, order="asc")
    assert page is not None
    assert (page.items, page.has_more, page.first_id, page.last_id) == ([], False, None, None)


async def test_page_limit_must_be_positive(store: Store) -> None:
    """A page limit under 1 is a programming error: ValueError."""
    await store.insert_response(record("resp_1"))
    with pytest.raises(ValueError, match="limit"):
        await store.input_items("resp_1", "alice", after=None, limit=0, order="asc")
    with pytest.raises(ValueError, match="limit"):
        await store.events_after("resp_1", "alice", -1, limit=0)


async def test_cancel_of_queued_response_cancels_it(store: Store) -> None:
    """A queued response is cancelled at once, so no worker claims it."""
    await store.insert_response(record("resp_1", background=True, updated_at=1.0))
    got = await store.request_cancel("resp_1", "alice")
    assert got is not None
    assert (got.status, got.cancel_requested) == ("cancelled", True)
    assert got.updated_at > 1.0
    assert await store.get_response("resp_1", "alice") == got
    assert await store.claim_next("w", 30) is None


async def test_cancel_of_running_response_flags_it(store: Store) -> None:
    """An in-progress response keeps running with cancel_requested set for its worker."""
    await store.insert_response(record("resp_1", background=True))
    claimed = await store.claim_next("w", 30)
    assert claimed is not None
    got = await store.request_cancel("resp_1", "alice")
    assert got is not None
    assert (got.status, got.cancel_requested, got.lease_owner) == ("in_progress", True, "w")


async def test_cancel_of_finished_response_changes_nothing(store: Store) -> None:
    """A completed response is returned unchanged."""
    rec = record("resp_1", status="completed", updated_at=1.0)
    await store.insert_response(rec)
    assert await store.request_cancel("resp_1", "alice") == rec


async def test_cancel_is_scoped_to_owner(store: Store) -> None:
    """Another owner cannot cancel (None) and the response is untouched."""
    rec = record("resp_1", background=True)
    await store.insert_response(rec)
    assert await store.request_cancel("resp_1", "bob") is None
    assert await store.request_cancel("resp_x", "alice") is None
    assert await store.get_response("resp_1", "alice") == rec
