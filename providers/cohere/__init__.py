"""Cohere, through its native v2 API (``POST /v2/chat``, ``POST /v2/embed``, ``GET /v1/models``).

The API root defaults to ``https://api.cohere.com`` (the official SDK's); the key is sent as
``Authorization: Bearer <key>`` and read from ``COHERE_API_KEY`` when the config gives none.
Translation lives in :mod:`translate` (requests, answers), :mod:`stream` (events) and
:mod:`errors`; this module does the HTTP side.

Embeddings are asked for with Cohere's ``input_type`` ``search_document`` (what most embedding
calls index); a request may name another (``search_query``, ``classification``,
``clustering``) as an extra body field ``input_type``, as Cohere's own API spells it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import quote

import msgspec
from msgspec import UNSET, UnsetType

from providers._keys import KeyRing
from providers._translated import EmbeddingResult, Prepared, TranslatingProvider
from providers._types import BuildContext, KeyedType
from providers.base import Call, ModelInfo, Reply
from providers.cohere import translate, wire
from providers.cohere.errors import generation_failed, map_error
from providers.cohere.stream import CohereStream
from proxy.config import ProviderConfig
from proxy.errors import InvalidRequestError, UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatRequest
from proxy.schemas.embeddings import EmbeddingRequest

__all__ = ["TYPES", "CohereProvider"]

BASE_URL = "https://api.cohere.com"
# The models that /v1/models lists: what this gateway can call (Cohere also lists rerank,
# classify... models).
_SERVED_ENDPOINTS = frozenset({"chat", "embed"})
_MAX_MODEL_PAGES = 20

_encode = msgspec.json.Encoder().encode
_chat_response = msgspec.json.Decoder(wire.ChatResponse).decode
_embed_response = msgspec.json.Decoder(wire.EmbedResponse).decode
_model_list = msgspec.json.Decoder(wire.ModelList).decode
_input_type = msgspec.json.Decoder(str).decode


class _Embedding(EmbeddingRequest, omit_defaults=True):
    """An embedding request carrying Cohere's ``input_type`` from the client's extra field."""

    input_type: str | UnsetType = UNSET


class CohereProvider(TranslatingProvider):
    def __init__(
        self,
        name: str,
        settings: ProviderConfig,
        ctx: BuildContext,
        keys: KeyRing,
    ) -> None:
        base = (settings.base_url or BASE_URL).rstrip("/")
        super().__init__(
            name,
            settings,
            ctx.upstream,
            keys,
            operations=frozenset({"chat_completion", "embedding"}),
            proxy=ctx.proxy_for(base),
        )
        self._base = base
        common = {"Accept": "application/json", **settings.headers}
        self._headers = [{**common, "Authorization": f"Bearer {v}"} for v in keys.values]
        self._keyless = common

    def _auth(self, key: int | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = self._keyless if key is None else self._headers[key]
        return {**headers, **extra} if extra else dict(headers)

    # --- chat -------------------------------------------------------------------------------

    async def prepare_chat(
        self, req: ChatRequest, model: str, *, stream: bool, key: int | None
    ) -> Prepared:
        body = translate.chat_request(req, model, stream=stream, provider=self.name)
        accept = "text/event-stream" if stream else "application/json"
        return Prepared(
            url=f"{self._base}/v2/chat",
            headers=self._auth(key, {"Content-Type": "application/json", "Accept": accept}),
            body=_encode(body),
        )

    def chat_response(self, body: bytes, model: str) -> ChatCompletion:
        completion, failed = translate.chat_completion(
            _chat_response(body), model, int(time.time())
        )
        if failed is not None:
            raise generation_failed(failed, None, provider=self.name, scrub=self.scrub)
        return completion

    def stream_translator(self, model: str, request_id: str) -> CohereStream:
        return CohereStream(model, request_id, provider=self.name, scrub=self.scrub)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return map_error(status, body, headers, provider=self.name, scrub=self.scrub)

    # --- embeddings -------------------------------------------------------------------------

    async def send(self, call: Call) -> Reply:
        """As the base class; an embedding request's extra ``input_type`` field is kept."""
        inbound = call.inbound
        raw = inbound.raw or {}
        if inbound.op.name == "embedding" and bytes(raw.get("input_type", b"null")) != b"null":
            typed = _Embedding(
                **msgspec.structs.asdict(inbound.typed), input_type=_checked_input_type(raw)
            )
            call = msgspec.structs.replace(
                call, inbound=msgspec.structs.replace(inbound, typed=typed)
            )
        return await super().send(call)

    async def prepare_embedding(
        self, req: EmbeddingRequest, model: str, key: int | None
    ) -> Prepared:
        named = req.input_type if isinstance(req, _Embedding) else UNSET
        input_type = named if isinstance(named, str) else "search_document"
        body = translate.embed_request(req, model, input_type, self.name)
        return Prepared(
            url=f"{self._base}/v2/embed",
            headers=self._auth(key, {"Content-Type": "application/json"}),
            body=_encode(body),
        )

    def embedding_response(self, body: bytes, req: EmbeddingRequest) -> EmbeddingResult:
        result = translate.embedding_result(_embed_response(body))
        if result is None:
            raise self.bad_response("embeddings response")
        return result

    # --- models -----------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """The configured models, then Cohere's chat and embed models (every page of them)."""
        listed = await super().list_models()
        seen = {m.id for m in listed}
        headers = self._auth(self.keys.any_key())
        token: str | None = None
        for _ in range(_MAX_MODEL_PAGES):
            url = f"{self._base}/v1/models?page_size=1000"
            if token:
                url += f"&page_token={quote(token, safe='')}"
            body, _ = await self.fetch(Prepared(url=url, headers=headers, body=b"", method="GET"))
            try:
                page = _model_list(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise self.bad_response("model list") from exc
            for m in page.models:
                if m.name and m.name not in seen and _SERVED_ENDPOINTS & set(m.endpoints or ()):
                    seen.add(m.name)
                    listed.append(ModelInfo(id=m.name, owned_by=self.name))
            token = page.next_page_token
            if not token:
                break
        return listed


def _checked_input_type(raw: Mapping[str, msgspec.Raw]) -> str:
    try:
        value = _input_type(raw["input_type"])
    except (msgspec.DecodeError, msgspec.ValidationError):
        value = None
    if value not in translate.EMBED_INPUT_TYPES:
        allowed = ", ".join(sorted(translate.EMBED_INPUT_TYPES))
        raise InvalidRequestError(f"`input_type` must be one of: {allowed}.", param="input_type")
    assert value is not None
    return value


def _build(name: str, settings: ProviderConfig, ctx: BuildContext, keys: KeyRing) -> CohereProvider:
    return CohereProvider(name, settings, ctx, keys)


TYPES = {"cohere": KeyedType(_build, base_url=BASE_URL, key_env="COHERE_API_KEY")}
