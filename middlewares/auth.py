"""The gateway key on inference routes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import AuthenticationError
from proxy.keys import OWNER
from proxy.operations import operation_of

__all__ = ["auth_middleware", "owner_of_key", "presented_key"]


def owner_of_key(key: str) -> str:
    """The owner of what a key's requests store: a digest, so the key itself is never stored."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def presented_key(request: web.Request) -> str | None:
    """The key a client sent: ``Authorization: Bearer`` (OpenAI SDKs, some Anthropic SDK
    versions), ``x-api-key`` (Anthropic SDKs) or ``x-goog-api-key`` (Google GenAI SDKs)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or request.headers.get("x-goog-api-key") or None


def auth_middleware(*, master_key: str) -> Middleware | None:
    """``None`` (no middleware) when no master key is configured: a sidecar on loopback."""
    if not master_key:
        return None
    expected = master_key.encode()
    # The only key that passes is the master key: its owner digest is computed once.
    owner = owner_of_key(master_key)

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if operation_of(request) is None:
            return await handler(request)
        key = presented_key(request)
        if key is None:
            raise AuthenticationError(
                "Missing API key: send the gateway key as `Authorization: Bearer <key>` "
                "or as the `x-api-key` header."
            )
        if not hmac.compare_digest(key.encode(), expected):
            raise AuthenticationError("Invalid API key.")
        request[OWNER] = owner
        return await handler(request)

    return auth
