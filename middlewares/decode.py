"""Reads the body once and decodes it: a typed, checked Struct plus the raw top-level fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import InvalidRequestError
from proxy.keys import BODY, OUTCOME
from proxy.operations import (
    INPUT_TOKENS,
    RESPONSES,
    SCHEMAS,
    Inbound,
    Operation,
    Upload,
    operation_of,
)
from proxy.schemas.responses import REQUEST_DECODER

__all__ = ["decode_body", "decode_middleware"]

_T = TypeVar("_T")
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TYPED: dict[str, Any] = {name: msgspec.json.Decoder(schema) for name, schema in SCHEMAS.items()}
# Responses items and tools need a decoder of their own (messages may leave out ``type``).
_TYPED[RESPONSES.name] = _TYPED[INPUT_TOKENS.name] = REQUEST_DECODER
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _param(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    """msgspec's "Expected `int`, got `str` - at `$.n`" as a message and the path ``n``."""
    text = str(exc)
    message, sep, where = text.rpartition(" - at ")
    if not sep:
        message, where = text, "$"
    path = where.strip("`").removeprefix("$").lstrip(".")
    missing = _MISSING.search(message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    where_text = f" at `{path}`" if path else ""
    return f"Invalid request body{where_text}: {message}", path or None


def decode_body(decode: Callable[[bytes], _T], body: bytes) -> _T:
    """A JSON body through ``decode``, with the same 400s as the inference routes (empty body,
    not JSON, a field at fault named in ``param``); for routes that read their own bodies."""
    if not body.strip():
        raise InvalidRequestError("The request body is empty; expected a JSON object.")
    try:
        return decode(body)
    except msgspec.ValidationError as exc:
        message, param = _param(exc)
        raise InvalidRequestError(message, param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None


def _decode_json(body: bytes, op: Operation) -> Inbound:
    if not body.strip():
        raise InvalidRequestError("The request body is empty; expected a JSON object.")
    try:
        raw = _RAW.decode(body)
        typed = _TYPED[op.name].decode(body)
    except msgspec.ValidationError as exc:
        message, param = _param(exc)
        raise InvalidRequestError(message, param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    options = getattr(typed, "stream_options", None)
    return Inbound(
        op=op,
        typed=typed,
        model=typed.model,
        fallbacks=_fallbacks(typed),
        stream=getattr(typed, "stream", None) is True,
        wants_usage=options is not None and getattr(options, "include_usage", None) is True,
        raw=raw,
    )


def _fallbacks(typed: object) -> list[str]:
    got = getattr(typed, "fallbacks", msgspec.UNSET)
    return [] if got is msgspec.UNSET else list(got)


async def _decode_multipart(request: web.Request, op: Operation) -> Inbound:
    if request.content_type != "multipart/form-data":
        raise InvalidRequestError(
            f"Expected a multipart/form-data body, got `{request.content_type}`."
        )
    try:
        form = await request.post()
    except ValueError as exc:
        raise InvalidRequestError(f"The multipart body cannot be read: {exc}") from None
    fields: list[tuple[str, str]] = []
    uploads: list[Upload] = []
    for name, value in form.items():
        if isinstance(value, str):
            fields.append((name, value))
        elif isinstance(value, web.FileField):
            uploads.append(
                Upload(
                    field=name,
                    filename=value.filename,
                    content_type=value.content_type,
                    data=value.file.read(),
                )
            )
    if not any(u.field == "file" for u in uploads):
        raise InvalidRequestError(
            "The audio file is missing: send it as the `file` part.", param="file"
        )
    # Repeated fields (``timestamp_granularities[]``) are forwarded as sent; the check reads the
    # last of each.
    try:
        typed = msgspec.convert(dict(fields), SCHEMAS[op.name], strict=False)
    except msgspec.ValidationError as exc:
        message, param = _param(exc)
        raise InvalidRequestError(message, param=param) from None
    fallbacks = [v for k, v in fields if k in ("fallbacks", "fallbacks[]")]
    return Inbound(
        op=op,
        typed=typed,
        model=typed.model,
        fallbacks=fallbacks,
        stream=False,
        fields=fields,
        uploads=uploads,
    )


def decode_middleware() -> Middleware:
    @web.middleware
    async def decode(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = operation_of(request)
        if op is None or op.body == "none":
            return await handler(request)
        if op.decode is not None:
            inbound = op.decode(request, await request.read())
        elif op.body == "json":
            inbound = _decode_json(await request.read(), op)
        else:
            inbound = await _decode_multipart(request, op)
        request[BODY] = inbound
        outcome = request[OUTCOME]
        outcome.model_requested = inbound.model
        outcome.stream = inbound.stream
        return await handler(request)

    return decode
