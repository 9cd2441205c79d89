"""Conversations and their items: metadata, pages in both orders, owner scoping, cascades."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from proxy.store import Store
from tests.store.conftest import Backend
from tests.store.helpers import item, walk

META = b'{"topic":"demo"}'


async def _conversation(store: Store, n_items: int = 3, id: str = "conv_1") -> list[str]:
    items = [item(f"{id}_msg_{n}") for n in range(n_items)]
    await store.create_conversation(id, "alice", META, items, 1700000000.5)
    return [item_id for item_id, _ in items]


async def test_create_get_update(store: Store) -> None:
    """A conversation's metadata and creation time come back; update replaces the metadata."""
    await _conversation(store)
    assert await store.get_conversation("conv_1", "alice") == (META, 1700000000.5)
    assert await store.update_conversation("conv_1", "alice", b'{"topic":"new"}')
    assert await store.get_conversation("conv_1", "alice") == (b'{"topic":"new"}', 1700000000.5)
    assert not await store.update_conversation("conv_x", "alice", META)


async def test_conversation_is_scoped_to_owner(store: Store) -> None:
    """Another owner cannot read, update, delete, list, add to, read or delete items of it."""
    ids = await _conversation(store)
    assert await store.get_conversation("conv_1", "bob") is None
    assert not await store.update_conversation("conv_1", "bob", b"{}")
    assert not await store.delete_conversation("conv_1", "bob")
    assert await store.list_items("conv_1", "bob", after=None, limit=10, order="asc") is None
    assert not await store.add_items("conv_1", "bob", [item("intruder")])
    assert await store.get_item("conv_1", "bob", ids[0]) is None
    assert not await store.delete_item("conv_1", "bob", ids[0])
    assert await store.get_conversation("conv_1", "alice") == (META, 1700000000.5)
    page = await store.list_items("conv_1", "alice", after=None, limit=10, order="asc")
    assert page is not None
    assert [msgspec.json.decode(raw)["id"] for raw in page.items] == ids


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_items_page_in_both_orders(store: Store, order: str) -> None:
    """Items created with the conversation and added later page by id cursor in either order."""
    ids = await _conversation(store, 3)
    assert await store.add_items("conv_1", "alice", [item("late_0"), item("late_1")])
    ids += ["late_0", "late_1"]
    pages = await walk(
        lambda after: store.list_items(
            "conv_1", "alice", after=after, limit=2, order="asc" if order == "asc" else "desc"
        ),
        limit=2,
    )
    expected = ids if order == "asc" else ids[::-1]
    assert pages == [expected[0:2], expected[2:4], expected[4:5]]


async def test_list_items_edges(store: Store) -> None:
    """An unknown conversation gives None; an unknown cursor or an empty conversation an empty
    page; a page that ends exactly at the last item says has_more False."""
    assert await store.list_items("conv_x", "alice", after=None, limit=5, order="asc") is None
    await _conversation(store, 2)
    page = await store.list_items("conv_1", "alice", after="nope", limit=5, order="asc")
    assert page is not None
    assert (page.items, page.has_more) == ([], False)
    page = await store.list_items("conv_1", "alice", after=None, limit=2, order="asc")
    assert page is not None
    assert (len(page.items), page.has_more) == (2, False)
    await _conversation(store, 0, id="conv_empty")
    page = await store.list_items("conv_empty", "alice", after=None, limit=5, order="desc")
    assert page is not None
    assert (page.items, page.has_more, page.first_id, page.last_id) == ([], False, None, None)


async def test_add_items_to_missing_conversation(store: Store, backend: Backend) -> None:
    """add_items on a conversation that does not exist reports False and stores nothing."""
    assert not await store.add_items("conv_x", "alice", [item("a")])
    assert await backend.query("SELECT count(*) FROM conversation_items") == [(0,)]


async def test_get_and_delete_item(store: Store) -> None:
    """An item reads back as stored; deleting it removes only it, and later items still go last."""
    ids = await _conversation(store, 3)
    assert await store.get_item("conv_1", "alice", ids[1]) == item(ids[1])[1]
    assert await store.get_item("conv_1", "alice", "nope") is None
    assert await store.delete_item("conv_1", "alice", ids[1])
    assert await store.get_item("conv_1", "alice", ids[1]) is None
    assert not await store.delete_item("conv_1", "alice", ids[1])
    assert await store.add_items("conv_1", "alice", [item("new")])
    page = await store.list_items("conv_1", "alice", after=None, limit=10, order="asc")
    assert page is not None
    assert [msgspec.json.decode(raw)["id"] for raw in page.items] == [ids[0], ids[2], "new"]


async def test_delete_conversation_cascades_to_items(store: Store, backend: Backend) -> None:
    """Deleting a conversation deletes its items and nothing of another conversation."""
    await _conversation(store, 3)
    await _conversation(store, 2, id="conv_2")
    assert await store.delete_conversation("conv_1", "alice")
    assert await store.get_conversation("conv_1", "alice") is None
    assert not await store.delete_conversation("conv_1", "alice")
    assert not await store.add_items("conv_1", "alice", [item("a")])
    rows = await backend.query("SELECT DISTINCT conversation_id FROM conversation_items")
    assert rows == [("conv_2",)]


async def test_concurrent_appends_keep_batches_whole(backend: Backend) -> None:
    """Batches appended at once from several instances land whole, one after another."""
    stores = [await backend.open() for _ in range(4)]
    await stores[0].create_conversation("conv_1", "alice", META, [], 1.0)
    batches = [[item(f"b{b}_{n}") for n in range(3)] for b in range(8)]
    added = await asyncio.gather(
        *(stores[b % 4].add_items("conv_1", "alice", batch) for b, batch in enumerate(batches))
    )
    assert all(added)
    page = await stores[0].list_items("conv_1", "alice", after=None, limit=100, order="asc")
    assert page is not None
    ids = [msgspec.json.decode(raw)["id"] for raw in page.items]
    runs = [ids[n : n + 3] for n in range(0, len(ids), 3)]
    assert sorted(runs) == sorted([[i for i, _ in batch] for batch in batches])
