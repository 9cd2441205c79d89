"""``GET /metrics``: the Prometheus text format, open like ``/health`` (no master key)."""

from __future__ import annotations

from aiohttp import web

from proxy.metrics import CONTENT_TYPE, METRICS

__all__ = ["setup"]


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
