"""Usage records: one row per request (and per background response run), what it was, who made
it, what it cost. The types and the SQL both backends share; each backend's statements are in
``sqlite_usage.py`` / ``postgres_usage.py``.

Every record carries an ``id`` made by the gateway, so that a batch re-sent after a failure whose
commit did in fact happen inserts nothing twice (inserts skip ids already stored).

Pages run newest first, by ``(created_at, id)``; a cursor is the last row's pair, so rows
inserted meanwhile never shift a page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from proxy.store.base import Migration

__all__ = [
    "GROUP_BY",
    "USAGE_COLUMNS",
    "USAGE_VERSION",
    "GroupBy",
    "UsageFilters",
    "UsagePage",
    "UsageRecord",
    "UsageTotal",
    "usage_migration",
    "usage_where",
]

# The schema version of the usage table: after responses (1), conversations (2), keys and teams (3).
USAGE_VERSION = 4

GroupBy = Literal["key", "team", "model", "provider", "day"]
GROUP_BY: tuple[GroupBy, ...] = ("key", "team", "model", "provider", "day")


class UsageRecord(msgspec.Struct, kw_only=True, gc=False):
    """One request as accounted: its identity, who made it, where it went and what it cost.

    ``gc=False``: it holds scalars only, and thousands may wait in the writer's queue, where
    the cycle collector would otherwise walk them all."""

    id: str  # unique per record, made by the gateway
    created_at: float  # unix seconds: the request's arrival
    request_id: str
    key_id: str | None = None
    team_id: str | None = None
    provider: str | None = None
    model: str | None = None
    model_requested: str | None = None
    route: str = ""  # the path
    request_type: str = ""
    status: int = 0
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    attempts: int = 0
    fallback_index: int = 0
    stream: bool = False
    # JSON {"request": {...content fields}, "response": ...}; only with ``usage.log_content``.
    content: bytes | None = None


# In the order of the table's columns and of UsageRecord's fields.
USAGE_COLUMNS: tuple[str, ...] = UsageRecord.__struct_fields__


class UsageFilters(msgspec.Struct, frozen=True, kw_only=True):
    """Which records a query covers; ``None`` does not filter. ``model`` matches the model
    served (``gpt-4o-mini``) or the one asked for (``openai/gpt-4o-mini``, a route name).
    ``since`` is inclusive, ``until`` exclusive (unix seconds)."""

    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    provider: str | None = None
    request_id: str | None = None
    status_min: int | None = None
    status_max: int | None = None
    since: float | None = None
    until: float | None = None


class UsagePage(msgspec.Struct, kw_only=True):
    """Records newest first; ``next_cursor`` is where the next page starts (None: the last)."""

    records: list[UsageRecord]
    has_more: bool
    next_cursor: tuple[float, str] | None


class UsageTotal(msgspec.Struct, kw_only=True):
    """Totals of one group: ``group`` is the key id, team id, model, provider or UTC day
    (``YYYY-MM-DD``); ``provider`` is the model's provider when grouped by model."""

    group: str | None
    provider: str | None = None
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0


def usage_migration(types: dict[str, str]) -> Migration:
    """The usage table and its indexes, in a backend's column types (``text``, ``int``,
    ``real``, ``bool``, ``blob``, and the table's trailing options ``table``)."""
    t = types
    return Migration(
        USAGE_VERSION,
        "usage records",
        (
            f"""CREATE TABLE usage_records (
                id {t["text"]} PRIMARY KEY,
                created_at {t["real"]} NOT NULL,
                request_id {t["text"]} NOT NULL,
                key_id {t["text"]},
                team_id {t["text"]},
                provider {t["text"]},
                model {t["text"]},
                model_requested {t["text"]},
                route {t["text"]} NOT NULL,
                request_type {t["text"]} NOT NULL,
                status {t["int"]} NOT NULL,
                error_type {t["text"]},
                input_tokens {t["int"]} NOT NULL,
                output_tokens {t["int"]} NOT NULL,
                cached_tokens {t["int"]} NOT NULL,
                reasoning_tokens {t["int"]} NOT NULL,
                cost_usd {t["real"]},
                latency_ms {t["real"]} NOT NULL,
                ttfb_ms {t["real"]},
                attempts {t["int"]} NOT NULL,
                fallback_index {t["int"]} NOT NULL,
                stream {t["bool"]} NOT NULL,
                content {t["blob"]}
            ){t["table"]}""",
            # Pages newest first, alone or within one key or team (budgets read a key's and a
            # team's spend by time too); a request by its id. Every index is paid for on every
            # request's insert, so filters by provider or model scan the time index instead.
            "CREATE INDEX usage_time ON usage_records (created_at, id)",
            "CREATE INDEX usage_key ON usage_records (key_id, created_at, id)",
            "CREATE INDEX usage_team ON usage_records (team_id, created_at, id)",
            "CREATE INDEX usage_request ON usage_records (request_id)",
        ),
    )


def usage_where(filters: UsageFilters, mark: Callable[[int], str]) -> tuple[list[str], list[Any]]:
    """The ``WHERE`` conditions of ``filters`` and their parameters; ``mark(n)`` is the n-th
    parameter's placeholder (1-based: ``?`` or ``$n``)."""
    conds: list[str] = []
    params: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        marks = []
        for value in values:
            params.append(value)
            marks.append(mark(len(params)))
        conds.append(sql.format(*marks))

    f = filters
    for column, value in (
        ("key_id", f.key_id),
        ("team_id", f.team_id),
        ("provider", f.provider),
        ("request_id", f.request_id),
    ):
        if value is not None:
            add(f"{column} = {{}}", value)
    if f.model is not None:
        add("(model = {} OR model_requested = {})", f.model, f.model)
    if f.status_min is not None:
        add("status >= {}", f.status_min)
    if f.status_max is not None:
        add("status <= {}", f.status_max)
    if f.since is not None:
        add("created_at >= {}", f.since)
    if f.until is not None:
        add("created_at < {}", f.until)
    return conds, params


_SELECT = ", ".join(USAGE_COLUMNS)
_NEWEST_FIRST = " ORDER BY created_at DESC, id DESC LIMIT "


def page_query(
    filters: UsageFilters,
    cursor: tuple[float, str] | None,
    limit: int,
    mark: Callable[[int], str],
) -> tuple[str, list[Any]]:
    """The statement (and its parameters) of one page: ``limit + 1`` rows, newest first,
    strictly older than ``cursor``."""
    conds, params = usage_where(filters, mark)
    if cursor is not None:
        params.extend((cursor[0], cursor[0], cursor[1]))
        n = len(params)
        conds.append(
            f"(created_at < {mark(n - 2)} OR (created_at = {mark(n - 1)} AND id < {mark(n)}))"
        )
    params.append(limit + 1)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    sql = f"SELECT {_SELECT} FROM usage_records{where}{_NEWEST_FIRST}{mark(len(params))}"  # noqa: S608
    return sql, params


def make_usage_page(rows: list[UsageRecord], limit: int) -> UsagePage:
    chosen = rows[:limit]
    more = len(rows) > limit
    last = chosen[-1] if chosen else None
    return UsagePage(
        records=chosen,
        has_more=more,
        next_cursor=(last.created_at, last.id) if more and last is not None else None,
    )


def totals_query(
    group_by: GroupBy, filters: UsageFilters, mark: Callable[[int], str], day: str
) -> tuple[str, list[Any]]:
    """The statement of ``usage_totals``: one row per group, ordered by group (``None``
    first). ``day`` is the backend's expression of ``created_at``'s UTC date, ``YYYY-MM-DD``."""
    group = {
        "key": "key_id",
        "team": "team_id",
        "provider": "provider",
        "model": "model",
        "day": day,
    }[group_by]
    provider = "provider" if group_by == "model" else "NULL"
    conds, params = usage_where(filters, mark)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    by = "1, 2" if group_by == "model" else "1"
    sql = (
        f"SELECT {group}, {provider}, count(*),"  # noqa: S608
        # PostgreSQL sums bigints as numeric: cast back, to get ints on both backends.
        " CAST(sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT),"
        " CAST(sum(input_tokens) AS BIGINT), CAST(sum(output_tokens) AS BIGINT),"
        " CAST(sum(cached_tokens) AS BIGINT), CAST(sum(reasoning_tokens) AS BIGINT),"
        f" coalesce(sum(cost_usd), 0) FROM usage_records{where}"
        f" GROUP BY {by} ORDER BY 1 NULLS FIRST, 2 NULLS FIRST"
    )
    return sql, params


def usage_total(row: Any) -> UsageTotal:
    return UsageTotal(
        group=row[0],
        provider=row[1],
        requests=row[2],
        errors=row[3],
        input_tokens=row[4],
        output_tokens=row[5],
        cached_tokens=row[6],
        reasoning_tokens=row[7],
        cost_usd=float(row[8]),
    )
