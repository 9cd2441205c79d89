"""A fake of Cohere's v2 API: ``POST /v2/chat`` (JSON or SSE), ``POST /v2/embed`` and the
paginated ``GET /v1/models``, in Cohere's wire format.

Streams are Cohere's SSE events (``event: <type>`` and a compact JSON ``data:`` line tagged by
the same ``type``), one write per event, in Cohere's order: ``message-start``, reasoning as a
``thinking`` content block, then either ``tool-plan-delta`` and ``tool-call-*`` events or a text
content block, then ``message-end`` with the finish reason and usage. Errors are Cohere's
``{"id", "message"}`` bodies with its statuses. The fake checks ``Authorization: Bearer`` and the
request constraints Cohere documents (temperature, ``p``, ``tool_choice`` needing tools...).

Usage follows Cohere: ``billed_units`` holds the scripted prompt and completion tokens,
``tokens`` adds Cohere's unbilled prompt template (``TEMPLATE_TOKENS``), and ``cached_tokens``
is the scripted cache hit count.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from aiohttp import web

from tests.fakes.base import Exchange, FakeServer, Handler
from tests.fakes.script import Turn, split

__all__ = ["DEFAULT_MODELS", "TEMPLATE_TOKENS", "FakeCohere", "event_bytes"]

TEMPLATE_TOKENS = 66
_FINISH = {
    "stop": "COMPLETE",
    "length": "MAX_TOKENS",
    "tool_calls": "TOOL_CALL",
    # Cohere has no content-filter finish reason: its closest answer is a failed generation.
    "content_filter": "ERROR",
}
_ERROR_STATUS = {"rate_limit": 429, "overloaded": 503, "server": 500, "auth": 401, "invalid": 400}
_DIMENSIONS = (256, 512, 1024, 1536)
_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "name": "command-a-03-2025",
        "endpoints": ["generate", "chat", "summarize"],
        "finetuned": False,
        "context_length": 256000,
        "default_endpoints": ["chat"],
        "features": ["json_mode", "json_schema", "safety_modes", "strict_tools", "tool_use"],
    },
    {
        "name": "command-a-reasoning-08-2025",
        "endpoints": ["chat"],
        "finetuned": False,
        "context_length": 288000,
        "default_endpoints": [],
        "features": ["json_mode", "json_schema", "reasoning", "strict_tools", "tool_use"],
    },
    {
        "name": "embed-v4.0",
        "endpoints": ["embed", "embed_image"],
        "finetuned": False,
        "context_length": 128000,
        "default_endpoints": ["embed"],
    },
    {
        "name": "rerank-v3.5",
        "endpoints": ["rerank"],
        "finetuned": False,
        "context_length": 4096,
        "default_endpoints": ["rerank"],
    },
]

_encode = msgspec.json.encode


def event_bytes(payload: dict[str, Any]) -> bytes:
    """One Cohere SSE event: the ``event:`` line names the payload's ``type``."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + _encode(payload) + b"\n\n"


class _Invalid(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FakeCohere(FakeServer):
    """Scripted with neutral turns (``script``); ``models`` is what ``/v1/models`` pages through
    (``max_page_size`` per page at most); ``retry_after``, when set, goes with every 429;
    ``citations`` (Cohere citation objects) go with every text answer."""

    def __init__(self, api_key: str = "co-fake-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.models = [dict(m) for m in DEFAULT_MODELS]
        self.max_page_size = 1000
        self.retry_after: str | None = None
        self.citations: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return self.root_url

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [
            ("POST", "/v2/chat", self._chat),
            ("POST", "/v2/embed", self._embed),
            ("GET", "/v1/models", self._models),
        ]

    async def check_auth(self, ex: Exchange) -> web.StreamResponse | None:
        auth = ex.request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return self._error_body(401, "no api key supplied")
        if scheme.lower() != "bearer" or token != self.api_key:
            return self._error_body(401, "invalid api token")
        return None

    # --- responses --------------------------------------------------------------------------

    @staticmethod
    def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"x-debug-trace-id": uuid.uuid4().hex, **(extra or {})}

    def _error_body(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"id": str(uuid.uuid4()), "message": message}
        return self.json(body, status=status, headers=self._headers(headers))

    def _scripted_error(self, turn: Turn) -> web.Response:
        assert turn.error is not None
        status = _ERROR_STATUS[turn.error]
        message = turn.error_message
        if turn.error == "invalid" and turn.error_param:
            message = f"invalid request: {turn.error_param}: {message}"
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
        return self._error_body(status, message, headers)

    async def _chat(self, ex: Exchange) -> web.StreamResponse:
        turn = ex.turn
        if turn.error:
            return self._scripted_error(turn)
        try:
            _check_chat(ex.rec.json)
        except _Invalid as err:
            return self._error_body(err.status, str(err))
        reply_id = str(uuid.uuid4())
        headers = self._headers({"num_tokens": str(turn.prompt_tokens + turn.completion_tokens)})
        if ex.rec.json["stream"]:
            events = _events(turn, reply_id, self.citations)
            return await self.stream(ex, events, headers=headers)
        return self.json(_response(turn, reply_id, self.citations), headers=headers)

    async def _embed(self, ex: Exchange) -> web.StreamResponse:
        if ex.turn.error:
            return self._scripted_error(ex.turn)
        body = ex.rec.json
        try:
            texts, dimension = _check_embed(body)
        except _Invalid as err:
            return self._error_body(err.status, str(err))
        vectors = [_vector(text, body["input_type"], dimension) for text in texts]
        return self.json(
            {
                "id": str(uuid.uuid4()),
                "texts": texts,
                "embeddings": {"float": vectors},
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"input_tokens": sum(len(t.split()) for t in texts)},
                },
                "response_type": "embeddings_by_type",
            },
            headers=self._headers(),
        )

    async def _models(self, ex: Exchange) -> web.StreamResponse:
        query = ex.rec.query
        size = min(int(query.get("page_size", "20")), self.max_page_size)
        start = int(query.get("page_token") or 0)
        page: dict[str, Any] = {"models": self.models[start : start + size]}
        if start + size < len(self.models):
            page["next_page_token"] = str(start + size)
        return self.json(page, headers=self._headers())


# --- request checks (what Cohere documents it refuses) ---------------------------------------


def _check_chat(body: Any) -> None:
    if not isinstance(body, dict):
        raise _Invalid(400, "invalid json syntax")
    if not isinstance(body.get("model"), str):
        raise _Invalid(400, "a model parameter is required for this endpoint.")
    if not isinstance(body.get("stream"), bool):
        raise _Invalid(422, "invalid request: stream must be a boolean")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid(400, "invalid request: messages must not be empty")
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant", "tool"):
            raise _Invalid(400, f"invalid request: invalid role {m.get('role')!r}")
        if m["role"] == "tool" and not m.get("tool_call_id"):
            raise _Invalid(400, "tool call id must be provided with tool message")
    temperature = body.get("temperature", 0.3)
    if not 0 <= temperature <= 1:
        raise _Invalid(400, "invalid request: temperature must be between 0 and 1.0 inclusive.")
    if not 0.01 <= body.get("p", 0.75) <= 0.99:
        raise _Invalid(400, "invalid request: p must be between 0.01 and 0.99 inclusive.")
    for name in ("frequency_penalty", "presence_penalty"):
        if not 0 <= body.get(name, 0) <= 1:
            raise _Invalid(400, f"invalid request: {name} must be between 0 and 1 inclusive.")
    if len(body.get("stop_sequences", [])) > 5:
        raise _Invalid(400, "invalid request: stop_sequences can have at most 5 elements")
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("REQUIRED", "NONE"):
        raise _Invalid(400, "invalid request: tool_choice must be one of REQUIRED, NONE")
    if choice == "REQUIRED" and not body.get("tools"):
        raise _Invalid(400, "invalid request: tool_choice REQUIRED needs tools to be specified")
    for tool in body.get("tools", []):
        if tool.get("type") != "function" or "parameters" not in tool.get("function", {}):
            raise _Invalid(400, "invalid request: a tool must be a function with parameters")


def _check_embed(body: Any) -> tuple[list[str], int]:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise _Invalid(400, "a model parameter is required for this endpoint.")
    if body.get("input_type") not in _INPUT_TYPES:
        raise _Invalid(400, "invalid request: valid input_type must be provided with the model")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or len(texts) > 96:
        raise _Invalid(400, "invalid request: texts must hold from 1 to 96 strings")
    if "float" not in body.get("embedding_types", ["float"]):
        raise _Invalid(400, "invalid request: this fake serves float embeddings only")
    dimension = body.get("output_dimension", 1536)
    if dimension not in _DIMENSIONS:
        raise _Invalid(400, "invalid request: output_dimension must be 256, 512, 1024 or 1536")
    return texts, dimension


def _vector(text: str, input_type: str, dimension: int) -> list[float]:
    """A deterministic vector whose values are exact float32s (as Cohere's are)."""
    seed = hashlib.sha256(f"{input_type}:{text}".encode()).digest()
    out = []
    for i in range(dimension):
        byte = seed[i % len(seed)] ^ (i & 0xFF)
        out.append(struct.unpack("<f", struct.pack("<f", (byte - 128) / 1024))[0])
    return out


# --- answers ---------------------------------------------------------------------------------


def _usage(turn: Turn) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "billed_units": {
            "input_tokens": turn.prompt_tokens,
            "output_tokens": turn.completion_tokens,
        },
        "tokens": {
            "input_tokens": turn.prompt_tokens + TEMPLATE_TOKENS,
            "output_tokens": turn.completion_tokens,
        },
    }
    if turn.cached_tokens:
        usage["cached_tokens"] = turn.cached_tokens
    return usage


def _calls(turn: Turn) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in turn.tool_calls
    ]


def _response(turn: Turn, reply_id: str, citations: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    content: list[dict[str, str]] = []
    if turn.reasoning:
        content.append({"type": "thinking", "thinking": turn.reasoning})
    if turn.tool_calls:
        # With tools, the text before the calls is Cohere's tool plan.
        if turn.text:
            message["tool_plan"] = turn.text
        message["tool_calls"] = _calls(turn)
    elif turn.text:
        content.append({"type": "text", "text": turn.text})
        if citations:
            message["citations"] = citations
    if content:
        message["content"] = content
    return {
        "id": reply_id,
        "message": message,
        "finish_reason": _FINISH[turn.finish_reason],
        "usage": _usage(turn),
    }


def _block(
    index: int, kind: str, pieces: list[str], citations: Sequence[dict[str, Any]] = ()
) -> list[bytes]:
    """A content block (``text`` or ``thinking``): start, one delta per piece, each citation
    as a citation-start/citation-end pair, end."""
    start = {"message": {"content": {"type": kind, kind: ""}}}
    out = [event_bytes({"type": "content-start", "index": index, "delta": start})]
    for piece in pieces:
        delta = {"message": {"content": {kind: piece}}}
        out.append(event_bytes({"type": "content-delta", "index": index, "delta": delta}))
    for n, citation in enumerate(citations):
        cited = {"message": {"citations": citation}}
        out.append(event_bytes({"type": "citation-start", "index": n, "delta": cited}))
        out.append(event_bytes({"type": "citation-end", "index": n}))
    out.append(event_bytes({"type": "content-end", "index": index}))
    return out


def _events(turn: Turn, reply_id: str, citations: list[dict[str, Any]]) -> list[bytes]:
    empty = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    out = [event_bytes({"id": reply_id, "type": "message-start", "delta": {"message": empty}})]
    index = 0
    if turn.reasoning:
        out += _block(index, "thinking", split(turn.reasoning, turn.pieces))
        index += 1
    if turn.tool_calls:
        for piece in split(turn.text, turn.pieces):
            plan = {"message": {"tool_plan": piece}}
            out.append(event_bytes({"type": "tool-plan-delta", "delta": plan}))
        for call in _calls(turn):
            arguments = call["function"]["arguments"]
            call["function"]["arguments"] = ""
            start = {"message": {"tool_calls": call}}
            out.append(event_bytes({"type": "tool-call-start", "index": index, "delta": start}))
            for piece in split(arguments, turn.arg_pieces):
                delta = {"message": {"tool_calls": {"function": {"arguments": piece}}}}
                out.append(event_bytes({"type": "tool-call-delta", "index": index, "delta": delta}))
            out.append(event_bytes({"type": "tool-call-end", "index": index}))
            index += 1
    elif turn.text:
        out += _block(index, "text", split(turn.text, turn.pieces), citations)
    end: dict[str, Any] = {"finish_reason": _FINISH[turn.finish_reason], "usage": _usage(turn)}
    if end["finish_reason"] == "ERROR":
        end["error"] = "the response was blocked"
    out.append(event_bytes({"type": "message-end", "delta": end}))
    return out
