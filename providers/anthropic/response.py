"""Anthropic's answer as the unified chat completion (pure; no I/O).

Text blocks make the content; ``tool_use`` blocks the tool calls (the JSON tool's input, see
:data:`~providers.anthropic.translate.JSON_TOOL`, the content instead); ``thinking`` blocks the
``reasoning_content``, and every thinking block, signature and all (``redacted_thinking`` with
its ``data``), is kept in ``thinking_blocks`` for the client to send back.
"""

from __future__ import annotations

import time

from providers.anthropic import wire
from providers.anthropic.translate import JSON_TOOL
from proxy.schemas.chat import (
    ChatCompletion,
    ChatMessage,
    Choice,
    FunctionCall,
    ThinkingBlock,
    ToolCall,
)
from proxy.schemas.common import CompletionTokensDetails, PromptTokensDetails, Usage

__all__ = ["finish_reason", "from_native", "merge_usage", "unified_usage"]

# Anthropic's stop_reason -> OpenAI's finish_reason.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # A server tool's long turn paused; the answer so far is complete as far as it goes.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None, *, json_answer: bool = False) -> str:
    """OpenAI's finish reason; a forced JSON tool's ``tool_use`` is a plain ``stop``."""
    if stop_reason == "tool_use" and json_answer:
        return "stop"
    return _FINISH.get(stop_reason or "", "stop")


def unified_usage(usage: wire.Usage) -> Usage:
    """OpenAI's usage: prompt tokens include those read from and written to the cache."""
    cached = usage.cache_read_input_tokens or 0
    prompt = (usage.input_tokens or 0) + cached + (usage.cache_creation_input_tokens or 0)
    details = usage.output_tokens_details
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=usage.output_tokens,
        total_tokens=prompt + usage.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=details.thinking_tokens if details else 0
        ),
    )


def merge_usage(base: wire.Usage | None, update: wire.Usage) -> wire.Usage:
    """A stream's usage so far: ``message_delta`` counts are cumulative and replace earlier
    ones (adding them would count the input twice); the fields it leaves out are kept."""
    if base is None:
        return update
    return wire.Usage(
        input_tokens=_newer(update.input_tokens, base.input_tokens),
        output_tokens=update.output_tokens or base.output_tokens,
        cache_creation_input_tokens=_newer(
            update.cache_creation_input_tokens, base.cache_creation_input_tokens
        ),
        cache_read_input_tokens=_newer(
            update.cache_read_input_tokens, base.cache_read_input_tokens
        ),
        output_tokens_details=update.output_tokens_details or base.output_tokens_details,
    )


def _newer(new: int | None, old: int | None) -> int | None:
    return old if new is None else new


def from_native(message: wire.Message, model: str) -> ChatCompletion:
    texts: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[str] = []
    blocks: list[ThinkingBlock] = []
    json_answer = False
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use" and block.name == JSON_TOOL:
            json_answer = True
            texts.append(_arguments(block))
        elif block.type == "tool_use":
            calls.append(
                ToolCall(id=block.id, function=FunctionCall(block.name, _arguments(block)))
            )
        elif block.type == "thinking":
            reasoning.append(block.thinking)
            blocks.append(ThinkingBlock(thinking=block.thinking, signature=block.signature))
        elif block.type == "redacted_thinking":
            blocks.append(ThinkingBlock(type="redacted_thinking", data=block.data))
    out = ChatMessage(content="".join(texts) if texts or not calls else None)
    if calls:
        out.tool_calls = calls
    if reasoning:
        out.reasoning_content = "".join(reasoning)
    if blocks:
        out.thinking_blocks = blocks
    completion = ChatCompletion(
        id=message.id,
        created=int(time.time()),
        model=message.model or model,
        choices=[
            Choice(
                index=0,
                message=out,
                finish_reason=finish_reason(message.stop_reason, json_answer=json_answer),
            )
        ],
    )
    if message.usage is not None:
        completion.usage = unified_usage(message.usage)
    return completion


def _arguments(block: wire.ResponseBlock) -> str:
    return bytes(block.input).decode() or "{}"
