"""``GET /api/logs`` (usage records, newest first, cursor-paginated) and ``GET /api/usage``
(totals grouped by key, team, model, provider or day), from the store; behind the master key.

Filters shared by both: ``key_id``, ``team_id``, ``model`` (served or requested), ``provider``,
``request_id``, ``status`` (a code, or ``2xx``, ``4xx``, ``5xx``, ``error`` for 400 and up),
``since`` (inclusive) and ``until`` (exclusive), each unix seconds or RFC 3339. A bad or unknown
parameter is a 400 naming it.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from proxy.errors import InvalidRequestError
from proxy.keys import STORE
from proxy.operations import ADMIN, add_endpoint
from proxy.respond.handlers import _int_query
from proxy.store import GroupBy, UsageFilters, UsageRecord, UsageTotal
from proxy.store.usage import GROUP_BY

__all__ = ["setup"]

_FILTERS = ("key_id", "team_id", "model", "provider", "request_id", "status", "since", "until")
_LOGS_PARAMS = frozenset({*_FILTERS, "cursor", "limit"})
_USAGE_PARAMS = frozenset({*_FILTERS, "group_by"})
_STATUS_CLASSES = {"2xx": (200, 299), "4xx": (400, 499), "5xx": (500, 599), "error": (400, 999)}
_CURSOR = re.compile(r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?):([A-Za-z0-9._-]{1,128})")
_GROUPS: dict[str, GroupBy] = {g: g for g in GROUP_BY}
_GROUP_FIELD = {"key": "key_id", "team": "team_id", "model": "model", "provider": "provider"}

_encode = msgspec.json.Encoder().encode


class _Record(msgspec.Struct, kw_only=True):
    """A usage record as ``/api/logs`` shows it (``content`` as the JSON it is)."""

    object: str
    id: str
    created_at: float
    request_id: str
    key_id: str | None
    team_id: str | None
    provider: str | None
    model: str | None
    model_requested: str | None
    route: str
    request_type: str
    status: int
    error_type: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    latency_ms: float
    ttfb_ms: float | None
    attempts: int
    fallback_index: int
    stream: bool
    content: msgspec.Raw | None


class _RecordList(msgspec.Struct):
    object: str
    data: list[_Record]
    has_more: bool
    next_cursor: str | None


def _view(rec: UsageRecord) -> _Record:
    fields = msgspec.structs.asdict(rec)
    content = fields.pop("content")
    return _Record(
        object="usage_record",
        content=msgspec.Raw(content) if content is not None else None,
        **fields,
    )


def _check_params(request: web.Request, known: frozenset[str]) -> None:
    for name in request.query:
        if name not in known:
            allowed = ", ".join(sorted(known))
            raise InvalidRequestError(
                f"Unknown query parameter `{name}` (allowed: {allowed}).", param=name
            )


def _time(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRequestError(
                f"`{name}` must be unix seconds or an RFC 3339 time "
                f"(2026-01-31T12:00:00Z), got `{text}`.",
                param=name,
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value):
        raise InvalidRequestError(f"`{name}` must be a finite number.", param=name)
    return value


def _status(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    if text in _STATUS_CLASSES:
        return _STATUS_CLASSES[text]
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text), int(text)
    raise InvalidRequestError(
        f"`status` must be an HTTP status (100-599), `2xx`, `4xx`, `5xx` or `error`, got `{text}`.",
        param="status",
    )


def _filters(request: web.Request) -> UsageFilters:
    q = request.query
    low, high = _status(q.get("status"))
    since, until = _time(request, "since"), _time(request, "until")
    return UsageFilters(
        key_id=q.get("key_id") or None,
        team_id=q.get("team_id") or None,
        model=q.get("model") or None,
        provider=q.get("provider") or None,
        request_id=q.get("request_id") or None,
        status_min=low,
        status_max=high,
        since=since,
        until=until,
    )


def _cursor(request: web.Request) -> tuple[float, str] | None:
    text = request.query.get("cursor")
    if not text:
        return None
    matched = _CURSOR.fullmatch(text)
    if matched is None:
        raise InvalidRequestError(
            "`cursor` must be a previous page's `next_cursor`.", param="cursor"
        )
    return float(matched.group(1)), matched.group(2)


async def logs(request: web.Request) -> web.Response:
    """Usage records, newest first: ``{"object": "list", "data", "has_more", "next_cursor"}``."""
    _check_params(request, _LOGS_PARAMS)
    filters = _filters(request)
    cursor = _cursor(request)
    limit = _int_query(request, "limit", 100, low=1, high=1000)
    page = await request.app[STORE].query_usage_records(filters, cursor, limit)
    after = page.next_cursor
    body = _RecordList(
        object="list",
        data=[_view(rec) for rec in page.records],
        has_more=page.has_more,
        next_cursor=f"{after[0]!r}:{after[1]}" if after is not None else None,
    )
    return web.Response(body=_encode(body), content_type="application/json")


def _row(group_by: GroupBy, total: UsageTotal) -> dict[str, Any]:
    row: dict[str, Any] = {_GROUP_FIELD.get(group_by, group_by): total.group}
    if group_by == "model":
        row["provider"] = total.provider
    fields = msgspec.structs.asdict(total)
    del fields["group"], fields["provider"]
    row.update(fields)
    return row


async def usage(request: web.Request) -> web.Response:
    """Totals per group: ``{"object": "list", "group_by", "data": [{<group>, "requests",
    "errors", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens",
    "cost_usd"}]}``."""
    _check_params(request, _USAGE_PARAMS)
    group_by = request.query.get("group_by") or "day"
    chosen = _GROUPS.get(group_by)
    if chosen is None:
        raise InvalidRequestError(
            f"`group_by` must be one of {', '.join(GROUP_BY)}, got `{group_by}`.",
            param="group_by",
        )
    totals = await request.app[STORE].usage_totals(chosen, _filters(request))
    body = {"object": "list", "group_by": chosen, "data": [_row(chosen, t) for t in totals]}
    return web.Response(body=_encode(body), content_type="application/json")


def setup(app: web.Application) -> None:
    add_endpoint(app, "GET", "/api/logs", ADMIN, logs)
    add_endpoint(app, "GET", "/api/usage", ADMIN, usage)
