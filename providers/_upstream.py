"""The I/O seam: every byte a provider sends or receives passes through :class:`Upstream`.

Client-library failures become gateway errors here, once (``map_client_errors``): timeouts are 504
``upstream_timeout``, refused or dropped connections 502 ``upstream_unreachable``; both allow a
fallback. A non-2xx status is returned to the provider, which knows its error format.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.errors import GatewayError, UpstreamConnectionError, UpstreamTimeoutError

__all__ = [
    "HTTP_SESSION",
    "Upstream",
    "forwardable_headers",
    "map_client_errors",
    "open_session",
    "proxy_for",
    "release_when_done",
]

HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)

# Hop-by-hop and framing headers the gateway sets itself.
_DROP_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-encoding",
        "content-type",
        "date",
        "keep-alive",
        "server",
        "set-cookie",
        "transfer-encoding",
        "vary",
        "alt-svc",
        "cf-ray",
        "cf-cache-status",
        "strict-transport-security",
    }
)


class map_client_errors:
    """Re-raise aiohttp's and asyncio's exceptions as the gateway's, naming the provider.

    A class rather than ``@contextmanager``: it runs twice per request, and a generator-based
    context manager costs a generator object each time.
    """

    __slots__ = ("_provider",)

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, GatewayError):
            return
        mapped = _map(exc, self._provider)
        if mapped is not None:
            raise mapped from exc


def _map(exc: BaseException, provider: str) -> GatewayError | None:
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError(f"Provider `{provider}` did not answer in time.")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectionError(
            f"Provider `{provider}` closed the connection before the response was complete."
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamConnectionError(
            f"Provider `{provider}` closed the connection without a response."
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectionError(
            f"Cannot connect to provider `{provider}` at {exc.host}:{exc.port}: "
            f"{exc.strerror or exc.os_error}"
        )
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return UpstreamConnectionError(
            f"Connection to provider `{provider}` failed: {type(exc).__name__}."
        )
    return None


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The HTTP proxy for an upstream URL from the standard variables, honouring NO_PROXY.

    Loopback upstreams (local model servers) are never proxied.
    """
    lowered = {k.lower(): v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return None
    no_proxy = [h.strip().lstrip(".").lower() for h in lowered.get("no_proxy", "").split(",")]
    if "*" in no_proxy or any(h and (host == h or host.endswith("." + h)) for h in no_proxy):
        return None
    return lowered.get(f"{parts.scheme}_proxy") or lowered.get("all_proxy") or None


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream's response headers worth passing to the client (rate limits, processing time).

    The upstream's request id is kept as ``x-thruway-upstream-request-id``: ``x-request-id`` is the
    gateway's own.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower == "x-request-id":
            out["x-thruway-upstream-request-id"] = value
        elif lower not in _DROP_RESPONSE_HEADERS:
            out[name] = value
    return out


class Upstream:
    """Requests over the app's shared, pooled ``ClientSession``."""

    __slots__ = ("_session",)

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def open(
        self,
        method: str,
        url: str | URL,
        *,
        provider: str,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        data: Any = None,
        proxy: str | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request and return once the response headers are in; the caller releases it.

        A ``yarl.URL`` made with ``encoded=True`` goes out byte for byte (a signed request); a
        string is normalised by yarl first (``%3A`` becomes ``:``).
        """
        with map_client_errors(provider):
            return await self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=timeout,
                allow_redirects=False,
                proxy=proxy,
            )

    @staticmethod
    async def read(resp: aiohttp.ClientResponse, provider: str) -> bytes:
        with map_client_errors(provider):
            return await resp.read()

    @staticmethod
    async def chunks(resp: aiohttp.ClientResponse, provider: str) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, in whatever pieces the network delivers."""
        with map_client_errors(provider):
            async for chunk in resp.content.iter_any():
                yield chunk


@contextlib.asynccontextmanager
async def open_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The app's upstream session: pooled keep-alive connections, no cookie jar, DNS cached."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
        # Not trust_env: it re-reads the proxy variables and ~/.netrc (in a thread) on every
        # request. Proxies are resolved once per provider instead (``proxy_for``).
        trust_env=False,
    )
    try:
        yield session
    finally:
        await session.close()
        # Give SSL transports a moment to close cleanly (aiohttp's documented shutdown advice).
        await asyncio.sleep(0)


def release_when_done(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    """A closer that returns the connection to the pool when the body was read to the end, and
    drops it otherwise (a half-read body cannot be reused)."""

    async def close() -> None:
        if resp.content.at_eof():
            resp.release()
        else:
            resp.close()

    return close
