"""``GET /health``: liveness, and which providers can serve."""

from __future__ import annotations

import msgspec
from aiohttp import web

from proxy.keys import DIRECTORY

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


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health, allow_head=True)
