"""What the drop-in routes share: the gateway's headers on a reply, and a call to a provider with
the fallback middleware's set-up of the attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from providers.base import Call, Provider, Reply
from proxy.keys import ATTEMPT, OUTCOME, REQUEST_ID, TARGET
from proxy.operations import Inbound, Target

__all__ = ["call_for", "gateway_headers", "keyed", "send"]

_T = TypeVar("_T")


def gateway_headers(request: web.Request, target: Target) -> dict[str, str]:
    """``x-request-id`` and the ``x-thruway-*`` headers, as ``/v1`` replies carry them."""
    outcome = request[OUTCOME]
    return {
        "x-request-id": request[REQUEST_ID],
        "x-thruway-provider": target.provider,
        "x-thruway-model": target.model,
        "x-thruway-attempts": str(outcome.attempts),
        "x-thruway-fallback-index": str(target.index),
        "x-thruway-latency-ms": f"{outcome.elapsed_ms():.3f}",
    }


def call_for(request: web.Request, inbound: Inbound, target: Target | None = None) -> Call:
    """One attempt at ``target`` (default: the fallback middleware's) carrying ``inbound``."""
    attempt = request.get(ATTEMPT)
    return Call(
        inbound=inbound,
        target=target or request[TARGET],
        request_id=request[REQUEST_ID],
        client_headers=request.headers,
        avoid_key=attempt.avoid_key if attempt is not None else None,
        timeout_s=attempt.timeout_s if attempt is not None else None,
    )


async def send(request: web.Request, provider: Provider, call: Call) -> Reply:
    """``provider.send``, telling the fallback middleware which key it used."""
    return await keyed(request, call, provider.send)


async def keyed(request: web.Request, call: Call, fn: Callable[[Call], Awaitable[_T]]) -> _T:
    """``fn(call)`` (a send, a token count), telling the fallback middleware which key the
    provider used."""
    attempt = request.get(ATTEMPT)
    try:
        return await fn(call)
    finally:
        if attempt is not None:
            attempt.key = call.key
