"""The counters in Redis, shared by every gateway instance (``state.url``).

Admission and settlement are each one Lua script, so one round trip each and atomic: Redis runs
a script to its end before any other command, which is what makes a limit exact across
instances. Time is Redis's own (``TIME``), so instances with skewed clocks agree on the window.

Every key carries the hash tag ``{thruway}``: a request's keys (its key's and its team's) sit in
one Redis Cluster slot, as a multi-key script requires.

Layout: ``{thruway}:rate:<scope>`` is a hash of ``r<second>`` (requests) and ``t<second>``
(tokens); ``{thruway}:budget:<scope>:<period>:<start>`` a hash of ``spent``, ``reserved`` and one
``x:<request id>`` = ``<nano-dollars>:<expiry>`` per open reservation.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from proxy.governance.counters import (
    NANO,
    RESERVATION_TTL_S,
    Ask,
    CountersUnavailable,
    Decision,
    Seed,
    Settlement,
    Spend,
    Window,
    budget_key,
    nusd,
)
from proxy.governance.model import Scope

__all__ = ["RedisCounters"]

_PREFIX = "{thruway}:"
# A budget's counters outlive their period by a day (late settlements still land in them).
_GRACE_S = 86400

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sec = tonumber(t[1])
local rid, tokens, cost, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local unseeded = {}
for i = 1, n do
  local b = 4 + (i - 1) * 5
  if ARGV[b + 3] ~= '' and redis.call('HEXISTS', KEYS[2 * i], 'spent') == 0 then
    if ARGV[b + 5] == '' then
      table.insert(unseeded, i)
    else
      redis.call('HSETNX', KEYS[2 * i], 'spent', ARGV[b + 5])
    end
  end
end
if #unseeded > 0 then
  return {'seed', unseeded}
end
local views = {}
for i = 1, n do
  local b = 4 + (i - 1) * 5
  local rpm, tpm, most = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local v = {rpm = rpm, tpm = tpm, count = 0, used = 0}
  if rpm or tpm then
    local fields = redis.call('HGETALL', KEYS[2 * i - 1])
    for j = 1, #fields, 2 do
      local kind, at = string.sub(fields[j], 1, 1), tonumber(string.sub(fields[j], 2))
      if at <= sec - 60 then
        redis.call('HDEL', KEYS[2 * i - 1], fields[j])
      elseif kind == 'r' then
        v.count = v.count + tonumber(fields[j + 1])
        if not v.oldest_r or at < v.oldest_r then v.oldest_r = at end
      else
        v.used = v.used + tonumber(fields[j + 1])
        if not v.oldest_t or at < v.oldest_t then v.oldest_t = at end
      end
    end
    local reset_r = v.oldest_r and math.max(1, math.floor((v.oldest_r + 60 - now) * 1000)) or 60000
    local reset_t = v.oldest_t and math.max(1, math.floor((v.oldest_t + 60 - now) * 1000)) or 60000
    v.reset_r, v.reset_t = reset_r, reset_t
    if rpm and v.count >= rpm then
      return {'no', 'rpm', i, reset_r, v.count, v.used}
    end
    if tpm and v.used > 0 and v.used + tokens > tpm then
      return {'no', 'tpm', i, reset_t, v.count, v.used}
    end
  end
  if most then
    local fields = redis.call('HGETALL', KEYS[2 * i])
    local spent, reserved = 0, 0
    for j = 1, #fields, 2 do
      local f = fields[j]
      if f == 'spent' then
        spent = tonumber(fields[j + 1])
      elseif f == 'reserved' then
        reserved = reserved + tonumber(fields[j + 1])
      elseif string.sub(f, 1, 2) == 'x:' then
        local amount, untl = string.match(fields[j + 1], '^(%-?%d+):(.+)$')
        if tonumber(untl) <= now then
          redis.call('HDEL', KEYS[2 * i], f)
          redis.call('HINCRBY', KEYS[2 * i], 'reserved', -tonumber(amount))
          reserved = reserved - tonumber(amount)
        end
      end
    end
    if spent >= most or spent + reserved + cost > most then
      return {'no', 'budget', i, 0, 0, 0}
    end
  end
  views[i] = v
end
local best_r, best_t = nil, nil
for i = 1, n do
  local b = 4 + (i - 1) * 5
  local v = views[i]
  if v.rpm or v.tpm then
    redis.call('HINCRBY', KEYS[2 * i - 1], 'r' .. sec, 1)
    redis.call('HINCRBY', KEYS[2 * i - 1], 't' .. sec, tokens)
    redis.call('EXPIRE', KEYS[2 * i - 1], 120)
    if v.rpm then
      local rem = v.rpm - v.count - 1
      if not best_r or rem < best_r[2] then best_r = {v.rpm, rem, v.reset_r} end
    end
    if v.tpm then
      local rem = math.max(0, v.tpm - v.used - tokens)
      if not best_t or rem < best_t[2] then best_t = {v.tpm, rem, v.reset_t} end
    end
  end
  if ARGV[b + 3] ~= '' then
    redis.call('HINCRBY', KEYS[2 * i], 'reserved', cost)
    redis.call('HSET', KEYS[2 * i], 'x:' .. rid, cost .. ':' .. (now + tonumber(ARGV[5 + n * 5])))
    local ttl = tonumber(ARGV[b + 4])
    if ttl > 0 then redis.call('EXPIRE', KEYS[2 * i], ttl) end
  end
end
best_r = best_r or {-1, -1, -1}
best_t = best_t or {-1, -1, -1}
return {'ok', sec, best_r[1], best_r[2], best_r[3], best_t[1], best_t[2], best_t[3]}
"""

_SETTLE = """
local rid, sec, delta, cost, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
for i = 1, n do
  local b = 5 + (i - 1) * 2
  local rate = KEYS[2 * i - 1]
  if ARGV[b + 1] == '1' and delta ~= 0 and redis.call('HEXISTS', rate, 't' .. sec) == 1 then
    redis.call('HINCRBY', rate, 't' .. sec, delta)
  end
  if ARGV[b + 2] == '1' then
    local held = redis.call('HGET', KEYS[2 * i], 'x:' .. rid)
    if held then
      redis.call('HINCRBY', KEYS[2 * i], 'reserved', -tonumber(string.match(held, '^(%-?%d+)')))
      redis.call('HDEL', KEYS[2 * i], 'x:' .. rid)
    end
    redis.call('HINCRBY', KEYS[2 * i], 'spent', cost)
  end
end
return 1
"""


class RedisCounters:
    def __init__(self, url: str, seed: Seed | None = None, *, pool_size: int = 50) -> None:
        # A request waits (up to 5 s) for a free connection rather than failing at once.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=5, socket_timeout=5, socket_connect_timeout=5
        )
        self._redis: Any = redis.Redis(connection_pool=pool)
        self._seed = seed
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(str(exc)) from exc

    def _keys(self, scopes: tuple[Scope, ...], now: float) -> list[str]:
        keys: list[str] = []
        for scope in scopes:
            keys.append(f"{_PREFIX}rate:{scope.label}")
            if scope.budget is not None:
                keys.append(f"{_PREFIX}budget:{budget_key(scope, scope.budget, now)[0]}")
            else:
                keys.append(f"{_PREFIX}budget:{scope.label}:none")
        return keys

    async def admit(self, ask: Ask) -> Decision:
        now = time.time()
        keys = self._keys(ask.scopes, now)
        seeds = [""] * len(ask.scopes)
        for _ in range(2):
            args: list[Any] = [ask.request_id, ask.tokens, ask.cost_nusd, len(ask.scopes)]
            for scope, seed in zip(ask.scopes, seeds, strict=True):
                limit, budget = scope.rate_limit, scope.budget
                end = budget_key(scope, budget, now)[2] if budget is not None else None
                args += [
                    limit.rpm if limit is not None and limit.rpm is not None else "",
                    limit.tpm if limit is not None and limit.tpm is not None else "",
                    nusd(budget.max_usd) if budget is not None else "",
                    int(end - now) + _GRACE_S if end is not None else 0,
                    seed,
                ]
            args.append(RESERVATION_TTL_S)
            reply = await self._run(self._admit, keys, args)
            if reply[0] != b"seed":
                return _decision(reply, ask.scopes)
            for index in reply[1]:
                scope = ask.scopes[int(index) - 1]
                assert scope.budget is not None
                start = budget_key(scope, scope.budget, now)[1]
                seeds[int(index) - 1] = str(await self._seed(scope, start) if self._seed else 0)
        raise CountersUnavailable("the budget counters could not be seeded")

    async def settle(self, done: Settlement) -> None:
        keys = self._keys(done.scopes, time.time())
        args: list[Any] = [
            done.request_id,
            done.second,
            done.token_delta,
            done.cost_nusd,
            len(done.scopes),
        ]
        for scope in done.scopes:
            args += [int(scope.rate_limit is not None), int(scope.budget is not None)]
        await self._run(self._settle, keys, args)

    async def spend(self, scope: Scope) -> Spend | None:
        if scope.budget is None:
            return None
        now = time.time()
        name, start, end = budget_key(scope, scope.budget, now)
        try:
            fields = await self._redis.hgetall(f"{_PREFIX}budget:{name}")
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(str(exc)) from exc
        spent = int(fields.get(b"spent", 0))
        if b"spent" not in fields and self._seed is not None:
            spent = await self._seed(scope, start)
        reserved = 0
        for field, value in fields.items():
            if field.startswith(b"x:"):
                amount, _, until = value.partition(b":")
                if float(until) > now:
                    reserved += int(amount)
        return Spend(
            period_start=start,
            period_end=end,
            spent_usd=spent / NANO,
            reserved_usd=reserved / NANO,
        )

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(str(exc)) from exc


def _window(limit: int, remaining: int, reset_ms: int) -> Window | None:
    return None if limit < 0 else Window(limit, remaining, reset_ms / 1000)


def _decision(reply: list[Any], scopes: tuple[Scope, ...]) -> Decision:
    if reply[0] == b"ok":
        return Decision(
            ok=True,
            second=int(reply[1]),
            requests=_window(int(reply[2]), int(reply[3]), int(reply[4])),
            tokens=_window(int(reply[5]), int(reply[6]), int(reply[7])),
        )
    what = reply[1].decode()
    scope = scopes[int(reply[2]) - 1]
    reset = int(reply[3]) / 1000
    limit = scope.rate_limit
    requests = tokens = None
    if limit is not None and limit.rpm is not None:
        requests = Window(limit.rpm, max(0, limit.rpm - int(reply[4])), reset)
    if limit is not None and limit.tpm is not None:
        tokens = Window(limit.tpm, max(0, limit.tpm - int(reply[5])), reset)
    return Decision(
        ok=False,
        refused=what,
        scope=scope,
        retry_after_s=reset,
        requests=requests if what != "budget" else None,
        tokens=tokens if what != "budget" else None,
    )
