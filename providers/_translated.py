"""The machinery shared by providers whose API is not OpenAI's (Anthropic, Gemini, Bedrock, ...).

A :class:`TranslatingProvider` subclass supplies the pure parts (rule 2: no I/O):

- ``prepare_chat``: the unified :class:`ChatRequest` as the provider's request (URL, headers,
  body); async only because some credentials are fetched (Vertex tokens) or signed (SigV4);
- ``chat_response``: the provider's answer as a :class:`ChatCompletion`;
- ``stream_translator``: a :class:`StreamTranslator` turning the provider's stream events into
  :class:`ChatCompletionChunk` objects, one event at a time;
- ``map_error``: the provider's error answer as an :class:`UpstreamError`;
- optionally embeddings (``prepare_embedding``/``embedding_response``) and ``list_models``.

This module does the rest once for all of them: key choice, the HTTP exchange and its error
statuses, the event loop of a stream (never holding an event back), the final usage chunk, the
accounting, ``/v1/completions`` served through chat, and the embeddings response shape.
"""

from __future__ import annotations

import base64
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import msgspec
from msgspec import UNSET
from yarl import URL

from providers._completions import (
    chat_from_completion,
    encode_text_chunks,
    text_completion_from_chat,
)
from providers._keys import KeyRing
from providers._sse import SSEParser
from providers._upstream import (
    Attempt,
    StreamAttempt,
    Timeouts,
    Upstream,
    forwardable_headers,
)
from providers.base import Call, EventStream, JSONReply, ModelInfo, Reply
from proxy.config import ProviderConfig
from proxy.errors import (
    GatewayError,
    InvalidRequestError,
    UnsupportedCapabilityError,
    UpstreamConnectionError,
    UpstreamError,
)
from proxy.redact import Redactor
from proxy.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ThinkingBlock,
)
from proxy.schemas.common import BilledUsage, Usage
from proxy.schemas.embeddings import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

__all__ = [
    "ChunkMaker",
    "EmbeddingResult",
    "Prepared",
    "StreamTranslator",
    "TranslatingProvider",
    "chat_from_completion",
    "embedding_body",
    "embedding_inputs",
    "parse_data_url",
    "stream_cut",
    "text_completion_from_chat",
]

_encode = msgspec.json.Encoder().encode


class Prepared(msgspec.Struct):
    """One upstream request, ready to send."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    method: str = "POST"
    # The URL is percent-encoded exactly as it must be sent (a signed request: SigV4 signs the
    # path as encoded); otherwise aiohttp's URL normalisation may rewrite it (``%3A`` -> ``:``).
    encoded_url: bool = False


class EmbeddingResult(msgspec.Struct):
    vectors: list[list[float]]
    prompt_tokens: int = 0


class StreamTranslator(Protocol):
    """Turns one provider stream into OpenAI chunks (pure; one instance per stream).

    ``feed`` takes one native event and returns the chunks it completes (often one, sometimes
    none); it raises :class:`GatewayError` for an error event. ``finish`` is called when the
    upstream ends the stream and returns what is still owed (a finish reason); it raises
    :class:`UpstreamConnectionError` when the stream ended before the provider said it was done.
    ``usage`` is the usage reported so far (also read after a client disconnect);
    ``usage_chunk`` the final ``choices: []`` chunk that carries it.
    """

    usage: Usage | None

    def feed(self, event: Any) -> list[ChatCompletionChunk]: ...

    def finish(self) -> list[ChatCompletionChunk]: ...

    def usage_chunk(self) -> ChatCompletionChunk | None: ...


class ChunkMaker:
    """Builds the chunks of one stream, with the stream's id, model and creation time.

    The role goes with the first chunk that carries anything (OpenAI's first chunk has it).
    """

    __slots__ = ("_role_sent", "created", "id", "model")

    def __init__(self, id: str, model: str, created: int | None = None) -> None:
        self.id = id
        self.model = model
        self.created = int(time.time()) if created is None else created
        self._role_sent = False

    def chunk(self, delta: Delta, finish_reason: str | None = None) -> ChatCompletionChunk:
        if not self._role_sent:
            delta.role = "assistant"
            self._role_sent = True
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        )

    def text(self, text: str) -> ChatCompletionChunk:
        return self.chunk(Delta(content=text))

    def reasoning(self, text: str) -> ChatCompletionChunk:
        return self.chunk(Delta(reasoning_content=text))

    def thinking_block(self, block: ThinkingBlock) -> ChatCompletionChunk:
        return self.chunk(Delta(thinking_blocks=[block]))

    def tool_start(
        self, index: int, id: str, name: str, extra_content: msgspec.Raw | None = None
    ) -> ChatCompletionChunk:
        call = DeltaToolCall(
            index=index, id=id, type="function", function=DeltaFunction(name=name, arguments="")
        )
        if extra_content is not None:
            call.extra_content = extra_content
        return self.chunk(Delta(tool_calls=[call]))

    def tool_arguments(self, index: int, arguments: str) -> ChatCompletionChunk:
        call = DeltaToolCall(index=index, function=DeltaFunction(arguments=arguments))
        return self.chunk(Delta(tool_calls=[call]))

    def finish(self, reason: str) -> ChatCompletionChunk:
        return self.chunk(Delta(), finish_reason=reason)

    def usage(self, usage: Usage) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[], usage=usage
        )


def parse_data_url(url: str) -> tuple[str, bytes]:
    """``data:<mime>;base64,<data>`` as (mime, bytes); a 400 for anything else."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidRequestError(
            "An inline file must be a base64 data URL: `data:<media type>;base64,<data>`.",
            param="messages",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise InvalidRequestError(
            "The data URL's content is not valid base64.", param="messages"
        ) from None
    return head[5:-7] or "application/octet-stream", data


# --- embeddings ------------------------------------------------------------------------------


def embedding_inputs(req: EmbeddingRequest, provider: str) -> list[str]:
    """The texts to embed; token-id inputs cannot be translated to another tokenizer."""
    if isinstance(req.input, str):
        return [req.input]
    if not all(isinstance(x, str) for x in req.input):
        raise InvalidRequestError(
            f"Provider `{provider}` embeds text only: `input` must be a string or a list of "
            "strings, not token ids.",
            param="input",
        )
    return [x for x in req.input if isinstance(x, str)]


def embedding_body(
    vectors: Sequence[Sequence[float]], model: str, usage: EmbeddingUsage, encoding: str
) -> bytes:
    """OpenAI's embeddings response; ``encoding`` ``base64`` packs each vector as float32."""
    data: list[Embedding] = []
    for i, vector in enumerate(vectors):
        if encoding == "base64":
            packed = struct.pack(f"<{len(vector)}f", *vector)
            data.append(Embedding(index=i, embedding=base64.b64encode(packed).decode()))
        else:
            data.append(Embedding(index=i, embedding=list(vector)))
    return _encode(EmbeddingList(data=data, model=model, usage=usage))


# --- the provider ------------------------------------------------------------------------------


class TranslatingProvider(ABC):
    """Base class of the providers that translate to and from their own API.

    ``operations`` lists what the subclass serves; ``text_completion`` is served through chat
    whenever ``chat_completion`` is.
    """

    # Content types a stream answer may have; anything else is a 502.
    stream_content_types: frozenset[str] = frozenset({"text/event-stream"})

    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        upstream: Upstream,
        keys: KeyRing,
        *,
        operations: frozenset[str],
        proxy: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.operations = operations | (
            {"text_completion"} if "chat_completion" in operations else set()
        )
        self.settings = settings
        self.keys = keys
        self._upstream = upstream
        self._proxy = proxy
        self.scrub = Redactor([*keys.values, *secrets])
        self.timeouts = Timeouts(name, settings)

    # --- what a subclass provides ---------------------------------------------------------

    @abstractmethod
    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared: ...

    @abstractmethod
    def chat_response(self, body: bytes, model: str) -> ChatCompletion: ...

    @abstractmethod
    def stream_translator(self, model: str, request_id: str) -> StreamTranslator: ...

    @abstractmethod
    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError: ...

    async def prepare_embedding(
        self, req: EmbeddingRequest, model: str, key: int | None
    ) -> Prepared:
        raise UnsupportedCapabilityError(self.name, "embeddings")

    def embedding_response(self, body: bytes, req: EmbeddingRequest) -> EmbeddingResult:
        raise UnsupportedCapabilityError(self.name, "embeddings")

    async def list_models(self) -> list[ModelInfo]:
        """The configured ``models`` (subclasses with a model list endpoint add theirs)."""
        return [ModelInfo(id=m, owned_by=self.name) for m in self.settings.models]

    def client_headers(self, sent: Mapping[str, str]) -> Mapping[str, str]:
        """Headers of the client's request this provider passes on (Anthropic's
        ``anthropic-beta``), added to the prepared chat request; none by default."""
        return {}

    async def read_stream(
        self, resp: aiohttp.ClientResponse, guard: StreamAttempt
    ) -> AsyncIterator[list[Any]]:
        """The native events of a stream answer, grouped by network read (SSE by default);
        each read inside ``guard``, which maps client errors and names a limit that fired."""
        parser = SSEParser()
        read = resp.content.readany
        while True:
            with guard:
                chunk = await read()
            if not chunk:
                tail = parser.close()
                if tail:
                    yield tail
                return
            events = parser.feed(chunk)
            if events:
                yield events

    async def aclose(self) -> None:
        return None

    # --- helpers for subclasses ------------------------------------------------------------

    def upstream_model(self, model: str) -> str:
        """The upstream's id for a model callers name (``deployments`` maps it, else as is)."""
        return self.settings.deployments.get(model, model)

    def bad_response(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"{self.name}: the upstream's {what} is not in the expected format.",
            status=502,
            provider=self.name,
        )

    async def open(self, prepared: Prepared, timeout: Attempt) -> aiohttp.ClientResponse:
        """The upstream's response once its headers are in; an error status is raised as the
        gateway's error, with the upstream's message."""
        resp = await self._upstream.open(
            prepared.method,
            URL(prepared.url, encoded=True) if prepared.encoded_url else prepared.url,
            provider=self.name,
            headers=prepared.headers,
            timeout=timeout,
            data=prepared.body if prepared.method != "GET" else None,
            proxy=self._proxy,
        )
        if resp.status >= 400:
            timeout.stop()
            try:
                body = await Upstream.read(resp, self.name, timeout)
            finally:
                resp.release()
            raise self.map_error(resp.status, body, resp.headers)
        return resp

    async def fetch_media(
        self, url: str, *, max_bytes: int = 20 * 1024 * 1024
    ) -> tuple[str, bytes]:
        """Download a file a request names by URL (an image), for providers that accept only
        inline bytes: its media type and content. A ``data:`` URL is decoded without I/O.

        Bounded in size and time; a failure is the caller's 400, naming the URL.
        """
        if url.startswith("data:"):
            return parse_data_url(url)
        if not url.startswith(("http://", "https://")):
            raise InvalidRequestError(
                f"Provider `{self.name}` needs files inline or at an http(s) URL, "
                f"not `{url[:60]}`.",
                param="messages",
            )
        timeout = self.timeouts.json()
        try:
            resp = await self._upstream.open(
                "GET", url, provider=self.name, headers={}, timeout=timeout, proxy=self._proxy
            )
        except GatewayError as exc:
            raise InvalidRequestError(
                f"Could not download `{url[:200]}` for provider `{self.name}`: {exc.message}",
                param="messages",
            ) from None
        try:
            if resp.status >= 400:
                raise InvalidRequestError(
                    f"Could not download `{url[:200]}` for provider `{self.name}`: "
                    f"HTTP {resp.status}.",
                    param="messages",
                )
            data = bytearray()
            with timeout:
                async for piece in resp.content.iter_chunked(65536):
                    data += piece
                    if len(data) > max_bytes:
                        raise InvalidRequestError(
                            f"`{url[:200]}` is larger than {max_bytes // (1024 * 1024)} MB.",
                            param="messages",
                        )
            return resp.content_type or "application/octet-stream", bytes(data)
        finally:
            resp.release()

    async def fetch(
        self, prepared: Prepared, cap: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A whole non-streaming answer: its body and the headers worth forwarding; ``cap``:
        the client's limit for the attempt (``Call.timeout_s``)."""
        timeout = self.timeouts.json(cap)
        resp = await self.open(prepared, timeout)
        try:
            return await Upstream.read(resp, self.name, timeout), forwardable_headers(resp.headers)
        finally:
            resp.release()

    # --- the Provider protocol -------------------------------------------------------------

    async def send(self, call: Call) -> Reply:
        inbound = call.inbound
        op = inbound.op.name
        key = self._key_index(call)
        model = self.upstream_model(call.target.model)
        if op == "embedding":
            return await self._embed(inbound.typed, model, key, call.timeout_s)
        if op == "text_completion":
            req = chat_from_completion(inbound.typed, self.name)
        elif op == "chat_completion":
            req = inbound.typed
        else:
            raise UnsupportedCapabilityError(self.name, op.replace("_", " "))
        text = op == "text_completion"
        prepared = await self.prepare_chat(req, model, stream=inbound.stream, key=key)
        passed = self.client_headers(call.client_headers)
        if passed:
            prepared.headers = {**prepared.headers, **passed}
        if inbound.stream:
            return await self._stream(call, prepared, model, text=text)
        data, headers = await self.fetch(prepared, call.timeout_s)
        try:
            completion = self.chat_response(data, model)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.bad_response("response") from exc
        usage = completion.usage if completion.usage is not UNSET else None
        body = _encode(text_completion_from_chat(completion) if text else completion)
        return JSONReply(
            body=body,
            usage=BilledUsage.from_usage(usage) if usage is not None else None,
            headers=headers,
            raw=data,
        )

    def _key_index(self, call: Call) -> int | None:
        model = call.target.model
        try:
            call.key = self.keys.choose(model, call.avoid_key)
            return call.key
        except LookupError:
            raise InvalidRequestError(
                f"No API key of provider `{self.name}` is allowed to use model `{model}`.",
                param="model",
                code="model_not_allowed",
            ) from None

    async def _embed(
        self, req: EmbeddingRequest, model: str, key: int | None, cap: float | None
    ) -> JSONReply:
        prepared = await self.prepare_embedding(req, model, key)
        data, headers = await self.fetch(prepared, cap)
        try:
            result = self.embedding_response(data, req)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.bad_response("embeddings response") from exc
        usage = EmbeddingUsage(
            prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
        )
        encoding = req.encoding_format if req.encoding_format is not UNSET else "float"
        body = embedding_body(result.vectors, req.model.partition("/")[2] or model, usage, encoding)
        billed = BilledUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
        return JSONReply(body=body, usage=billed, headers=headers, raw=data)

    async def _stream(
        self, call: Call, prepared: Prepared, model: str, *, text: bool
    ) -> EventStream:
        guard = self.timeouts.stream(call.timeout_s)
        resp = await self.open(prepared, guard)
        if resp.content_type not in self.stream_content_types:
            guard.stop()
            resp.release()
            raise UpstreamError(
                f"{self.name}: expected an event stream, got `{resp.content_type}`.",
                status=502,
                provider=self.name,
            )
        translator = self.stream_translator(model, call.request_id)
        wants_usage = call.inbound.wants_usage
        encode = encode_text_chunks if text else _encode_chunks

        async def events(stream: EventStream) -> AsyncGenerator[list[bytes], None]:
            started = False
            try:
                async for natives in self.read_stream(resp, guard):
                    chunks: list[ChatCompletionChunk] = []
                    try:
                        for native in natives:
                            chunks.extend(translator.feed(native))
                    except GatewayError:
                        # Once the client has events, those that came before the error in the
                        # same read go out first; before that, nothing is sent, so the request
                        # can still fall back whole.
                        partial = encode(chunks) if started and chunks else None
                        if partial:
                            yield partial
                        raise
                    if chunks:
                        batch = encode(chunks)
                        if batch:
                            if not started:
                                # The first-event limit is met; the idle one applies now.
                                guard.first_event()
                                started = True
                            yield batch
                tail = translator.finish()
                usage_chunk = translator.usage_chunk() if wants_usage else None
                if usage_chunk is not None:
                    tail.append(usage_chunk)
                if translator.usage is not None:
                    # Set with the batch that ends in the usage chunk: the dispatcher appends
                    # extra_fields to that chunk.
                    stream.usage = BilledUsage.from_usage(translator.usage)
                batch = encode(tail)
                if batch:
                    yield batch
            finally:
                # A client that went away mid-stream: account for what was reported so far.
                if stream.usage is None and translator.usage is not None:
                    stream.usage = BilledUsage.from_usage(translator.usage)

        return EventStream(events, close=guard.close, headers=forwardable_headers(resp.headers))


def _encode_chunks(chunks: list[ChatCompletionChunk]) -> list[bytes]:
    return [_encode(c) for c in chunks]


def stream_cut(provider: str) -> UpstreamConnectionError:
    """The error for a stream that ended before the provider said it was complete."""
    return UpstreamConnectionError(
        f"Provider `{provider}` ended the stream before it was complete."
    )
