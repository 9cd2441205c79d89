"""Every key under which the app and a request share data: the contract between the middlewares
and the handlers.

App keys are set once at start-up; request keys are written by the middleware named beside them
and read further in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from proxy.config import GatewayConfig
from proxy.governance.model import Grant
from proxy.governance.service import Governance
from proxy.limits import Limits
from proxy.operations import Inbound, Target
from proxy.pricing import Pricing
from proxy.reliability import Reliability
from proxy.schemas.common import BilledUsage
from proxy.store.base import Store

__all__ = [
    "ATTEMPT",
    "BODY",
    "CONFIG",
    "DEFER_SETTLEMENT",
    "DIRECTORY",
    "DRAINING",
    "GOVERNANCE",
    "GRANT",
    "LIMITS",
    "OUTCOME",
    "OWNER",
    "PRICING",
    "PRINCIPAL",
    "RATE_HEADERS",
    "RELIABILITY",
    "REQUEST_ID",
    "STORE",
    "TARGET",
    "AttemptState",
    "Directory",
    "Outcome",
    "Principal",
]


class Directory(msgspec.Struct, frozen=True):
    """Which providers can serve requests, and why the others cannot."""

    available: frozenset[str]
    unavailable: dict[str, str] = {}


class Outcome(msgspec.Struct):
    """What happened to one request, filled in as it passes inward and read for the canonical log
    line and ``extra_fields``.
    """

    started: float = msgspec.field(default_factory=time.perf_counter)
    model_requested: str = ""
    provider: str = ""
    model: str = ""
    stream: bool = False
    attempts: int = 0
    fallback_index: int = 0
    usage: BilledUsage | None = None
    ttfb_ms: float | None = None
    failures: list[str] = []
    client_disconnected: bool = False
    # Extra fields for the canonical log line (accounting, written by the usage middleware).
    log_fields: dict[str, int | float | str] = {}

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


class Principal(msgspec.Struct, frozen=True):
    """Who a request is from: the virtual key that authenticated it, and its team; both ``None``
    for the master key or a gateway without auth."""

    key_id: str | None = None
    key_name: str | None = None
    team_id: str | None = None


CONFIG = web.AppKey("config", GatewayConfig)
# Set when the server starts shutting down (before in-flight requests are drained).
DRAINING = web.AppKey("draining", asyncio.Event)
# Written by the app at start-up from the provider registry.
DIRECTORY = web.AppKey("directory", Directory)
# Each provider's bounded load (``max_in_flight``, ``max_queue``) and its count in flight.
LIMITS = web.AppKey("limits", Limits)
# Each model's price (the shipped table and the config's overrides), for costs.
PRICING = web.AppKey("pricing", Pricing)
# The durable store (stored responses, background jobs, conversations), opened at start-up.
STORE = web.AppKey("store", Store)

REQUEST_ID = web.RequestKey("request_id", str)  # request_context
OUTCOME = web.RequestKey("outcome", Outcome)  # request_context creates; everyone fills in
BODY = web.RequestKey("body", Inbound)  # decode
# Who stored data belongs to: a digest of the caller's key (auth); absent without auth.
OWNER = web.RequestKey("owner", str)  # auth
TARGET = web.RequestKey("target", Target)  # fallback, once per attempt
PRINCIPAL = web.RequestKey("principal", Principal)  # auth
# A virtual key's grant: what it may use and the limits it counts against (auth).
GRANT = web.RequestKey("grant", Grant)  # auth
# Set by a handler whose work goes on after the response (a background response): ``govern``
# leaves its budget reservation open, and whoever finishes the work settles it.
DEFER_SETTLEMENT = web.RequestKey("defer_settlement", bool)
# The ``x-ratelimit-*`` headers of a limited key, added to whatever response goes out (govern).
RATE_HEADERS = web.RequestKey("rate_headers", dict[str, str])  # govern
# Virtual keys, teams and the rate-limit and budget counters, opened at start-up.
GOVERNANCE = web.AppKey("governance", Governance)


class AttemptState(msgspec.Struct):
    """One attempt as the fallback middleware sets it up for the terminal handler: the keys
    to avoid and the client's time limit; the handler writes back the key the provider used."""

    avoid_key: Callable[[int], bool] | None = None
    timeout_s: float | None = None
    key: int | None = None
    # A route's hedge: after this many seconds without a first byte, the terminal handler
    # also tries this target; it writes the target to ``hedged`` when it did.
    hedge: tuple[float, Target] | None = None
    hedged: Target | None = None


ATTEMPT = web.RequestKey("attempt", AttemptState)  # fallback, once per attempt
# What the gateway learns of its upstreams (breakers, key cooldowns, latency, load).
RELIABILITY = web.AppKey("reliability", Reliability)
