"""Governance: virtual keys and teams (the admin API's operations), the lookup of a presented
key, and the counters requests are admitted against.

A key is looked up by the SHA-256 digest of its secret and what was read is trusted for
``auth.key_cache_ttl_s``; a change made through this instance clears the cache at once, and with
``state.url`` set it is announced on a Redis channel so every other instance clears theirs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import structlog

from proxy.config import GatewayConfig
from proxy.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StateUnavailableError,
)
from proxy.governance.counters import (
    Counters,
    CountersUnavailable,
    MemoryCounters,
    Settlement,
    Spend,
    nusd,
)
from proxy.governance.model import (
    Grant,
    KeyPatch,
    KeyRecord,
    KeySpec,
    Scope,
    TeamPatch,
    TeamRecord,
    TeamSpec,
    hash_secret,
    hint_of,
    new_id,
    new_secret,
)
from proxy.store.base import Store
from proxy.store.usage import UsageFilters

__all__ = ["Governance", "make_grant"]

log = structlog.get_logger("thruway.governance")
_T = TypeVar("_T")
_KEY = msgspec.json.Decoder(KeyRecord)
_TEAM = msgspec.json.Decoder(TeamRecord)
_encode = msgspec.json.Encoder().encode
_CHANNEL = "{thruway}:keys-changed"
# A key that matched nothing is remembered this long, so a flood of bad keys stays off the store.
_MISS_TTL_S = 1.0
_CACHE_MAX = 100_000


def _decoded(decode: Callable[[bytes], _T], body: bytes | None) -> _T | None:
    return None if body is None else decode(body)


def _given(patch: KeyPatch | TeamPatch) -> dict[str, Any]:
    """The fields a PATCH body gave (``null`` included), by name."""
    return {f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not msgspec.UNSET}


class Governance:
    """Owned by the app (``GOVERNANCE``); :meth:`start` after the store is open."""

    def __init__(self, config: GatewayConfig, store: Store) -> None:
        self._store = store
        seed = self._spent_since
        self._ttl = config.auth.key_cache_ttl_s
        self._state_url = config.state.url
        self.fail_open = config.state.fail_open
        self.default_output_tokens = config.state.default_output_tokens
        # Each configured route's target names, for allow-lists and cost estimates.
        self.routes = {name: [t.model for t in r.targets] for name, r in config.routes.items()}
        self.counters: Counters
        if self._state_url:
            from proxy.governance.redis_counters import RedisCounters

            self.counters = RedisCounters(self._state_url, seed, pool_size=config.state.pool_size)
        else:
            self.counters = MemoryCounters(seed)
        self._cache: dict[str, tuple[Grant | None, float]] = {}
        self._has_keys: tuple[bool, float] = (False, 0.0)
        self._listener: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._settling: set[asyncio.Task[None]] = set()
        self._store_failing = False

    async def _spent_since(self, scope: Scope, start: int) -> int:
        """What the usage records say a key or team spent since ``start`` (nano-dollars): a
        budget period's counters start from it, so a restart (or a Redis that lost its data)
        does not forget what was spent."""
        if scope.kind == "key":
            filters = UsageFilters(key_id=scope.id, since=start)
        else:
            filters = UsageFilters(team_id=scope.id, since=start)
        totals = await self._store.usage_totals(scope.kind, filters)
        return sum(nusd(t.cost_usd) for t in totals)

    async def start(self) -> None:
        if self._state_url:
            import redis.asyncio as redis

            self._redis = redis.from_url(self._state_url)
            self._listener = asyncio.create_task(self._listen(), name="thruway-keys-listener")

    def settle_later(self, done: Settlement) -> None:
        """Settle a request in a task of its own: a client that left cancels its request, and
        that must not cancel the settlement too."""
        task = asyncio.get_running_loop().create_task(self._settle(done))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, done: Settlement) -> None:
        try:
            await self.counters.settle(done)
        except CountersUnavailable as exc:
            log.warning("settle_failed", request_id=done.request_id, error=str(exc))

    async def close(self) -> None:
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()
        await self.counters.close()

    async def _listen(self) -> None:
        """Clear the cache whenever another instance changes a key or a team."""
        from redis.exceptions import RedisError

        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(_CHANNEL)
                    # What changed while this instance was not subscribed is unknown.
                    self._forget()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._forget()
            except (RedisError, OSError) as exc:
                log.warning("keys_listener_lost", error=str(exc))
                await asyncio.sleep(1.0)

    def _forget(self) -> None:
        self._cache.clear()
        self._has_keys = (False, 0.0)

    async def _changed(self) -> None:
        self._forget()
        if self._redis is not None:
            from redis.exceptions import RedisError

            try:
                await self._redis.publish(_CHANNEL, b"1")
            except (RedisError, OSError) as exc:
                log.warning("keys_change_not_announced", error=str(exc))

    # -- authentication -----------------------------------------------------------------------

    def no_keys_known(self) -> bool:
        """True while the last look found no virtual key (no await: the open gateway's path)."""
        exists, until = self._has_keys
        return not exists and until > time.monotonic()

    async def keys_exist(self) -> bool:
        exists, until = self._has_keys
        now = time.monotonic()
        if until <= now:
            try:
                exists = await self._store.has_keys()
            except Exception as exc:  # the store's own errors differ by backend
                if until == 0.0:
                    raise self._unreachable(exc) from None
                self._unreachable(exc)
                return exists  # what was known before the store went away
            self._recovered()
            # Trusted for the cache time, and at least a second: an open gateway's requests do
            # not each ask the store.
            self._has_keys = (exists, now + max(self._ttl, 1.0))
        return exists

    def _unreachable(self, exc: Exception) -> StateUnavailableError:
        """The error for a key that cannot be checked; the outage is logged once."""
        if not self._store_failing:
            self._store_failing = True
            log.error("key_store_unreachable", error_type=type(exc).__name__, error=str(exc))
        return StateUnavailableError(
            "API keys cannot be checked right now (the gateway's store is unreachable); "
            "try again shortly.",
            headers={"Retry-After": "1"},
        )

    def _recovered(self) -> None:
        if self._store_failing:
            self._store_failing = False
            log.warning("key_store_reachable")

    async def grant(self, secret: str) -> Grant | None:
        """The grant of a presented key (disabled and expired ones too), or None when it is no
        key's."""
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            got = cached[0]
        else:
            try:
                got = await self._load(digest)
            except Exception as exc:  # the store's own errors differ by backend
                if cached is None:
                    raise self._unreachable(exc) from None
                # While the store is away, what was last read of a key stands.
                self._unreachable(exc)
                return cached[0]
            self._recovered()
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (got, now + (self._ttl if got is not None else _MISS_TTL_S))
        return got

    async def _load(self, digest: str) -> Grant | None:
        key = _decoded(_KEY.decode, await self._store.key_by_hash(digest))
        return None if key is None else await self._grant_of(key)

    async def _grant_of(self, key: KeyRecord) -> Grant:
        """The key with its team, as stored now."""
        team = None
        if key.team is not None:
            team = _decoded(_TEAM.decode, await self._store.get_team(key.team))
        return make_grant(key, team)

    # -- keys ---------------------------------------------------------------------------------

    async def create_key(self, spec: KeySpec) -> tuple[KeyRecord, str]:
        await self._team_exists(spec.team)
        secret = new_secret()
        now = time.time()
        record = KeyRecord(
            id=new_id("key"),
            name=spec.name,
            hint=hint_of(secret),
            team=spec.team,
            models=spec.models,
            providers=spec.providers,
            budget=spec.budget,
            rate_limit=spec.rate_limit,
            metadata=spec.metadata,
            expires_at=spec.expires_at,
            created_at=now,
            updated_at=now,
        )
        await self._store.insert_key(
            record.id, hash_secret(secret), record.team, now, _encode(record)
        )
        await self._changed()
        return record, secret

    async def get_key(self, id: str) -> KeyRecord:
        got = _decoded(_KEY.decode, await self._store.get_key(id))
        if got is None:
            raise NotFoundError(f"No key with id `{id}`.", param="key_id")
        return got

    async def list_keys(
        self, *, team: str | None, after: str | None, limit: int
    ) -> list[KeyRecord]:
        return [
            _KEY.decode(b) for b in await self._store.list_keys(team=team, after=after, limit=limit)
        ]

    async def update_key(self, id: str, patch: KeyPatch) -> KeyRecord:
        record = await self.get_key(id)
        changes = _given(patch)
        if "team" in changes:
            await self._team_exists(changes["team"])
        updated = msgspec.structs.replace(record, **changes, updated_at=time.time())
        await self._save_key(updated, None)
        return updated

    async def rotate_key(self, id: str) -> tuple[KeyRecord, str]:
        """A new secret for the key (the old one stops working); its id, limits and spend stay."""
        record = await self.get_key(id)
        secret = new_secret()
        now = time.time()
        updated = msgspec.structs.replace(
            record, hint=hint_of(secret), updated_at=now, rotated_at=now
        )
        await self._save_key(updated, hash_secret(secret))
        return updated, secret

    async def _save_key(self, record: KeyRecord, digest: str | None) -> None:
        """Store the record; the secret's digest changes only with ``digest`` (a rotation)."""
        if not await self._store.update_key(record.id, record.team, _encode(record), hash=digest):
            raise NotFoundError(f"No key with id `{record.id}`.", param="key_id")
        await self._changed()

    async def delete_key(self, id: str) -> None:
        if not await self._store.delete_key(id):
            raise NotFoundError(f"No key with id `{id}`.", param="key_id")
        await self._changed()

    async def charge(self, key_id: str, request_id: str, cost_usd: float) -> None:
        """Settle work that outlived its request (a background response): its reservation,
        held under ``request_id``, becomes ``cost_usd`` in the key's and team's budgets."""
        key = _decoded(_KEY.decode, await self._store.get_key(key_id))
        if key is None:
            return  # the key is gone: nothing to count against
        scopes = (await self._grant_of(key)).scopes
        if scopes:
            await self._settle(Settlement(request_id, scopes, 0, 0, nusd(cost_usd)))

    async def spend(self, scope: Scope) -> Spend | None:
        return await self.counters.spend(scope)

    # -- teams --------------------------------------------------------------------------------

    async def _team_exists(self, team: str | None) -> None:
        if team is not None and await self._store.get_team(team) is None:
            raise InvalidRequestError(f"No team with id `{team}`.", param="team")

    async def create_team(self, spec: TeamSpec) -> TeamRecord:
        now = time.time()
        record = TeamRecord(
            id=new_id("team"),
            name=spec.name,
            models=spec.models,
            providers=spec.providers,
            budget=spec.budget,
            rate_limit=spec.rate_limit,
            metadata=spec.metadata,
            created_at=now,
            updated_at=now,
        )
        await self._store.insert_team(record.id, now, _encode(record))
        return record

    async def get_team(self, id: str) -> TeamRecord:
        got = _decoded(_TEAM.decode, await self._store.get_team(id))
        if got is None:
            raise NotFoundError(f"No team with id `{id}`.", param="team_id")
        return got

    async def list_teams(self, *, after: str | None, limit: int) -> list[TeamRecord]:
        return [_TEAM.decode(b) for b in await self._store.list_teams(after=after, limit=limit)]

    async def update_team(self, id: str, patch: TeamPatch) -> TeamRecord:
        record = await self.get_team(id)
        updated = msgspec.structs.replace(record, **_given(patch), updated_at=time.time())
        if not await self._store.update_team(id, _encode(updated)):
            raise NotFoundError(f"No team with id `{id}`.", param="team_id")
        await self._changed()
        return updated

    async def delete_team(self, id: str) -> None:
        result = await self._store.delete_team(id)
        if result == "missing":
            raise NotFoundError(f"No team with id `{id}`.", param="team_id")
        if result == "in_use":
            raise ConflictError(
                f"Team `{id}` still has keys: delete them or move them to another team first.",
                param="team_id",
            )
        await self._changed()


def make_grant(key: KeyRecord, team: TeamRecord | None) -> Grant:
    scopes = []
    if key.rate_limit is not None or key.budget is not None:
        scopes.append(Scope("key", key.id, key.rate_limit, key.budget))
    if team is not None and (team.rate_limit is not None or team.budget is not None):
        scopes.append(Scope("team", team.id, team.rate_limit, team.budget))
    return Grant(key=key, team=team, scopes=tuple(scopes))
