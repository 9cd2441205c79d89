"""Building blocks of a ``Response`` made from chat: the object echoing the request's settings,
the output items, usage, logprobs and annotations. Shared by :mod:`.translate` (a whole answer)
and :mod:`.stream` (an answer built chunk by chunk)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from proxy.responses.envelope import encode_envelope
from proxy.schemas.chat import ThinkingBlock, ToolCall
from proxy.schemas.common import Usage
from proxy.schemas.response_events import TextLogprob, TextTopLogprob
from proxy.schemas.responses import (
    Annotation,
    ConversationRef,
    FormatText,
    IncompleteDetails,
    InputTokensDetails,
    Logprob,
    OutputTokensDetails,
    Prompt,
    ReasoningConfig,
    ReasoningItem,
    Response,
    ResponsesRequest,
    ResponseStatus,
    ResponseUsage,
    SummaryText,
    TextConfig,
    TextFormat,
    TopLogprob,
    UrlCitation,
)

__all__ = [
    "annotations_of",
    "kept_calls",
    "logprobs_of",
    "new_response",
    "outcome",
    "reasoning_item",
    "response_usage",
    "text_logprobs",
]

_V = TypeVar("_V")


def _or(value: _V | UnsetType | None, default: _V) -> _V:
    return default if value is UNSET or value is None else value


def _opt(value: _V | UnsetType | None) -> _V | None:
    return None if value is UNSET else value


def new_response(
    req: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    status: ResponseStatus = "in_progress",
    model: str | None = None,
) -> Response:
    """A ``Response`` with no output yet, echoing the request's settings with OpenAI's defaults
    for what it left out (``temperature`` 1, ``tool_choice`` auto, ``store`` true, ...)."""
    text = req.text if isinstance(req.text, TextConfig) else TextConfig()
    fmt: TextFormat = FormatText() if text.format is UNSET else text.format
    reasoning = req.reasoning if isinstance(req.reasoning, ReasoningConfig) else ReasoningConfig()
    conversation = req.conversation_id
    return Response(
        id=response_id,
        created_at=created_at,
        status=status,
        model=model or req.model,
        background=req.background is True,
        conversation=ConversationRef(conversation) if conversation else UNSET,
        instructions=_opt(req.instructions),
        max_output_tokens=_opt(req.max_output_tokens),
        max_tool_calls=_opt(req.max_tool_calls),
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=_opt(req.previous_response_id),
        prompt=req.prompt if isinstance(req.prompt, Prompt) else UNSET,
        prompt_cache_key=_opt(req.prompt_cache_key),
        reasoning=ReasoningConfig(effort=_opt(reasoning.effort), summary=_opt(reasoning.summary)),
        safety_identifier=_opt(req.safety_identifier),
        service_tier=_or(req.service_tier, "default"),
        store=req.stores,
        temperature=_or(req.temperature, 1.0),
        text=TextConfig(format=fmt, verbosity=_or(text.verbosity, "medium")),
        tool_choice=_or(req.tool_choice, "auto"),
        tools=_or(req.tools, []),
        top_logprobs=_or(req.top_logprobs, 0),
        top_p=_or(req.top_p, 1.0),
        truncation=_or(req.truncation, "disabled"),
        user=_opt(req.user),
        metadata=_or(req.metadata, {}),
    )


def outcome(finish_reason: str | None) -> tuple[ResponseStatus, IncompleteDetails | None]:
    """A chat finish reason as the Response's status: ``length`` and ``content_filter`` leave it
    ``incomplete``, with the reason; anything else is ``completed``."""
    if finish_reason == "length":
        return "incomplete", IncompleteDetails(reason="max_output_tokens")
    if finish_reason == "content_filter":
        return "incomplete", IncompleteDetails(reason="content_filter")
    return "completed", None


def response_usage(usage: Usage) -> ResponseUsage:
    """Chat usage in Responses terms (``input_tokens`` include cached ones, as in chat)."""
    p, c = usage.prompt_tokens_details, usage.completion_tokens_details
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=(p.cached_tokens or 0) if p else 0),
        output_tokens_details=OutputTokensDetails(
            reasoning_tokens=(c.reasoning_tokens or 0) if c else 0
        ),
    )


def reasoning_item(
    item_id: str,
    text: str,
    blocks: Sequence[ThinkingBlock],
    extras: Mapping[str, msgspec.Raw],
    *,
    status: Literal["in_progress", "completed", "incomplete"] | UnsetType = UNSET,
) -> ReasoningItem:
    """Reasoning text as one ``summary_text``; what the provider needs back in the envelope."""
    envelope = encode_envelope(blocks, extras)
    return ReasoningItem(
        id=item_id,
        summary=[SummaryText(text=text)] if text else [],
        encrypted_content=UNSET if envelope is None else envelope,
        status=status,
    )


def kept_calls(calls: Sequence[ToolCall], max_tool_calls: int | UnsetType | None) -> list[ToolCall]:
    """The tool calls within ``max_tool_calls``: chat cannot stop the model at the limit, so the
    calls past it are dropped from the answer."""
    if isinstance(max_tool_calls, int):
        return list(calls[:max_tool_calls])
    return list(calls)


# --- logprobs and annotations, from chat's shapes --------------------------------------------


class _ChatTop(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None


class _ChatToken(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[_ChatTop] = []


class _ChatLogprobs(msgspec.Struct):
    content: list[_ChatToken] | None = None


class _ChatUrlCitation(msgspec.Struct):
    start_index: int
    end_index: int
    url: str
    title: str = ""


class _ChatAnnotation(msgspec.Struct):
    type: str
    url_citation: _ChatUrlCitation | None = None


_logprobs = msgspec.json.Decoder(_ChatLogprobs).decode
_annotation = msgspec.json.Decoder(_ChatAnnotation).decode


def logprobs_of(raw: msgspec.Raw | None) -> list[Logprob]:
    """A chat choice's ``logprobs.content`` as Responses logprobs; unreadable ones are dropped
    (they never change the answer)."""
    if raw is None:
        return []
    try:
        tokens = _logprobs(raw).content or []
    except msgspec.DecodeError:
        return []
    return [
        Logprob(
            token=t.token,
            logprob=t.logprob,
            bytes=t.bytes or [],
            top_logprobs=[TopLogprob(x.token, x.logprob, x.bytes or []) for x in t.top_logprobs],
        )
        for t in tokens
    ]


def text_logprobs(logprobs: Sequence[Logprob]) -> list[TextLogprob]:
    """Logprobs as the text events carry them (without ``bytes``)."""
    return [
        TextLogprob(
            token=lp.token,
            logprob=lp.logprob,
            top_logprobs=[TextTopLogprob(t.token, t.logprob) for t in lp.top_logprobs],
        )
        for lp in logprobs
    ]


def annotations_of(raws: Sequence[msgspec.Raw] | UnsetType) -> list[Annotation]:
    """Chat's ``url_citation`` annotations (nested under ``url_citation``) in Responses' flat
    shape; other kinds have no Responses equivalent and are dropped."""
    out: list[Annotation] = []
    for raw in raws or ():
        try:
            ann = _annotation(raw)
        except msgspec.DecodeError:
            continue
        c = ann.url_citation
        if ann.type == "url_citation" and c is not None:
            out.append(UrlCitation(c.start_index, c.end_index, c.title, c.url))
    return out
