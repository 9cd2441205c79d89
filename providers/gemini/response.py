"""Gemini's answer as the unified chat completion (pure), and what the stream shares with it:
finish reasons, usage, tool-call ids and the thought-signature carrier."""

from __future__ import annotations

import hashlib

import msgspec
from msgspec import UNSET

from providers.gemini.wire import Candidate, GenerateContentResponse, Part, UsageMetadata
from proxy.schemas.chat import (
    ChatCompletion,
    ChatMessage,
    Choice,
    FunctionCall,
    ThinkingBlock,
    ToolCall,
)
from proxy.schemas.common import CompletionTokensDetails, PromptTokensDetails, Usage

__all__ = [
    "arguments_text",
    "blocked_message",
    "call_id",
    "finish_reason",
    "from_native",
    "signature_extra",
    "usage_of",
]

# Finish reasons that mean a filter stopped the answer. The rest of Gemini's list (OTHER,
# MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, ...) has no OpenAI equivalent and maps to
# "stop", the answer being whatever was produced.
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
# MAX_TOKENS: maxOutputTokens reached; CONTINUATION: the per-request limit cut an unfinished
# answer.
_LENGTH = frozenset({"MAX_TOKENS", "CONTINUATION"})
_encode = msgspec.json.Encoder().encode


def finish_reason(reason: str, *, tool_calls: bool) -> str:
    if reason in _FILTERED:
        return "content_filter"
    if reason in _LENGTH:
        return "length"
    return "tool_calls" if tool_calls else "stop"


def blocked_message(resp: GenerateContentResponse) -> str | None:
    """Why Gemini refused the prompt itself (``promptFeedback.blockReason``, no candidates).

    Such a prompt is answered as a content-filtered completion (``finish_reason:
    content_filter``, the reason as ``refusal``) rather than an error: Gemini answered 200 and
    bills the prompt, and a stream says it the same way.
    """
    feedback = resp.prompt_feedback
    if resp.candidates or feedback is None or not feedback.block_reason:
        return None
    message = f"Gemini blocked the prompt ({feedback.block_reason})."
    extra = feedback.block_reason_message
    return f"{message} {extra}" if extra else message


def usage_of(u: UsageMetadata) -> Usage:
    """OpenAI's usage: the prompt includes cached and tool-use tokens, the completion the
    thinking tokens."""
    prompt = u.prompt_token_count + u.tool_use_prompt_token_count
    completion = u.candidates_token_count + u.thoughts_token_count
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cached_content_token_count),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=u.thoughts_token_count),
    )


def call_id(seed: str, candidate: int, n: int) -> str:
    """An id for a function call Gemini sent without one: stable for one answer."""
    digest = hashlib.sha256(f"{seed}:{candidate}:{n}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def arguments_text(part: Part) -> str:
    args = part.function_call.args if part.function_call is not UNSET else UNSET
    if args is UNSET:
        return "{}"
    return msgspec.json.format(bytes(args), indent=0).decode()


def signature_extra(signature: str) -> msgspec.Raw:
    """A call's thought signature in the shape Google's own OpenAI endpoint uses."""
    return msgspec.Raw(b'{"google":{"thought_signature":' + _encode(signature) + b"}}")


def _tool_call(part: Part, seed: str, candidate: int, n: int) -> ToolCall:
    call = part.function_call
    assert call is not UNSET
    tc = ToolCall(
        id=call.id if isinstance(call.id, str) and call.id else call_id(seed, candidate, n),
        function=FunctionCall(name=call.name, arguments=arguments_text(part)),
    )
    if isinstance(part.thought_signature, str):
        tc.extra_content = signature_extra(part.thought_signature)
    return tc


def _choice(cand: Candidate, seed: str) -> Choice:
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    signature: str | None = None
    for part in cand.content.parts if cand.content else ():
        if part.function_call is not UNSET:
            calls.append(_tool_call(part, seed, cand.index, len(calls)))
            continue
        if isinstance(part.text, str):
            (thoughts if part.thought is True else text).append(part.text)
        if isinstance(part.thought_signature, str):
            signature = part.thought_signature
    message = ChatMessage(content="".join(text) or None)
    if calls:
        message.tool_calls = calls
    if thoughts:
        message.reasoning_content = "".join(thoughts)
    if signature is not None:
        block = ThinkingBlock(thinking=message.reasoning_content, signature=signature)
        message.thinking_blocks = [block]
    reason = finish_reason(cand.finish_reason or "STOP", tool_calls=bool(calls))
    return Choice(index=cand.index, message=message, finish_reason=reason)


def from_native(
    resp: GenerateContentResponse, *, model: str, created: int, fallback_id: str
) -> ChatCompletion:
    """A whole ``generateContent`` answer as a chat completion, one choice per candidate."""
    seed = resp.response_id or fallback_id
    choices = [_choice(c, seed) for c in resp.candidates]
    blocked = blocked_message(resp)
    if blocked is not None:
        message = ChatMessage(content=None, refusal=blocked)
        choices = [Choice(index=0, message=message, finish_reason="content_filter")]
    completion = ChatCompletion(
        id=f"chatcmpl-{resp.response_id}" if resp.response_id else fallback_id,
        created=created,
        model=model,
        choices=choices,
    )
    if resp.usage_metadata is not None:
        completion.usage = usage_of(resp.usage_metadata)
    return completion
