"""A Converse answer as a chat completion. Pure.

Reasoning blocks become ``reasoning_content`` (their text) and ``thinking_blocks`` (text and
signature, or redacted data, to be sent back on the next turn); the forced ``json_object`` tool's
input becomes the message text.
"""

from __future__ import annotations

from providers.bedrock import wire as w
from proxy.schemas.chat import (
    ChatCompletion,
    ChatMessage,
    Choice,
    FunctionCall,
    ThinkingBlock,
    ToolCall,
)
from proxy.schemas.common import PromptTokensDetails, Usage

__all__ = ["JSON_TOOL", "finish_reason", "from_converse", "usage_of"]

# The forced tool that carries a ``json_object`` answer (a name no caller's tool is allowed).
JSON_TOOL = "thruway_json_object"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: str, *, json_answer: bool = False) -> str:
    if json_answer and stop_reason == "tool_use":
        return "stop"
    # malformed_model_output / malformed_tool_use and reasons added later: the turn ended.
    return _FINISH.get(stop_reason, "stop")


def usage_of(u: w.TokenUsage) -> Usage:
    """Bedrock's ``inputTokens`` leave out the cache reads and writes; OpenAI's prompt tokens
    include them."""
    prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_write_input_tokens
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=u.output_tokens,
        total_tokens=prompt + u.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cache_read_input_tokens),
    )


def from_converse(resp: w.ConverseResponse, *, model: str, id: str, created: int) -> ChatCompletion:
    texts: list[str] = []
    reasoning: list[str] = []
    thinking: list[ThinkingBlock] = []
    calls: list[ToolCall] = []
    json_answer = False
    for block in resp.output.message.content:
        if isinstance(block.text, str):
            texts.append(block.text)
        elif isinstance(block.tool_use, w.ToolUseBlock):
            use = block.tool_use
            arguments = bytes(use.input).decode()
            if use.name == JSON_TOOL:
                json_answer = True
                texts.append(arguments)
            else:
                calls.append(
                    ToolCall(id=use.tool_use_id, function=FunctionCall(use.name, arguments))
                )
        elif isinstance(block.reasoning_content, w.ReasoningContent):
            _add_reasoning(block.reasoning_content, reasoning, thinking)
    message = ChatMessage(content="".join(texts) if texts or not calls else None)
    if calls:
        message.tool_calls = calls
    if reasoning:
        message.reasoning_content = "".join(reasoning)
    if thinking:
        message.thinking_blocks = thinking
    return ChatCompletion(
        id=id,
        created=created,
        model=model,
        choices=[
            Choice(
                index=0,
                message=message,
                finish_reason=finish_reason(resp.stop_reason, json_answer=json_answer),
            )
        ],
        usage=usage_of(resp.usage),
    )


def _add_reasoning(
    content: w.ReasoningContent, reasoning: list[str], thinking: list[ThinkingBlock]
) -> None:
    if isinstance(content.reasoning_text, w.ReasoningText):
        text = content.reasoning_text
        reasoning.append(text.text)
        block = ThinkingBlock(type="thinking", thinking=text.text)
        if isinstance(text.signature, str):
            block.signature = text.signature
        thinking.append(block)
    elif isinstance(content.redacted_content, str):
        thinking.append(ThinkingBlock(type="redacted_thinking", data=content.redacted_content))
