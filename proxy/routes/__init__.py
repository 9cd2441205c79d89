"""Route tables: thin handlers per API family."""

from __future__ import annotations

from aiohttp import web

from proxy.routes import genai, health, metrics, openai, responses

__all__ = ["setup_routes"]


def setup_routes(app: web.Application) -> None:
    openai.setup(app)
    responses.setup(app)
    genai.setup(app)
    health.setup(app)
    metrics.setup(app)
