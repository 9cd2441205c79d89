"""``create_app``: wiring only: the middleware chain, the routes, and the app's resources."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from functools import partial

from aiohttp import web

from middlewares import build_chain
from middlewares.govern import add_rate_headers
from providers._upstream import HTTP_SESSION, Upstream, open_session
from providers.registry import PROVIDERS, build_registry
from proxy.config import GatewayConfig
from proxy.governance.service import Governance
from proxy.keys import (
    CONFIG,
    DIRECTORY,
    DRAINING,
    GOVERNANCE,
    LIMITS,
    PRICING,
    RELIABILITY,
    STORE,
)
from proxy.limits import Limits
from proxy.logging import RequestLine
from proxy.metrics import METRICS, Metrics
from proxy.pricing import Pricing
from proxy.reliability import Reliability
from proxy.respond.handlers import BACKGROUND
from proxy.respond.worker import BackgroundWorker
from proxy.routes import setup_routes
from proxy.routes.openai import MODEL_CATALOG, ModelCatalog
from proxy.store import open_store
from proxy.usage import USAGE_WRITER, UsageWriter

__all__ = ["create_app"]


def create_app(
    config: GatewayConfig,
    *,
    env: Mapping[str, str] | None = None,
    debug: bool = False,
    request_line: RequestLine | None = None,
) -> web.Application:
    """The gateway app; ``request_line`` writes the canonical log line (default: structlog)."""
    metrics = Metrics.from_environ()
    pricing = Pricing(config)
    app = web.Application(
        middlewares=build_chain(
            config, debug=debug, request_line=request_line, metrics=metrics, pricing=pricing
        ),
        client_max_size=config.server.max_body_bytes,
    )
    app[CONFIG] = config
    app[PRICING] = pricing
    app[DRAINING] = asyncio.Event()
    app[RELIABILITY] = Reliability(config)
    app[LIMITS] = Limits.from_config(config.providers)
    app[METRICS] = metrics
    setup_routes(app)
    app.cleanup_ctx.append(partial(_resources, env=os.environ if env is None else env))
    app.on_response_prepare.append(add_rate_headers)
    app.on_shutdown.append(_start_draining)
    return app


async def _resources(app: web.Application, *, env: Mapping[str, str]) -> AsyncIterator[None]:
    """What lives as long as the server: the upstream session, the providers, the store, the
    usage writer, governance and the background worker; stopped in the order that loses
    nothing."""
    config, metrics, pricing = app[CONFIG], app[METRICS], app[PRICING]
    async with open_session() as session:
        upstream = Upstream(session, answered=metrics.upstream_answered)
        registry = build_registry(config, upstream, env)
        app[HTTP_SESSION] = session
        app[PROVIDERS] = registry
        app[DIRECTORY] = registry.directory
        app[MODEL_CATALOG] = ModelCatalog(
            {name: p.models_cache_ttl_s for name, p in config.providers.items()}
        )
        store = app[STORE] = await open_store(config.store)
        usage = app[USAGE_WRITER] = UsageWriter(store, config.usage)
        metrics.usage = usage
        governance = app[GOVERNANCE] = Governance(config, store)
        worker = app[BACKGROUND] = BackgroundWorker(
            store,
            registry,
            registry.directory,
            config.store,
            reliability=app[RELIABILITY],
            routes=config.routes,
            usage=usage,
            pricing=pricing,
            governance=governance,
        )
        try:
            await governance.start()
            await usage.start()
            await worker.start()
            yield
        finally:
            # The worker's last runs are accounted, then every record is written, before
            # the store closes.
            await worker.stop()
            await usage.stop()
            await registry.aclose()
            await governance.close()
            await store.close()


async def _start_draining(app: web.Application) -> None:
    app[DRAINING].set()
