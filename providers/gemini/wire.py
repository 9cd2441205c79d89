"""The Gemini API's wire types (``generativelanguage.googleapis.com/v1beta``), as msgspec Structs.

Field names are the API's camelCase JSON names (``rename="camel"``); absent fields are ``UNSET``
and never sent. The same ``Content``/``Part`` types serve requests and responses, as in the API.
Vertex AI's ``generateContent`` takes the same body, so these types are shared with it.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "BatchEmbedContentsRequest",
    "Blob",
    "Candidate",
    "Content",
    "ContentEmbedding",
    "CountTokensRequest",
    "CountTokensResponse",
    "EmbedContentRequest",
    "EmbedResponse",
    "EmbeddingUsage",
    "ErrorBody",
    "ErrorDetail",
    "ErrorEnvelope",
    "FileData",
    "FunctionCall",
    "FunctionCallingConfig",
    "FunctionDeclaration",
    "FunctionResponse",
    "GenerateContentRequest",
    "GenerateContentResponse",
    "GenerationConfig",
    "ModelEntry",
    "ModelList",
    "Part",
    "PromptFeedback",
    "StreamEvent",
    "ThinkingConfig",
    "Tool",
    "ToolConfig",
    "UsageMetadata",
]


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


# --- content ------------------------------------------------------------------------------


class Blob(_Wire):
    """Inline bytes: ``data`` is base64 text, as the JSON API carries it."""

    mime_type: str
    data: str


class FileData(_Wire):
    """A file by URI: a Files API URI, or (since January 2026) a public or signed https URL
    that the API downloads itself."""

    file_uri: str
    mime_type: str | UnsetType = UNSET


class FunctionCall(_Wire):
    name: str
    # A JSON object, passed through (re-written on one line for a tool call's `arguments`).
    args: msgspec.Raw | UnsetType = UNSET
    id: str | UnsetType = UNSET


class FunctionResponse(_Wire):
    name: str
    response: msgspec.Raw
    id: str | UnsetType = UNSET


class Part(_Wire):
    """One part of a turn; exactly one of the data fields is set."""

    text: str | UnsetType = UNSET
    inline_data: Blob | UnsetType = UNSET
    file_data: FileData | UnsetType = UNSET
    function_call: FunctionCall | UnsetType = UNSET
    function_response: FunctionResponse | UnsetType = UNSET
    # ``thought: true`` marks a thought summary (returned with ``includeThoughts``).
    thought: bool | UnsetType = UNSET
    # Opaque reasoning state the model needs back, on the part it came with (Gemini 3 refuses a
    # function-calling turn whose call lost it).
    thought_signature: str | UnsetType = UNSET


class Content(_Wire):
    parts: list[Part] = []
    role: str | UnsetType = UNSET


# --- the request --------------------------------------------------------------------------


class FunctionDeclaration(_Wire):
    name: str
    description: str | UnsetType = UNSET
    # A JSON Schema passed through untouched (``parametersJsonSchema`` takes full JSON Schema,
    # where ``parameters`` takes only Google's OpenAPI subset).
    parameters_json_schema: msgspec.Raw | UnsetType = UNSET


class Tool(_Wire):
    function_declarations: list[FunctionDeclaration]


class FunctionCallingConfig(_Wire):
    mode: str  # AUTO, ANY, NONE
    allowed_function_names: list[str] | UnsetType = UNSET


class ToolConfig(_Wire):
    function_calling_config: FunctionCallingConfig


class ThinkingConfig(_Wire):
    include_thoughts: bool | UnsetType = UNSET
    # Gemini 2.5: a token budget (0 turns thinking off where the model allows it).
    thinking_budget: int | UnsetType = UNSET
    # Gemini 3: MINIMAL, LOW, MEDIUM, HIGH; never together with a budget (the API answers 400).
    thinking_level: str | UnsetType = UNSET


class GenerationConfig(_Wire):
    stop_sequences: list[str] | UnsetType = UNSET
    response_mime_type: str | UnsetType = UNSET
    response_json_schema: msgspec.Raw | UnsetType = UNSET
    candidate_count: int | UnsetType = UNSET
    max_output_tokens: int | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    presence_penalty: float | UnsetType = UNSET
    frequency_penalty: float | UnsetType = UNSET
    thinking_config: ThinkingConfig | UnsetType = UNSET


class GenerateContentRequest(_Wire):
    contents: list[Content]
    system_instruction: Content | UnsetType = UNSET
    tools: list[Tool] | UnsetType = UNSET
    tool_config: ToolConfig | UnsetType = UNSET
    generation_config: GenerationConfig | UnsetType = UNSET
    # flex, standard or priority.
    service_tier: str | UnsetType = UNSET
    # ``models/{model}``: required inside ``countTokens``' ``generateContentRequest``;
    # ``generateContent`` names the model in its URL.
    model: str | UnsetType = UNSET


class CountTokensRequest(_Wire):
    """``models/{model}:countTokens``: a whole ``generateContent`` request, so the system
    instruction and tools are counted too (top-level ``contents`` would count only those)."""

    generate_content_request: GenerateContentRequest


class CountTokensResponse(_Wire):
    total_tokens: int
    cached_content_token_count: int = 0


# --- the response -------------------------------------------------------------------------


class UsageMetadata(_Wire):
    """Token counts. ``promptTokenCount`` includes the cached tokens
    (``cachedContentTokenCount``); thinking is counted apart from the answer
    (``thoughtsTokenCount`` beside ``candidatesTokenCount``)."""

    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class Candidate(_Wire):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0
    finish_message: str | None = None


class PromptFeedback(_Wire):
    block_reason: str | None = None
    block_reason_message: str | None = None


class GenerateContentResponse(_Wire):
    candidates: list[Candidate] = []
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None


class ErrorDetail(_Wire):
    """One entry of ``error.details`` (``google.rpc`` messages, told apart by ``@type``)."""

    type: str = msgspec.field(default="", name="@type")
    reason: str | None = None  # google.rpc.ErrorInfo
    retry_delay: str | None = None  # google.rpc.RetryInfo, a Duration such as "23s"


class ErrorBody(_Wire):
    code: int = 0
    message: str = ""
    status: str = ""
    details: list[ErrorDetail] = []


class ErrorEnvelope(_Wire):
    error: ErrorBody


class StreamEvent(GenerateContentResponse):
    """One ``data:`` event of ``streamGenerateContent?alt=sse``: a response piece, or an error."""

    error: ErrorBody | None = None


# --- embeddings ---------------------------------------------------------------------------


class EmbedContentRequest(_Wire):
    content: Content
    # ``models/{model}``: required in each request of a batch, optional for a single one.
    model: str | UnsetType = UNSET
    output_dimensionality: int | UnsetType = UNSET


class BatchEmbedContentsRequest(_Wire):
    requests: list[EmbedContentRequest]


class ContentEmbedding(_Wire):
    values: list[float] = []


class EmbeddingUsage(_Wire):
    prompt_token_count: int = 0


class EmbedResponse(_Wire):
    """``embedContent`` answers ``embedding``, ``batchEmbedContents`` ``embeddings``; newer API
    versions add ``usageMetadata``, older ones report no usage at all."""

    embedding: ContentEmbedding | None = None
    embeddings: list[ContentEmbedding] | None = None
    usage_metadata: EmbeddingUsage | None = None


# --- the model list -----------------------------------------------------------------------


class ModelEntry(_Wire):
    name: str  # "models/gemini-2.5-flash"
    supported_generation_methods: list[str] = []


class ModelList(_Wire):
    models: list[ModelEntry] = []
    next_page_token: str | None = None
