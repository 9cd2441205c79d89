"""The Google GenAI API under ``/genai/{v1,v1beta,v1alpha}`` (the google-genai SDK with
``http_options.base_url`` set to the gateway's ``/genai``). The model methods are in
:mod:`proxy.native.genai`; the model list (every provider's models, named ``models/provider/id``)
is here."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from providers.gemini.answer import error_body
from providers.registry import PROVIDERS
from proxy.errors import InvalidRequestError, NotFoundError
from proxy.native.genai import (
    GENAI_BATCH_EMBED,
    GENAI_COUNT_TOKENS,
    GENAI_EMBED,
    GENAI_GENERATE,
    GENAI_STREAM,
    count_tokens,
    embed,
    family_model,
    generate,
)
from proxy.operations import Operation, add_endpoint
from proxy.routes.openai import MODEL_CATALOG

__all__ = ["GENAI_MODELS", "GENAI_UNKNOWN", "setup"]

_encode = msgspec.json.Encoder().encode
_VERSION = "{version:v1|v1beta|v1alpha}"
# Listing models; and every other /genai path, answered 404 in Google's shape.
GENAI_MODELS = Operation("list_models", "none", routed=False, render_error=error_body)
GENAI_UNKNOWN = Operation("genai_unknown", "none", routed=False, render_error=error_body)
_MAX_PAGE = 1000


class _Model(msgspec.Struct, rename="camel", omit_defaults=True):
    name: str
    display_name: str
    supported_generation_methods: list[str]
    base_model_id: str = ""


class _ModelPage(msgspec.Struct, rename="camel", omit_defaults=True):
    models: list[_Model]
    next_page_token: str = ""


def _methods(model_id: str) -> list[str]:
    if "embed" in model_id:
        return ["embedContent", "batchEmbedContents"]
    return ["generateContent", "streamGenerateContent", "countTokens"]


async def _all_models(request: web.Request) -> list[_Model]:
    registry = request.app[PROVIDERS]
    catalog = request.app[MODEL_CATALOG]
    providers = list(registry.providers.values())
    lists = await asyncio.gather(*(catalog.models(p) for p in providers))
    return [
        _Model(
            name=f"models/{p.name}/{m.id}",
            display_name=m.id,
            supported_generation_methods=_methods(m.id),
            base_model_id=m.id,
        )
        for p, models in zip(providers, lists, strict=True)
        for m in models
    ]


def _page_size(request: web.Request) -> int:
    text = request.query.get("pageSize") or request.query.get("page_size") or "50"
    try:
        size = int(text)
    except ValueError:
        raise InvalidRequestError(
            f"`pageSize` must be a whole number, got `{text}`.", param="pageSize"
        ) from None
    return min(max(size, 1), _MAX_PAGE)


async def list_models(request: web.Request) -> web.Response:
    """Every provider's models as ``models/provider/id``, in pages (``pageSize``,
    ``pageToken``: the offset of the next page)."""
    models = await _all_models(request)
    size = _page_size(request)
    token = request.query.get("pageToken") or request.query.get("page_token") or "0"
    if not token.isdigit():
        raise InvalidRequestError("`pageToken` is not one this gateway gave.", param="pageToken")
    start = int(token)
    page = _ModelPage(models=models[start : start + size])
    if start + size < len(models):
        page.next_page_token = str(start + size)
    return web.Response(body=_encode(page), content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    """One model, by the name the list gives it (``provider/id``; a bare Gemini model is the
    Gemini provider's)."""
    wanted = family_model(request, request.match_info["model"])
    for model in await _all_models(request):
        if model.name == f"models/{wanted}":
            return web.Response(body=_encode(model), content_type="application/json")
    raise NotFoundError(
        f"Model `{wanted}` is not listed by any provider: name it as `provider/model`.",
        param="model",
        code="model_not_found",
    )


async def unknown(request: web.Request) -> web.Response:
    raise NotFoundError(f"Invalid URL ({request.method} {request.path}).")


def setup(app: web.Application) -> None:
    models = f"/genai/{_VERSION}/models"
    for method, op, handler in (
        ("generateContent", GENAI_GENERATE, generate),
        ("streamGenerateContent", GENAI_STREAM, generate),
        ("embedContent", GENAI_EMBED, embed),
        ("batchEmbedContents", GENAI_BATCH_EMBED, embed),
        ("countTokens", GENAI_COUNT_TOKENS, count_tokens),
    ):
        add_endpoint(app, "POST", f"{models}/{{model:.+}}:{method}", op, handler)
    add_endpoint(app, "GET", models, GENAI_MODELS, list_models)
    add_endpoint(app, "GET", f"{models}/{{model:.+}}", GENAI_MODELS, get_model)
    add_endpoint(app, "*", "/genai/{tail:.*}", GENAI_UNKNOWN, unknown)
