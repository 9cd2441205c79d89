"""What Vertex AI changes in the Gemini and Anthropic translations (pure: no I/O).

- **Routing**: a model is ``google/<id>`` or ``anthropic/<id>``; without a publisher, ids that
  start with ``claude`` are Anthropic's and all others Google's. Other publishers (Llama,
  Mistral... on Vertex's OpenAI-compatible endpoint) are not served.
- **URLs**: ``{root}/{version}/projects/{project}/locations/{location}/publishers/{publisher}/
  models/{model}:{method}``; the root is ``https://{location}-aiplatform.googleapis.com``,
  ``https://aiplatform.googleapis.com`` for ``global`` and ``https://aiplatform.{us|eu}.rep.
  googleapis.com`` for the ``us`` and ``eu`` multi-regions (as Anthropic's Vertex client has it).
- **Gemini**: the Gemini API's body, except that the v1 API has no function-call or
  function-response ``id`` (``Unknown name "id"``: results pair with calls by name) and no
  ``serviceTier`` (``priority`` and ``flex`` go in the ``X-Vertex-AI-LLM-Shared-Request-Type``
  header), has no ``XHIGH`` thinking level (``HIGH`` is the highest), and takes ``labels``:
  ``metadata`` entries that are valid labels are sent as labels (for billing reports), the
  others dropped, as metadata does not change the answer. Images are sent by reference only
  for Cloud Storage URIs (``gs://``; the gateway downloads other URLs).
- **Claude**: Anthropic's Messages body without ``model`` (it is in the URL) and with
  ``"anthropic_version": "vertex-2023-10-16"`` (Anthropic's "Claude on Vertex AI" guide). Vertex
  refuses URL image sources ("URL sources are not supported"), so image URLs are downloaded and
  sent as base64 (:func:`with_images`).
- **Token counts**: Gemini's ``countTokens`` takes ``contents``, ``systemInstruction`` and
  ``tools`` at the top level (not the Gemini API's ``generateContentRequest``); Claude's
  ``count-tokens:rawPredict`` (one endpoint for every model) takes Anthropic's ``count_tokens``
  body with ``model`` in it and the same ``anthropic_version``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from urllib.parse import quote

import msgspec
from msgspec import UNSET, UnsetType

from providers.anthropic.translate import count_body
from providers.anthropic.translate import to_native as anthropic_native
from providers.anthropic.wire import CountTokensRequest, MessagesRequest
from providers.gemini.request import to_native as gemini_native
from providers.gemini.wire import FileData, Part
from providers.vertex.wire import CountTokensRequest as GeminiCountRequest
from providers.vertex.wire import GenerateContentRequest
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import ChatRequest, ContentPart, ImagePart, ImageURL, UserMessage

__all__ = [
    "ANTHROPIC",
    "ANTHROPIC_VERSION",
    "GOOGLE",
    "SHARED_REQUEST_TYPE",
    "claude_body",
    "claude_count_body",
    "default_root",
    "gemini_body",
    "gemini_count_body",
    "labels",
    "model_url",
    "reference_part",
    "route",
    "shared_request_type",
    "with_images",
]

GOOGLE = "google"
ANTHROPIC = "anthropic"
# The value Anthropic's guide requires; its Messages semantics are those of API version
# 2023-06-01 (sampling settings allowed).
ANTHROPIC_VERSION = "vertex-2023-10-16"
_MESSAGES_VERSION = "2023-06-01"
SHARED_REQUEST_TYPE = "X-Vertex-AI-LLM-Shared-Request-Type"
# service_tier -> Vertex's Priority PayGo and Flex PayGo (global endpoint, Gemini models).
_TIERS = {"priority": "priority", "flex": "flex"}
_LEVELS = frozenset({"MINIMAL", "LOW", "MEDIUM", "HIGH"})
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
# Cloud Storage objects go by reference; the API needs their media type, known by extension.
_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".pdf": "application/pdf",
}


# --- where requests go ---------------------------------------------------------------------


def route(model: str) -> tuple[str, str]:
    """(publisher, model id) for a model callers name, with or without a publisher prefix."""
    publisher, sep, name = model.partition("/")
    if not sep:
        return (ANTHROPIC if model.startswith("claude") else GOOGLE), model
    if publisher in (GOOGLE, ANTHROPIC) and name and "/" not in name:
        return publisher, name
    raise InvalidRequestError(
        f"Vertex AI serves `google/<model>` and `anthropic/<model>` here, not `{model}`: "
        "other publishers' models (on Vertex's OpenAI-compatible endpoint) are not supported.",
        param="model",
        code="model_not_found",
    )


def default_root(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def model_url(
    root: str, version: str, *, project: str, location: str, publisher: str, model: str, method: str
) -> str:
    return (
        f"{root}/{version}/projects/{quote(project, safe='')}/locations/{location}"
        f"/publishers/{publisher}/models/{quote(model, safe='@')}:{method}"
    )


# --- Gemini --------------------------------------------------------------------------------


def reference_part(url: str) -> Part | None:
    """A ``gs://`` URI as a part Vertex reads itself; ``None`` for any other URL (downloaded)."""
    if not url.startswith("gs://"):
        return None
    path = url.split("?", 1)[0]
    dot = path.rfind(".")
    media_type = _MEDIA_TYPES.get(path[dot:].lower()) if dot > path.rfind("/") else None
    if media_type is None:
        known = ", ".join(sorted(_MEDIA_TYPES))
        raise InvalidRequestError(
            f"A Cloud Storage image needs a file extension saying its type ({known}): `{url}`.",
            param="messages",
        )
    return Part(file_data=FileData(file_uri=url, mime_type=media_type))


def labels(metadata: Mapping[str, str] | UnsetType | None) -> dict[str, str] | UnsetType:
    """The ``metadata`` entries that are valid Vertex labels."""
    if not metadata:
        return UNSET
    kept = {
        k: v
        for k, v in metadata.items()
        if _LABEL_KEY.fullmatch(k) and isinstance(v, str) and _LABEL_VALUE.fullmatch(v)
    }
    return kept or UNSET


def shared_request_type(req: ChatRequest) -> str | None:
    """The Priority/Flex PayGo header value ``service_tier`` asks for, if any."""
    tier = req.service_tier
    return _TIERS.get(tier) if isinstance(tier, str) else None


def gemini_body(
    req: ChatRequest, *, model: str, media: Mapping[str, Part]
) -> GenerateContentRequest:
    """The Gemini API's body for ``req``, as Vertex's v1 ``generateContent`` takes it."""
    base = gemini_native(req, model=model, media=media)
    for content in base.contents:
        for part in content.parts:
            if part.function_call is not UNSET:
                part.function_call.id = UNSET
            if part.function_response is not UNSET:
                part.function_response.id = UNSET
    config = base.generation_config
    if config is not UNSET and config.thinking_config is not UNSET:
        thinking = config.thinking_config
        if isinstance(thinking.thinking_level, str) and thinking.thinking_level not in _LEVELS:
            thinking.thinking_level = "HIGH"
    return GenerateContentRequest(
        contents=base.contents,
        system_instruction=base.system_instruction,
        tools=base.tools,
        tool_config=base.tool_config,
        generation_config=base.generation_config,
        labels=labels(req.metadata),
    )


def gemini_count_body(body: GenerateContentRequest) -> GeminiCountRequest:
    """``countTokens``' body for a translated ``generateContent`` body: what shapes the input."""
    return GeminiCountRequest(
        contents=body.contents, system_instruction=body.system_instruction, tools=body.tools
    )


# --- Claude --------------------------------------------------------------------------------


def claude_body(req: ChatRequest, model: str, *, stream: bool, provider: str) -> MessagesRequest:
    """Anthropic's Messages body for ``req``, as ``rawPredict``/``streamRawPredict`` take it."""
    body = anthropic_native(
        req, model, stream=stream, provider=provider, api_version=_MESSAGES_VERSION
    )
    body.model = UNSET
    body.anthropic_version = ANTHROPIC_VERSION
    return body


def claude_count_body(req: ChatRequest, model: str, *, provider: str) -> CountTokensRequest:
    """The body of ``count-tokens:rawPredict`` for ``req`` counted by ``model``."""
    return count_body(claude_body(req, model, stream=False, provider=provider), model)


def image_urls(req: ChatRequest) -> Iterator[str]:
    """The http(s) image URLs of the request's user messages (to download for Claude)."""
    for m in req.messages:
        if isinstance(m, UserMessage) and isinstance(m.content, list):
            for p in m.content:
                if isinstance(p, ImagePart) and p.image_url.url.startswith(("http://", "https://")):
                    yield p.image_url.url


def with_images(req: ChatRequest, inline: Mapping[str, str]) -> ChatRequest:
    """A copy of ``req`` whose image URLs are replaced by the data URLs of ``inline``; the
    request itself is left as it is (a fallback to another provider still sees the URLs)."""
    if not inline:
        return req
    messages = list(req.messages)
    for i, m in enumerate(messages):
        if isinstance(m, UserMessage) and isinstance(m.content, list):
            parts: list[ContentPart] = [
                msgspec.structs.replace(p, image_url=_inlined(p.image_url, inline))
                if isinstance(p, ImagePart) and p.image_url.url in inline
                else p
                for p in m.content
            ]
            messages[i] = msgspec.structs.replace(m, content=parts)
    return msgspec.structs.replace(req, messages=messages)


def _inlined(image: ImageURL, inline: Mapping[str, str]) -> ImageURL:
    return msgspec.structs.replace(image, url=inline[image.url])
