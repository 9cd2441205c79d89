"""Route tables: thin handlers per API family."""

from __future__ import annotations

from aiohttp import web

from proxy.routes import (
    admin,
    admin_usage,
    anthropic,
    bedrock,
    genai,
    health,
    metrics,
    openai,
    openai_native,
    responses,
)

__all__ = ["setup_routes"]


def setup_routes(app: web.Application) -> None:
    openai.setup(app)
    responses.setup(app)
    anthropic.setup(app)
    genai.setup(app)
    bedrock.setup(app)
    openai_native.setup(app)
    health.setup(app)
    metrics.setup(app)
    admin.setup(app)
    admin_usage.setup(app)
