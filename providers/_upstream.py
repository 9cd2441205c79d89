"""The I/O seam: every byte a provider sends or receives passes through :class:`Upstream`.

Client-library failures become gateway errors here, once (``map_client_errors``): timeouts are 504
``upstream_timeout``, refused or dropped connections 502 ``upstream_unreachable``; both allow a
fallback. A non-2xx status is returned to the provider, which knows its error format.

Each provider's time limits (``ProviderConfig``: connect, response headers, first event, idle,
whole answer or stream) are built once into :class:`Timeouts`; every request gets an
:class:`Attempt` from it, capped by the client's own limit (``Call.timeout_s``), whose timeout
errors name the limit that fired and its value.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.config import ProviderConfig
from proxy.errors import GatewayError, UpstreamConnectionError, UpstreamTimeoutError

__all__ = [
    "CLIENT_LIMIT",
    "HTTP_SESSION",
    "Attempt",
    "Limit",
    "StreamAttempt",
    "Timeouts",
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


# --- time limits -------------------------------------------------------------------------------

# How a timeout error names the client's own limit (``Call.timeout_s``, from this header).
CLIENT_LIMIT = "x-thruway-timeout-ms"


class Limit(NamedTuple):
    """One time limit: its length, the setting that gave it, and what did not happen in time
    (a template with ``{s}`` for the length)."""

    seconds: float
    name: str
    missed: str

    def error(self, provider: str) -> UpstreamTimeoutError:
        missed = self.missed.format(s=float(self.seconds))
        return UpstreamTimeoutError(f"{provider}: {missed} ({self.name})")


def _limit(seconds: float | None, name: str, missed: str) -> Limit | None:
    return None if seconds is None else Limit(seconds, name, missed)


def _capped(limit: Limit | None, cap: float | None, missed: str | None = None) -> Limit | None:
    """``limit``, or the client's limit when that is shorter (or ``limit`` is unset)."""
    if cap is None or (limit is not None and limit.seconds <= cap):
        return limit
    return Limit(cap, CLIENT_LIMIT, missed or (limit.missed if limit else "no answer within {s} s"))


def _tighter(a: Limit | None, b: Limit | None) -> Limit | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.seconds <= b.seconds else b


_CONNECT = "no connection within {s} s"
_HEADERS = "no response headers within {s} s"
_ANSWER = "no complete answer within {s} s"
_FIRST = "no first event within {s} s"
_IDLE = "no data for {s} s"
_STREAM = "the stream did not end within {s} s"


class Timeouts:
    """One provider's time limits, built once from its settings; :meth:`json`, :meth:`stream`
    and :meth:`body` give one request's :class:`Attempt`, ``cap`` (the client's limit for the
    attempt, ``Call.timeout_s``) shortening every limit up to the answer's first event.

    - ``timeout_s``: a whole JSON answer (aiohttp's ``total``); for a stream, the default of
      ``idle_timeout_s``.
    - ``connect_timeout_s``: opening the connection (``sock_connect``).
    - ``headers_timeout_s``: until the response headers (``asyncio.timeout``: aiohttp has no
      such limit apart from ``total``).
    - ``first_token_timeout_s``: from the request to a stream's first event (a timer that fails
      the response's body); unset, the stream's first event is held to ``idle_timeout_s`` like
      any other.
    - ``idle_timeout_s``: the longest silence on a stream (``sock_read``).
    - ``stream_timeout_s``: a whole stream (aiohttp's ``total``).
    """

    __slots__ = (
        "_connect",
        "_first",
        "_headers",
        "_idle",
        "_json",
        "_stream_client",
        "_stream_total",
        "_total",
        "provider",
    )

    def __init__(self, provider: str, settings: ProviderConfig) -> None:
        self.provider = provider
        self._connect = Limit(settings.connect_timeout_s, "connect_timeout_s", _CONNECT)
        self._total = Limit(settings.timeout_s, "timeout_s", _ANSWER)
        self._headers = _limit(settings.headers_timeout_s, "headers_timeout_s", _HEADERS)
        self._first = _limit(settings.first_token_timeout_s, "first_token_timeout_s", _FIRST)
        if settings.idle_timeout_s is None:
            self._idle = Limit(settings.timeout_s, "timeout_s", _IDLE)
        else:
            self._idle = Limit(settings.idle_timeout_s, "idle_timeout_s", _IDLE)
        self._stream_total = _limit(settings.stream_timeout_s, "stream_timeout_s", _STREAM)
        self._json = self._json_attempt(None)
        # Before the first event the silence is the first-event timer's to judge when there
        # is one; then ``sock_read`` becomes the idle limit.
        self._stream_client = aiohttp.ClientTimeout(
            total=self._stream_total.seconds if self._stream_total else None,
            sock_connect=self._connect.seconds,
            sock_read=None if self._first else self._idle.seconds,
        )

    def json(self, cap: float | None = None) -> Attempt:
        """A request answered as a whole (JSON): ``timeout_s`` from start to end."""
        return self._json if cap is None else self._json_attempt(cap)

    def stream(self, cap: float | None = None) -> StreamAttempt:
        """A stream of events; its clock for the first event starts now."""
        connect = _capped(self._connect, cap)
        first = _capped(self._first, cap, _FIRST)
        read = None if self._first else self._idle
        client = self._stream_client
        if cap is not None:
            client = aiohttp.ClientTimeout(
                total=client.total,
                sock_connect=connect.seconds if connect else None,
                sock_read=read.seconds if read else None,
            )
        return StreamAttempt(
            self.provider,
            client,
            connect=connect,
            until_headers=_tighter(self._headers, first),
            read=read,
            total=self._stream_total,
            first=first,
            idle=self._idle,
        )

    def body(self, cap: float | None = None) -> Attempt:
        """A body forwarded as it arrives (audio, text): the stream's idle and whole-stream
        limits, without a first event to wait for."""
        connect = _capped(self._connect, cap)
        headers = _capped(self._headers, cap, _HEADERS)
        client = aiohttp.ClientTimeout(
            total=self._stream_total.seconds if self._stream_total else None,
            sock_connect=connect.seconds if connect else None,
            sock_read=self._idle.seconds,
        )
        return Attempt(
            self.provider,
            client,
            connect=connect,
            until_headers=headers,
            read=self._idle,
            total=self._stream_total,
        )

    def _json_attempt(self, cap: float | None) -> Attempt:
        connect = _capped(self._connect, cap)
        total = _capped(self._total, cap)
        headers = self._headers
        if headers is not None and total is not None and headers.seconds >= total.seconds:
            headers = None  # ``total`` fires first anyway
        client = aiohttp.ClientTimeout(
            total=total.seconds if total else None,
            sock_connect=connect.seconds if connect else None,
        )
        return Attempt(
            self.provider, client, connect=connect, until_headers=headers, read=None, total=total
        )


class Attempt:
    """The time limits of one request: the ``ClientTimeout`` it is sent with, the limit until
    its response headers, and, as a context manager around each read, the mapping of client
    errors to the gateway's, a timeout naming the limit that fired.

    Stateless, so a provider's JSON attempt without a client limit is shared by its requests.
    """

    __slots__ = ("client", "connect", "provider", "read", "total", "until_headers")

    def __init__(
        self,
        provider: str,
        client: aiohttp.ClientTimeout,
        *,
        connect: Limit | None,
        until_headers: Limit | None,
        read: Limit | None,
        total: Limit | None,
    ) -> None:
        self.provider = provider
        self.client = client
        self.connect = connect
        self.until_headers = until_headers
        # What ``sock_read`` (the longest silence) stands for now.
        self.read = read
        # What aiohttp's ``total`` stands for.
        self.total = total

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
        if isinstance(exc, TimeoutError):
            raise self.timed_out(exc) from exc
        mapped = _map(exc, self.provider)
        if mapped is not None:
            raise mapped from exc

    def timed_out(self, exc: TimeoutError) -> UpstreamTimeoutError:
        """The error for aiohttp's timeout ``exc``, naming the limit it enforced."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            limit = self.connect
        elif isinstance(exc, aiohttp.SocketTimeoutError):
            limit = self.read
        else:
            limit = self.total
        if limit is None:
            return UpstreamTimeoutError(f"Provider `{self.provider}` did not answer in time.")
        return limit.error(self.provider)

    def stop(self) -> None:
        """The response is given up before its body is used (an error status): no timer may
        outlive it."""
        return None


class StreamAttempt(Attempt):
    """One stream's limits. After the response headers, :meth:`attach` starts the first-event
    timer (from the request); :meth:`first_event`, called at the first event the client gets,
    stops it and puts the idle limit in force; :meth:`close` ends the response (the timer
    with it).

    A limit that fires fails the response body's reader with the timeout error, so the next
    read raises it wherever the consumer is; ``close`` then drops the connection (a half-read
    body is never returned to the pool).
    """

    __slots__ = ("_handle", "_resp", "first", "idle", "started")

    def __init__(
        self,
        provider: str,
        client: aiohttp.ClientTimeout,
        *,
        connect: Limit | None,
        until_headers: Limit | None,
        read: Limit | None,
        total: Limit | None,
        first: Limit | None,
        idle: Limit,
    ) -> None:
        super().__init__(
            provider,
            client,
            connect=connect,
            until_headers=until_headers,
            read=read,
            total=total,
        )
        self.first = first
        self.idle = idle
        self.started = asyncio.get_running_loop().time()
        self._handle: asyncio.TimerHandle | None = None
        self._resp: aiohttp.ClientResponse | None = None

    def attach(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        first = self.first
        if first is not None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_at(self.started + first.seconds, self._expire, first)

    def first_event(self) -> None:
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None
        if self.read is not self.idle:
            self.read = self.idle
            conn = self._resp.connection if self._resp is not None else None
            protocol = conn.protocol if conn is not None else None
            if protocol is not None:
                protocol.read_timeout = self.idle.seconds
                protocol.start_timeout()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def close(self) -> None:
        """Return the connection to the pool when the body was read to the end, else drop it."""
        self.stop()
        resp = self._resp
        if resp is not None:
            if resp.content.at_eof() and resp.content.exception() is None:
                resp.release()
            else:
                resp.close()

    def _expire(self, limit: Limit) -> None:
        self._handle = None
        if self._resp is not None:
            self._resp.content.set_exception(limit.error(self.provider))


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

    __slots__ = ("_answered", "_session")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        answered: Callable[[str, float], None] | None = None,
    ) -> None:
        """``answered(provider, seconds)`` is told each request's time to its response
        headers, whatever their status (the app counts it in its metrics)."""
        self._session = session
        self._answered = answered

    async def open(
        self,
        method: str,
        url: str | URL,
        *,
        provider: str,
        headers: Mapping[str, str],
        timeout: Attempt,
        data: Any = None,
        proxy: str | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request and return once the response headers are in; the caller releases it.

        A ``yarl.URL`` made with ``encoded=True`` goes out byte for byte (a signed request); a
        string is normalised by yarl first (``%3A`` becomes ``:``). A :class:`StreamAttempt`
        is attached to the response (its first-event timer starts).
        """
        until = timeout.until_headers
        sent = time.perf_counter()
        with timeout:
            if until is None:
                resp = await self._send(method, url, headers, timeout, data, proxy)
            else:
                deadline = asyncio.timeout(until.seconds)
                try:
                    async with deadline:
                        resp = await self._send(method, url, headers, timeout, data, proxy)
                except TimeoutError:
                    if deadline.expired():
                        # Cancelled mid-request: aiohttp has closed the connection.
                        raise until.error(provider) from None
                    raise
        if self._answered is not None:
            self._answered(provider, time.perf_counter() - sent)
        if isinstance(timeout, StreamAttempt):
            timeout.attach(resp)
        return resp

    async def _send(
        self,
        method: str,
        url: str | URL,
        headers: Mapping[str, str],
        timeout: Attempt,
        data: Any,
        proxy: str | None,
    ) -> aiohttp.ClientResponse:
        return await self._session.request(
            method,
            url,
            headers=headers,
            data=data,
            timeout=timeout.client,
            allow_redirects=False,
            proxy=proxy,
        )

    @staticmethod
    async def read(
        resp: aiohttp.ClientResponse, provider: str, timeout: Attempt | None = None
    ) -> bytes:
        with timeout or map_client_errors(provider):
            return await resp.read()

    @staticmethod
    async def chunks(
        resp: aiohttp.ClientResponse, provider: str, timeout: Attempt | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, in whatever pieces the network delivers."""
        with timeout or map_client_errors(provider):
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
