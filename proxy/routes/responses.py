"""The Responses API and conversations under ``/v1`` (handlers in :mod:`proxy.respond`)."""

from __future__ import annotations

from aiohttp import web

from proxy.operations import INPUT_TOKENS, RESPONSES, STATEFUL, add_endpoint
from proxy.respond import handlers as h

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    add_endpoint(app, "POST", "/v1/responses", RESPONSES, h.create_response)
    add_endpoint(app, "POST", "/v1/responses/input_tokens", INPUT_TOKENS, h.count_tokens)
    for method, path, handler in (
        ("GET", "/v1/responses/{response_id}", h.get_response),
        ("DELETE", "/v1/responses/{response_id}", h.delete_response),
        ("POST", "/v1/responses/{response_id}/cancel", h.cancel_response),
        ("GET", "/v1/responses/{response_id}/input_items", h.list_input_items),
        ("POST", "/v1/conversations", h.create_conversation),
        ("GET", "/v1/conversations/{conversation_id}", h.get_conversation),
        ("POST", "/v1/conversations/{conversation_id}", h.update_conversation),
        ("DELETE", "/v1/conversations/{conversation_id}", h.delete_conversation),
        ("GET", "/v1/conversations/{conversation_id}/items", h.list_conversation_items),
        ("POST", "/v1/conversations/{conversation_id}/items", h.add_conversation_items),
        ("GET", "/v1/conversations/{conversation_id}/items/{item_id}", h.get_conversation_item),
        (
            "DELETE",
            "/v1/conversations/{conversation_id}/items/{item_id}",
            h.delete_conversation_item,
        ),
    ):
        add_endpoint(app, method, path, STATEFUL, handler)
