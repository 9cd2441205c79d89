"""Who is calling: the master key (compared in constant time) or a virtual key (looked up by
its digest); 401 for a missing or unknown key, 403 for a virtual key on the admin API.

Without a master key and before any virtual key exists, inference routes are open (a sidecar on
loopback) whatever key a client sends. Admin routes (``ADMIN``) need the master key when one is
configured; the keys-and-teams API (``KEY_ADMIN``) needs one in every case.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import AuthenticationError, PermissionDeniedError
from proxy.keys import GOVERNANCE, GRANT, OWNER, PRINCIPAL, Principal
from proxy.operations import ADMIN, KEY_ADMIN, operation_of

__all__ = ["auth_middleware", "owner_of_key", "presented_key"]

_MISSING = (
    "Missing API key: send the gateway key as `Authorization: Bearer <key>`, "
    "or as the `x-api-key` or `x-goog-api-key` header."
)


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


def auth_middleware(*, master_key: str) -> Middleware:
    expected = master_key.encode() if master_key else None
    # The master key's owner digest is computed once.
    master_owner = owner_of_key(master_key) if master_key else ""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = operation_of(request)
        if op is None:
            return await handler(request)
        key = presented_key(request)
        if expected is not None and key is not None and hmac.compare_digest(key.encode(), expected):
            request[OWNER] = master_owner
            return await handler(request)
        if op is KEY_ADMIN and expected is None:
            raise PermissionDeniedError(
                "The admin API of keys and teams needs a master key: set `auth.master_key`."
            )
        governance = request.app[GOVERNANCE]
        if (
            expected is None
            and op is not KEY_ADMIN
            and (governance.no_keys_known() or not await governance.keys_exist())
        ):
            return await handler(request)  # open: no master key, no virtual key yet
        if key is None:
            raise AuthenticationError(_MISSING)
        grant = await governance.grant(key)
        if grant is None:
            raise AuthenticationError("Invalid API key.")
        if op is ADMIN or op is KEY_ADMIN:
            raise PermissionDeniedError("The admin API needs the master key, not a virtual key.")
        if grant.key.disabled:
            raise AuthenticationError("This API key is disabled.")
        if grant.key.expires_at is not None and grant.key.expires_at <= time.time():
            raise AuthenticationError("This API key has expired.")
        request[GRANT] = grant
        request[PRINCIPAL] = Principal(
            key_id=grant.key.id, key_name=grant.key.name, team_id=grant.key.team
        )
        # By the key's id, not its secret: what it stored stays its own after a rotation.
        request[OWNER] = owner_of_key("key:" + grant.key.id)
        return await handler(request)

    return auth
