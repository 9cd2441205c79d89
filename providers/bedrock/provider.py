"""The Bedrock provider: Converse for chat, CountTokens for input-token counts, InvokeModel for
embeddings; signed or bearer-keyed. It also serves the ``/bedrock`` routes' Converse requests
natively (``bedrock_converse``): the client's body re-signed and sent as it came, the answer
returned as Bedrock sent it (a stream read by network read, passed on byte for byte), with the
usage read from it for accounting."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from providers._counting import CountingProvider
from providers._keys import KeyRing
from providers._translated import (
    EmbeddingResult,
    Prepared,
    embedding_body,
    embedding_inputs,
    stream_cut,
)
from providers._types import BuildContext
from providers._upstream import StreamAttempt, Upstream, forwardable_headers
from providers.base import Call, EventStream, JSONReply, ModelInfo, Reply
from providers.bedrock import embed
from providers.bedrock.auth import CredentialSource, env_credentials, sign, static_credentials
from providers.bedrock.errors import PassedOnError, error_from_body, map_error
from providers.bedrock.inbound import CONVERSE, NativeConverse
from providers.bedrock.messages import image_urls
from providers.bedrock.response import from_converse, usage_of
from providers.bedrock.stream import BedrockStream, Frame, FrameReader
from providers.bedrock.translate import count_request, model_family, to_converse
from providers.bedrock.wire import (
    ConverseRequest,
    ConverseResponse,
    CountTokensResponse,
    MetadataEvent,
    TokenUsage,
)
from proxy.config import KeyConfig, ProviderConfig
from proxy.errors import GatewayError, InvalidRequestError, UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatRequest
from proxy.schemas.common import BilledUsage
from proxy.schemas.embeddings import EmbeddingRequest, EmbeddingUsage

__all__ = ["BedrockProvider", "build"]

_T = TypeVar("_T")
_converse = msgspec.json.Decoder(ConverseResponse).decode
_count_answer = msgspec.json.Decoder(CountTokensResponse).decode
_metadata = msgspec.json.Decoder(MetadataEvent).decode


class _UsageOnly(msgspec.Struct):
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)


_usage_only = msgspec.json.Decoder(_UsageOnly).decode
_encode = msgspec.json.Encoder().encode
_JSON = "application/json"
_EVENT_STREAM = "application/vnd.amazon.eventstream"
# Concurrent InvokeModel calls of one embeddings request (Titan takes one text per call).
_EMBED_CONCURRENCY = 8


class BedrockProvider(CountingProvider):
    stream_content_types = frozenset({_EVENT_STREAM})

    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        upstream: Upstream,
        keys: KeyRing,
        *,
        region: str,
        base_url: str,
        credentials: CredentialSource | None,
        proxy: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        super().__init__(
            name,
            settings,
            upstream,
            keys,
            operations=frozenset({"chat_completion", "embedding", CONVERSE}),
            proxy=proxy,
            secrets=secrets,
        )
        self.region = region
        self._base = base_url.rstrip("/")
        # None: Bedrock API keys (bearer tokens) instead of SigV4.
        self._credentials = credentials
        # The names callers use for each upstream id: an ARN's alias says which model it is.
        self._aliases: dict[str, list[str]] = {}
        for alias, target in settings.deployments.items():
            self._aliases.setdefault(target, []).append(alias)

    # --- requests ---------------------------------------------------------------------------

    def url(self, model: str, action: str) -> str:
        """``/model/{modelId}/{action}`` with the id percent-encoded as botocore does (``:`` and
        an ARN's ``/`` included)."""
        return f"{self._base}/model/{quote(model, safe='-._~')}/{action}"

    async def _prepared(
        self, url: str, body: bytes, key: int | None, *, invoke: bool = False
    ) -> Prepared:
        headers = {**self.settings.headers, "Content-Type": _JSON}
        if invoke:
            # InvokeModel's modelled ``accept``: the body type wanted back (Converse has none).
            headers["Accept"] = _JSON
        if self._credentials is None:
            value = self.keys.values[key if key is not None else 0]
            headers["Authorization"] = f"Bearer {value}"
            return Prepared(url, headers, body, encoded_url=True)
        creds = await self._credentials.frozen()
        signed = sign(creds, self.region, method="POST", url=url, headers=headers, body=body)
        return Prepared(url, signed, body, encoded_url=True)

    def _family(self, model: str) -> str:
        return model_family(model, *self._aliases.get(model, ()))

    async def _converse_body(self, req: ChatRequest, model: str) -> ConverseRequest:
        """The Converse body for ``req``, its image URLs downloaded (Converse takes bytes)."""
        urls = list(dict.fromkeys(image_urls(req)))
        fetched = await _gather([self.fetch_media(u) for u in urls], limit=len(urls) or 1)
        media = dict(zip(urls, fetched, strict=True))
        return to_converse(req, model=model, aliases=self._aliases.get(model, ()), media=media)

    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared:
        body = _encode(await self._converse_body(req, model))
        return await self._prepared(
            self.url(model, "converse-stream" if stream else "converse"), body, key
        )

    async def prepare_count(self, req: ChatRequest, model: str, key: int | None) -> Prepared:
        body = _encode(count_request(await self._converse_body(req, model)))
        return await self._prepared(self.url(model, "count-tokens"), body, key)

    def count_response(self, body: bytes) -> int:
        return _count_answer(body).input_tokens

    # --- answers ----------------------------------------------------------------------------

    def chat_response(self, body: bytes, model: str) -> ChatCompletion:
        return from_converse(
            _converse(body),
            model=model,
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
        )

    def stream_translator(self, model: str, request_id: str) -> BedrockStream:
        return BedrockStream(model, request_id, provider=self.name, scrub=self.scrub)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return map_error(status, body, headers, provider=self.name, scrub=self.scrub)

    async def read_stream(
        self, resp: aiohttp.ClientResponse, guard: StreamAttempt
    ) -> AsyncIterator[list[Frame]]:
        reader = FrameReader(self.name)
        read = resp.content.readany
        while True:
            with guard:
                chunk = await read()
            if not chunk:
                # A message cut in half is left in the reader: the translator sees no
                # ``metadata`` and reports the stream as cut.
                return
            frames = reader.feed(chunk)
            if frames:
                yield frames

    async def list_models(self) -> list[ModelInfo]:
        """Bedrock Runtime has no model list: the configured ``models`` and ``deployments``."""
        names = dict.fromkeys([*self.settings.models, *self.settings.deployments])
        return [ModelInfo(id=m, owned_by=self.name) for m in names]

    # --- embeddings -------------------------------------------------------------------------

    async def send(self, call: Call) -> Reply:
        op = call.inbound.op.name
        if op == CONVERSE:
            return await self._native(call, self._key_index(call))
        if op != "embedding":
            return await super().send(call)
        key = self._key_index(call)
        return await self._embeddings(call.inbound.typed, call.target.model, key, call.timeout_s)

    # --- native Converse (the /bedrock routes) ------------------------------------------------

    async def _native(self, call: Call, key: int | None) -> Reply:
        native = call.inbound.typed
        assert isinstance(native, NativeConverse)
        model = self.upstream_model(call.target.model)
        stream = call.inbound.stream
        url = self.url(model, "converse-stream" if stream else "converse")
        prepared = await self._prepared(url, native.body, key)
        if not stream:
            data, headers = await self.fetch(prepared, call.timeout_s)
            try:
                usage: BilledUsage | None = BilledUsage.from_usage(
                    usage_of(_usage_only(data).usage)
                )
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise self.bad_response("Converse response") from None
            return JSONReply(body=data, usage=usage, headers=headers)
        guard = self.timeouts.stream(call.timeout_s)
        resp = await self.open(prepared, guard)
        if resp.content_type != _EVENT_STREAM:
            guard.stop()
            resp.release()
            raise UpstreamError(
                f"{self.name}: expected an event stream, got `{resp.content_type}`.",
                status=502,
                provider=self.name,
            )
        return EventStream(
            lambda stream: self._passed_on(resp, guard, stream),
            close=guard.close,
            headers=forwardable_headers(resp.headers),
        )

    async def _passed_on(
        self, resp: aiohttp.ClientResponse, guard: StreamAttempt, stream: EventStream
    ) -> AsyncGenerator[list[bytes], None]:
        """The stream's bytes, one batch per read, as Bedrock sent them; the usage is read from
        its ``metadata`` event. An exception before anything was passed on is raised (the
        request may still fall back); later it reaches the client as Bedrock sent it, and is
        raised after it as a :class:`PassedOnError` (the stream is over, the failure logged)."""
        reader = FrameReader(self.name)
        read = resp.content.readany
        started = ended = False
        failed: UpstreamError | None = None
        while True:
            with guard:
                chunk = await read()
            if not chunk:
                break
            for frame in reader.feed(chunk):
                if frame.kind != "event":
                    ended = True
                    failed = self._frame_error(frame)
                    if not started:
                        raise failed
                elif frame.name == "metadata":
                    ended = True
                    try:
                        usage = usage_of(_metadata(frame.payload).usage)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        raise self.bad_response("`metadata` event") from None
                    stream.usage = BilledUsage.from_usage(usage)
            if not started:
                guard.first_event()
                started = True
            yield [chunk]
            if failed is not None:
                raise PassedOnError(
                    failed.message,
                    status=failed.status,
                    provider=self.name,
                    type=failed.type,
                    code=failed.code,
                )
        if not ended:
            raise stream_cut(self.name)

    def _frame_error(self, frame: Frame) -> UpstreamError:
        if frame.kind == "exception":
            return error_from_body(
                frame.name, 502, frame.payload, provider=self.name, scrub=self.scrub
            )
        return UpstreamError(
            f"{self.name}: {self.scrub(frame.message or frame.name)}",
            status=502,
            provider=self.name,
            code=frame.name or None,
        )

    async def _embeddings(
        self, req: EmbeddingRequest, name: str, key: int | None, cap: float | None
    ) -> JSONReply:
        model = self.upstream_model(name)
        texts = embedding_inputs(req, self.name)
        family = self._family(model)
        if family == "titan":
            bodies = [embed.titan_body(t, req, model) for t in texts]
        elif family == "cohere":
            bodies = embed.cohere_bodies(texts, req, model)
        else:
            raise InvalidRequestError(
                f"Bedrock serves embeddings from Amazon Titan (amazon.titan-embed-*) and Cohere "
                f"(cohere.embed-*) models, not `{model}`.",
                param="model",
            )
        url = self.url(model, "invoke")
        answers = await _gather(
            [self._invoke(url, body, key, cap) for body in bodies], limit=_EMBED_CONCURRENCY
        )
        result = self._embedding_result(family, answers)
        usage = EmbeddingUsage(
            prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
        )
        encoding = req.encoding_format if isinstance(req.encoding_format, str) else "float"
        return JSONReply(
            body=embedding_body(result.vectors, name, usage, encoding),
            usage=BilledUsage(
                prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
            ),
            headers=answers[-1][1],
            raw=answers[0][0] if len(answers) == 1 else None,
        )

    async def _invoke(
        self, url: str, body: bytes, key: int | None, cap: float | None
    ) -> tuple[bytes, dict[str, str]]:
        return await self.fetch(await self._prepared(url, body, key, invoke=True), cap)

    def _embedding_result(
        self, family: str, answers: list[tuple[bytes, dict[str, str]]]
    ) -> EmbeddingResult:
        result = EmbeddingResult(vectors=[])
        try:
            for body, headers in answers:
                if family == "titan":
                    vector, tokens = embed.titan_vector(body)
                    result.vectors.append(vector)
                else:
                    result.vectors.extend(embed.cohere_vectors(body))
                    tokens = _token_count(headers)
                result.prompt_tokens += tokens
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise self.bad_response("embeddings response") from None
        return result


def _token_count(headers: Mapping[str, str]) -> int:
    """InvokeModel's ``X-Amzn-Bedrock-Input-Token-Count`` (any case: HTTP/2 lowercases)."""
    for name, value in headers.items():
        if name.lower() == "x-amzn-bedrock-input-token-count":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _gather(coros: list[Awaitable[_T]], *, limit: int) -> list[_T]:
    """All results in order, at most ``limit`` at a time; the first failure cancels the rest
    and is raised as it is."""
    if not coros:
        return []
    gate = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[_T]) -> _T:
        async with gate:
            return await coro

    tasks: list[asyncio.Task[_T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(c)) for c in coros]
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        if isinstance(first, GatewayError):
            raise first from None
        raise
    return [t.result() for t in tasks]


# --- building --------------------------------------------------------------------------------


def build(name: str, settings: ProviderConfig, ctx: BuildContext) -> BedrockProvider | str:
    """The provider, or why it cannot serve (no region, empty credentials)."""
    env = ctx.env
    region = settings.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        return f"it has no AWS region (set providers.{name}.region or AWS_REGION)"
    auth = _authentication(name, settings, env)
    if isinstance(auth, str):
        return auth
    keys, source, secrets = auth
    base = settings.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
    return BedrockProvider(
        name,
        settings,
        ctx.upstream,
        KeyRing(keys),
        region=region,
        base_url=base,
        credentials=source,
        proxy=ctx.proxy_for(base),
        secrets=secrets,
    )


def _authentication(
    name: str, settings: ProviderConfig, env: Mapping[str, str]
) -> tuple[tuple[KeyConfig, ...], CredentialSource | None, list[str]] | str:
    """(Bedrock API keys, or no keys and a credential source; secrets to scrub), or why none."""
    creds = settings.credentials
    if "access_key_id" in creds:
        key_id, secret = creds["access_key_id"], creds.get("secret_access_key", "")
        if not key_id or not secret:
            return "its AWS access key is empty (is the variable it names set?)"
        token = creds.get("session_token") or None
        static = static_credentials(key_id, secret, token)
        where = f"providers.{name}.credentials"
        source = CredentialSource(creds=static, provider=name, describe=where)
        return (), source, [secret, *([token] if token else [])]
    if "profile" in creds:
        if not creds["profile"]:
            return "its AWS profile name is empty"
        return (), CredentialSource.profile(creds["profile"], provider=name), []
    if settings.keys is not None:
        usable = tuple(k for k in settings.keys if k.value)
        if not usable:
            return "its Bedrock API keys are empty (is AWS_BEARER_TOKEN_BEDROCK set?)"
        return usable, None, []
    if env.get("AWS_BEARER_TOKEN_BEDROCK"):
        return (KeyConfig(value=env["AWS_BEARER_TOKEN_BEDROCK"]),), None, []
    found = env_credentials(env)
    if found is not None:
        source = CredentialSource(creds=found, provider=name, describe="the environment")
        return (), source, [found.secret_key, *([found.token] if found.token else [])]
    return (), CredentialSource.chain(provider=name), []
