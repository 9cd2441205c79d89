"""Chat completions: the request (messages tagged by ``role``, parts tagged by ``type``) and the
response and stream-chunk objects."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from proxy.schemas.common import Usage

__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatRequest",
    "Choice",
    "ChunkChoice",
    "ContentPart",
    "Delta",
    "DeveloperMessage",
    "FilePart",
    "FunctionCall",
    "FunctionMessage",
    "FunctionTool",
    "ImagePart",
    "InputAudioPart",
    "Message",
    "RefusalPart",
    "ResponseFormat",
    "StreamOptions",
    "SystemMessage",
    "TextPart",
    "ThinkingBlock",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolMessage",
    "UserMessage",
]


class _Req(msgspec.Struct, omit_defaults=True):
    pass


# --- content parts --------------------------------------------------------------------------


class TextPart(_Req, tag_field="type", tag="text"):
    text: str
    # Anthropic-style prompt-caching marks travel on parts; passed through where understood.
    cache_control: msgspec.Raw | UnsetType = UNSET


class ImageURL(_Req):
    url: str
    detail: Literal["auto", "low", "high"] | UnsetType = UNSET


class ImagePart(_Req, tag_field="type", tag="image_url"):
    image_url: ImageURL


class InputAudio(_Req):
    data: str
    format: str


class InputAudioPart(_Req, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


class FileRef(_Req):
    file_data: str | UnsetType = UNSET
    file_id: str | UnsetType = UNSET
    filename: str | UnsetType = UNSET


class FilePart(_Req, tag_field="type", tag="file"):
    file: FileRef


class RefusalPart(_Req, tag_field="type", tag="refusal"):
    refusal: str


ContentPart = TextPart | ImagePart | InputAudioPart | FilePart | RefusalPart

# --- messages -------------------------------------------------------------------------------


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, tag_field="type", tag="function"):
    id: str
    function: FunctionCall
    # Opaque data a provider needs echoed back on the next turn, in the shape Google's own
    # OpenAI endpoint uses: ``{"google": {"thought_signature": "..."}}``.
    extra_content: msgspec.Raw | UnsetType = UNSET


class ThinkingBlock(msgspec.Struct):
    """A reasoning block as the provider returned it, to be sent back unchanged on the next turn
    (Anthropic refuses a tool-use turn whose thinking lost its ``signature``).

    ``type`` is ``thinking`` (``thinking`` text and ``signature``) or ``redacted_thinking``
    (encrypted ``data``); it is always written out (no ``omit_defaults``), the absent fields
    are not.
    """

    type: Literal["thinking", "redacted_thinking"] = "thinking"
    thinking: str | UnsetType = UNSET
    signature: str | UnsetType = UNSET
    data: str | UnsetType = UNSET


class SystemMessage(_Req, tag_field="role", tag="system"):
    content: str | list[ContentPart]
    name: str | UnsetType = UNSET


class DeveloperMessage(_Req, tag_field="role", tag="developer"):
    content: str | list[ContentPart]
    name: str | UnsetType = UNSET


class UserMessage(_Req, tag_field="role", tag="user"):
    content: str | list[ContentPart]
    name: str | UnsetType = UNSET


class AssistantMessage(_Req, tag_field="role", tag="assistant"):
    content: str | list[ContentPart] | UnsetType | None = UNSET
    name: str | UnsetType = UNSET
    refusal: str | UnsetType | None = UNSET
    tool_calls: list[ToolCall] | UnsetType = UNSET
    function_call: FunctionCall | UnsetType | None = UNSET
    audio: msgspec.Raw | UnsetType = UNSET
    # Gateway extensions: a previous turn's reasoning, returned to providers that need it.
    reasoning_content: str | UnsetType | None = UNSET
    thinking_blocks: list[ThinkingBlock] | UnsetType | None = UNSET


class ToolMessage(_Req, tag_field="role", tag="tool"):
    content: str | list[ContentPart]
    tool_call_id: str


class FunctionMessage(_Req, tag_field="role", tag="function"):
    content: str | None
    name: str


Message = (
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)

# --- tools and formats ----------------------------------------------------------------------


class FunctionDefinition(_Req):
    name: str
    description: str | UnsetType = UNSET
    # A JSON Schema the gateway passes through untouched.
    parameters: msgspec.Raw | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET


class FunctionTool(_Req, tag_field="type", tag="function"):
    function: FunctionDefinition


class CustomTool(_Req, tag_field="type", tag="custom"):
    custom: msgspec.Raw


Tool = FunctionTool | CustomTool


class FunctionName(_Req):
    name: str


class NamedToolChoice(_Req, tag_field="type", tag="function"):
    function: FunctionName


class AllowedToolsChoice(_Req, tag_field="type", tag="allowed_tools"):
    allowed_tools: msgspec.Raw


class CustomToolChoice(_Req, tag_field="type", tag="custom"):
    custom: FunctionName


ToolChoice = (
    Literal["none", "auto", "required"] | NamedToolChoice | AllowedToolsChoice | CustomToolChoice
)


class TextFormat(_Req, tag_field="type", tag="text"):
    pass


class JSONObjectFormat(_Req, tag_field="type", tag="json_object"):
    pass


class JSONSchema(_Req):
    name: str
    description: str | UnsetType = UNSET
    schema: msgspec.Raw | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET


class JSONSchemaFormat(_Req, tag_field="type", tag="json_schema"):
    json_schema: JSONSchema


ResponseFormat = TextFormat | JSONObjectFormat | JSONSchemaFormat


class StreamOptions(_Req):
    include_usage: bool | UnsetType = UNSET
    include_obfuscation: bool | UnsetType = UNSET


# --- the request ----------------------------------------------------------------------------

_Temperature = Annotated[float, Meta(ge=0, le=2)]
_Penalty = Annotated[float, Meta(ge=-2, le=2)]


class ChatRequest(_Req):
    model: str
    messages: Annotated[list[Message], Meta(min_length=1)]
    fallbacks: list[str] | UnsetType = UNSET
    stream: bool | UnsetType | None = UNSET
    stream_options: StreamOptions | UnsetType | None = UNSET
    temperature: _Temperature | UnsetType | None = UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | UnsetType | None = UNSET
    max_tokens: Annotated[int, Meta(ge=1)] | UnsetType | None = UNSET
    max_completion_tokens: Annotated[int, Meta(ge=1)] | UnsetType | None = UNSET
    n: Annotated[int, Meta(ge=1, le=128)] | UnsetType | None = UNSET
    stop: str | list[str] | UnsetType | None = UNSET
    seed: int | UnsetType | None = UNSET
    presence_penalty: _Penalty | UnsetType | None = UNSET
    frequency_penalty: _Penalty | UnsetType | None = UNSET
    logit_bias: dict[str, float] | UnsetType | None = UNSET
    logprobs: bool | UnsetType | None = UNSET
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | UnsetType | None = UNSET
    tools: list[Tool] | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    response_format: ResponseFormat | UnsetType = UNSET
    reasoning_effort: str | UnsetType | None = UNSET
    verbosity: str | UnsetType | None = UNSET
    user: str | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType | None = UNSET
    store: bool | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET
    modalities: list[str] | UnsetType | None = UNSET
    audio: msgspec.Raw | UnsetType = UNSET
    prediction: msgspec.Raw | UnsetType = UNSET
    web_search_options: msgspec.Raw | UnsetType = UNSET
    prompt_cache_key: str | UnsetType = UNSET
    safety_identifier: str | UnsetType = UNSET


# --- the response ---------------------------------------------------------------------------


class ChatMessage(msgspec.Struct):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET
    thinking_blocks: list[ThinkingBlock] | UnsetType = UNSET
    annotations: list[msgspec.Raw] | UnsetType = UNSET


class Choice(msgspec.Struct):
    index: int
    message: ChatMessage
    finish_reason: str | None
    logprobs: msgspec.Raw | None = None


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    object: Literal["chat.completion"] = "chat.completion"
    usage: Usage | UnsetType = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET


class DeltaFunction(msgspec.Struct, omit_defaults=True):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class DeltaToolCall(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: DeltaFunction | UnsetType = UNSET
    extra_content: msgspec.Raw | UnsetType = UNSET


class Delta(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    refusal: str | UnsetType | None = UNSET
    reasoning_content: str | UnsetType = UNSET
    # A thinking block's signature (or a redacted block) arrives as one delta of its own.
    thinking_blocks: list[ThinkingBlock] | UnsetType = UNSET
    tool_calls: list[DeltaToolCall] | UnsetType = UNSET


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: msgspec.Raw | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
