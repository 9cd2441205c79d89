"""Bedrock Runtime's Converse API under ``/bedrock`` (``endpoint_url`` of boto3's client)."""

from __future__ import annotations

from aiohttp import web

from proxy.native.bedrock import BEDROCK_CONVERSE, converse
from proxy.operations import add_endpoint

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    # The model id may hold ``/`` (``provider/model``, an ARN), sent percent-encoded by boto3.
    path = "/bedrock/model/{model_id:.+}/{action:converse|converse-stream}"
    add_endpoint(app, "POST", path, BEDROCK_CONVERSE, converse)
