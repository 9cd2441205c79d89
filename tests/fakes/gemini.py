"""A fake of Google's Gemini API (``generativelanguage.googleapis.com``) on 127.0.0.1.

It speaks the API's wire format: ``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (``data: {...}\\r\\n\\r\\n`` events, JSON written the way
Google's front end writes it, ``usageMetadata`` in every event, the finish reason with the last
piece), ``:embedContent``, ``:batchEmbedContents``, ``:countTokens`` (``contents`` or a whole
``generateContentRequest`` naming its ``model``, never both; ``totalTokens`` from
:func:`~tests.fakes.script.prompt_tokens` over the texts received) and the paginated
``GET /v1beta/models``;
Google's error bodies (``{"error": {"code", "message", "status", "details"}}``, pretty-printed),
its auth answers (no key: 403 PERMISSION_DENIED; a wrong key: 400 INVALID_ARGUMENT with reason
API_KEY_INVALID) and its response headers.

Function calls carry no ``id`` unless ``send_call_ids`` (the Developer API leaves them out);
the first call of an answer (or, without calls, the first text part after thoughts) carries
the turn's ``thoughtSignature``, as Gemini 3 does.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from tests.fakes.base import Exchange, FakeServer, Handler
from tests.fakes.script import Turn, prompt_tokens, split

__all__ = ["FakeGemini", "MidStreamError", "count_contents", "google_json"]

API_KEY = "AIzaSyFAKE-gemini-key-0123456789abcdef"
_HEADERS = {
    "Vary": "Origin, X-Origin, Referer",
    "Server": "scaffolding on HTTPServer2",
    "Server-Timing": "gfet4t7; dur=412",
    "X-XSS-Protection": "0",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
}
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]
_FINISH = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
_NO_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
    "* Quota exceeded for metric: generativelanguage.googleapis.com/"
    "generate_content_free_tier_requests, limit: 10, model: {model}\nPlease retry in {delay}."
)


@dataclass
class MidStreamError:
    """An error the API reports after the stream began, after ``after`` events; ``bare``: as
    bare JSON lines instead of an SSE event."""

    after: int
    code: int = 503
    status: str = "UNAVAILABLE"
    message: str = "The model is overloaded. Please try again later."
    bare: bool = False


def google_json(value: Any) -> bytes:
    """JSON as Google's front end writes stream events: ``"key": value``, no space after ``,``."""
    if isinstance(value, dict):
        items = (msgspec.json.encode(k) + b": " + google_json(v) for k, v in value.items())
        return b"{" + b",".join(items) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(google_json(v) for v in value) + b"]"
    return msgspec.json.encode(value)


def _pretty(value: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def _error(code: int, status: str, message: str, details: list[Any] | None = None) -> Any:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def _vector(text: str, dims: int) -> list[float]:
    """Deterministic values in [-1, 1], exactly representable as float32."""
    raw, block = b"", text.encode()
    while len(raw) < dims:
        block = hashlib.sha256(block).digest()
        raw += block
    values = [(b - 127.5) / 127.5 for b in raw[:dims]]
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *values)))


class FakeGemini(FakeServer):
    """The Gemini API, scripted with neutral turns (plus Gemini-only knobs below)."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.models = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview"]
        self.models += ["gemini-embedding-001", "text-embedding-004"]
        self.page_size = 2  # the model list's pages, to exercise nextPageToken
        self.send_call_ids = False
        self.embedding_usage = True  # older API versions report no embedding usage
        self.retry_delay = "23s"
        # Gemini-only behaviours, consumed one per generate request:
        self.prompt_blocks: deque[str] = deque()  # a promptFeedback.blockReason
        self.stream_errors: deque[MidStreamError] = deque()

    @property
    def base_url(self) -> str:
        return self.root_url

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [
            ("POST", "/{version}/models/{target}", self._model_method),
            ("GET", "/{version}/models", self._list),
        ]

    async def check_auth(self, ex: Exchange) -> web.StreamResponse | None:
        key = ex.request.headers.get("x-goog-api-key") or ex.request.query.get("key")
        if not key:
            return self._error(403, "PERMISSION_DENIED", _NO_CALLER)
        if key != self.api_key:
            return self._invalid_key()
        return None

    def _invalid_key(self) -> web.Response:
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        message = "API key not valid. Please pass a valid API key."
        return self._error(400, "INVALID_ARGUMENT", message, [info])

    # --- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _json(payload: Any, status: int = 200) -> web.Response:
        headers = {**_HEADERS, "Content-Type": "application/json; charset=UTF-8"}
        return web.Response(body=_pretty(payload), status=status, headers=headers)

    def _error(
        self, code: int, status: str, message: str, details: list[Any] | None = None
    ) -> web.Response:
        return self._json(_error(code, status, message, details), code)

    def _turn_error(self, turn: Turn, model: str) -> web.Response:
        if turn.error == "rate_limit":
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": "10",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": self.retry_delay,
                },
            ]
            message = _QUOTA.format(model=model, delay=self.retry_delay)
            return self._error(429, "RESOURCE_EXHAUSTED", message, details)
        if turn.error == "overloaded":
            return self._error(
                503, "UNAVAILABLE", "The model is overloaded. Please try again later."
            )
        if turn.error == "server":
            message = (
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting"
            )
            return self._error(500, "INTERNAL", message)
        if turn.error == "auth":
            return self._invalid_key()
        param = turn.error_param or "contents"
        message = f"* GenerateContentRequest.{param}: {turn.error_message}\n"
        return self._error(400, "INVALID_ARGUMENT", message)

    # --- endpoints -----------------------------------------------------------------------

    async def _model_method(self, ex: Exchange) -> web.StreamResponse:
        model, _, method = ex.rec.match["target"].partition(":")
        if ex.turn.error:
            return self._turn_error(ex.turn, model)
        if not isinstance(ex.rec.json, dict):
            message = "Invalid JSON payload received. Unexpected token."
            return self._error(400, "INVALID_ARGUMENT", message)
        if method == "generateContent":
            return self._json(self._answer(ex, model, 0, self._candidates(ex)))
        if method == "streamGenerateContent":
            return await self._stream(ex, model)
        if method == "embedContent":
            return self._embed(ex, [ex.rec.json])
        if method == "batchEmbedContents":
            return self._embed(ex, list(ex.rec.json.get("requests") or []))
        if method == "countTokens":
            return self._count_tokens(ex)
        message = f"Method not found: {method}"
        return self._error(404, "NOT_FOUND", message)

    def _candidates(self, ex: Exchange) -> int:
        config = ex.rec.json.get("generationConfig") or {}
        return int(config.get("candidateCount") or 1)

    def _usage(self, t: Turn, *, final: bool = True) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": t.prompt_tokens}
        if final:
            usage["candidatesTokenCount"] = t.completion_tokens - t.reasoning_tokens
        total = t.prompt_tokens + (t.completion_tokens if final else 0)
        usage["totalTokenCount"] = total
        if t.cached_tokens:
            usage["cachedContentTokenCount"] = t.cached_tokens
        if final and t.reasoning_tokens:
            usage["thoughtsTokenCount"] = t.reasoning_tokens
        return usage

    def _parts(self, t: Turn) -> list[dict[str, Any]]:
        """The parts of a whole answer: thoughts, text, calls; the signature on the first part
        after the thoughts."""
        parts: list[dict[str, Any]] = []
        if t.reasoning:
            parts.append({"text": t.reasoning, "thought": True})
        if t.text:
            parts.append({"text": t.text})
        parts += [self._call(c) for c in t.tool_calls]
        self._sign(parts, t)
        return parts

    @staticmethod
    def _sign(parts: list[dict[str, Any]], t: Turn) -> None:
        """Gemini 3 signs the first function call of an answer; without calls, the first part
        after the thoughts when there were thoughts."""
        calls = [p for p in parts if "functionCall" in p]
        texts = [p for p in parts if "text" in p and not p.get("thought")]
        first = calls[0] if calls else (texts[0] if texts and t.reasoning else None)
        if first is not None:
            first["thoughtSignature"] = t.reasoning_signature

    def _call(self, c: Any) -> dict[str, Any]:
        call: dict[str, Any] = {"name": c.name, "args": msgspec.json.decode(c.arguments)}
        if self.send_call_ids:
            call["id"] = c.id
        return {"functionCall": call}

    def _answer(self, ex: Exchange, model: str, index: int, count: int) -> dict[str, Any]:
        t = ex.turn
        head = {"usageMetadata": self._usage(t), "modelVersion": model}
        head["responseId"] = f"fake-{len(self.requests):04d}-{model}"
        if self.prompt_blocks:
            feedback = {"blockReason": self.prompt_blocks.popleft()}
            feedback["safetyRatings"] = _SAFETY_RATINGS  # type: ignore[assignment]
            return {"promptFeedback": feedback, **head}
        candidates = []
        for i in range(index, index + count):
            if t.finish == "content_filter":
                cand = {"finishReason": "SAFETY", "index": i, "safetyRatings": _SAFETY_RATINGS}
            else:
                content = {"parts": self._parts(t), "role": "model"}
                cand = {"content": content, "finishReason": _FINISH[t.finish_reason], "index": i}
            candidates.append(cand)
        return {"candidates": candidates, **head}

    async def _stream(self, ex: Exchange, model: str) -> web.StreamResponse:
        events = self._events(ex, model)
        error = self.stream_errors.popleft() if self.stream_errors else None
        chunks = [b"data: " + google_json(e) + b"\r\n\r\n" for e in events]
        if error is not None:
            body = _error(error.code, error.status, error.message)
            if error.bare:
                chunk = b"[" + _pretty(body).rstrip() + b"\n]"
            else:
                chunk = b"data: " + google_json(body) + b"\r\n\r\n"
            chunks = [*chunks[: error.after], chunk]
        headers = {**_HEADERS, "Content-Disposition": "attachment"}
        return await self.stream(ex, chunks, headers=headers)

    def _events(self, ex: Exchange, model: str) -> list[dict[str, Any]]:
        t = ex.turn
        head = {"modelVersion": model, "responseId": f"fake-{len(self.requests):04d}-{model}"}
        if self.prompt_blocks or t.finish == "content_filter":
            return [self._answer(ex, model, 0, 1)]  # one event, as the API sends a refusal
        pieces: list[list[dict[str, Any]]] = []
        if t.reasoning:
            pieces += [[{"text": p, "thought": True}] for p in split(t.reasoning, 2)]
        pieces += [[{"text": p}] for p in split(t.text, t.pieces)]
        if t.tool_calls:
            pieces.append([self._call(c) for c in t.tool_calls])
        if not pieces or pieces[-1][0].get("thought"):
            pieces.append([{"text": ""}])
        self._sign([p for parts in pieces for p in parts], t)
        events = []
        for i, parts in enumerate(pieces):
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            last = i == len(pieces) - 1
            if last:
                cand["finishReason"] = _FINISH[t.finish_reason]
            usage = self._usage(t, final=last)
            events.append({"candidates": [cand], "usageMetadata": usage, **head})
        return events

    def _embed(self, ex: Exchange, requests: list[Any]) -> web.Response:
        embeddings = []
        for r in requests:
            text = "".join(p.get("text", "") for p in r.get("content", {}).get("parts", []))
            dims = int(r.get("outputDimensionality") or 8)
            embeddings.append({"values": _vector(text, dims)})
        single = ex.rec.match["target"].endswith(":embedContent")
        payload: dict[str, Any] = (
            {"embedding": embeddings[0]} if single else {"embeddings": embeddings}
        )
        if self.embedding_usage:
            payload["usageMetadata"] = {"promptTokenCount": ex.turn.prompt_tokens}
        return self._json(payload)

    def _count_tokens(self, ex: Exchange) -> web.Response:
        body = ex.rec.json
        for name in body:
            if name not in ("contents", "generateContentRequest"):
                return self._unknown_field(name)
        request = body.get("generateContentRequest")
        if request is not None and "contents" in body:
            message = (
                "* CountTokensRequest: contents and generate_content_request are mutually "
                "exclusive\n"
            )
            return self._error(400, "INVALID_ARGUMENT", message)
        if request is not None and not str(request.get("model", "")).startswith("models/"):
            message = "* GenerateContentRequest.model: unexpected model name format\n"
            return self._error(400, "INVALID_ARGUMENT", message)
        source = request if request is not None else body
        if not source.get("contents"):
            message = "* GenerateContentRequest.contents: contents is not specified\n"
            return self._error(400, "INVALID_ARGUMENT", message)
        count = count_contents(source)
        details = [{"modality": "TEXT", "tokenCount": count}]
        return self._json({"totalTokens": count, "promptTokensDetails": details})

    def _unknown_field(self, name: str) -> web.Response:
        message = f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        return self._error(400, "INVALID_ARGUMENT", message)

    async def _list(self, ex: Exchange) -> web.StreamResponse:
        size = int(ex.rec.query.get("pageSize") or 50)
        size = min(size, self.page_size)
        start = int(ex.rec.query.get("pageToken") or 0)
        names = self.models[start : start + size]
        payload: dict[str, Any] = {
            "models": [
                {
                    "name": f"models/{m}",
                    "version": "001",
                    "displayName": m.replace("-", " ").title(),
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 65536,
                    "supportedGenerationMethods": ["embedContent"]
                    if "embedding" in m
                    else ["generateContent", "countTokens"],
                }
                for m in names
            ]
        }
        if start + size < len(self.models):
            payload["nextPageToken"] = str(start + size)
        return self._json(payload)


def count_contents(body: dict[str, Any]) -> int:
    """The count for a body's ``contents``, ``systemInstruction`` and ``tools``: the text parts'
    words, 3 per content, 10 per function declared."""
    contents = list(body.get("contents") or [])
    system = body.get("systemInstruction")
    texts = [
        p["text"]
        for c in [*contents, *([system] if system else [])]
        for p in c.get("parts", [])
        if "text" in p
    ]
    tools = sum(len(t.get("functionDeclarations") or []) for t in body.get("tools") or [])
    return prompt_tokens(texts, messages=len(contents), tools=tools)
