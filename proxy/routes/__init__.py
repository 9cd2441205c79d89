"""Route tables: thin handlers per API family."""

from __future__ import annotations

from aiohttp import web

from proxy.routes import admin_usage, health, metrics, openai, responses

__all__ = ["setup_routes"]


def setup_routes(app: web.Application) -> None:
    openai.setup(app)
    responses.setup(app)
    health.setup(app)
    metrics.setup(app)
    admin_usage.setup(app)
