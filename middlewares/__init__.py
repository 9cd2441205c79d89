"""The inference middleware chain, in its one canonical order (outer to inner)::

    errors → request_context → auth → decode → govern → usage → fallback → terminal handler

Contract (which keys each reads and writes; all keys live in ``proxy.keys``):

- ``errors`` renders any exception as the unified error body. Nothing else renders errors.
- ``request_context`` writes ``REQUEST_ID`` and ``OUTCOME``, binds the request id into structlog's
  context, and writes one canonical log line per request in a ``finally``; the Prometheus
  metrics (``proxy.metrics``) and the request's usage record (``proxy.usage``, not for the
  admin API) come from the same values there.
- ``auth`` reads the gateway key (the master key, or a virtual key: it writes ``GRANT``,
  ``PRINCIPAL`` and ``OWNER``); it short-circuits with ``AuthenticationError`` (401) or, for a
  virtual key on the admin API, ``PermissionDeniedError`` (403).
- ``decode`` reads the body once and writes ``BODY`` (an ``Inbound``); bad input is a 400 whose
  ``param`` is the JSON path at fault.
- ``govern`` reads ``GRANT`` and ``BODY``: a model outside the key's or team's allow-lists is a
  403; a key with limits is admitted against its counters (429 ``rate_limit_exceeded``, 402
  ``budget_exceeded``), writes ``RATE_HEADERS``, and settles its estimates in a ``finally``;
  a handler that learns its model itself (the ``/openai`` forward) is admitted by ``admit``
  and settled here all the same.
- ``usage`` reads ``OUTCOME.usage`` after the handler, in a ``finally`` (so streams cut by a client
  disconnect are accounted), and turns it into the accounting fields of the canonical line,
  ``cost_usd`` included when the model has a price (else a ``no_price`` warning, once per model).
- ``fallback`` resolves ``BODY.model`` and ``BODY.fallbacks`` into targets and writes ``TARGET``
  before each handler call; one handler call is one upstream attempt. It moves on only on a
  ``GatewayError`` whose ``allow_fallback`` is true, which the terminal handler raises only before
  the response is prepared (before the first byte).

Routes not registered with ``add_endpoint`` (health, unknown paths) pass through every middleware
but the first two untouched.
"""

from __future__ import annotations

from aiohttp.typedefs import Middleware

from middlewares.auth import auth_middleware
from middlewares.decode import decode_middleware
from middlewares.errors import errors_middleware
from middlewares.fallback import fallback_middleware
from middlewares.govern import govern_middleware
from middlewares.request_context import request_context_middleware
from middlewares.usage import usage_middleware
from proxy.config import GatewayConfig
from proxy.logging import RequestLine
from proxy.metrics import Metrics
from proxy.pricing import Pricing

__all__ = ["build_chain"]


def build_chain(
    config: GatewayConfig,
    *,
    debug: bool = False,
    request_line: RequestLine | None = None,
    metrics: Metrics | None = None,
    pricing: Pricing | None = None,
) -> list[Middleware]:
    pricing = pricing or Pricing(config)
    return [
        errors_middleware(max_body_bytes=config.server.max_body_bytes, debug=debug),
        request_context_middleware(request_line, metrics),
        auth_middleware(master_key=config.auth.master_key),
        decode_middleware(),
        govern_middleware(pricing),
        usage_middleware(pricing),
        fallback_middleware(),
    ]
