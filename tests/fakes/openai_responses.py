"""OpenAI's Responses API as ``FakeOpenAI`` answers it (``POST /v1/responses`` and
``POST /v1/responses/input_tokens``), rendered from the same ``Behavior`` as chat so tests script
both alike: ``content``/``deltas`` become a ``message`` item with one ``output_text`` part,
``tool_calls`` become ``function_call`` items (``call_id`` is the scripted ``id``),
``reasoning_tokens`` adds a ``reasoning`` item first, and ``finish_reason`` ``length`` (or
``content_filter``) makes the response ``incomplete``. Pure: the fake sends what this returns.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.openai import Behavior

__all__ = [
    "COUNT_FIELDS",
    "STREAM_OPTIONS",
    "count_texts",
    "estimate_tokens",
    "response_events",
    "response_object",
]

# What ``/v1/responses/input_tokens`` accepts; the fake refuses anything else, as OpenAI does.
COUNT_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "parallel_tool_calls",
        "truncation",
        "personality",
        "conversation",
        "previous_response_id",
    }
)
# The Responses API's only ``stream_options`` key (``include_usage`` is the chat API's).
STREAM_OPTIONS = frozenset({"include_obfuscation"})
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(25)}"


class _Answer:
    """One scripted answer: its ids and final items, shared by the JSON body and the stream."""

    def __init__(self, body: dict[str, Any], b: Behavior, deltas: list[str] | None) -> None:
        self.body = body
        self.b = b
        # A stream's text is its deltas joined (the scripted `deltas` may differ from `content`).
        self.deltas = deltas or []
        text = b.content if deltas is None else "".join(deltas)
        self.id = _id("resp")
        self.created_at = int(time.time())
        self.incomplete = _INCOMPLETE.get(b.finish_reason or "")
        done = "incomplete" if self.incomplete else "completed"
        self.items: list[dict[str, Any]] = []
        if b.reasoning_tokens:
            self.items.append({"id": _id("rs"), "type": "reasoning", "summary": []})
        for call in b.tool_calls or []:
            self.items.append(
                {
                    "id": _id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": call.get("arguments", "{}"),
                    "call_id": call.get("id") or "call_" + secrets.token_hex(12),
                    "name": call["name"],
                }
            )
        if not b.tool_calls:
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            message = {"id": _id("msg"), "type": "message", "status": done, "content": [part]}
            self.items.append(message | {"role": "assistant"})

    def response(self, *, final: bool) -> dict[str, Any]:
        body, b = self.body, self.b
        status = ("incomplete" if self.incomplete else "completed") if final else "in_progress"
        prompt, completion = b.usage
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": b.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": b.reasoning_tokens},
            "total_tokens": prompt + completion,
        }
        reasoning = body.get("reasoning") or {}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": (
                {"reason": self.incomplete} if final and self.incomplete else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body["model"],
            "output": self.items if final else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default" if final else "auto",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage if final else None,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def item_events(self, index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one output item, from ``output_item.added`` to ``output_item.done``."""
        ref = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            opened = item | {"status": "in_progress", "content": []}
            text = item["content"][0]["text"]
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            at = ref | {"content_index": 0}
            events = [
                {"type": "response.output_item.added", "output_index": index, "item": opened},
                {"type": "response.content_part.added", **at, "part": part},
            ]
            events += [
                {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
                for piece in self.deltas
            ]
            events.append({"type": "response.output_text.done", **at, "text": text, "logprobs": []})
            events.append(
                {"type": "response.content_part.done", **at, "part": part | {"text": text}}
            )
        elif item["type"] == "function_call":
            opened = item | {"status": "in_progress", "arguments": ""}
            arguments = item["arguments"]
            events = [{"type": "response.output_item.added", "output_index": index, "item": opened}]
            events += [
                {"type": "response.function_call_arguments.delta", **ref, "delta": piece}
                for piece in _split(arguments, 5)
            ]
            events.append(
                {"type": "response.function_call_arguments.done", **ref, "arguments": arguments}
            )
        else:
            events = [{"type": "response.output_item.added", "output_index": index, "item": item}]
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        return events


def response_object(body: dict[str, Any], b: Behavior) -> dict[str, Any]:
    """The ``Response`` a non-streamed request gets."""
    return _Answer(body, b, None).response(final=True)


def response_events(body: dict[str, Any], b: Behavior, deltas: list[str]) -> list[dict[str, Any]]:
    """The stream's events in order, each with its ``sequence_number`` (from 0). With
    ``b.stream_error`` = (n, code, message), the stream ends with an ``error`` event after n."""
    answer = _Answer(body, b, deltas)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": answer.response(final=False)},
        {"type": "response.in_progress", "response": answer.response(final=False)},
    ]
    for index, item in enumerate(answer.items):
        events += answer.item_events(index, item)
    end = "response.incomplete" if answer.incomplete else "response.completed"
    events.append({"type": end, "response": answer.response(final=True)})
    if b.stream_error is not None:
        after, code, message = b.stream_error
        error = {"type": "error", "code": code, "message": message, "param": None}
        events = [*events[:after], error]
    return [event | {"sequence_number": n} for n, event in enumerate(events)]


def count_texts(body: dict[str, Any]) -> list[str]:
    """The texts of a request's ``instructions`` and ``input`` (messages' text parts, function
    calls' arguments and outputs)."""
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    given = body.get("input")
    if isinstance(given, str):
        return [*texts, given]
    for item in given if isinstance(given, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and "text" in p]
        for name in ("arguments", "output"):
            if isinstance(item.get(name), str):
                texts.append(item[name])
    return texts


def estimate_tokens(body: dict[str, Any]) -> int:
    """The fake's deterministic input-token count: a token per 4 characters (rounded up) of
    each text, plus 3 per input item for its role and boundaries."""
    given = body.get("input")
    items = len(given) if isinstance(given, list) else 1
    return sum((len(t) + 3) // 4 for t in count_texts(body)) + 3 * items


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
