"""``/openai/v1/...``: every endpoint of OpenAI's API (files, batches, images, moderations,
fine-tuning, uploads, vector stores, and the ones the gateway models too), forwarded as it came
to an OpenAI or Azure OpenAI provider, with the gateway's key check, a virtual key's
allow-lists, rate limits and budget, load limits and logging.

Which provider: the one the ``x-thruway-provider`` header names; else the one named ``openai``;
else the only OpenAI or Azure provider. The client's key stays with the gateway and the
provider's key with the upstream. The request body is forwarded as it arrives (a JSON body is
read first, within ``server.max_body_bytes``, for its ``model``, which the log line and the
key choice use); the answer comes back as it arrives, its ``usage`` accounted when it has one.
Endpoints the gateway models are forwarded too, without translation or fallbacks: use ``/v1``
for those.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from urllib.parse import unquote

import msgspec
import structlog
from aiohttp import StreamReader, web

from middlewares.fallback import ProviderUnavailableError
from middlewares.govern import admit
from providers._forward import PASSTHROUGH, ForwardRequest
from providers.base import ByteStream, EventStream, JSONReply, Provider
from providers.registry import PROVIDERS
from proxy.errors import GatewayError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from proxy.keys import CONFIG, DIRECTORY, LIMITS, OUTCOME
from proxy.metrics import METRICS
from proxy.native.served import call_for, gateway_headers, send
from proxy.operations import Inbound, Operation, Target

__all__ = ["OPENAI_PASSTHROUGH", "forward", "provider_for"]

log = structlog.get_logger("thruway.openai")
PREFIX = "/openai/v1/"
PROVIDER_HEADER = "x-thruway-provider"
# The client's headers that go upstream; its credentials and everything else stay here.
_FORWARDED = ("Content-Type", "Accept", "OpenAI-Beta")


class _ModelOnly(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None


_model_only = msgspec.json.Decoder(_ModelOnly).decode

# Body "none": the handler forwards the body itself (streamed); not routed: one provider,
# no fallbacks (a streamed upload cannot be sent twice).
OPENAI_PASSTHROUGH = Operation(PASSTHROUGH, "none", routed=False)


def provider_for(request: web.Request) -> Provider:
    """The provider the request goes to (module docstring), or why there is none."""
    registry = request.app[PROVIDERS]
    able = sorted(n for n, p in registry.providers.items() if PASSTHROUGH in p.operations)
    named = request.headers.get(PROVIDER_HEADER)
    if named:
        if named in able:
            return registry[named]
        reason = request.app[DIRECTORY].unavailable.get(named)
        if reason is not None:
            raise ProviderUnavailableError(f"Provider `{named}` is unavailable: {reason}")
        raise InvalidRequestError(
            f"`{PROVIDER_HEADER}: {named}` names no OpenAI or Azure provider; "
            f"those configured: {', '.join(able) or 'none'}.",
            param=PROVIDER_HEADER,
        )
    if "openai" in able:
        return registry["openai"]
    if len(able) == 1:
        return registry[able[0]]
    if not able:
        unavailable = request.app[DIRECTORY].unavailable
        if "openai" in unavailable:
            raise ProviderUnavailableError(
                f"Provider `openai` is unavailable: {unavailable['openai']}"
            )
        raise NotFoundError(
            "No OpenAI or Azure provider is configured to serve /openai/v1: add one under "
            "`providers:`.",
            code="provider_not_found",
        )
    raise InvalidRequestError(
        f"Several OpenAI and Azure providers are configured ({', '.join(able)}): name one "
        f"in the `{PROVIDER_HEADER}` header.",
        param=PROVIDER_HEADER,
    )


def _tail(request: web.Request) -> str:
    """The path under ``/openai/v1/``, percent-encoded as it came."""
    path = request.rel_url.raw_path
    tail = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
    if not tail or any(unquote(seg) in ("..", ".") for seg in tail.split("/")):
        raise NotFoundError(f"Invalid URL ({request.method} {request.path})")
    return tail


async def _request(request: web.Request) -> tuple[ForwardRequest, str, bool]:
    """What to forward, and the request's model and stream flag when a JSON body says them."""
    headers = {h: request.headers[h] for h in _FORWARDED if h in request.headers}
    model, stream = "", False
    body: object = None
    if request.body_exists:
        if request.content_type == "application/json":
            data = await request.read()
            body = data
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                got = _model_only(data)
                model, stream = got.model or "", got.stream is True
        else:
            # Streamed as it arrives, within the body-size limit; its length (when the client
            # said it) spares chunking.
            limit = request.app[CONFIG].server.max_body_bytes
            if request.content_length is not None:
                if request.content_length > limit:
                    raise _too_large(limit)
                headers["Content-Length"] = str(request.content_length)
            body = _Within(request.content, limit)
    forward_request = ForwardRequest(
        method=request.method,
        path=_tail(request),
        query=request.rel_url.raw_query_string,
        headers=headers,
        body=body,
    )
    return forward_request, model, stream


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than the limit of {limit} bytes (server.max_body_bytes)."
    )


class _Within:
    """The client's body as it arrives; past ``limit`` bytes the upload is cut. aiohttp reports
    the cut as a failed upstream request, which :func:`forward` turns into the 413."""

    def __init__(self, content: StreamReader, limit: int) -> None:
        self.content = content
        self.limit = limit
        self.exceeded = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.content.iter_any():
            seen += len(chunk)
            if seen > self.limit:
                self.exceeded = True
                raise _too_large(self.limit)
            yield chunk


async def forward(request: web.Request) -> web.StreamResponse:
    """One request forwarded to the chosen provider, its answer passed back as it comes."""
    provider = provider_for(request)
    forward_request, model, stream = await _request(request)
    # A virtual key's allow-lists and limits; an endpoint without a model counts as the
    # provider's (``openai/*``), which a key limited to some models may not use.
    size = len(forward_request.body) if isinstance(forward_request.body, bytes) else 0
    await admit(request, f"{provider.name}/{model or '*'}", tokens_in=math.ceil(size / 3))
    outcome = request[OUTCOME]
    outcome.provider, outcome.model = provider.name, model
    outcome.model_requested = f"{provider.name}/{model}" if model else ""
    outcome.stream = stream
    outcome.attempts = 1
    target = Target(provider=provider.name, model=model)
    inbound = Inbound(
        op=OPENAI_PASSTHROUGH,
        typed=forward_request,
        model=target.label,
        fallbacks=[],
        stream=stream,
    )
    async with request.app[LIMITS].slot(provider.name):
        try:
            reply = await send(request, provider, call_for(request, inbound, target))
        except GatewayError:
            body = forward_request.body
            if isinstance(body, _Within) and body.exceeded:
                raise _too_large(body.limit) from None
            raise
        headers = gateway_headers(request, target)
        if isinstance(reply, JSONReply):
            outcome.usage = reply.usage
            headers = {**reply.headers, **headers, "Content-Type": "application/json"}
            return web.Response(body=reply.body, headers=headers)
        return await _relay(request, reply, target, headers)


async def _relay(
    request: web.Request,
    reply: EventStream | ByteStream,
    target: Target,
    headers: dict[str, str],
) -> web.StreamResponse:
    """An answer passed on as it arrives (events, file content); a failure past the first byte
    cuts the connection, so that the client sees a failure rather than a short body."""
    outcome = request[OUTCOME]
    content_type = reply.content_type if isinstance(reply, ByteStream) else None
    response = web.StreamResponse(headers={**reply.headers, **headers})
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    chunks = reply.chunks if isinstance(reply, ByteStream) else _joined(reply)
    try:
        await response.prepare(request)
        request.app[METRICS].stream_opened(request)
        async for chunk in chunks:
            if outcome.ttfb_ms is None:
                outcome.ttfb_ms = outcome.elapsed_ms()
            await response.write(chunk)
        await response.write_eof()
    except GatewayError as exc:
        log.warning("stream_failed", status=exc.status, error_type=exc.type, error=exc.message)
        outcome.failures.append(f"{target.label}: {exc.status} {exc.type} mid-stream")
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        outcome.client_disconnected = True
    finally:
        await reply.aclose()
        if isinstance(reply, EventStream):
            outcome.usage = reply.usage
    return response


async def _joined(stream: EventStream) -> AsyncIterator[bytes]:
    async for batch in stream:
        yield b"".join(batch)
