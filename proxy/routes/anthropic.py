"""Anthropic's Messages API under ``/anthropic`` (handlers in :mod:`proxy.native.anthropic`), so
that the Anthropic SDKs and Claude Code work unchanged with ``base_url`` (or
``ANTHROPIC_BASE_URL``) set to ``http://<gateway>/anthropic``.

``GET /anthropic/v1/models`` lists, in Anthropic's page shape (``data``, ``has_more``,
``first_id``, ``last_id``; ``limit``, ``after_id`` and ``before_id`` as Anthropic takes them),
the Anthropic family provider's models by their bare ids and every other provider's as
``provider/model``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

import msgspec
from aiohttp import web

from providers.registry import PROVIDERS
from proxy.errors import InvalidRequestError, NotFoundError
from proxy.keys import CONFIG
from proxy.native import anthropic as h
from proxy.operations import add_endpoint
from proxy.routes.openai import MODEL_CATALOG

__all__ = ["setup"]

_encode = msgspec.json.Encoder().encode


class _Model(msgspec.Struct):
    id: str
    display_name: str
    created_at: str
    type: Literal["model"] = "model"


class _Page(msgspec.Struct):
    data: list[_Model]
    has_more: bool
    first_id: str | None
    last_id: str | None


async def _models(request: web.Request) -> list[_Model]:
    registry = request.app[PROVIDERS]
    catalog = request.app[MODEL_CATALOG]
    family = h.family_provider(request.app[CONFIG])
    providers = list(registry.providers.values())
    lists = await asyncio.gather(*(catalog.models(p) for p in providers))
    out: list[_Model] = []
    for provider, models in zip(providers, lists, strict=True):
        for m in models:
            name = m.id if provider.name == family else f"{provider.name}/{m.id}"
            created = datetime.fromtimestamp(m.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(_Model(id=name, display_name=m.id, created_at=created))
    return out


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", "20")
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise InvalidRequestError(
            f"`limit` must be an integer from 1 to 1000, got `{text}`.", param="limit"
        )
    return limit


async def list_models(request: web.Request) -> web.Response:
    models = await _models(request)
    limit = _limit(request)
    ids = [m.id for m in models]
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if before:
        end = ids.index(before) if before in ids else len(ids)
        page = models[max(end - limit, 0) : end]
        more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after in ids else 0
        page = models[start : start + limit]
        more = start + limit < len(models)
    first = page[0].id if page else None
    last = page[-1].id if page else None
    body = _encode(_Page(data=page, has_more=more, first_id=first, last_id=last))
    return web.Response(body=body, content_type="application/json")


async def retrieve_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model"]
    for m in await _models(request):
        if m.id == model_id:
            return web.Response(body=_encode(m), content_type="application/json")
    error = InvalidRequestError(f"model: {model_id}", param="model", code="model_not_found")
    error.status = 404
    raise error


async def _unknown(request: web.Request) -> web.Response:
    raise NotFoundError(
        f"{request.method} {request.path} is not a route of Anthropic's API here: the gateway "
        "serves /anthropic/v1/messages, /anthropic/v1/messages/count_tokens and "
        "/anthropic/v1/models."
    )


def setup(app: web.Application) -> None:
    add_endpoint(app, "POST", "/anthropic/v1/messages", h.ANTHROPIC_MESSAGES, h.messages)
    add_endpoint(
        app,
        "POST",
        "/anthropic/v1/messages/count_tokens",
        h.ANTHROPIC_COUNT_TOKENS,
        h.count_tokens,
    )
    add_endpoint(app, "GET", "/anthropic/v1/models", h.ANTHROPIC_MODELS, list_models)
    add_endpoint(app, "GET", "/anthropic/v1/models/{model:.+}", h.ANTHROPIC_MODELS, retrieve_model)
    # Last: any other path under /anthropic is Anthropic's 404, in its shape.
    add_endpoint(app, "*", "/anthropic/{tail:.*}", h.ANTHROPIC_OTHER, _unknown)
