"""A Responses request made ready to run: history loaded, references resolved, ids chosen.

Done once per request (not once per fallback attempt), and again by the background worker from
what was stored, so both run the same thing.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

import msgspec
from msgspec import UNSET

from proxy.errors import InvalidRequestError, NotFoundError
from proxy.responses.translate import resolve_item_references, stored_items
from proxy.schemas.responses import (
    RESPONSE_DECODER,
    InputItem,
    MessageItem,
    Response,
    ResponseError,
    ResponsesRequest,
    decode_items,
)
from proxy.store import ResponseRecord, Store

__all__ = [
    "Prepared",
    "item_id",
    "items_json",
    "load_conversation_items",
    "new_id",
    "prepare",
    "stored_response",
]


class Prepared(msgspec.Struct, kw_only=True):
    """One request, ready for any target.

    ``req.input`` holds the request's own items in their stored form (ids given, references
    resolved); ``history`` the earlier turns. ``body`` is the request as the client sent it (the
    background worker decodes it again).
    """

    req: ResponsesRequest
    body: bytes
    owner: str
    response_id: str
    created_at: int
    history: list[InputItem]
    conversation_id: str | None = None

    @property
    def input(self) -> list[InputItem]:
        got = self.req.input
        return got if isinstance(got, list) else []

    @property
    def all_items(self) -> list[InputItem]:
        """The whole conversation so far, as the next turn's history will hold it."""
        return [*self.history, *self.input]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


class _HasId(msgspec.Struct):
    id: str | None = None


_HAS_ID = msgspec.json.Decoder(_HasId)
_encode = msgspec.json.Encoder().encode


def item_id(item: InputItem) -> str:
    if isinstance(item, msgspec.Raw):
        return _HAS_ID.decode(item).id or ""
    got = getattr(item, "id", UNSET)
    return got if isinstance(got, str) else ""


def items_json(items: Sequence[InputItem]) -> list[tuple[str, bytes]]:
    """``(id, JSON)`` of each item, as the store keeps conversation items."""
    return [(item_id(item), _encode(item)) for item in items]


def stored_response(rec: ResponseRecord) -> Response:
    """A stored response with the store's authoritative status and error laid over it."""
    resp = RESPONSE_DECODER.decode(rec.response or b"{}")
    resp.status = rec.status
    if rec.error is not None:
        resp.error = _ERROR.decode(rec.error)
    return resp


_ERROR = msgspec.json.Decoder(ResponseError)


async def load_conversation_items(store: Store, conv_id: str, owner: str) -> list[InputItem]:
    """Every item of a conversation, oldest first; a 404 when the caller has no such one."""
    raws: list[bytes] = []
    after: str | None = None
    while True:
        page = await store.list_items(conv_id, owner, after=after, limit=100, order="asc")
        if page is None:
            raise NotFoundError(
                f"Conversation with id '{conv_id}' not found.",
                param="conversation",
                code="conversation_not_found",
            )
        raws += page.items
        if not page.has_more or page.last_id is None:
            break
        after = page.last_id
    return decode_items(b"[" + b",".join(raws) + b"]")


async def _history(store: Store, req: ResponsesRequest, owner: str) -> list[InputItem]:
    previous = req.previous_response_id
    conversation = req.conversation_id
    if isinstance(previous, str) and conversation is not None:
        raise InvalidRequestError(
            "`previous_response_id` and `conversation` cannot be used together: a response "
            "continues either a previous response or a conversation.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    if isinstance(previous, str):
        rec = await store.get_response(previous, owner)
        if rec is None:
            raise InvalidRequestError(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if rec.status in ("queued", "in_progress"):
            raise InvalidRequestError(
                f"Previous response with id '{previous}' is still {rec.status.replace('_', ' ')}"
                "; wait until it finishes.",
                param="previous_response_id",
                code="previous_response_not_finished",
            )
        earlier = decode_items(rec.input_items)
        output = RESPONSE_DECODER.decode(rec.response).output if rec.response else []
        return [*earlier, *output]
    if conversation is not None:
        return await load_conversation_items(store, conversation, owner)
    return []


def _check(req: ResponsesRequest) -> None:
    if req.background is True and not req.stores:
        raise InvalidRequestError(
            "A background response must be stored: leave out `store` or set it to true.",
            param="background",
        )


async def prepare(store: Store, req: ResponsesRequest, body: bytes, owner: str) -> Prepared:
    """The request with its history loaded and its input in stored form (a 400/404 for a
    previous response or conversation the caller does not have)."""
    _check(req)
    history = await _history(store, req, owner)
    given: list[InputItem]
    if isinstance(req.input, str):
        given = [MessageItem(role="user", content=req.input)]
    else:
        given = [] if req.input is UNSET else list(req.input)
    known = {item_id(item): item for item in history}
    known.pop("", None)
    resolved = stored_items(resolve_item_references(given, known))
    return Prepared(
        req=msgspec.structs.replace(req, input=resolved),
        body=body,
        owner=owner,
        response_id=new_id("resp"),
        created_at=int(time.time()),
        history=history,
        conversation_id=req.conversation_id,
    )
