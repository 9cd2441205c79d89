"""Accounting: after every request, whatever its end, the usage it incurred is recorded once."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.keys import OUTCOME, Outcome
from proxy.pricing import Pricing

__all__ = ["usage_middleware"]

log = structlog.get_logger("thruway.usage")


def usage_middleware(pricing: Pricing) -> Middleware:
    """Turn ``OUTCOME.usage`` into the accounting fields of the canonical log line, its cost
    included when ``pricing`` knows the model (an unpriced model is logged once, as
    ``no_price``, and counted without a cost).

    It runs in a ``finally``, so a failed request, or a stream the client abandoned (the handler is
    cancelled), is accounted with whatever usage the upstream had reported by then.
    """

    @web.middleware
    async def usage(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            outcome = request[OUTCOME]
            if outcome.usage is not None:
                _account(outcome, pricing)

    return usage


def _account(outcome: Outcome, pricing: Pricing) -> None:
    billed = outcome.usage
    assert billed is not None
    fields = outcome.log_fields
    fields["input_tokens"] = billed.prompt_tokens
    fields["output_tokens"] = billed.completion_tokens
    fields["total_tokens"] = billed.total_tokens
    if billed.cached_tokens:
        fields["cached_tokens"] = billed.cached_tokens
    if billed.reasoning_tokens:
        fields["reasoning_tokens"] = billed.reasoning_tokens
    if billed.audio_seconds:
        fields["audio_seconds"] = billed.audio_seconds
    if not outcome.provider:
        return
    cost = pricing.cost_usd(outcome.provider, outcome.model, billed)
    if cost is not None:
        fields["cost_usd"] = cost
    elif pricing.first_miss(outcome.provider, outcome.model):
        log.warning("no_price", provider=outcome.provider, model=outcome.model)
