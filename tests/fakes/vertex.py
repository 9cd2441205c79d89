"""A fake of Google Cloud Vertex AI on 127.0.0.1, with its own fake Google token endpoint.

``POST /{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/
{model}:{method}``:

- ``google``: ``generateContent`` and ``streamGenerateContent?alt=sse`` rendered as
  :class:`~tests.fakes.gemini.FakeGemini` renders them (Vertex adds ``createTime``; its v1
  function calls carry no ``id``), after the checks Vertex's v1 API makes that the Gemini API
  does not (no function-call or function-response ``id``, no ``serviceTier``, ``fileData`` with
  its ``mimeType``, a known thinking level, valid ``labels``); ``countTokens`` with
  ``contents``, ``systemInstruction`` and ``tools`` at the top level (no
  ``generateContentRequest``: an unknown name there); Vertex's embeddings,
  ``predict`` (``instances`` -> ``predictions`` with ``statistics.token_count``; the Gemini
  embedding models take one instance) and ``embedContent`` (one content per request);
- ``anthropic``: ``rawPredict`` and ``streamRawPredict`` rendered by
  :class:`~tests.fakes.anthropic.FakeAnthropic`, after Vertex's rules: the model is in the URL,
  not the body; ``anthropic_version`` is ``vertex-2023-10-16``; ``stream`` matches the method;
  URL image or document sources are refused ("URL sources are not supported");
  ``count-tokens:rawPredict``, one endpoint for every model, counted by
  :meth:`~tests.fakes.anthropic.FakeAnthropic.count_answer` once ``anthropic_version`` is
  checked (the model is in the body there).

Every request needs ``Authorization: Bearer <token>`` with a token the token fake issued and
that has not expired (Google's 401 UNAUTHENTICATED otherwise), for the fake's project (403
PERMISSION_DENIED, the IAM answer, otherwise). Scripted errors come as Vertex sends them: its own
(429 RESOURCE_EXHAUSTED, 401) in Google's shape, a Claude model's (529 overload, 500, 400) in
Anthropic's.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import Exchange, Handler
from tests.fakes.gemini import FakeGemini, _vector, count_contents
from tests.fakes.google_oauth import FakeGoogleOAuth, key_json, service_account_key
from tests.fakes.script import Turn

__all__ = ["PROJECT", "FakeVertex", "VertexTokens"]

PROJECT = "fake-project"
ANTHROPIC_VERSION = "vertex-2023-10-16"
_CREATE_TIME = "2026-09-01T12:00:00.000000Z"
_SEE = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
_MISSING = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    f"login cookie or other valid authentication credential. {_SEE}"
)
_INVALID = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    f"cookie or other valid authentication credential. {_SEE}"
)
_QUOTA = (
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
)
_CLAUDE_QUOTA = (
    "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
    "with base model: anthropic-{model}. Please submit a quota increase request. "
    "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai."
)
_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
_CALL_FIELDS = (("functionCall", "function_call"), ("functionResponse", "function_response"))
_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
# The fields of Vertex's CountTokensRequest.
_COUNT_FIELDS = ("model", "instances", "contents", "tools", "systemInstruction", "generationConfig")


class VertexTokens(FakeGoogleOAuth):
    """The token endpoint, remembering when each token it issued expires."""

    def __init__(self, expires_in: int = 3599) -> None:
        super().__init__(expires_in=expires_in)
        self.expires_at: dict[str, float] = {}

    async def _token(self, ex: Exchange) -> web.StreamResponse:
        resp = await super()._token(ex)
        for token in self.issued:
            self.expires_at.setdefault(token, time.monotonic() + self.expires_in)
        return resp

    def expire(self) -> None:
        """Every token issued so far expires now."""
        for token in self.expires_at:
            self.expires_at[token] = 0.0

    def valid(self, token: str) -> bool:
        return self.expires_at.get(token, 0.0) > time.monotonic()


class FakeVertex(FakeGemini):
    """Vertex AI: Gemini and Claude models of one project, scripted with neutral turns."""

    def __init__(self, project: str = PROJECT, expires_in: int = 3599) -> None:
        super().__init__(api_key="")
        self.project = project
        self.oauth = VertexTokens(expires_in=expires_in)
        self.claude = FakeAnthropic()  # renders Claude answers; never started
        self.key: dict[str, Any] = {}

    async def start(self) -> Any:
        await self.oauth.start()
        self.key, self.oauth.public_key = service_account_key(
            self.oauth.token_uri, project=self.project
        )
        return await super().start()

    async def close(self) -> None:
        await super().close()
        await self.oauth.close()

    @property
    def key_json(self) -> str:
        """The service-account key (JSON text) whose tokens this fake accepts."""
        return key_json(self.key)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        path = "/{version}/projects/{project}/locations/{location}/publishers/{publisher}"
        return [("POST", path + "/models/{target}", self._vertex)]

    async def check_auth(self, ex: Exchange) -> web.StreamResponse | None:
        header = ex.request.headers.get("Authorization", "")
        if not header:
            return self._unauthenticated(_MISSING, "CREDENTIALS_MISSING", ex)
        token = header.removeprefix("Bearer ")
        if token == header or not self.oauth.valid(token):
            return self._unauthenticated(_INVALID, "ACCESS_TOKEN_TYPE_UNSUPPORTED", ex)
        return None

    def _unauthenticated(self, message: str, reason: str, ex: Exchange) -> web.Response:
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {
                "service": "aiplatform.googleapis.com",
                "method": "google.cloud.aiplatform.v1.PredictionService." + _rpc(ex),
            },
        }
        return self._error(401, "UNAUTHENTICATED", message, [info])

    # --- routing ---------------------------------------------------------------------------

    async def _vertex(self, ex: Exchange) -> web.StreamResponse:
        match = ex.rec.match
        model, _, method = match["target"].partition(":")
        resource = (
            f"projects/{match['project']}/locations/{match['location']}/publishers/"
            f"{match['publisher']}/models/{model}"
        )
        if match["project"] != self.project:
            return self._permission_denied(resource)
        if match["version"] not in ("v1", "v1beta1") or match["publisher"] not in (
            "google",
            "anthropic",
        ):
            return self._error(404, "NOT_FOUND", f"Publisher Model `{resource}` was not found.")
        if not isinstance(ex.rec.json, dict):
            message = "Invalid JSON payload received. Unexpected token."
            return self._error(400, "INVALID_ARGUMENT", message)
        if match["publisher"] == "anthropic":
            return await self._claude(ex, model, method)
        if method in ("predict", "embedContent"):
            return self._vertex_error(ex.turn, model) or self._embeddings(ex, model, method)
        if method == "countTokens":
            return self._vertex_error(ex.turn, model) or self._count_tokens(ex)
        if method not in ("generateContent", "streamGenerateContent"):
            return self._error(404, "NOT_FOUND", f"Method not found: {method}")
        refused = _gemini_refusal(ex.rec.json)
        if refused is not None:
            return self._error(400, "INVALID_ARGUMENT", refused)
        return await self._model_method(ex)

    def _permission_denied(self, resource: str) -> web.Response:
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "aiplatform.googleapis.com",
            "metadata": {"permission": "aiplatform.endpoints.predict", "resource": resource},
        }
        message = (
            "Permission 'aiplatform.endpoints.predict' denied on resource "
            f"'//aiplatform.googleapis.com/{resource}' (or it may not exist)."
        )
        return self._error(403, "PERMISSION_DENIED", message, [info])

    # --- errors as Vertex sends them --------------------------------------------------------

    def _turn_error(self, turn: Turn, model: str) -> web.Response:
        return self._vertex_error(turn, model) or self._error(500, "INTERNAL", "unreachable")

    def _vertex_error(self, turn: Turn, model: str) -> web.Response | None:
        if turn.error == "rate_limit":
            return self._error(429, "RESOURCE_EXHAUSTED", _QUOTA)
        if turn.error == "overloaded":
            message = "The service is currently unavailable."
            return self._error(503, "UNAVAILABLE", message)
        if turn.error == "server":
            return self._error(500, "INTERNAL", "Internal error encountered.")
        if turn.error == "auth":
            return self._error(401, "UNAUTHENTICATED", _INVALID)
        if turn.error == "invalid":
            param = turn.error_param or "contents"
            message = f"Invalid value at '{param}': {turn.error_message}"
            return self._error(400, "INVALID_ARGUMENT", message)
        return None

    # --- Gemini -----------------------------------------------------------------------------

    def _answer(self, ex: Exchange, model: str, index: int, count: int) -> dict[str, Any]:
        return {**super()._answer(ex, model, index, count), "createTime": _CREATE_TIME}

    def _events(self, ex: Exchange, model: str) -> list[dict[str, Any]]:
        return [{**e, "createTime": _CREATE_TIME} for e in super()._events(ex, model)]

    def _count_tokens(self, ex: Exchange) -> web.Response:
        body = ex.rec.json
        for name in body:
            if name not in _COUNT_FIELDS:
                return self._unknown_field(name)
        refused = _gemini_refusal(body)
        if refused is not None:
            return self._error(400, "INVALID_ARGUMENT", refused)
        if not body.get("contents") and not body.get("instances"):
            return self._error(400, "INVALID_ARGUMENT", "Either contents or instances is required.")
        count = count_contents(body)
        details = [{"modality": "TEXT", "tokenCount": count}]
        return self._json({"totalTokens": count, "promptTokensDetails": details})

    def _embeddings(self, ex: Exchange, model: str, method: str) -> web.Response:
        body = ex.rec.json
        if method == "embedContent":
            text = "".join(p.get("text", "") for p in body.get("content", {}).get("parts", []))
            config = body.get("embedContentConfig") or {}
            dims = int(config.get("outputDimensionality") or 8)
            usage = {"promptTokenCount": _tokens(text), "totalTokenCount": _tokens(text)}
            answer = {"embedding": {"values": _vector(text, dims)}, "usageMetadata": usage}
            return self._json({**answer, "truncated": False})
        instances = body.get("instances") or []
        if "gemini" in model and len(instances) > 1:
            message = f"Model {model} supports only one instance per request."
            return self._error(400, "INVALID_ARGUMENT", message)
        dims = int((body.get("parameters") or {}).get("outputDimensionality") or 8)
        predictions = [
            {
                "embeddings": {
                    "statistics": {"truncated": False, "token_count": _tokens(i["content"])},
                    "values": _vector(i["content"], dims),
                }
            }
            for i in instances
        ]
        chars = sum(len(i["content"]) for i in instances)
        return self._json(
            {"predictions": predictions, "metadata": {"billableCharacterCount": chars}}
        )

    # --- Claude -----------------------------------------------------------------------------

    async def _claude(self, ex: Exchange, model: str, method: str) -> web.StreamResponse:
        turn = ex.turn
        if turn.error == "rate_limit":
            return self._error(429, "RESOURCE_EXHAUSTED", _CLAUDE_QUOTA.format(model=model))
        if turn.error == "auth":
            return self._error(401, "UNAUTHENTICATED", _INVALID)
        if model == "count-tokens" and method == "rawPredict":
            return self.claude._scripted_error(turn) or self._claude_count(ex.rec.json)
        if method not in ("rawPredict", "streamRawPredict"):
            return self._error(404, "NOT_FOUND", f"Method not found: {method}")
        body = ex.rec.json
        refused = _claude_refusal(body, stream=method == "streamRawPredict")
        if refused is not None:
            return self.claude._error(400, "invalid_request_error", refused)
        # What Anthropic's own API would receive: the model in the body.
        native = {k: v for k, v in body.items() if k != "anthropic_version"}
        inner = Exchange(
            ex.request, dataclasses.replace(ex.rec, json={"model": model, **native}), turn
        )
        try:
            return await self.claude._messages(inner)
        finally:
            ex.cut, ex.response = inner.cut, inner.response

    def _claude_count(self, body: dict[str, Any]) -> web.Response:
        if body.get("anthropic_version") != ANTHROPIC_VERSION:
            message = f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'"
            return self.claude._error(400, "invalid_request_error", message)
        return self.claude.count_answer({k: v for k, v in body.items() if k != "anthropic_version"})


def _rpc(ex: Exchange) -> str:
    method = ex.rec.match.get("target", "").partition(":")[2]
    return method[:1].upper() + method[1:]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _gemini_refusal(body: dict[str, Any]) -> str | None:
    """What Vertex's v1 ``generateContent`` refuses that the Gemini API takes, in its words."""
    if "serviceTier" in body:
        return 'Invalid JSON payload received. Unknown name "serviceTier": Cannot find field.'
    for i, content in enumerate(body.get("contents", [])):
        for j, part in enumerate(content.get("parts", [])):
            where = f"contents[{i}].parts[{j}]"
            for field, name in _CALL_FIELDS:
                if "id" in part.get(field, {}):
                    return (
                        f"Invalid JSON payload received. Unknown name \"id\" at '{where}.{name}': "
                        "Cannot find field."
                    )
            if "fileData" in part and not part["fileData"].get("mimeType"):
                return f"{where}.file_data.mime_type: field is required."
    config = body.get("generationConfig") or {}
    level = (config.get("thinkingConfig") or {}).get("thinkingLevel")
    if level is not None and level not in _LEVELS:
        return (
            "Invalid value at 'generation_config.thinking_config.thinking_level' (type."
            "googleapis.com/google.cloud.aiplatform.v1.GenerationConfig.ThinkingConfig."
            f'ThinkingLevel), "{level}"'
        )
    for key, value in (body.get("labels") or {}).items():
        if not _LABEL.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            return f"Label key or value is invalid: {key}={value}"
    return None


def _claude_refusal(body: dict[str, Any], *, stream: bool) -> str | None:
    """What Claude on Vertex refuses, as Anthropic's validation words it."""
    if "model" in body:
        return "model: Extra inputs are not permitted"
    if body.get("anthropic_version") != ANTHROPIC_VERSION:
        return f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'"
    if bool(body.get("stream")) != stream:
        return "stream: streamRawPredict requires stream: true, rawPredict stream: false"
    for i, message in enumerate(body.get("messages", [])):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            source = block.get("source") if isinstance(block, dict) else None
            if isinstance(source, dict) and source.get("type") == "url":
                where = f"messages.{i}.content.{j}.image.source.base64.data"
                return f"{where}: URL sources are not supported"
    return None
