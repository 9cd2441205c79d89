"""The OpenAI wire format, shared by OpenAI and every OpenAI-compatible provider.

The client's JSON body is forwarded as it came (fields the gateway does not model included), with
four changes: ``model`` becomes the provider's own model name, gateway-only fields (``fallbacks``)
go, fields the provider's spec lists under ``drop_params`` go, and a streaming request asks for
usage (``stream_options.include_usage``) so the gateway can account for it. The usage-only chunk
that this adds is not forwarded to a client that did not ask for it. The Responses API, which
OpenAI and Azure also serve, has its own rules (``_openai_responses``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Literal

import aiohttp
import msgspec

from providers._keys import KeyRing
from providers._sse import SSEParser
from providers._types import BuildContext, KeyedType
from providers._upstream import (
    Attempt,
    StreamAttempt,
    Timeouts,
    Upstream,
    forwardable_headers,
    release_when_done,
)
from providers.base import ByteStream, Call, EventStream, JSONReply, ModelInfo, Reply
from proxy.config import ProviderConfig
from proxy.errors import InvalidRequestError, UnsupportedCapabilityError, UpstreamError
from proxy.operations import GATEWAY_FIELDS, Inbound
from proxy.redact import Redactor
from proxy.schemas.audio import TranscriptionUsage
from proxy.schemas.chat import StreamOptions
from proxy.schemas.common import BilledUsage, Usage

__all__ = [
    "ALL_OPERATIONS",
    "INPUT_TOKENS",
    "PATHS",
    "CompatSpec",
    "OpenAICompatProvider",
    "ParamRule",
    "compat_type",
    "map_error",
]

ALL_OPERATIONS = frozenset(
    {"chat_completion", "text_completion", "embedding", "speech", "transcription"}
)

# The input-token count of the Responses API: not an operation, but addressed like one.
INPUT_TOKENS = "responses_input_tokens"
# Each operation's path under the API root.
PATHS = {
    "chat_completion": "/chat/completions",
    "text_completion": "/completions",
    "embedding": "/embeddings",
    "speech": "/audio/speech",
    "transcription": "/audio/transcriptions",
    # Served only by providers that subclass ``_openai_responses.ResponsesProvider``.
    "responses": "/responses",
    INPUT_TOKENS: "/responses/input_tokens",
}
_STREAMING_OPS = frozenset({"chat_completion", "text_completion"})


class ParamRule(msgspec.Struct, frozen=True):
    """A request field the upstream refuses unless its value is one of ``allowed`` (raw JSON)."""

    param: str
    reason: str
    allowed: frozenset[bytes] = frozenset({b"null"})


class CompatSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What distinguishes one OpenAI-compatible upstream from another."""

    base_url: str | None
    # The environment variable that holds the key when the config gives none.
    key_env: str | None = None
    # For keyless local servers: the variable that, set, enables the provider with no config file.
    base_url_env: str | None = None
    # How a key is sent: ``Authorization: Bearer <key>``, or an ``api-key: <key>`` header (Azure).
    auth: Literal["bearer", "api-key", "none"] = "bearer"
    operations: frozenset[str] = ALL_OPERATIONS
    # Fields removed before forwarding: ones the upstream rejects but that do not change the answer.
    drop_params: frozenset[str] = frozenset()
    # (OpenAI's name, the upstream's name); applied only when the upstream's name is not also sent.
    renames: tuple[tuple[str, str], ...] = ()
    # Fields that do change the answer: a request using them is refused with a 400 naming them.
    rejected: tuple[ParamRule, ...] = ()
    # False: the upstream refuses ``stream_options`` but reports usage in its last chunk anyway.
    stream_options: bool = True
    has_model_list: bool = True


class _UsageView(msgspec.Struct):
    usage: Usage | None = None


class _ChunkView(msgspec.Struct):
    usage: Usage | None = None
    choices: list[msgspec.Raw] = []


class _TranscriptionView(msgspec.Struct):
    usage: TranscriptionUsage | None = None


class _ModelEntry(msgspec.Struct):
    id: str
    created: int | None = 0
    owned_by: str | None = ""


class _ModelListView(msgspec.Struct):
    data: list[_ModelEntry]


_encode = msgspec.json.Encoder().encode
_usage_view = msgspec.json.Decoder(_UsageView).decode


def _chat_usage(data: bytes) -> BilledUsage | None:
    usage = _usage_view(data).usage
    return BilledUsage.from_usage(usage) if usage else None


_chunk_view = msgspec.json.Decoder(_ChunkView).decode
_transcription_view = msgspec.json.Decoder(_TranscriptionView).decode
_model_list = msgspec.json.Decoder(_ModelListView).decode
_any = msgspec.json.Decoder().decode
_FORCED_USAGE = msgspec.Raw(_encode(StreamOptions(include_usage=True)))


def map_error(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str, scrub: Redactor
) -> UpstreamError:
    """An upstream's error answer as the gateway's error, keeping its status, type and message.

    Understands OpenAI's ``{"error": {...}}`` and the variants compatible servers send:
    ``{"error": "text"}`` (Ollama), a top-level ``message`` (vLLM, Mistral), ``detail`` (FastAPI).
    """
    message: Any = None
    type_: Any = None
    code: Any = None
    param: Any = None
    inner: Any = None
    try:
        doc = _any(body) if body else None
    except msgspec.DecodeError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            message, type_, code, param = (err.get(k) for k in ("message", "type", "code", "param"))
            # Azure's details (a content filter's verdict per category) travel on unchanged.
            inner = err.get("innererror")
        elif isinstance(err, str):
            message = err
        if message is None:
            message = doc.get("message") or doc.get("detail")
            type_ = type_ or doc.get("type")
            code = code if code is not None else doc.get("code")
    if message is None:
        text = body[:300].decode("utf-8", "replace").strip()
        message = f"HTTP {status}" + (f": {text}" if text else "")
    if not isinstance(message, str):
        message = _encode(message).decode()
    keep = {}
    for name in ("retry-after", "retry-after-ms"):
        if name in headers:
            keep[name] = headers[name]
    return UpstreamError(
        f"{provider}: {scrub(message)}",
        status=status,
        provider=provider,
        type=type_ if isinstance(type_, str) else None,
        code=str(code) if code is not None else None,
        param=param if isinstance(param, str) else None,
        headers=keep,
        innererror=_encode(inner) if isinstance(inner, dict) else None,
    )


class OpenAICompatProvider:
    """A provider that speaks OpenAI's API at ``base_url``."""

    def __init__(
        self,
        name: str,
        spec: CompatSpec,
        settings: ProviderConfig,
        upstream: Upstream,
        keys: KeyRing,
        *,
        proxy: str | None = None,
    ) -> None:
        base = settings.base_url or spec.base_url
        if not base:
            raise ValueError(f"provider {name}: no base_url")
        self.name = name
        self.operations = spec.operations
        self._spec = spec
        self._base = base.rstrip("/")
        self._upstream = upstream
        self._proxy = proxy
        self._keys = keys
        self._scrub = Redactor(keys.values)
        self._drop = GATEWAY_FIELDS | spec.drop_params
        self._model_raw: dict[str, msgspec.Raw] = {}
        self._configured_models = settings.models
        self._urls = {op: self._base + path for op, path in PATHS.items()}
        static = {"Accept": "application/json", **settings.headers}
        self._headers: list[dict[str, str]] = [
            {**static, **_auth_header(spec.auth, v)} for v in keys.values
        ] or [static]
        self._json_headers = [{**h, "Content-Type": "application/json"} for h in self._headers]
        self._timeouts = Timeouts(name, settings)

    # --- the Provider protocol --------------------------------------------------------------

    async def send(self, call: Call) -> Reply:
        inbound = call.inbound
        op = inbound.op.name
        key = self._key_index(call)
        model, url = self._route(op, call.target.model)
        if op == "transcription":
            return await self._transcribe(call, url, key, model)
        if op == "responses":
            return await self._respond(call, url, key, model)
        self._check_params(inbound)
        body = self._json_body(inbound, model)
        cap = call.timeout_s
        if inbound.stream and op in _STREAMING_OPS:
            return await self._stream(url, body, key, cap, forced=not inbound.wants_usage)
        if op == "speech":
            return await self._bytes(url, body, key, cap)
        return await self._json(url, body, key, cap)

    async def list_models(self) -> list[ModelInfo]:
        listed = [ModelInfo(id=m, owned_by=self.name) for m in self._configured_models]
        if not self._spec.has_model_list:
            return listed
        headers = self._headers[self._keys.any_key() or 0]
        timeout = self._timeouts.json()
        resp = await self._open("GET", self._base + "/models", headers, timeout)
        try:
            data = await Upstream.read(resp, self.name, timeout)
        finally:
            resp.release()
        try:
            entries = _model_list(data).data
        except msgspec.DecodeError as exc:
            raise self._not_json("model list") from exc
        seen = {m.id for m in listed}
        listed.extend(
            ModelInfo(id=e.id, created=e.created or 0, owned_by=e.owned_by or self.name)
            for e in entries
            if e.id not in seen
        )
        return listed

    async def aclose(self) -> None:
        return None

    # --- requests ---------------------------------------------------------------------------

    def _route(self, op: str, model: str) -> tuple[str, str]:
        """The upstream's name for ``model`` and the URL of operation ``op``; a subclass whose
        upstream addresses models in the path (Azure deployments) overrides it."""
        return model, self._urls[op]

    def _key_index(self, call: Call) -> int:
        model = call.target.model
        try:
            index = self._keys.choose(model, call.avoid_key)
        except LookupError:
            raise InvalidRequestError(
                f"No API key of provider `{self.name}` is allowed to use model `{model}`.",
                param="model",
                code="model_not_allowed",
            ) from None
        call.key = index
        return index or 0

    def _check_params(self, inbound: Inbound) -> None:
        raw = inbound.raw
        if raw is None:
            return
        for rule in self._spec.rejected:
            value = raw.get(rule.param)
            if value is not None and bytes(value) not in rule.allowed:
                raise InvalidRequestError(
                    f"Provider `{self.name}` does not support `{rule.param}`: {rule.reason}",
                    param=rule.param,
                    code="unsupported_parameter",
                )

    def _model_json(self, model: str) -> msgspec.Raw:
        got = self._model_raw.get(model)
        if got is None:
            got = msgspec.Raw(_encode(model))
            if len(self._model_raw) < 1024:
                self._model_raw[model] = got
        return got

    def _json_body(self, inbound: Inbound, model: str) -> bytes:
        raw = inbound.raw or {}
        out = {k: v for k, v in raw.items() if k not in self._drop}
        out["model"] = self._model_json(model)
        for ours, theirs in self._spec.renames:
            if ours in out:
                value = out.pop(ours)
                out.setdefault(theirs, value)
        if inbound.stream and not inbound.wants_usage:
            if self._spec.stream_options:
                out["stream_options"] = _stream_options(inbound)
            else:
                out.pop("stream_options", None)
        elif not self._spec.stream_options:
            out.pop("stream_options", None)
        return _encode(out)

    async def _json(
        self,
        url: str,
        body: bytes,
        key: int,
        cap: float | None,
        usage_of: Callable[[bytes], BilledUsage | None] | None = None,
    ) -> JSONReply:
        """POST and read a JSON answer; ``usage_of`` reads its usage (default: chat's)."""
        timeout = self._timeouts.json(cap)
        resp = await self._post(url, body, key, timeout)
        try:
            data = await Upstream.read(resp, self.name, timeout)
            headers = forwardable_headers(resp.headers)
        finally:
            resp.release()
        try:
            usage = (usage_of or _chat_usage)(data)
        except msgspec.DecodeError as exc:
            raise self._not_json("response") from exc
        return JSONReply(body=data, usage=usage, headers=headers)

    async def _respond(self, call: Call, url: str, key: int, model: str) -> Reply:
        """``POST /responses``: only a provider whose spec lists the operation gets here, and
        ``_openai_responses.ResponsesProvider`` overrides this."""
        raise UnsupportedCapabilityError(self.name, "the Responses API")

    async def _stream(
        self, url: str, body: bytes, key: int, cap: float | None, *, forced: bool
    ) -> EventStream:
        timeout = self._timeouts.stream(cap)
        resp = await self._post(url, body, key, timeout)
        self._expect_event_stream(resp, timeout)
        return EventStream(
            lambda stream: self._events(resp, stream, timeout, forced=forced),
            close=timeout.close,
            headers=forwardable_headers(resp.headers),
        )

    async def _events(
        self,
        resp: aiohttp.ClientResponse,
        stream: EventStream,
        guard: StreamAttempt,
        *,
        forced: bool,
    ) -> AsyncGenerator[list[bytes], None]:
        """The stream's payloads in batches, one batch per read; a subclass may wrap it."""
        name, scrub = self.name, self._scrub
        parser = SSEParser()
        read = resp.content.readany
        waiting = True  # for the first event: then ``guard`` switches to the idle limit
        while True:
            with guard:
                chunk = await read()
            # At the end, an event the upstream did not close with a blank line still counts.
            completed = parser.feed(chunk) if chunk else parser.close()
            if not chunk and not completed:
                return
            batch: list[bytes] = []
            for event in completed:
                data = event.data
                if data == b"[DONE]":
                    if batch:
                        if waiting:
                            _check_first(batch, name)
                        yield batch
                    return
                if data.startswith(b'{"error"'):
                    # OpenAI reports a failure after the stream began as an error payload;
                    # what came before it in the same read still goes out first.
                    if batch:
                        yield batch
                    raise map_error(500, data, {}, provider=name, scrub=scrub)
                # With include_usage every chunk says "usage":null; only an object counts.
                if _has_usage(data):
                    view = _chunk_view(data)
                    if view.usage is not None:
                        stream.usage = BilledUsage.from_usage(view.usage)
                        if forced and not view.choices:
                            continue
                batch.append(data)
            if batch:
                if waiting:
                    # The first event is checked (once per stream): an upstream that answers
                    # 200 and then garbage still lets the gateway fall back.
                    _check_first(batch, name)
                    guard.first_event()
                    waiting = False
                yield batch
            if not chunk:
                return

    async def _bytes(self, url: str, body: bytes, key: int, cap: float | None) -> ByteStream:
        timeout = self._timeouts.body(cap)
        resp = await self._post(url, body, key, timeout)
        return ByteStream(
            Upstream.chunks(resp, self.name, timeout),
            content_type=resp.headers.get("Content-Type", "application/octet-stream"),
            close=release_when_done(resp),
            headers=forwardable_headers(resp.headers),
        )

    async def _transcribe(self, call: Call, url: str, key: int, model: str) -> Reply:
        inbound = call.inbound
        form = aiohttp.FormData(quote_fields=False)
        for name, value in inbound.fields or ():
            if name in self._drop:
                continue
            form.add_field(name, model if name == "model" else value)
        for up in inbound.uploads or ():
            form.add_field(up.field, up.data, filename=up.filename, content_type=up.content_type)
        timeout = self._timeouts.body(call.timeout_s)
        resp = await self._open("POST", url, self._headers[key], timeout, form)
        headers = forwardable_headers(resp.headers)
        if resp.content_type != "application/json":
            # Plain text, subtitles, or (with ``stream=true``) events: forwarded as they arrive.
            return ByteStream(
                Upstream.chunks(resp, self.name, timeout),
                content_type=resp.headers.get("Content-Type", "text/plain"),
                close=release_when_done(resp),
                headers=headers,
            )
        try:
            data = await Upstream.read(resp, self.name, timeout)
        finally:
            resp.release()
        try:
            usage = _transcription_view(data).usage
        except msgspec.DecodeError as exc:
            raise self._not_json("transcription") from exc
        billed = None
        if usage is not None:
            billed = BilledUsage(
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
                total_tokens=usage.total_tokens,
                audio_seconds=usage.seconds,
            )
        return JSONReply(body=data, usage=billed, headers=headers)

    async def _post(
        self, url: str, body: bytes, key: int, timeout: Attempt
    ) -> aiohttp.ClientResponse:
        return await self._open("POST", url, self._json_headers[key], timeout, body)

    async def _open(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeout: Attempt,
        data: Any = None,
    ) -> aiohttp.ClientResponse:
        """The upstream's response once its headers are in; an error status is raised as the
        gateway's error, with the upstream's message."""
        resp = await self._upstream.open(
            method,
            url,
            provider=self.name,
            headers=headers,
            timeout=timeout,
            data=data,
            proxy=self._proxy,
        )
        if resp.status >= 400:
            timeout.stop()
            try:
                body = await Upstream.read(resp, self.name, timeout)
            finally:
                resp.release()
            raise self._error(resp.status, body, resp.headers)
        return resp

    def _expect_event_stream(self, resp: aiohttp.ClientResponse, timeout: Attempt) -> None:
        if resp.content_type != "text/event-stream":
            timeout.stop()
            resp.release()
            raise UpstreamError(
                f"{self.name}: expected an event stream, got `{resp.content_type}`.",
                status=502,
                provider=self.name,
            )

    def _error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return map_error(status, body, headers, provider=self.name, scrub=self._scrub)

    def _not_json(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"{self.name}: the upstream's {what} is not the expected JSON.",
            status=502,
            provider=self.name,
        )


# Checks JSON syntax without building anything (a fifth of the cost of decoding to a dict).
_JSON_SYNTAX = msgspec.json.Decoder(msgspec.Raw)


def _check_first(batch: list[bytes], provider: str) -> None:
    """The stream's first event must be JSON (later ones are forwarded as they come)."""
    data = batch[0]
    try:
        if data[:1] != b"{":
            raise msgspec.DecodeError
        _JSON_SYNTAX.decode(data)
    except msgspec.DecodeError:
        raise UpstreamError(
            f"{provider}: the stream's first event is not a JSON object.",
            status=502,
            provider=provider,
            retryable=True,
        ) from None


def _has_usage(chunk: bytes) -> bool:
    """Whether a chunk's ``usage`` is an object (not ``null``), without decoding it.

    Searched from the end: OpenAI and compatible servers put ``usage`` last (or nearly), so the
    search reads a few dozen bytes rather than the whole chunk. A usage object holds no nested
    ``"usage":`` key, so the last occurrence is the field itself, whatever the field order.
    """
    at = chunk.rfind(b'"usage":')
    if at < 0:
        return False
    after = chunk[at + 8 : at + 10]
    return after[:1] == b"{" or after == b" {"


def _auth_header(auth: str, key: str) -> dict[str, str]:
    if auth == "bearer":
        return {"Authorization": f"Bearer {key}"}
    if auth == "api-key":
        return {"api-key": key}
    return {}


def _stream_options(inbound: Inbound) -> msgspec.Raw:
    sent = getattr(inbound.typed, "stream_options", None)
    if isinstance(sent, StreamOptions) and sent.include_obfuscation is not msgspec.UNSET:
        return msgspec.Raw(
            _encode(StreamOptions(include_usage=True, include_obfuscation=sent.include_obfuscation))
        )
    return _FORCED_USAGE


def compat_type(
    spec: CompatSpec, provider: type[OpenAICompatProvider] = OpenAICompatProvider
) -> KeyedType:
    """The provider type of an OpenAI-compatible service, built as ``provider``."""

    def build(
        name: str, settings: ProviderConfig, ctx: BuildContext, keys: KeyRing
    ) -> OpenAICompatProvider:
        base = settings.base_url or spec.base_url or ""
        return provider(name, spec, settings, ctx.upstream, keys, proxy=ctx.proxy_for(base))

    return KeyedType(
        build,
        base_url=spec.base_url,
        key_env=spec.key_env,
        base_url_env=spec.base_url_env,
        keyless=spec.auth == "none",
    )
