"""Cohere's v2 wire format (``POST /v2/chat``, ``POST /v2/embed``, ``GET /v1/models``).

Request types omit what is unset; response and event types read only the fields the gateway
uses (citations, logprobs and ``debug`` events are not modelled and so are skipped by the
decoder). Field names and shapes follow Cohere's OpenAPI spec and its Python SDK's v2 types.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "AssistantMessage",
    "ChatRequest",
    "ChatResponse",
    "CitationEnd",
    "CitationStart",
    "ContentDelta",
    "ContentEnd",
    "ContentStart",
    "Debug",
    "Document",
    "DocumentContent",
    "DocumentData",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorBody",
    "FunctionCall",
    "FunctionDef",
    "ImageContent",
    "ImageURL",
    "Message",
    "MessageEnd",
    "MessageStart",
    "ModelList",
    "ResponseFormat",
    "StreamEvent",
    "SystemMessage",
    "TextContent",
    "Thinking",
    "ThinkingContent",
    "Tokens",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolChoice",
    "ToolMessage",
    "ToolPlanDelta",
    "UserMessage",
    "WireUsage",
]


class _Out(msgspec.Struct, omit_defaults=True):
    pass


# --- request ------------------------------------------------------------------------------


class TextContent(_Out, tag_field="type", tag="text"):
    text: str


class ThinkingContent(_Out, tag_field="type", tag="thinking"):
    thinking: str


class ImageURL(_Out):
    url: str  # a web URL or a base64 data URI: Cohere takes both
    detail: Literal["auto", "low", "high"] | UnsetType = UNSET


class ImageContent(_Out, tag_field="type", tag="image_url"):
    image_url: ImageURL


class DocumentData(_Out):
    """A document's fields; Cohere passes every key and value to the model."""

    text: str
    title: str | UnsetType = UNSET


class Document(_Out):
    data: DocumentData
    id: str | UnsetType = UNSET


class DocumentContent(_Out, tag_field="type", tag="document"):
    document: Document


class FunctionCall(_Out):
    name: str
    arguments: str


class ToolCall(_Out, tag_field="type", tag="function"):
    id: str
    function: FunctionCall


class SystemMessage(_Out, tag_field="role", tag="system"):
    content: str | list[TextContent]


class UserMessage(_Out, tag_field="role", tag="user"):
    content: str | list[TextContent | ImageContent]


class AssistantMessage(_Out, tag_field="role", tag="assistant"):
    content: str | list[TextContent | ThinkingContent] | UnsetType = UNSET
    tool_plan: str | UnsetType = UNSET
    tool_calls: list[ToolCall] | UnsetType = UNSET


class ToolMessage(_Out, tag_field="role", tag="tool"):
    tool_call_id: str
    content: str | list[TextContent | DocumentContent]


Message = SystemMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDef(_Out):
    name: str
    parameters: msgspec.Raw  # a JSON Schema, passed through; Cohere requires it
    description: str | UnsetType = UNSET


class Tool(_Out, tag_field="type", tag="function"):
    function: FunctionDef


class ResponseFormat(_Out):
    type: Literal["json_object"]
    json_schema: msgspec.Raw | UnsetType = UNSET


ToolChoice = Literal["REQUIRED", "NONE"]


class Thinking(_Out):
    type: Literal["enabled", "disabled"]
    token_budget: int | UnsetType = UNSET


class ChatRequest(_Out, kw_only=True):
    model: str
    messages: list[Message]
    tools: list[Tool] | UnsetType = UNSET
    strict_tools: bool | UnsetType = UNSET
    documents: list[Document] | UnsetType = UNSET
    response_format: ResponseFormat | UnsetType = UNSET
    max_tokens: int | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    frequency_penalty: float | UnsetType = UNSET
    presence_penalty: float | UnsetType = UNSET
    p: float | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    thinking: Thinking | UnsetType = UNSET
    # Cohere's reference marks it required (``false`` by default): always sent.
    stream: bool


class EmbedRequest(_Out):
    model: str
    texts: list[str]
    input_type: str
    embedding_types: list[str]
    output_dimension: int | UnsetType = UNSET


# --- responses ----------------------------------------------------------------------------


class Tokens(msgspec.Struct):
    # Cohere's spec types these as numbers; they arrive as integers.
    input_tokens: float | None = None
    output_tokens: float | None = None


class WireUsage(msgspec.Struct):
    """``billed_units``: what Cohere charges for; ``tokens``: everything the model read and
    wrote, Cohere's own prompt template included; ``cached_tokens``: prompt tokens that hit
    Cohere's inference cache."""

    billed_units: Tokens | None = None
    tokens: Tokens | None = None
    cached_tokens: float | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class _Content(msgspec.Struct):
    type: str = "text"
    text: str | None = None
    thinking: str | None = None


class _Message(msgspec.Struct):
    content: list[_Content] | None = None
    tool_plan: str | None = None
    tool_calls: list[_ToolCall] | None = None


class ChatResponse(msgspec.Struct):
    id: str
    finish_reason: str
    message: _Message
    usage: WireUsage | None = None


class _Embeddings(msgspec.Struct):
    float_: list[list[float]] | None = msgspec.field(default=None, name="float")


class _Meta(msgspec.Struct):
    billed_units: Tokens | None = None


class EmbedResponse(msgspec.Struct):
    embeddings: _Embeddings
    meta: _Meta | None = None


class _Model(msgspec.Struct):
    name: str | None = None
    endpoints: list[str] | None = None


class ModelList(msgspec.Struct):
    models: list[_Model]
    next_page_token: str | None = None


class ErrorBody(msgspec.Struct):
    """Cohere's error answer: ``{"id": ..., "message": ...}``."""

    message: str | None = None
    id: str | None = None


# --- stream events (``data:`` of each SSE event, tagged by ``type``) ------------------------


class _StreamContent(msgspec.Struct):
    text: str | None = None
    thinking: str | None = None


class _ContentMessage(msgspec.Struct):
    content: _StreamContent | None = None


class _ContentDelta(msgspec.Struct):
    message: _ContentMessage | None = None


class _PlanMessage(msgspec.Struct):
    tool_plan: str | None = None


class _PlanDelta(msgspec.Struct):
    message: _PlanMessage | None = None


class _CallMessage(msgspec.Struct):
    tool_calls: _ToolCall | None = None


class _CallDelta(msgspec.Struct):
    message: _CallMessage | None = None


class _EndDelta(msgspec.Struct):
    finish_reason: str | None = None
    error: str | None = None
    usage: WireUsage | None = None


class _Event(msgspec.Struct, tag_field="type"):
    pass


class MessageStart(_Event, tag="message-start"):
    id: str | None = None


class ContentStart(_Event, tag="content-start"):
    index: int = 0
    delta: _ContentDelta | None = None


class ContentDelta(_Event, tag="content-delta"):
    index: int = 0
    delta: _ContentDelta | None = None


class ContentEnd(_Event, tag="content-end"):
    pass


class ToolPlanDelta(_Event, tag="tool-plan-delta"):
    delta: _PlanDelta | None = None


class ToolCallStart(_Event, tag="tool-call-start"):
    index: int = 0
    delta: _CallDelta | None = None


class ToolCallDelta(_Event, tag="tool-call-delta"):
    index: int = 0
    delta: _CallDelta | None = None


class ToolCallEnd(_Event, tag="tool-call-end"):
    pass


class CitationStart(_Event, tag="citation-start"):
    pass


class CitationEnd(_Event, tag="citation-end"):
    pass


class MessageEnd(_Event, tag="message-end"):
    delta: _EndDelta | None = None


class Debug(_Event, tag="debug"):
    pass


StreamEvent = (
    MessageStart
    | ContentStart
    | ContentDelta
    | ContentEnd
    | ToolPlanDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | CitationStart
    | CitationEnd
    | MessageEnd
    | Debug
)
