"""The OpenAI-compatible API under ``/v1``."""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog
from aiohttp import web

from providers.base import ModelInfo, Provider
from providers.registry import PROVIDERS
from proxy.dispatch import dispatch
from proxy.errors import GatewayError, NotFoundError
from proxy.governance.model import Grant, allowed
from proxy.keys import GRANT
from proxy.operations import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    LIST_MODELS,
    SPEECH,
    TRANSCRIPTION,
    add_endpoint,
)
from proxy.schemas.models import Model, ModelList

__all__ = ["MODEL_CATALOG", "ModelCatalog", "setup"]

log = structlog.get_logger("thruway.models")
_encode = msgspec.json.Encoder().encode


class ModelCatalog:
    """Each provider's model list, fetched upstream and kept for the provider's cache TTL.

    Concurrent requests share one fetch per provider. A provider whose list cannot be fetched
    contributes its last good list (or nothing) and a warning, never a failed response.
    """

    def __init__(self, ttls: dict[str, float]) -> None:
        self._ttls = ttls
        self._lists: dict[str, tuple[float, list[ModelInfo]]] = {}
        self._fetches: dict[str, asyncio.Task[list[ModelInfo]]] = {}

    async def models(self, provider: Provider) -> list[ModelInfo]:
        cached = self._lists.get(provider.name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._fetches.get(provider.name)
        if task is None:
            task = asyncio.ensure_future(self._fetch(provider))
            self._fetches[provider.name] = task
            task.add_done_callback(lambda _t: self._fetches.pop(provider.name, None))
        # Shielded: one caller's disconnect must not cancel the fetch others wait on.
        return await asyncio.shield(task)

    async def _fetch(self, provider: Provider) -> list[ModelInfo]:
        try:
            got = await provider.list_models()
        except GatewayError as exc:
            log.warning("model_list_failed", provider=provider.name, error=exc.message)
            stale = self._lists.get(provider.name)
            return stale[1] if stale else []
        ttl = self._ttls.get(provider.name, 300.0)
        self._lists[provider.name] = (time.monotonic() + ttl, got)
        return got


MODEL_CATALOG = web.AppKey("model_catalog", ModelCatalog)


async def list_models(request: web.Request) -> web.Response:
    registry = request.app[PROVIDERS]
    catalog = request.app[MODEL_CATALOG]
    providers = list(registry.providers.values())
    lists = await asyncio.gather(*(catalog.models(p) for p in providers))
    data = [
        Model(id=f"{p.name}/{m.id}", created=m.created, owned_by=m.owned_by or p.name)
        for p, models in zip(providers, lists, strict=True)
        for m in models
    ]
    grant = request.get(GRANT)
    if grant is not None:
        data = [m for m in data if _may_use(grant, m.id)]
    return web.Response(body=_encode(ModelList(data=data)), content_type="application/json")


async def retrieve_model(request: web.Request) -> web.Response:
    """One model by its ``provider/model`` id, from the same cached lists."""
    model_id = request.match_info["model"]
    provider_name, _, name = model_id.partition("/")
    provider = request.app[PROVIDERS].providers.get(provider_name)
    grant = request.get(GRANT)
    if provider is not None and (grant is None or _may_use(grant, model_id)):
        for m in await request.app[MODEL_CATALOG].models(provider):
            if m.id == name:
                found = Model(id=model_id, created=m.created, owned_by=m.owned_by or provider_name)
                return web.Response(body=_encode(found), content_type="application/json")
    raise NotFoundError(
        f"The model `{model_id}` does not exist or is not listed by its provider.",
        param="model",
        code="model_not_found",
    )


def _may_use(grant: Grant, model_id: str) -> bool:
    """Whether a virtual key (and its team) may use a model: ``/v1/models`` lists only those."""
    return all(allowed(model_id, models, providers) for models, providers, _ in grant.allow_lists)


def setup(app: web.Application) -> None:
    for path, op in (
        ("/v1/chat/completions", CHAT),
        ("/v1/completions", COMPLETION),
        ("/v1/embeddings", EMBEDDING),
        ("/v1/audio/speech", SPEECH),
        ("/v1/audio/transcriptions", TRANSCRIPTION),
    ):
        add_endpoint(app, "POST", path, op, dispatch)
    add_endpoint(app, "GET", "/v1/models", LIST_MODELS, list_models)
    add_endpoint(app, "GET", "/v1/models/{model:.+}", LIST_MODELS, retrieve_model)
