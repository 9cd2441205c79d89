"""Virtual keys and teams: what is stored of them, what the admin API accepts, and the rules a
request is held to (allow-lists, rate limits, budgets).

A key's secret is shown once, when it is made; only its SHA-256 digest is stored. Records are
kept as JSON documents (``KeyRecord``/``TeamRecord``) beside the columns they are looked up by.
"""

from __future__ import annotations

import calendar
import hashlib
import secrets
import time
from typing import Annotated, Literal

import msgspec

__all__ = [
    "KEY_PREFIX",
    "PERIODS",
    "Budget",
    "Grant",
    "KeyPatch",
    "KeyRecord",
    "KeySpec",
    "Period",
    "RateLimit",
    "Scope",
    "TeamPatch",
    "TeamRecord",
    "TeamSpec",
    "allowed",
    "hash_secret",
    "hint_of",
    "new_id",
    "new_secret",
    "period_bounds",
]

KEY_PREFIX = "sk-thr-"
Period = Literal["1h", "1d", "1w", "1mo", "total"]
PERIODS: tuple[Period, ...] = ("1h", "1d", "1w", "1mo", "total")

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class Budget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``max_usd`` spent per calendar ``period`` (UTC; ``total``: ever)."""

    max_usd: Annotated[float, msgspec.Meta(gt=0)]
    period: Period = "1mo"


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Requests and tokens per minute, over a sliding minute."""

    rpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tpm: Annotated[int, msgspec.Meta(ge=1)] | None = None


class TeamSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /api/teams``."""

    name: _Name
    models: list[_Pattern] | None = None
    providers: list[_Pattern] | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    metadata: dict[str, msgspec.Raw] = {}


class KeySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /api/keys``: ``models`` are ``provider/model`` names, ``provider/*`` or route
    names; ``expires_at`` is unix seconds."""

    name: _Name
    team: str | None = None
    models: list[_Pattern] | None = None
    providers: list[_Pattern] | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    metadata: dict[str, msgspec.Raw] = {}
    expires_at: float | None = None


class KeyPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PATCH /api/keys/{id}``: the fields given replace the stored ones (``null`` clears)."""

    name: _Name | msgspec.UnsetType = msgspec.UNSET
    team: str | msgspec.UnsetType | None = msgspec.UNSET
    models: list[_Pattern] | msgspec.UnsetType | None = msgspec.UNSET
    providers: list[_Pattern] | msgspec.UnsetType | None = msgspec.UNSET
    budget: Budget | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit: RateLimit | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET
    expires_at: float | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class TeamPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PATCH /api/teams/{id}``."""

    name: _Name | msgspec.UnsetType = msgspec.UNSET
    models: list[_Pattern] | msgspec.UnsetType | None = msgspec.UNSET
    providers: list[_Pattern] | msgspec.UnsetType | None = msgspec.UNSET
    budget: Budget | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit: RateLimit | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


class TeamRecord(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["team"] = "team"
    name: str
    models: list[str] | None = None
    providers: list[str] | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    metadata: dict[str, msgspec.Raw] = {}
    created_at: float
    updated_at: float


class KeyRecord(msgspec.Struct, kw_only=True):
    """A virtual key as stored and as the admin API shows it (never its secret)."""

    id: str
    object: Literal["key"] = "key"
    name: str
    # ``sk-thr-abcd...wxyz``: enough to recognise a key, not to use it.
    hint: str
    team: str | None = None
    models: list[str] | None = None
    providers: list[str] | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    metadata: dict[str, msgspec.Raw] = {}
    expires_at: float | None = None
    disabled: bool = False
    created_at: float
    updated_at: float
    rotated_at: float | None = None


class Scope(msgspec.Struct, frozen=True, gc=False):
    """One holder of limits a request counts against: its key, or its key's team."""

    kind: Literal["key", "team"]
    id: str
    rate_limit: RateLimit | None
    budget: Budget | None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"


class Grant(msgspec.Struct, frozen=True):
    """What a valid virtual key may do, as read at authentication (key and team together)."""

    key: KeyRecord
    team: TeamRecord | None
    # Scopes with a rate limit or a budget, the key's first.
    scopes: tuple[Scope, ...]

    @property
    def allow_lists(self) -> list[tuple[list[str] | None, list[str] | None, str]]:
        """``(models, providers, whose)`` for the key and its team."""
        lists = [(self.key.models, self.key.providers, "key")]
        if self.team is not None:
            lists.append((self.team.models, self.team.providers, "team"))
        return lists


def allowed(model: str, models: list[str] | None, providers: list[str] | None) -> bool:
    """Whether ``model`` (``provider/model`` or a route name) passes one pair of allow-lists:
    ``None`` allows everything; ``provider/*`` every model of a provider; ``*`` anything."""
    provider, sep, _ = model.partition("/")
    if providers is not None and (not sep or (provider not in providers and "*" not in providers)):
        return False
    if models is None:
        return True
    return any(
        pattern == "*"
        or pattern == model
        or (pattern.endswith("/*") and sep and pattern[:-2] == provider)
        for pattern in models
    )


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_id(kind: Literal["key", "team"]) -> str:
    return f"{kind}_{secrets.token_hex(12)}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hint_of(secret: str) -> str:
    return f"{secret[: len(KEY_PREFIX) + 4]}...{secret[-4:]}"


_SECONDS = {"1h": 3600, "1d": 86400, "1w": 7 * 86400}


def period_bounds(period: Period, now: float | None = None) -> tuple[int, int | None]:
    """The UTC calendar period containing ``now``: its start and end (unix seconds; weeks start
    on Monday); ``total`` starts at 0 and has no end."""
    now = time.time() if now is None else now
    if period == "total":
        return 0, None
    if period == "1mo":
        t = time.gmtime(now)
        start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return start, calendar.timegm((year, month, 1, 0, 0, 0))
    length = _SECONDS[period]
    # The unix epoch was a Thursday: weeks are shifted to start on Monday.
    offset = 3 * 86400 if period == "1w" else 0
    start = int((now + offset) // length * length - offset)
    return start, start + length
