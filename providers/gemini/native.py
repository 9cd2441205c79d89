"""A Gemini API request forwarded as the client sent it (the native ``/genai`` routes, when a
``gemini`` provider serves them): what it is, the few rewrites the upstream needs, and the usage
read from the native answer (pure).
"""

from __future__ import annotations

import msgspec

from providers.gemini.response import usage_of
from providers.gemini.wire import EmbedResponse, ErrorBody, UsageMetadata
from proxy.schemas.common import BilledUsage

__all__ = [
    "NATIVE_COUNT",
    "NATIVE_EMBED",
    "NATIVE_GENERATE",
    "NATIVE_OPERATIONS",
    "NativeBody",
    "StreamMeta",
    "embed_usage",
    "for_model",
    "generate_usage",
    "stream_meta",
]

# The request types of the ``/genai`` routes (``Operation.name``): a ``gemini`` provider serves
# them natively.
NATIVE_GENERATE = "genai_generate"
NATIVE_EMBED = "genai_embed"
NATIVE_COUNT = "genai_count_tokens"
NATIVE_OPERATIONS = frozenset({NATIVE_GENERATE, NATIVE_EMBED, NATIVE_COUNT})

_encode = msgspec.json.Encoder().encode
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])


class NativeBody(msgspec.Struct, frozen=True):
    """What a ``/genai`` route received: the model method (``generateContent``,
    ``embedContent``, ``batchEmbedContents``, ``countTokens``; streams say so in
    ``Inbound.stream``) and the JSON body, without the gateway's own fields."""

    method: str
    body: bytes


class _Batch(msgspec.Struct):
    requests: list[dict[str, msgspec.Raw]]


_batch = msgspec.json.Decoder(_Batch).decode


def for_model(native: NativeBody, model: str) -> bytes:
    """The body for ``model``: the model named inside it (each request of a batch, a count's
    ``generateContentRequest``) is the upstream's, not the name the client used for the
    gateway (``gemini/gemini-2.5-flash``)."""
    name = msgspec.Raw(_encode(model if model.startswith("models/") else f"models/{model}"))
    try:
        if native.method == "batchEmbedContents":
            batch = _batch(native.body)
            for request in batch.requests:
                request["model"] = name
            return _encode(batch)
        if native.method == "countTokens" and b"enerate" in native.body:
            top = _RAW.decode(native.body)
            for key in ("generateContentRequest", "generate_content_request"):
                if key in top:
                    inner = _RAW.decode(top[key])
                    inner["model"] = name
                    top[key] = msgspec.Raw(_encode(inner))
            return _encode(top)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # the upstream says what is wrong with it
    return native.body


class _Usage(msgspec.Struct, rename="camel"):
    usage_metadata: UsageMetadata | None = None


class StreamMeta(msgspec.Struct, rename="camel"):
    """What the gateway reads of a native stream event: its usage, or an error."""

    usage_metadata: UsageMetadata | None = None
    error: ErrorBody | None = None


_usage = msgspec.json.Decoder(_Usage).decode
_embedded = msgspec.json.Decoder(EmbedResponse).decode
stream_meta = msgspec.json.Decoder(StreamMeta).decode


def billed(metadata: UsageMetadata) -> BilledUsage:
    return BilledUsage.from_usage(usage_of(metadata))


def generate_usage(body: bytes) -> BilledUsage | None:
    """The usage of a whole ``generateContent`` answer (None when it reports none)."""
    try:
        got = _usage(body).usage_metadata
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return billed(got) if got is not None else None


def embed_usage(body: bytes) -> BilledUsage | None:
    try:
        got = _embedded(body).usage_metadata
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if got is None:
        return None
    return BilledUsage(prompt_tokens=got.prompt_token_count, total_tokens=got.prompt_token_count)
