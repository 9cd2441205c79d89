"""Anthropic's Messages API on the wire: what the gateway sends (tagged Structs, encoded) and what
it reads back (tolerant Structs, decoded).

Request blocks are tagged by ``type`` like the API's own. Response blocks and stream events are
read into flat Structs instead of tagged unions: Anthropic adds block and event types over time
(server tools, citations, compaction), and one the gateway does not know must be skipped, not
fail the whole answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "AdaptiveThinking",
    "Base64Source",
    "Block",
    "CountTokensRequest",
    "DocumentBlock",
    "EnabledThinking",
    "ErrorBody",
    "ErrorEnvelope",
    "Event",
    "EventDelta",
    "ImageBlock",
    "JSONOutputFormat",
    "Message",
    "MessageParam",
    "MessagesRequest",
    "Metadata",
    "ModelEntry",
    "ModelPage",
    "OutputConfig",
    "OutputDetails",
    "PlainTextSource",
    "RedactedThinkingBlock",
    "ResponseBlock",
    "TextBlock",
    "ThinkingBlock",
    "TokenCount",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceNone",
    "ToolChoiceTool",
    "ToolParam",
    "ToolResultBlock",
    "ToolUseBlock",
    "URLSource",
    "Usage",
]


class _Out(msgspec.Struct, omit_defaults=True):
    pass


# --- request: content blocks ----------------------------------------------------------------


class TextBlock(_Out, tag_field="type", tag="text"):
    text: str
    # ``{"type": "ephemeral", "ttl": ...}`` as the client sent it.
    cache_control: msgspec.Raw | UnsetType = UNSET


class URLSource(_Out, tag_field="type", tag="url"):
    url: str


class Base64Source(_Out, tag_field="type", tag="base64"):
    media_type: str
    data: str


class PlainTextSource(_Out, tag_field="type", tag="text"):
    media_type: str
    data: str


class ImageBlock(_Out, tag_field="type", tag="image"):
    source: URLSource | Base64Source


class DocumentBlock(_Out, tag_field="type", tag="document"):
    source: Base64Source | PlainTextSource
    title: str | UnsetType = UNSET


class ToolUseBlock(_Out, tag_field="type", tag="tool_use"):
    id: str
    name: str
    # A JSON object: the call's arguments, as the client sent them back.
    input: msgspec.Raw


class ToolResultBlock(_Out, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock]


class ThinkingBlock(_Out, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class RedactedThinkingBlock(_Out, tag_field="type", tag="redacted_thinking"):
    data: str


Block = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
)


class MessageParam(_Out):
    role: Literal["user", "assistant"]
    content: str | list[Block]


# --- request: tools, thinking, output -------------------------------------------------------


class ToolParam(_Out):
    name: str
    input_schema: msgspec.Raw
    description: str | UnsetType = UNSET
    strict: bool | UnsetType = UNSET


class ToolChoiceAuto(_Out, tag_field="type", tag="auto"):
    disable_parallel_tool_use: bool | UnsetType = UNSET


class ToolChoiceAny(_Out, tag_field="type", tag="any"):
    disable_parallel_tool_use: bool | UnsetType = UNSET


class ToolChoiceTool(_Out, tag_field="type", tag="tool"):
    name: str
    disable_parallel_tool_use: bool | UnsetType = UNSET


class ToolChoiceNone(_Out, tag_field="type", tag="none"):
    pass


class EnabledThinking(_Out, tag_field="type", tag="enabled"):
    budget_tokens: int


class AdaptiveThinking(_Out, tag_field="type", tag="adaptive"):
    # Claude Opus 4.7 and later omit the thinking text unless asked for a summary.
    display: Literal["summarized", "omitted"] | UnsetType = UNSET


class JSONOutputFormat(_Out, tag_field="type", tag="json_schema"):
    schema: msgspec.Raw


class OutputConfig(_Out):
    effort: str | UnsetType = UNSET
    format: JSONOutputFormat | UnsetType = UNSET


class Metadata(_Out):
    user_id: str


class MessagesRequest(_Out, kw_only=True):
    # Vertex AI and Bedrock name the model in the URL and take the version in the body
    # (``anthropic_version``) instead: there ``model`` is unset.
    anthropic_version: str | UnsetType = UNSET
    model: str | UnsetType = UNSET
    max_tokens: int
    messages: list[MessageParam]
    system: str | list[TextBlock] | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    tools: list[ToolParam] | UnsetType = UNSET
    tool_choice: ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone | UnsetType = (
        UNSET
    )
    thinking: EnabledThinking | AdaptiveThinking | UnsetType = UNSET
    output_config: OutputConfig | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    stream: bool | UnsetType = UNSET


class CountTokensRequest(_Out, kw_only=True):
    """``POST /v1/messages/count_tokens``: what of a Messages request shapes its input (no
    ``max_tokens``, sampling or ``stream``: the endpoint refuses extra inputs). Vertex AI's
    ``count-tokens:rawPredict`` takes the model in the body too, with ``anthropic_version``."""

    anthropic_version: str | UnsetType = UNSET
    model: str
    messages: list[MessageParam]
    system: str | list[TextBlock] | UnsetType = UNSET
    tools: list[ToolParam] | UnsetType = UNSET
    tool_choice: ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone | UnsetType = (
        UNSET
    )
    thinking: EnabledThinking | AdaptiveThinking | UnsetType = UNSET


# --- responses and stream events (read) -----------------------------------------------------


class ResponseBlock(msgspec.Struct):
    """Any content block: ``text``, ``tool_use``, ``thinking``, ``redacted_thinking``, or one the
    gateway skips."""

    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    # Raw cannot be in a union with None: an absent input reads as empty.
    input: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    thinking: str = ""
    signature: str = ""
    data: str = ""


class OutputDetails(msgspec.Struct):
    thinking_tokens: int = 0


class Usage(msgspec.Struct):
    """Token counts; in a stream's ``message_delta`` every field but ``output_tokens`` may be
    absent (``None``), and those present are cumulative."""

    input_tokens: int | None = None
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputDetails | None = None


class Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[ResponseBlock] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None


class EventDelta(msgspec.Struct):
    """The ``delta`` of ``content_block_delta`` (by ``type``) and of ``message_delta``."""

    type: str = ""
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""
    stop_reason: str | None = None


class ErrorBody(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class Event(msgspec.Struct):
    """One stream event; ``type`` says which of the other fields it carries."""

    type: str
    message: Message | None = None
    index: int = 0
    content_block: ResponseBlock | None = None
    delta: EventDelta | None = None
    usage: Usage | None = None
    error: ErrorBody | None = None


class ErrorEnvelope(msgspec.Struct):
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""

    error: ErrorBody | None = None
    request_id: str | None = None


class TokenCount(msgspec.Struct):
    """``count_tokens``' answer: ``{"input_tokens": N}``."""

    input_tokens: int


class ModelEntry(msgspec.Struct):
    id: str
    created_at: datetime | None = None
    display_name: str = ""


class ModelPage(msgspec.Struct):
    data: list[ModelEntry] = []
    has_more: bool = False
    last_id: str | None = None
