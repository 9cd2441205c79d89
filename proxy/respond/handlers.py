"""The HTTP handlers of the Responses API and of conversations.

``create_response`` and ``count_tokens`` are terminal handlers behind the inference middlewares
(one call per fallback attempt; the request is prepared once). The others read or change stored
state, scoped to the caller: another key's responses and conversations are "not found".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

import msgspec
import structlog
from aiohttp import web

from middlewares.decode import decode_body
from providers._counting import estimate_input_tokens
from providers.registry import PROVIDERS
from proxy.dispatch import extra_fields, splice_extra_fields
from proxy.errors import GatewayError, InvalidRequestError, NotFoundError, UpstreamError
from proxy.keys import (
    ATTEMPT,
    BODY,
    CONFIG,
    DEFER_SETTLEMENT,
    LIMITS,
    OUTCOME,
    OWNER,
    PRICING,
    PRINCIPAL,
    REQUEST_ID,
    STORE,
    TARGET,
    Outcome,
)
from proxy.metrics import METRICS
from proxy.operations import Target
from proxy.respond.prepare import (
    Prepared,
    items_json,
    new_id,
    prepare,
    stored_response,
)
from proxy.respond.run import (
    TERMINAL_EVENTS,
    Attempt,
    Frame,
    answer,
    count_input_tokens,
    frame_bytes,
    own,
    start_events,
)
from proxy.respond.save import Account, new_record, save_response
from proxy.respond.worker import BackgroundWorker
from proxy.responses.output import new_response
from proxy.responses.translate import stored_items, to_chat
from proxy.schemas.common import BilledUsage
from proxy.schemas.responses import (
    CONVERSATION_CREATE_DECODER,
    ITEMS_CREATE_DECODER,
    Conversation,
    ConversationDeleted,
    ResponseDeleted,
)
from proxy.sse import KeepAlive, open_event_stream
from proxy.store import ItemPage

__all__ = [
    "BACKGROUND",
    "add_conversation_items",
    "cancel_response",
    "count_tokens",
    "create_conversation",
    "create_response",
    "delete_conversation",
    "delete_conversation_item",
    "delete_response",
    "get_conversation",
    "get_conversation_item",
    "get_response",
    "list_conversation_items",
    "list_input_items",
    "update_conversation",
]

log = structlog.get_logger("thruway.responses")
_encode = msgspec.json.Encoder().encode
BACKGROUND = web.AppKey("background", BackgroundWorker)
_PREPARED = web.RequestKey("responses_prepared", Prepared)
_FINISHED = frozenset({"completed", "incomplete", "failed", "cancelled"})


def _json(body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, headers={**(headers or {}), "Content-Type": "application/json"})


def _owner(request: web.Request) -> str:
    owner: str = request.get(OWNER, "")
    return owner


def _not_found(kind: str, id_: str) -> NotFoundError:
    return NotFoundError(
        f"No {kind} found with id '{id_}'.", code=f"{kind.replace(' ', '_')}_not_found"
    )


async def _prepared(request: web.Request) -> Prepared:
    got = request.get(_PREPARED)
    if got is None:
        inbound = request[BODY]
        got = await prepare(
            request.app[STORE], inbound.typed, await request.read(), _owner(request)
        )
        request[_PREPARED] = got
    return got


def _attempt(request: web.Request) -> Attempt:
    raw = request.headers.get("x-thruway-raw-response", "").lower() == "true"
    return Attempt(request[REQUEST_ID], request.headers, raw, request.get(ATTEMPT))


def _headers(request: web.Request, outcome: Outcome) -> dict[str, str]:
    target = request[TARGET]
    return {
        "x-request-id": request[REQUEST_ID],
        "x-thruway-provider": target.provider,
        "x-thruway-model": target.model,
        "x-thruway-latency-ms": f"{outcome.elapsed_ms():.3f}",
        "x-thruway-attempts": str(outcome.attempts),
        "x-thruway-fallback-index": str(target.index),
    }


# --- POST /v1/responses ---------------------------------------------------------------------


async def create_response(request: web.Request) -> web.StreamResponse:
    prep = await _prepared(request)
    if prep.req.background is True:
        return await _enqueue(request, prep)
    target = request[TARGET]
    provider = request.app[PROVIDERS][target.provider]
    if request[BODY].stream:
        async with request.app[LIMITS].slot(target.provider):
            return await _stream(request, prep)
    outcome = request[OUTCOME]
    async with request.app[LIMITS].slot(target.provider):
        got = await answer(provider, prep, target, _attempt(request))
    outcome.usage = got.usage
    await save_response(request.app[STORE], prep, got.response, stream=False)
    extra = extra_fields(
        request[BODY],
        target,
        got.usage,
        outcome.elapsed_ms(),
        outcome.attempts,
        _cost(request, target, got.usage),
    )
    if got.raw is not None:
        extra.raw_response = msgspec.Raw(got.raw)
    body = splice_extra_fields(_encode(got.response), _encode(extra))
    return _json(body, _headers(request, outcome))


async def _stream(request: web.Request, prep: Prepared) -> web.StreamResponse:
    target = request[TARGET]
    outcome = request[OUTCOME]
    provider = request.app[PROVIDERS][target.provider]
    run, first = await start_events(provider, prep, target, _attempt(request))
    outcome.ttfb_ms = outcome.elapsed_ms()
    try:
        response = await open_event_stream(request, {**run.headers, **_headers(request, outcome)})
    except BaseException:
        await run.aclose()
        outcome.usage = run.usage
        raise
    request.app[METRICS].stream_opened(request)
    keepalive = KeepAlive(response, request.app[CONFIG].streaming.keepalive_interval_s)
    final = None
    try:
        batch = first
        while batch is not None:
            if batch:
                await response.write(_with_extra(request, batch, run.usage, outcome))
                keepalive.touch()
            try:
                batch = await run.next()
            except GatewayError as exc:
                log.warning("stream_failed", status=exc.status, error_type=exc.type)
                outcome.failures.append(f"{target.label}: {exc.status} {exc.type} mid-stream")
                batch = run.fail(exc)
                await response.write(frame_bytes(batch))
                batch = None
        if run.final is None:
            cut = UpstreamError(
                "The upstream ended the stream before the response was complete.",
                status=502,
                provider=target.provider,
            )
            await response.write(frame_bytes(run.fail(cut)))
        final = run.final
    except ConnectionError:
        outcome.client_disconnected = True
    finally:
        keepalive.stop()
        await run.aclose()
        outcome.usage = run.usage
        kept = final if final is not None else run.snapshot("cancelled")
        await asyncio.shield(save_response(request.app[STORE], prep, kept, stream=True))
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


def _cost(request: web.Request, target: Target, usage: BilledUsage | None) -> float | None:
    if usage is None:
        return None
    return request.app[PRICING].cost_usd(target.provider, target.model, usage)


def _with_extra(
    request: web.Request, batch: list[Frame], usage: BilledUsage | None, outcome: Outcome
) -> bytes:
    """The batch as SSE; the terminal event also carries ``extra_fields``."""
    last = batch[-1]
    if last.type in TERMINAL_EVENTS:
        target = request[TARGET]
        extra = extra_fields(
            request[BODY],
            target,
            usage,
            outcome.elapsed_ms(),
            outcome.attempts,
            _cost(request, target, usage),
        )
        batch = [*batch[:-1], last._replace(data=splice_extra_fields(last.data, _encode(extra)))]
    return frame_bytes(batch)


async def _enqueue(request: web.Request, prep: Prepared) -> web.StreamResponse:
    queued = own(
        new_response(
            prep.req, response_id=prep.response_id, created_at=prep.created_at, status="queued"
        ),
        prep,
    )
    stream = request[BODY].stream
    principal = request.get(PRINCIPAL)
    account = Account(
        request_id=request[REQUEST_ID],
        key_id=principal.key_id if principal is not None else None,
        team_id=principal.team_id if principal is not None else None,
    )
    await request.app[STORE].insert_response(
        new_record(prep, queued, background=True, stream=stream, account=account)
    )
    # The budget reservation stays open until the worker has run the response.
    request[DEFER_SETTLEMENT] = True
    request.app[BACKGROUND].wake()
    if stream:
        return await _follow(request, prep.response_id, -1)
    return _json(_encode(queued), {"x-request-id": request[REQUEST_ID]})


# --- following a background stream ---------------------------------------------------------


class _Type(msgspec.Struct):
    type: str = ""


_TYPE = msgspec.json.Decoder(_Type)


async def _follow(request: web.Request, response_id: str, after: int) -> web.StreamResponse:
    """A background response's events after ``after``, as they are stored, until it ends."""
    store = request.app[STORE]
    owner = _owner(request)
    worker = request.app[BACKGROUND]
    poll = min(request.app[CONFIG].store.poll_interval_s, 0.25)
    response = await open_event_stream(request, {"x-request-id": request[REQUEST_ID]})
    request.app[METRICS].stream_opened(request)
    keepalive = KeepAlive(response, request.app[CONFIG].streaming.keepalive_interval_s)
    try:
        while True:
            events = await store.events_after(response_id, owner, after)
            if events:
                frames = [Frame(seq, _TYPE.decode(data).type, data) for seq, data in events]
                await response.write(frame_bytes(frames))
                keepalive.touch()
                after = frames[-1].seq
                if any(f.type in TERMINAL_EVENTS for f in frames):
                    break
                continue
            rec = await store.get_response(response_id, owner)
            if rec is None or rec.status in _FINISHED:
                # Events stored just before the status changed are sent before the end.
                last = await store.events_after(response_id, owner, after)
                if last:
                    frames = [Frame(seq, _TYPE.decode(data).type, data) for seq, data in last]
                    await response.write(frame_bytes(frames))
                break
            await worker.notifier.wait(response_id, poll)
    except ConnectionError:
        request[OUTCOME].client_disconnected = True
        return response
    finally:
        keepalive.stop()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


# --- stored responses -----------------------------------------------------------------------


async def get_response(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    rid = request.match_info["response_id"]
    rec = await store.get_response(rid, _owner(request))
    if rec is None:
        raise _not_found("response", rid)
    if request.query.get("stream", "").lower() == "true":
        if not (rec.background and rec.stream):
            raise InvalidRequestError(
                "Only a response created with `background: true` and `stream: true` can be "
                "streamed again.",
                param="stream",
            )
        after = _int_query(request, "starting_after", -1, low=-1)
        return await _follow(request, rid, after)
    return _json(_encode(stored_response(rec)))


async def delete_response(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    if not await request.app[STORE].delete_response(rid, _owner(request)):
        raise _not_found("response", rid)
    await request.app[BACKGROUND].cancel(rid)
    return _json(_encode(ResponseDeleted(id=rid)))


async def cancel_response(request: web.Request) -> web.Response:
    store = request.app[STORE]
    owner = _owner(request)
    rid = request.match_info["response_id"]
    rec = await store.get_response(rid, owner)
    if rec is None:
        raise _not_found("response", rid)
    if not rec.background:
        raise InvalidRequestError(
            "Only a response created with `background: true` can be cancelled.",
            param="response_id",
        )
    rec = await store.request_cancel(rid, owner)
    if rec is not None and rec.status == "in_progress":
        await request.app[BACKGROUND].cancel(rid)
        rec = await store.get_response(rid, owner)
    if rec is None:
        raise _not_found("response", rid)
    return _json(_encode(stored_response(rec)))


async def list_input_items(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    after, limit, order = _page_query(request)
    page = await request.app[STORE].input_items(
        rid, _owner(request), after=after, limit=limit, order=order
    )
    if page is None:
        raise _not_found("response", rid)
    return _json(_page_json(page))


# --- POST /v1/responses/input_tokens ----------------------------------------------------------


class _InputTokens(msgspec.Struct):
    input_tokens: int
    object: Literal["response.input_tokens"] = "response.input_tokens"


async def count_tokens(request: web.Request) -> web.Response:
    prep = await _prepared(request)
    target = request[TARGET]
    provider = request.app[PROVIDERS][target.provider]
    counted = await count_input_tokens(provider, prep, target, _attempt(request))
    headers = {"x-request-id": request[REQUEST_ID], "x-thruway-provider": target.provider}
    if counted is None:
        # No counting endpoint upstream: an estimate from the text sent, said to be one.
        counted = estimate_input_tokens(to_chat(prep.req, prep.history))
        headers["x-thruway-token-count"] = "estimated"
    else:
        headers["x-thruway-token-count"] = "provider"
    return _json(_encode(_InputTokens(counted)), headers)


# --- conversations --------------------------------------------------------------------------


class _MetadataUpdate(msgspec.Struct, forbid_unknown_fields=True):
    metadata: dict[str, str]


_METADATA_UPDATE = msgspec.json.Decoder(_MetadataUpdate)


async def create_conversation(request: web.Request) -> web.Response:
    body = await request.read()
    create = decode_body(CONVERSATION_CREATE_DECODER.decode, body) if body.strip() else None
    items = list(getattr(create, "items", None) or [])
    metadata = getattr(create, "metadata", None) or {}
    if len(items) > 20:
        raise InvalidRequestError("A conversation starts with at most 20 items.", param="items")
    conv = Conversation(id=new_id("conv"), created_at=int(time.time()), metadata=metadata)
    await request.app[STORE].create_conversation(
        conv.id,
        _owner(request),
        _encode(metadata),
        items_json(stored_items(items)),
        float(conv.created_at),
    )
    return _json(_encode(conv))


async def _conversation(request: web.Request) -> Conversation:
    cid = request.match_info["conversation_id"]
    got = await request.app[STORE].get_conversation(cid, _owner(request))
    if got is None:
        raise _not_found("conversation", cid)
    metadata, created_at = got
    return Conversation(id=cid, created_at=int(created_at), metadata=msgspec.json.decode(metadata))


async def get_conversation(request: web.Request) -> web.Response:
    return _json(_encode(await _conversation(request)))


async def update_conversation(request: web.Request) -> web.Response:
    update = decode_body(_METADATA_UPDATE.decode, await request.read())
    assert isinstance(update, _MetadataUpdate)
    cid = request.match_info["conversation_id"]
    if not await request.app[STORE].update_conversation(
        cid, _owner(request), _encode(update.metadata)
    ):
        raise _not_found("conversation", cid)
    return _json(_encode(await _conversation(request)))


async def delete_conversation(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    if not await request.app[STORE].delete_conversation(cid, _owner(request)):
        raise _not_found("conversation", cid)
    return _json(_encode(ConversationDeleted(id=cid)))


async def list_conversation_items(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    after, limit, order = _page_query(request)
    page = await request.app[STORE].list_items(
        cid, _owner(request), after=after, limit=limit, order=order
    )
    if page is None:
        raise _not_found("conversation", cid)
    return _json(_page_json(page))


async def add_conversation_items(request: web.Request) -> web.Response:
    create = decode_body(ITEMS_CREATE_DECODER.decode, await request.read())
    items = stored_items(getattr(create, "items", []))
    cid = request.match_info["conversation_id"]
    pairs = items_json(items)
    if not await request.app[STORE].add_items(cid, _owner(request), pairs):
        raise _not_found("conversation", cid)
    page = ItemPage(
        items=[data for _, data in pairs],
        has_more=False,
        first_id=pairs[0][0] if pairs else None,
        last_id=pairs[-1][0] if pairs else None,
    )
    return _json(_page_json(page))


async def get_conversation_item(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    iid = request.match_info["item_id"]
    got = await request.app[STORE].get_item(cid, _owner(request), iid)
    if got is None:
        raise _not_found("item", iid)
    return _json(got)


async def delete_conversation_item(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    iid = request.match_info["item_id"]
    if not await request.app[STORE].delete_item(cid, _owner(request), iid):
        raise _not_found("item", iid)
    return _json(_encode(await _conversation(request)))


# --- pages ----------------------------------------------------------------------------------


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: Literal["list"] = "list"


def _page_json(page: ItemPage) -> bytes:
    data = [msgspec.Raw(item) for item in page.items]
    return _encode(_Page(data, page.first_id, page.last_id, page.has_more))


def _int_query(
    request: web.Request, name: str, default: int, *, low: int, high: int = 2**62
) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequestError(
            f"`{name}` must be an integer, got `{text}`.", param=name
        ) from None
    if not low <= value <= high:
        raise InvalidRequestError(f"`{name}` must be between {low} and {high}.", param=name)
    return value


def _page_query(request: web.Request) -> tuple[str | None, int, Literal["asc", "desc"]]:
    limit = _int_query(request, "limit", 20, low=1, high=100)
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be `asc` or `desc`.", param="order")
    after = request.query.get("after") or None
    return after, limit, order  # type: ignore[return-value]
