"""OpenAI's whole API under ``/openai/v1`` (``base_url`` of the OpenAI SDKs), forwarded."""

from __future__ import annotations

from aiohttp import web

from proxy.native.openai import OPENAI_PASSTHROUGH, forward
from proxy.operations import add_endpoint

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    add_endpoint(app, "*", "/openai/v1/{tail:.*}", OPENAI_PASSTHROUGH, forward)
