"""The admin API of virtual keys and teams (``/api/keys``, ``/api/teams``): the master key only.

A key's secret is in the reply to its creation and to each rotation, and nowhere else: the
store keeps its digest. Lists are in creation order, paged with ``after`` (an id) and ``limit``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec
from aiohttp import web

from middlewares.decode import decode_body
from proxy.errors import InvalidRequestError
from proxy.governance.counters import CountersUnavailable, Spend
from proxy.governance.model import (
    KeyPatch,
    KeyRecord,
    KeySpec,
    Scope,
    TeamPatch,
    TeamRecord,
    TeamSpec,
)
from proxy.governance.service import Governance
from proxy.keys import GOVERNANCE
from proxy.operations import KEY_ADMIN, add_endpoint

__all__ = ["setup"]

_T = TypeVar("_T")
_encode = msgspec.json.Encoder().encode
_KEY_SPEC = msgspec.json.Decoder(KeySpec)
_KEY_PATCH = msgspec.json.Decoder(KeyPatch)
_TEAM_SPEC = msgspec.json.Decoder(TeamSpec)
_TEAM_PATCH = msgspec.json.Decoder(TeamPatch)
_MAX_PAGE = 1000


class KeyView(KeyRecord, kw_only=True, omit_defaults=True):
    """A key as the API shows it: its secret once (``key``), its budget's current period."""

    key: str | msgspec.UnsetType = msgspec.UNSET
    spend: Spend | msgspec.UnsetType | None = msgspec.UNSET


class TeamView(TeamRecord, kw_only=True, omit_defaults=True):
    spend: Spend | msgspec.UnsetType | None = msgspec.UNSET


class Page(msgspec.Struct):
    data: list[KeyView] | list[TeamView]
    has_more: bool
    last_id: str | None
    object: Literal["list"] = "list"


class Deleted(msgspec.Struct):
    id: str
    object: str
    deleted: bool = True


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _gov(request: web.Request) -> Governance:
    return request.app[GOVERNANCE]


def _page_query(request: web.Request) -> tuple[str | None, int]:
    text = request.query.get("limit", "100")
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= _MAX_PAGE:
        raise InvalidRequestError(
            f"`limit` must be an integer from 1 to {_MAX_PAGE}, got `{text}`.", param="limit"
        )
    return request.query.get("after") or None, limit


async def _spend(gov: Governance, scope: Scope) -> Spend | None:
    """The budget's current period; left out (None) when the counters cannot be reached."""
    try:
        return await gov.spend(scope)
    except CountersUnavailable:
        return None


def _key_view(record: KeyRecord, **extra: object) -> KeyView:
    return KeyView(**msgspec.structs.asdict(record), **extra)  # type: ignore[arg-type]


async def create_key(request: web.Request) -> web.Response:
    spec = decode_body(_KEY_SPEC.decode, await request.read())
    record, secret = await _gov(request).create_key(spec)
    return _json(_key_view(record, key=secret), status=201)


async def list_keys(request: web.Request) -> web.Response:
    after, limit = _page_query(request)
    team = request.query.get("team") or None
    got = await _gov(request).list_keys(team=team, after=after, limit=limit + 1)
    shown = [_key_view(r) for r in got[:limit]]
    return _json(Page(shown, len(got) > limit, shown[-1].id if shown else None))


async def get_key(request: web.Request) -> web.Response:
    gov = _gov(request)
    record = await gov.get_key(request.match_info["key_id"])
    spend = None
    if record.budget is not None:
        spend = await _spend(gov, Scope("key", record.id, record.rate_limit, record.budget))
    return _json(_key_view(record, spend=spend))


async def update_key(request: web.Request) -> web.Response:
    patch = decode_body(_KEY_PATCH.decode, await request.read())
    record = await _gov(request).update_key(request.match_info["key_id"], patch)
    return _json(_key_view(record))


async def rotate_key(request: web.Request) -> web.Response:
    record, secret = await _gov(request).rotate_key(request.match_info["key_id"])
    return _json(_key_view(record, key=secret))


async def delete_key(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"]
    await _gov(request).delete_key(key_id)
    return _json(Deleted(key_id, "key.deleted"))


def _team_view(record: TeamRecord, **extra: object) -> TeamView:
    return TeamView(**msgspec.structs.asdict(record), **extra)  # type: ignore[arg-type]


async def create_team(request: web.Request) -> web.Response:
    spec = decode_body(_TEAM_SPEC.decode, await request.read())
    return _json(_team_view(await _gov(request).create_team(spec)), status=201)


async def list_teams(request: web.Request) -> web.Response:
    after, limit = _page_query(request)
    got = await _gov(request).list_teams(after=after, limit=limit + 1)
    shown = [_team_view(r) for r in got[:limit]]
    return _json(Page(shown, len(got) > limit, shown[-1].id if shown else None))


async def get_team(request: web.Request) -> web.Response:
    gov = _gov(request)
    record = await gov.get_team(request.match_info["team_id"])
    spend = None
    if record.budget is not None:
        spend = await _spend(gov, Scope("team", record.id, record.rate_limit, record.budget))
    return _json(_team_view(record, spend=spend))


async def update_team(request: web.Request) -> web.Response:
    patch = decode_body(_TEAM_PATCH.decode, await request.read())
    record = await _gov(request).update_team(request.match_info["team_id"], patch)
    return _json(_team_view(record))


async def delete_team(request: web.Request) -> web.Response:
    team_id = request.match_info["team_id"]
    await _gov(request).delete_team(team_id)
    return _json(Deleted(team_id, "team.deleted"))


def setup(app: web.Application) -> None:
    for method, path, handler in (
        ("POST", "/api/keys", create_key),
        ("GET", "/api/keys", list_keys),
        ("GET", "/api/keys/{key_id}", get_key),
        ("PATCH", "/api/keys/{key_id}", update_key),
        ("DELETE", "/api/keys/{key_id}", delete_key),
        ("POST", "/api/keys/{key_id}/rotate", rotate_key),
        ("POST", "/api/teams", create_team),
        ("GET", "/api/teams", list_teams),
        ("GET", "/api/teams/{team_id}", get_team),
        ("PATCH", "/api/teams/{team_id}", update_team),
        ("DELETE", "/api/teams/{team_id}", delete_team),
    ):
        add_endpoint(app, method, path, KEY_ADMIN, handler)
