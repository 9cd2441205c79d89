"""Usage records in the store, on both backends: batched inserts, filtered pages, totals."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.store import Store, UsageFilters, UsageRecord
from tests.store.conftest import Backend

DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rec(n: int, **fields: Any) -> UsageRecord:
    """The n-th record: one second after the (n-1)-th unless ``created_at`` is given."""
    values: dict[str, Any] = {
        "created_at": T0 + n,
        "request_id": f"req-{n}",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "model_requested": "openai/gpt-4o-mini",
        "route": "/v1/chat/completions",
        "request_type": "chat_completion",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 2,
        "cost_usd": 0.001,
        "latency_ms": 12.5,
        "attempts": 1,
        **fields,
    }
    return UsageRecord(id=f"id{n:04d}", **values)


async def every_page(store: Store, filters: UsageFilters, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.query_usage_records(filters, cursor, limit)
        pages.append([r.request_id for r in page.records])
        if not page.has_more:
            assert page.next_cursor is None
            return pages
        cursor = page.next_cursor


async def test_insert_then_read_back_every_field(store: Store) -> None:
    """A record comes back exactly as inserted, content and nulls included."""
    full = rec(
        1,
        key_id="key_1",
        team_id="team_1",
        error_type="upstream_error",
        status=502,
        cached_tokens=3,
        reasoning_tokens=1,
        ttfb_ms=4.25,
        fallback_index=1,
        stream=True,
        content=b'{"request":{"messages":[]}}',
    )
    bare = rec(2, provider=None, model=None, model_requested=None, cost_usd=None)
    await store.insert_usage([full, bare])
    page = await store.query_usage_records(UsageFilters(), None, 10)
    assert [bare, full] == page.records
    assert not page.has_more


async def test_inserting_the_same_ids_again_adds_nothing(store: Store) -> None:
    """A batch sent twice (a retry after a lost commit) is stored once."""
    batch = [rec(n) for n in range(5)]
    await store.insert_usage(batch)
    await store.insert_usage([*batch, rec(5)])
    page = await store.query_usage_records(UsageFilters(), None, 100)
    assert 6 == len(page.records)


async def test_pages_run_newest_first_without_gaps(store: Store) -> None:
    """Cursor pages cover every record once, newest first, ties on time broken by id."""
    records = [rec(n) for n in range(7)] + [rec(n, created_at=T0 + 3) for n in range(10, 13)]
    await store.insert_usage(records)
    pages = await every_page(store, UsageFilters(), 3)
    flat = [r for page in pages for r in page]
    expected = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)
    assert [r.request_id for r in expected] == flat
    assert [3, 3, 3, 1] == [len(p) for p in pages]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (UsageFilters(key_id="k1"), ["req-1", "req-0"]),
        (UsageFilters(team_id="t2"), ["req-3"]),
        (UsageFilters(provider="anthropic"), ["req-4"]),
        (UsageFilters(model="claude-x"), ["req-4"]),
        (UsageFilters(model="smart"), ["req-2"]),
        (UsageFilters(status_min=400, status_max=499), ["req-3"]),
        (UsageFilters(status_min=500, status_max=599), ["req-2"]),
        (UsageFilters(status_min=400), ["req-3", "req-2"]),
        (UsageFilters(since=T0 + 2, until=T0 + 4), ["req-3", "req-2"]),
        (UsageFilters(request_id="req-4"), ["req-4"]),
        (UsageFilters(key_id="k1", since=T0 + 1), ["req-1"]),
    ],
)
async def test_filters(store: Store, filters: UsageFilters, expected: list[str]) -> None:
    """Each filter selects exactly its records; ``since`` is inclusive, ``until`` exclusive."""
    await store.insert_usage(
        [
            rec(0, key_id="k1", team_id="t1"),
            rec(1, key_id="k1", team_id="t1"),
            rec(2, key_id="k2", model_requested="smart", status=502),
            rec(3, key_id="k3", team_id="t2", status=429),
            rec(4, provider="anthropic", model="claude-x", model_requested="anthropic/claude-x"),
        ]
    )
    page = await store.query_usage_records(filters, None, 100)
    assert expected == [r.request_id for r in page.records]


async def test_totals_by_each_grouping(store: Store) -> None:
    """Totals sum requests, errors, tokens and cost per key, team, model, provider and UTC day."""
    await store.insert_usage(
        [
            rec(0, key_id="k1", team_id="t1", cached_tokens=4, reasoning_tokens=1),
            rec(1, key_id="k1", team_id="t1", status=500, cost_usd=None),
            rec(2, key_id="k2", created_at=T0 + DAY + 5),
            rec(3, provider="anthropic", model="claude-x", cost_usd=0.01),
        ]
    )
    by_key = await store.usage_totals("key", UsageFilters())
    assert [(None, 1), ("k1", 2), ("k2", 1)] == [(t.group, t.requests) for t in by_key]
    k1 = by_key[1]
    assert (1, 20, 4, 4, 1) == (
        k1.errors,
        k1.input_tokens,
        k1.output_tokens,
        k1.cached_tokens,
        k1.reasoning_tokens,
    )
    assert 0.001 == pytest.approx(k1.cost_usd)
    by_team = await store.usage_totals("team", UsageFilters())
    assert [(None, 2), ("t1", 2)] == [(t.group, t.requests) for t in by_team]
    by_model = await store.usage_totals("model", UsageFilters())
    assert [("claude-x", "anthropic", 1), ("gpt-4o-mini", "openai", 3)] == [
        (t.group, t.provider, t.requests) for t in by_model
    ]
    by_provider = await store.usage_totals("provider", UsageFilters())
    assert [("anthropic", 1, 0.01), ("openai", 3, 0.002)] == [
        (t.group, t.requests, pytest.approx(t.cost_usd)) for t in by_provider
    ]
    by_day = await store.usage_totals("day", UsageFilters())
    assert [("2026-01-01", 3), ("2026-01-02", 1)] == [(t.group, t.requests) for t in by_day]
    filtered = await store.usage_totals("day", UsageFilters(key_id="k1"))
    assert [("2026-01-01", 2)] == [(t.group, t.requests) for t in filtered]


async def test_no_records_no_totals(store: Store) -> None:
    """Totals of nothing are an empty list, not a row of zeros."""
    assert [] == await store.usage_totals("key", UsageFilters())


async def test_records_survive_reopening(backend: Backend) -> None:
    """Records written by one store are read by the next one opened on the same database."""
    first = await backend.open()
    await first.insert_usage([rec(1)])
    await first.close()
    backend.stores.remove(first)
    second = await backend.open()
    page = await second.query_usage_records(UsageFilters(), None, 10)
    assert ["req-1"] == [r.request_id for r in page.records]


async def test_records_past_their_retention_are_deleted(store: Store) -> None:
    """Deleting before a time removes exactly the older records and says how many."""
    await store.insert_usage([rec(n, created_at=T0 + n * DAY) for n in range(5)])
    assert await store.delete_usage_before(T0 + 2 * DAY) == 2
    left = await store.query_usage_records(UsageFilters(), None, 10)
    assert sorted(r.request_id for r in left.records) == ["req-2", "req-3", "req-4"]
    assert await store.delete_usage_before(T0) == 0
