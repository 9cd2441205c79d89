"""Accounting: after every request, whatever its end, the usage it incurred is recorded once."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.keys import OUTCOME

__all__ = ["usage_middleware"]


def usage_middleware() -> Middleware:
    """Turn ``OUTCOME.usage`` into the accounting fields of the canonical log line.

    It runs in a ``finally``, so a failed request, or a stream the client abandoned (the handler is
    cancelled), is accounted with whatever usage the upstream had reported by then.
    """

    @web.middleware
    async def usage(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            outcome = request[OUTCOME]
            billed = outcome.usage
            if billed is not None:
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

    return usage
