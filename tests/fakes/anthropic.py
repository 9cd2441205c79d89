"""A fake of Anthropic's Messages API on 127.0.0.1, speaking its wire format.

``POST /v1/messages`` answers a scripted :class:`~tests.fakes.script.Turn` as Anthropic does:
the message object, or (``stream: true``) the named SSE events in the API's order
(``message_start``, ``content_block_start``, ``ping``, deltas, ``content_block_stop``,
``message_delta``, ``message_stop``), with ``request-id`` and rate-limit headers; errors are
``{"type": "error", "error": {...}, "request_id"}`` with Anthropic's statuses (529 for overload).
``GET /v1/models`` pages with ``has_more``/``last_id``/``after_id``. ``POST
/v1/messages/count_tokens`` answers ``{"input_tokens": N}`` with N from
:func:`~tests.fakes.script.prompt_tokens` over the texts it received (system, text, thinking,
tool results), after the API's checks: ``model`` and ``messages`` required, no field a count
request does not take (``max_tokens``, sampling, ``stream``: "Extra inputs are not permitted"),
the messages' roles and content as for ``/v1/messages``.

The fake checks what the real API would refuse, with its kind of message: the key (in
``x-api-key``, or as a bearer token as the SDKs send it since API version ``2026-10-21``), the
``anthropic-version`` header, sampling parameters under ``2026-10-21``, roles, empty text
blocks, ``tool_use`` blocks left without a ``tool_result`` in the next turn, a thinking budget
not below ``max_tokens``, a forced tool with thinking, and, with thinking on, a tool-use turn
sent back without its thinking block and the signature the fake issued.

:class:`AnthropicTurn` adds what only Anthropic has: an ``error`` event mid-stream, a
``redacted_thinking`` block, any native error status and type.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from tests.fakes.base import Exchange, FakeServer, Handler
from tests.fakes.script import Turn, prompt_tokens, split

__all__ = ["MODELS", "AnthropicTurn", "FakeAnthropic", "Model", "count_input_tokens"]

VERSION = "2023-06-01"
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# Turn.error -> (status, Anthropic's error type, its message).
_ERRORS = {
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server": (500, "api_error", "Internal server error"),
    "auth": (401, "authentication_error", "invalid x-api-key"),
}
# What ``/v1/messages/count_tokens`` takes; anything else is an extra input it refuses.
_COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "cache_control",
        "mcp_servers",
        "context_management",
    }
)


@dataclass
class AnthropicTurn(Turn):
    """A :class:`Turn` with Anthropic-only outcomes.

    ``stream_error``: an ``error`` event of that type (``overloaded_error``...) after
    ``stream_error_after`` events of the stream; ``redacted``: a ``redacted_thinking`` block's
    data, after the thinking; ``native_error``: (status, type, message) answered instead.
    """

    stream_error: str | None = None
    stream_error_after: int = 1
    redacted: str | None = None
    native_error: tuple[int, str, str] | None = None
    stop_sequence: str | None = None


@dataclass
class Model:
    id: str
    display_name: str
    created_at: str


MODELS = (
    Model("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z"),
    Model("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    Model("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
)


class _Refused(Exception):
    """A request the real API refuses: answered as ``{"type": "error", ...}``."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


class FakeAnthropic(FakeServer):
    """The fake; ``page_cap`` is the largest page ``/v1/models`` gives whatever ``limit`` asks
    (to exercise paging), ``signatures`` those of the thinking blocks it returned: the only ones
    it accepts back."""

    def __init__(
        self,
        api_key: str = "sk-ant-fake",
        models: list[Model] | None = None,
        page_cap: int = 1000,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.models = models if models is not None else list(MODELS)
        self.page_cap = page_cap
        self.signatures: set[str] = set()

    @property
    def base_url(self) -> str:
        return self.root_url

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1/messages", self._messages),
            ("POST", "/v1/messages/count_tokens", self._count_tokens),
            ("GET", "/v1/models", self._models),
        ]

    async def check_auth(self, ex: Exchange) -> web.StreamResponse | None:
        headers = ex.request.headers
        # ``x-api-key``, or (what the SDKs send since API version 2026-10-21) a bearer token.
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not key:
            return self._error(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not ex.request.headers.get("anthropic-version"):
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        return None

    # --- responses --------------------------------------------------------------------------

    @staticmethod
    def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "request-id": "req_" + secrets.token_hex(12),
            "anthropic-organization-id": "00000000-0000-4000-8000-000000000000",
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "3999",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:01Z",
            "anthropic-ratelimit-input-tokens-limit": "2000000",
            "anthropic-ratelimit-input-tokens-remaining": "1999000",
            "anthropic-ratelimit-output-tokens-limit": "400000",
            "anthropic-ratelimit-output-tokens-remaining": "399000",
        }
        headers.update(extra or {})
        return headers

    def _error(
        self, status: int, type_: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        all_headers = self._headers(headers)
        body = {
            "type": "error",
            "error": {"type": type_, "message": message},
            "request_id": all_headers["request-id"],
        }
        return self.json(body, status, all_headers)

    def _scripted_error(self, turn: Turn) -> web.Response | None:
        if isinstance(turn, AnthropicTurn) and turn.native_error is not None:
            return self._error(*turn.native_error)
        if turn.error is None:
            return None
        if turn.error == "invalid":
            param = turn.error_param or "messages"
            return self._error(400, "invalid_request_error", f"{param}: {turn.error_message}")
        status, type_, message = _ERRORS[turn.error]
        extra = {"retry-after": "7"} if status == 429 else {}
        if status == 429:
            extra["anthropic-ratelimit-requests-remaining"] = "0"
        return self._error(status, type_, message, extra)

    async def _messages(self, ex: Exchange) -> web.StreamResponse:
        scripted = self._scripted_error(ex.turn)
        if scripted is not None:
            return scripted
        body = ex.rec.json
        try:
            # check_auth refused a request without the header; Vertex AI (which reuses this
            # rendering) takes the version in the body instead.
            version = ex.request.headers.get("anthropic-version", VERSION)
            _check_request(body, self.signatures, version)
        except _Refused as refused:
            return self._error(refused.status, refused.type, refused.message)
        turn = ex.turn
        if turn.reasoning is not None:
            self.signatures.add(turn.reasoning_signature)
        message = _message(turn, str(body["model"]))
        if not body.get("stream"):
            return self.json(message, headers=self._headers())
        events = _writes(_events(turn, message))
        headers = self._headers({"cache-control": "no-cache"})
        return await self.stream(
            ex, events, content_type="text/event-stream; charset=utf-8", headers=headers
        )

    async def _count_tokens(self, ex: Exchange) -> web.StreamResponse:
        return self._scripted_error(ex.turn) or self.count_answer(ex.rec.json)

    def count_answer(self, body: Any) -> web.Response:
        """``count_tokens``' answer for ``body``: the count, or the error the API gives."""
        try:
            count = count_input_tokens(body)
        except _Refused as refused:
            return self._error(refused.status, refused.type, refused.message)
        return self.json({"input_tokens": count}, headers=self._headers())

    async def _models(self, ex: Exchange) -> web.StreamResponse:
        query = ex.rec.query
        limit = min(int(query.get("limit", "20")), 1000, self.page_cap)
        ids = [m.id for m in self.models]
        start = ids.index(query["after_id"]) + 1 if query.get("after_id") in ids else 0
        page = self.models[start : start + limit]
        data = [
            {
                "type": "model",
                "id": m.id,
                "display_name": m.display_name,
                "created_at": m.created_at,
            }
            for m in page
        ]
        return self.json(
            {
                "data": data,
                "has_more": start + limit < len(self.models),
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            },
            headers=self._headers(),
        )


# --- rendering ------------------------------------------------------------------------------


def _usage(turn: Turn) -> dict[str, Any]:
    """Anthropic's usage for a turn: ``input_tokens`` excludes the cache reads and writes that
    ``Turn.prompt_tokens`` (OpenAI's sense) includes."""
    fresh = turn.prompt_tokens - turn.cached_tokens - turn.cache_creation_tokens
    usage: dict[str, Any] = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": turn.cache_creation_tokens,
        "cache_read_input_tokens": turn.cached_tokens,
        "output_tokens": turn.completion_tokens,
    }
    if turn.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": turn.reasoning_tokens}
    return usage


def _content(turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.reasoning is not None:
        blocks.append(
            {"type": "thinking", "thinking": turn.reasoning, "signature": turn.reasoning_signature}
        )
    if isinstance(turn, AnthropicTurn) and turn.redacted is not None:
        blocks.append({"type": "redacted_thinking", "data": turn.redacted})
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": msgspec.json.decode(call.arguments or "{}"),
            }
        )
    return blocks


def _message(turn: Turn, model: str) -> dict[str, Any]:
    stop_sequence = turn.stop_sequence if isinstance(turn, AnthropicTurn) else None
    return {
        "id": "msg_01" + secrets.token_hex(11),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(turn),
        "stop_reason": "stop_sequence" if stop_sequence else _STOP[turn.finish_reason],
        "stop_sequence": stop_sequence,
        "usage": _usage(turn),
    }


def _events(turn: Turn, message: dict[str, Any]) -> list[dict[str, Any]]:
    start_usage = dict(_usage(turn), output_tokens=1)
    start_usage.pop("output_tokens_details", None)
    head = {k: v for k, v in message.items() if k != "content"}
    head |= {"content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": head}]
    for index, block in enumerate(message["content"]):
        events += _block_events(turn, index, block)
        if index == 0:
            events.insert(2, {"type": "ping"})
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append({"type": "message_delta", "delta": delta, "usage": message["usage"]})
    events.append({"type": "message_stop"})
    if isinstance(turn, AnthropicTurn) and turn.stream_error is not None:
        error = {"type": turn.stream_error, "message": _stream_error_message(turn.stream_error)}
        events = [*events[: turn.stream_error_after], {"type": "error", "error": error}]
    return events


def _stream_error_message(type_: str) -> str:
    return {"overloaded_error": "Overloaded", "api_error": "Internal server error"}.get(
        type_, "scripted stream failure"
    )


def _block_events(turn: Turn, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block["type"]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in split(block["text"], turn.pieces)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split(block["thinking"], 2)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        arguments = msgspec.json.encode(block["input"]).decode()
        # The API opens every tool's input with an empty fragment.
        pieces = ["", *split(arguments, turn.arg_pieces)]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    else:
        start = block
    events = [{"type": "content_block_start", "index": index, "content_block": start}]
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": index})
    return events


def _writes(events: list[dict[str, Any]]) -> list[bytes]:
    """The events as the API writes them: a block's start (and a ``ping``) goes out with the
    block's first delta, all emitted when its first token is ready; every other event alone."""
    writes: list[bytes] = []
    pending = b""
    for event in events:
        pending += _sse(event)
        if event["type"] not in ("content_block_start", "ping"):
            writes.append(pending)
            pending = b""
    if pending:
        writes.append(pending)
    return writes


def _sse(event: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), msgspec.json.encode(event))


# --- token counts ---------------------------------------------------------------------------


def count_input_tokens(body: Any) -> int:
    """The count for a ``count_tokens`` body; :class:`_Refused` for what the API refuses."""
    if not isinstance(body, dict):
        raise _Refused(400, "invalid_request_error", "There was an issue with your request.")
    for name in ("model", "messages"):
        if name not in body:
            raise _Refused(400, "invalid_request_error", f"{name}: Field required")
    for name in body:
        if name not in _COUNT_FIELDS:
            raise _Refused(400, "invalid_request_error", f"{name}: Extra inputs are not permitted")
    _check_messages(body["messages"])
    system = body.get("system") or []
    texts = [system] if isinstance(system, str) else [b["text"] for b in system]
    for message in body["messages"]:
        texts += [t for block in _blocks(message) for t in _block_texts(block)]
    return prompt_tokens(texts, messages=len(body["messages"]), tools=len(body.get("tools") or []))


def _block_texts(block: dict[str, Any]) -> list[str]:
    kind = block["type"]
    if kind == "text":
        return [block["text"]]
    if kind == "thinking":
        return [block["thinking"]]
    if kind == "tool_use":
        return [block["name"], msgspec.json.encode(block["input"]).decode()]
    if kind == "tool_result":
        content = block.get("content") or []
        if isinstance(content, str):
            return [content]
        return [b["text"] for b in content if b["type"] == "text"]
    return []


# --- what the real API refuses --------------------------------------------------------------


def _check_request(body: Any, signatures: set[str], version: str) -> None:
    if not isinstance(body, dict):
        raise _Refused(400, "invalid_request_error", "There was an issue with your request.")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _Refused(400, "invalid_request_error", f"{name}: Field required")
    for name in ("temperature", "top_p", "top_k"):
        if name in body and version >= "2026-10-21":
            message = f"{name}: Extra inputs are not permitted in API version {version}"
            raise _Refused(400, "invalid_request_error", message)
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        message = "temperature: Input should be less than or equal to 1"
        raise _Refused(400, "invalid_request_error", message)
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens", 0)
        if budget < 1024:
            message = (
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
            raise _Refused(400, "invalid_request_error", message)
        if budget >= body["max_tokens"]:
            message = "`max_tokens` must be greater than `thinking.budget_tokens`."
            raise _Refused(400, "invalid_request_error", message)
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    if thinking.get("type") in ("enabled", "adaptive") and forced:
        message = "Thinking may not be enabled when tool_choice forces tool use."
        raise _Refused(400, "invalid_request_error", message)
    _check_messages(body["messages"])
    if thinking:
        _check_thinking_sent_back(body["messages"], signatures)


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else content or []


def _check_messages(messages: list[dict[str, Any]]) -> None:
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            message_ = f"messages.{i}.role: Input should be 'user' or 'assistant'"
            raise _Refused(400, "invalid_request_error", message_)
        blocks = _blocks(message)
        if not blocks:
            message_ = f"messages.{i}: all messages must have non-empty content"
            raise _Refused(400, "invalid_request_error", message_)
        for j, block in enumerate(blocks):
            if block["type"] == "text" and not block["text"]:
                message_ = f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
                raise _Refused(400, "invalid_request_error", message_)
        used = [b["id"] for b in blocks if b["type"] == "tool_use"]
        if used:
            following = _blocks(messages[i + 1]) if i + 1 < len(messages) else []
            answered = {b["tool_use_id"] for b in following if b["type"] == "tool_result"}
            missing = [u for u in used if u not in answered]
            if missing:
                message_ = (
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
                raise _Refused(400, "invalid_request_error", message_)


def _check_thinking_sent_back(messages: list[dict[str, Any]], signatures: set[str]) -> None:
    """With thinking on, the last assistant turn that used a tool must open with its thinking,
    signature intact."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        blocks = _blocks(message)
        if message["role"] != "assistant" or not any(b["type"] == "tool_use" for b in blocks):
            continue
        first = blocks[0]
        if first["type"] not in ("thinking", "redacted_thinking"):
            raise _Refused(
                400,
                "invalid_request_error",
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
                f"found `{first['type']}`. When `thinking` is enabled, a final `assistant` "
                "message must start with a thinking block.",
            )
        if first["type"] == "thinking" and first.get("signature") not in signatures:
            message_ = f"messages.{i}.content.0: Invalid `signature` in `thinking` block"
            raise _Refused(400, "invalid_request_error", message_)
        return
