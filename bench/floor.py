"""The floor: a bare aiohttp + msgspec + uvloop pass-through, with no auth and no accounting.

``python -m bench.floor --port N --upstream URL`` forwards ``POST /v1/chat/completions`` to
``URL/v1/chat/completions`` over one pooled ``ClientSession`` and relays the answer (a stream
chunk by chunk). It is what the gateway would be with every feature taken out, so the gateway's
rows can be read against it as well as against the upstream itself.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import uvloop
from aiohttp import web

__all__ = ["main", "make_app"]

_SESSION = web.AppKey("session", aiohttp.ClientSession)
_UPSTREAM = web.AppKey("upstream", str)


class _Model(msgspec.Struct):
    model: str


_decode = msgspec.json.Decoder(_Model).decode


async def _relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    _decode(body)  # one msgspec decode, as a gateway must at least read the model
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-upstream"}
    async with request.app[_SESSION].post(
        request.app[_UPSTREAM], data=body, headers=headers
    ) as upstream:
        if upstream.content_type != "text/event-stream":
            data = await upstream.read()
            return web.Response(body=data, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[_UPSTREAM] = upstream.rstrip("/") + "/v1/chat/completions"

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            app[_SESSION] = s
            yield

    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", _relay)
    app.router.add_get("/health", _health)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.floor", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the upstream's root URL")
    args = p.parse_args(argv)
    web.run_app(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
