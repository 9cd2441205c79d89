"""``GET /health``: liveness, and which providers can serve; ``GET /api/health/providers``:
each provider's circuit breakers, keys cooling down, and load (behind the master key)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from proxy.keys import DIRECTORY, LIMITS, RELIABILITY
from proxy.operations import ADMIN, add_endpoint

__all__ = ["setup"]


class _Health(msgspec.Struct):
    status: str
    providers: list[str]
    unavailable: dict[str, str]


_encode = msgspec.json.Encoder().encode


async def health(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    body = _Health("ok", sorted(directory.available), dict(directory.unavailable))
    return web.Response(body=_encode(body), content_type="application/json")


async def provider_health(request: web.Request) -> web.Response:
    """Breakers (``closed``, ``open`` with the seconds until a probe, ``half_open``), keys out
    of rotation after a 401/403, and requests in flight and queued, per provider."""
    directory = request.app[DIRECTORY]
    names = sorted(directory.available | set(directory.unavailable))
    view = request.app[RELIABILITY].view(names)
    limits = request.app[LIMITS]
    for name, provider in view.providers.items():
        provider.in_flight = limits.in_flight(name)
        provider.queued = limits.queued(name)
    return web.Response(body=_encode(view), content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health, allow_head=True)
    add_endpoint(app, "GET", "/api/health/providers", ADMIN, provider_health)
