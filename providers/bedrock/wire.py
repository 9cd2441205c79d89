"""Bedrock Runtime's wire types (Converse, ConverseStream, CountTokens, InvokeModel for
embeddings).

Field names follow botocore's service model ``bedrock-runtime/2023-09-30`` (camelCase on the
wire, hence ``rename="camel"``). Bedrock's unions ("exactly one member set") are Structs whose
members are all optional. Blobs travel base64-encoded inside the JSON, as the REST-JSON protocol
sends them.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "CachePoint",
    "ContentBlock",
    "ConverseRequest",
    "ConverseResponse",
    "ConverseTokensRequest",
    "CountTokensInput",
    "CountTokensRequest",
    "CountTokensResponse",
    "DocumentBlock",
    "ImageBlock",
    "InferenceConfig",
    "MediaSource",
    "Message",
    "ReasoningContent",
    "ReasoningText",
    "SystemBlock",
    "TokenUsage",
    "ToolChoice",
    "ToolConfig",
    "ToolEntry",
    "ToolResultBlock",
    "ToolResultContent",
    "ToolSpec",
    "ToolUseBlock",
]


class _W(msgspec.Struct, omit_defaults=True, rename="camel"):
    pass


class Empty(_W):
    """``{}``: the value of ``toolChoice.auto`` and ``toolChoice.any``."""


# --- content ---------------------------------------------------------------------------------


class MediaSource(_W):
    """An image's, document's or audio clip's ``source``: inline bytes (S3 is not used)."""

    data: str = msgspec.field(name="bytes")  # base64


class ImageBlock(_W):
    format: str  # png | jpeg | gif | webp
    source: MediaSource


class DocumentBlock(_W):
    format: str  # pdf | csv | doc | docx | xls | xlsx | html | txt | md
    name: str
    source: MediaSource


class AudioBlock(_W):
    format: str
    source: MediaSource


class ToolUseBlock(_W):
    tool_use_id: str
    name: str
    input: msgspec.Raw  # a JSON object


class ToolResultContent(_W):
    text: str | UnsetType = UNSET
    json: msgspec.Raw | UnsetType = UNSET
    image: ImageBlock | UnsetType = UNSET


class ToolResultBlock(_W):
    tool_use_id: str
    content: list[ToolResultContent]
    status: str | UnsetType = UNSET


class ReasoningText(_W):
    text: str
    signature: str | UnsetType = UNSET


class ReasoningContent(_W):
    reasoning_text: ReasoningText | UnsetType = UNSET
    redacted_content: str | UnsetType = UNSET  # base64


class CachePoint(_W):
    type: str  # "default" (required: omit_defaults would drop a default)
    ttl: str | UnsetType = UNSET  # 5m | 1h


class ContentBlock(_W):
    text: str | UnsetType = UNSET
    image: ImageBlock | UnsetType = UNSET
    document: DocumentBlock | UnsetType = UNSET
    audio: AudioBlock | UnsetType = UNSET
    tool_use: ToolUseBlock | UnsetType = UNSET
    tool_result: ToolResultBlock | UnsetType = UNSET
    reasoning_content: ReasoningContent | UnsetType = UNSET
    cache_point: CachePoint | UnsetType = UNSET


class Message(_W):
    role: str  # user | assistant
    content: list[ContentBlock]


class SystemBlock(_W):
    text: str | UnsetType = UNSET
    cache_point: CachePoint | UnsetType = UNSET


# --- tools, configuration ----------------------------------------------------------------------


class InputSchema(_W):
    json: msgspec.Raw


class ToolSpec(_W):
    name: str
    input_schema: InputSchema
    description: str | UnsetType = UNSET
    strict: bool | UnsetType = UNSET


class ToolEntry(_W):
    tool_spec: ToolSpec


class NamedTool(_W):
    name: str


class ToolChoice(_W):
    auto: Empty | UnsetType = UNSET
    any: Empty | UnsetType = UNSET
    tool: NamedTool | UnsetType = UNSET


class ToolConfig(_W):
    tools: list[ToolEntry]
    tool_choice: ToolChoice | UnsetType = UNSET


class InferenceConfig(_W):
    max_tokens: int | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET


class JsonSchemaDefinition(_W):
    schema: str  # the JSON Schema as JSON text: Bedrock's field is a string
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET


class OutputStructure(_W):
    json_schema: JsonSchemaDefinition


class OutputFormat(_W):
    type: str  # "json_schema"
    structure: OutputStructure


class OutputConfig(_W):
    text_format: OutputFormat


class ServiceTier(_W):
    type: str  # priority | default | flex | reserved


class ConverseRequest(_W):
    """The body of ``/converse`` and ``/converse-stream`` (the model id is in the path)."""

    messages: list[Message]
    system: list[SystemBlock] | UnsetType = UNSET
    inference_config: InferenceConfig | UnsetType = UNSET
    tool_config: ToolConfig | UnsetType = UNSET
    output_config: OutputConfig | UnsetType = UNSET
    additional_model_request_fields: msgspec.Raw | UnsetType = UNSET
    request_metadata: dict[str, str] | UnsetType = UNSET
    service_tier: ServiceTier | UnsetType = UNSET


class ConverseTokensRequest(_W):
    """What of a Converse request ``CountTokens`` counts (no inference or output settings)."""

    messages: list[Message]
    system: list[SystemBlock] | UnsetType = UNSET
    tool_config: ToolConfig | UnsetType = UNSET
    additional_model_request_fields: msgspec.Raw | UnsetType = UNSET


class CountTokensInput(_W):
    """A union: ``converse`` or ``invokeModel`` (a raw InvokeModel body, unused here)."""

    converse: ConverseTokensRequest


class CountTokensRequest(_W):
    """The body of ``/model/{modelId}/count-tokens``."""

    input: CountTokensInput


class CountTokensResponse(_W):
    input_tokens: int


# --- responses -------------------------------------------------------------------------------


class TokenUsage(_W):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0


class ConverseOutput(_W):
    message: Message


class ConverseResponse(_W):
    output: ConverseOutput
    stop_reason: str
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)


class ErrorBody(msgspec.Struct):
    """Bedrock's error body: ``{"message": ...}`` (some front-door errors say ``Message``)."""

    message: str | None = None
    Message: str | None = None
    # ModelErrorException's and ModelStreamErrorException's: what the model's endpoint said.
    original_status_code: int | None = msgspec.field(default=None, name="originalStatusCode")
    # Where botocore looks for the exception's name when the header is missing.
    type: str | None = msgspec.field(default=None, name="__type")
    code: str | None = None


# --- ConverseStream events (the payload of each event-stream message, by ``:event-type``) -------


class ToolUseStart(_W):
    tool_use_id: str
    name: str


class BlockStart(_W):
    tool_use: ToolUseStart | UnsetType = UNSET


class ContentBlockStartEvent(_W):
    content_block_index: int
    start: BlockStart


class ToolUseDelta(_W):
    input: str


class ReasoningDelta(_W):
    text: str | UnsetType = UNSET
    signature: str | UnsetType = UNSET
    redacted_content: str | UnsetType = UNSET  # base64


class BlockDelta(_W):
    text: str | UnsetType = UNSET
    tool_use: ToolUseDelta | UnsetType = UNSET
    reasoning_content: ReasoningDelta | UnsetType = UNSET


class ContentBlockDeltaEvent(_W):
    content_block_index: int
    delta: BlockDelta


class ContentBlockStopEvent(_W):
    content_block_index: int


class MessageStopEvent(_W):
    stop_reason: str


class MetadataEvent(_W):
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)


# --- InvokeModel bodies of the embedding models ------------------------------------------------


class TitanEmbeddingConfig(_W):
    output_embedding_length: int


class TitanRequest(_W):
    """``amazon.titan-embed-*``: one text per call."""

    input_text: str
    dimensions: int | UnsetType = UNSET  # text v2
    normalize: bool | UnsetType = UNSET  # text v2
    embedding_config: TitanEmbeddingConfig | UnsetType = UNSET  # multimodal (image) v1


class TitanResponse(_W):
    embedding: list[float]
    input_text_token_count: int = 0


class CohereRequest(msgspec.Struct, omit_defaults=True):
    """``cohere.embed-*``: Cohere's own field names (snake_case), up to 96 texts per call."""

    texts: list[str]
    input_type: str
    embedding_types: list[str] | UnsetType = UNSET
    output_dimension: int | UnsetType = UNSET  # embed v4


class CohereByType(msgspec.Struct):
    floats: list[list[float]] = msgspec.field(name="float")


class CohereResponse(msgspec.Struct):
    # ``embeddings_floats``: a list of vectors; ``embeddings_by_type``: ``{"float": [...]}``.
    embeddings: list[list[float]] | CohereByType
