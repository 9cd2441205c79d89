"""Building blocks shared by the store tests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from proxy.store.base import ItemPage, ResponseRecord

__all__ = ["item", "record", "walk"]


def record(id: str, owner: str = "alice", **fields: Any) -> ResponseRecord:
    """A queued response with defaults for every field not given."""
    now = time.time()
    values: dict[str, Any] = {
        "created_at": now,
        "updated_at": now,
        "status": "queued",
        "model": "gpt-test",
        **fields,
    }
    return ResponseRecord(id=id, owner=owner, **values)


def item(item_id: str) -> tuple[str, bytes]:
    """A conversation item as the store takes it: its id and its JSON."""
    return item_id, msgspec.json.encode(
        {"id": item_id, "type": "message", "role": "user", "content": item_id}
    )


async def walk(
    page: Callable[[str | None], Awaitable[ItemPage | None]], *, limit: int
) -> list[list[str]]:
    """The item ids of every page, following ``last_id`` while ``has_more``."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        got = await page(after)
        assert got is not None
        ids = [msgspec.json.decode(raw)["id"] for raw in got.items]
        assert len(ids) <= limit
        assert (got.first_id, got.last_id) == ((ids[0], ids[-1]) if ids else (None, None))
        pages.append(ids)
        if not got.has_more:
            return pages
        after = got.last_id
