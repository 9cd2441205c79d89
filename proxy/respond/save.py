"""What a response leaves in the store: its record (when stored) and its conversation's items.

A record's ``request`` is :class:`StoredRequest`: the body as the client sent it and how many of
the record's ``input_items`` are history (the rest are the request's own input), so a background
worker runs exactly what was accepted, even if the previous response is deleted meanwhile.
"""

from __future__ import annotations

import time

import msgspec
import structlog

from proxy.respond.prepare import Prepared, items_json
from proxy.schemas.responses import REQUEST_DECODER, Response, decode_items
from proxy.store import ResponseRecord, Store

__all__ = [
    "Account",
    "StoredRequest",
    "account_of",
    "append_to_conversation",
    "new_record",
    "prepared_from_record",
    "save_response",
]

log = structlog.get_logger("thruway.responses")
_encode = msgspec.json.Encoder().encode


class Account(msgspec.Struct, frozen=True):
    """Who a background response is billed to: the request that queued it (its budget
    reservation is settled when the response ends) and its virtual key and team."""

    request_id: str
    key_id: str | None = None
    team_id: str | None = None


class StoredRequest(msgspec.Struct):
    body: msgspec.Raw
    history: int = 0
    account: Account | None = None


_STORED_REQUEST = msgspec.json.Decoder(StoredRequest)


def new_record(
    prep: Prepared,
    response: Response,
    *,
    background: bool,
    stream: bool,
    account: Account | None = None,
) -> ResponseRecord:
    req = prep.req
    return ResponseRecord(
        id=prep.response_id,
        owner=prep.owner,
        created_at=float(prep.created_at),
        updated_at=time.time(),
        status=response.status,
        model=req.model,
        background=background,
        stream=stream,
        previous_response_id=(
            req.previous_response_id if isinstance(req.previous_response_id, str) else None
        ),
        conversation_id=prep.conversation_id,
        request=_encode(StoredRequest(msgspec.Raw(prep.body), len(prep.history), account)),
        input_items=_encode(prep.all_items),
        response=_encode(response),
        error=_encode(response.error) if response.error is not None else None,
    )


def prepared_from_record(rec: ResponseRecord) -> Prepared:
    """The :class:`Prepared` request a background record was accepted as."""
    stored = _STORED_REQUEST.decode(rec.request)
    items = decode_items(rec.input_items)
    req = REQUEST_DECODER.decode(stored.body)
    req = msgspec.structs.replace(req, input=items[stored.history :])
    return Prepared(
        req=req,
        body=bytes(stored.body),
        owner=rec.owner,
        response_id=rec.id,
        created_at=int(rec.created_at),
        history=items[: stored.history],
        conversation_id=rec.conversation_id,
    )


def account_of(rec: ResponseRecord) -> Account | None:
    return _STORED_REQUEST.decode(rec.request).account


async def append_to_conversation(store: Store, prep: Prepared, response: Response) -> None:
    """A finished response's input and output join its conversation (not a failed one's)."""
    if prep.conversation_id is None or response.status not in ("completed", "incomplete"):
        return
    await store.add_items(
        prep.conversation_id, prep.owner, items_json([*prep.input, *response.output])
    )


async def save_response(store: Store, prep: Prepared, response: Response, *, stream: bool) -> None:
    """Keep a foreground response (when stored) and extend its conversation. A store failure
    is logged, not raised: the client has its answer already."""
    try:
        if prep.req.stores:
            rec = new_record(prep, response, background=False, stream=stream)
            await store.insert_response(rec)
        await append_to_conversation(store, prep, response)
    except Exception as exc:  # the answer stands; the log says what was not kept
        log.error(
            "response_not_stored",
            response_id=prep.response_id,
            error_type=type(exc).__name__,
            error=str(exc),
        )
