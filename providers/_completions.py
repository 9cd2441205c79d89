"""``/v1/completions`` served through chat, for providers without a completions API: the
request as one user message, the answer (whole or chunk by chunk) back as completions."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET

from proxy.errors import InvalidRequestError
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ChatRequest, UserMessage
from proxy.schemas.completions import CompletionRequest, TextChoice, TextCompletion

__all__ = ["chat_from_completion", "encode_text_chunks", "text_completion_from_chat"]

_encode = msgspec.json.Encoder().encode


# Fields with no chat equivalent, and the values that ask for nothing.
_NO_CHAT_EQUIVALENT: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("suffix", (UNSET, None, "")),
    ("echo", (UNSET, None, False)),
    ("best_of", (UNSET, None, 1)),
    ("logprobs", (UNSET, None)),
)


def chat_from_completion(req: CompletionRequest, provider: str) -> ChatRequest:
    """A legacy completion request as a one-message chat request, for providers without one.

    Fields with no chat equivalent are refused (400 naming them) rather than silently dropped.
    """
    for field, neutral in _NO_CHAT_EQUIVALENT:
        if getattr(req, field) not in neutral:
            raise InvalidRequestError(
                f"Provider `{provider}` serves completions through chat, which has no `{field}`.",
                param=field,
                code="unsupported_parameter",
            )
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise InvalidRequestError(
                f"Provider `{provider}` serves completions through chat: `prompt` must be a "
                "string (or a list of one string), not token ids or several prompts.",
                param="prompt",
            )
        prompt = prompt[0]
    return ChatRequest(
        model=req.model,
        messages=[UserMessage(content=prompt)],
        stream=req.stream,
        stream_options=req.stream_options,
        max_tokens=req.max_tokens if req.max_tokens else UNSET,
        temperature=req.temperature,
        top_p=req.top_p,
        n=req.n,
        stop=req.stop,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        user=req.user,
    )


def text_completion_from_chat(completion: ChatCompletion) -> TextCompletion:
    return TextCompletion(
        id=completion.id,
        created=completion.created,
        model=completion.model,
        choices=[
            TextChoice(text=c.message.content or "", index=c.index, finish_reason=c.finish_reason)
            for c in completion.choices
        ],
        usage=completion.usage,
    )


def _text_chunk(chunk: ChatCompletionChunk) -> TextCompletion | None:
    """A chat chunk as a completion chunk; ``None`` for one with no text for a completion
    client (the role, a tool call)."""
    choices = [
        TextChoice(text=c.delta.content or "", index=c.index, finish_reason=c.finish_reason)
        for c in chunk.choices
        if c.delta.content or c.finish_reason
    ]
    if not choices and chunk.usage in (UNSET, None):
        return None
    return TextCompletion(
        id=chunk.id, created=chunk.created, model=chunk.model, choices=choices, usage=chunk.usage
    )


def encode_text_chunks(chunks: list[ChatCompletionChunk]) -> list[bytes]:
    """Chat chunks as completion chunks (JSON), leaving out those with nothing for them."""
    out = []
    for c in chunks:
        converted = _text_chunk(c)
        if converted is not None:
            out.append(_encode(converted))
    return out
