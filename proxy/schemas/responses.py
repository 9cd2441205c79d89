"""The Responses API: the request (items tagged by ``type``), the ``Response`` object, and the
conversation shapes. Stream events are in :mod:`proxy.schemas.response_events`.

Items and tools the gateway translates are typed; the ones only OpenAI serves (built-in tools such
as ``web_search``, and the items they produce such as ``computer_call``) stay ``msgspec.Raw``,
verbatim, so the OpenAI-native path forwards them and the translating path can name them in a 400.

A message item may leave out ``type`` (``{"role": "user", "content": "hi"}``), and an item
reference may be ``{"id": ...}`` alone, which a msgspec tagged union cannot decode in one pass: the
module-level decoders here (:data:`REQUEST_DECODER` and friends) decode the body with those lists
as ``Raw``, then each element by its own ``type``, and re-anchor any error at the element's JSON
path (``$.input[3].content[0].text``), so the decode middleware reports ``param`` as for chat.
They have the ``decode(bytes)`` method of a ``msgspec.json.Decoder``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from proxy.schemas._partial import PartialDecoder, decode_at, optional
from proxy.schemas.chat import StreamOptions

__all__ = [
    "CONVERSATION_CREATE_DECODER",
    "ITEMS_CREATE_DECODER",
    "REQUEST_DECODER",
    "RESPONSE_DECODER",
    "Annotation",
    "ContainerFileCitation",
    "ContentPart",
    "Conversation",
    "ConversationCreate",
    "ConversationDeleted",
    "ConversationRef",
    "FileCitation",
    "FilePath",
    "FormatJSONObject",
    "FormatJSONSchema",
    "FormatText",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionChoice",
    "FunctionTool",
    "IncompleteDetails",
    "InputFile",
    "InputImage",
    "InputItem",
    "InputText",
    "InputTokensDetails",
    "ItemList",
    "ItemReference",
    "ItemsCreate",
    "Logprob",
    "MessageItem",
    "OutputItem",
    "OutputText",
    "OutputTokensDetails",
    "Prompt",
    "ReasoningConfig",
    "ReasoningItem",
    "ReasoningText",
    "Refusal",
    "Response",
    "ResponseDeleted",
    "ResponseError",
    "ResponseUsage",
    "ResponsesRequest",
    "StreamOptions",
    "SummaryText",
    "TextConfig",
    "TextFormat",
    "Tool",
    "ToolChoice",
    "ToolOutputPart",
    "TopLogprob",
    "UrlCitation",
    "decode_items",
    "item_type",
]


class _Req(msgspec.Struct, omit_defaults=True):
    pass


_Status = Literal["in_progress", "completed", "incomplete"]

# --- content parts --------------------------------------------------------------------------


class InputText(_Req, tag_field="type", tag="input_text"):
    text: str


class InputImage(_Req, tag_field="type", tag="input_image"):
    image_url: str | UnsetType | None = UNSET
    file_id: str | UnsetType | None = UNSET
    detail: Literal["low", "high", "auto", "original"] | UnsetType = UNSET


class InputFile(_Req, tag_field="type", tag="input_file"):
    file_data: str | UnsetType | None = UNSET
    file_id: str | UnsetType | None = UNSET
    file_url: str | UnsetType | None = UNSET
    filename: str | UnsetType | None = UNSET


class UrlCitation(msgspec.Struct, tag_field="type", tag="url_citation"):
    start_index: int
    end_index: int
    title: str
    url: str


class FileCitation(msgspec.Struct, tag_field="type", tag="file_citation"):
    file_id: str
    filename: str
    index: int


class ContainerFileCitation(msgspec.Struct, tag_field="type", tag="container_file_citation"):
    container_id: str
    file_id: str
    filename: str
    start_index: int
    end_index: int


class FilePath(msgspec.Struct, tag_field="type", tag="file_path"):
    file_id: str
    index: int


Annotation = UrlCitation | FileCitation | ContainerFileCitation | FilePath


class TopLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] = []


class Logprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] = []
    top_logprobs: list[TopLogprob] = []


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str
    # Always present on output, as OpenAI sends them; optional on input.
    annotations: list[Annotation] = []
    logprobs: list[Logprob] | UnsetType = UNSET


class Refusal(msgspec.Struct, tag_field="type", tag="refusal"):
    refusal: str


ContentPart = InputText | InputImage | InputFile | OutputText | Refusal
ToolOutputPart = InputText | InputImage | InputFile


class SummaryText(msgspec.Struct, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(msgspec.Struct, tag_field="type", tag="reasoning_text"):
    text: str


# --- items ----------------------------------------------------------------------------------
# Shared by input and output: an output item is the same shape with ``id`` and ``status`` set.


class MessageItem(_Req, tag_field="type", tag="message"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | UnsetType = UNSET
    status: _Status | UnsetType = UNSET
    phase: Literal["commentary", "final_answer"] | UnsetType | None = UNSET


class FunctionCallItem(_Req, tag_field="type", tag="function_call"):
    call_id: str
    name: str
    arguments: str
    id: str | UnsetType = UNSET
    status: _Status | UnsetType = UNSET


class FunctionCallOutputItem(_Req, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str | list[ToolOutputPart]
    id: str | UnsetType | None = UNSET
    status: _Status | UnsetType | None = UNSET


class ReasoningItem(msgspec.Struct, tag_field="type", tag="reasoning"):
    """Reasoning; ``encrypted_content`` may be the gateway's own envelope (see
    :mod:`proxy.responses.envelope`), which carries what a provider needs echoed back."""

    id: str | UnsetType = UNSET
    summary: list[SummaryText] = []
    content: list[ReasoningText] | UnsetType = UNSET
    encrypted_content: str | UnsetType | None = UNSET
    status: _Status | UnsetType = UNSET


class ItemReference(_Req, tag_field="type", tag="item_reference"):
    id: str


# ``msgspec.Raw``: an item type only OpenAI serves (``computer_call``, ``web_search_call``, ...).
InputItem = (
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | ReasoningItem
    | ItemReference
    | msgspec.Raw
)
OutputItem = MessageItem | FunctionCallItem | ReasoningItem | msgspec.Raw

_TypedItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem | ItemReference
_ITEM_TAGS = frozenset(
    {"message", "function_call", "function_call_output", "reasoning", "item_reference"}
)

# --- tools, formats, options ----------------------------------------------------------------


class FunctionTool(_Req, tag_field="type", tag="function"):
    name: str
    description: str | UnsetType | None = UNSET
    # A JSON Schema the gateway passes through untouched.
    parameters: msgspec.Raw | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET


# ``msgspec.Raw``: a built-in tool (``web_search``, ``file_search``, ``mcp``, ``custom``...).
Tool = FunctionTool | msgspec.Raw


class FunctionChoice(_Req, tag_field="type", tag="function"):
    name: str


# ``msgspec.Raw``: OpenAI's other forms (``allowed_tools``, ``file_search``, ``mcp``, ...).
ToolChoice = Literal["auto", "none", "required"] | FunctionChoice | msgspec.Raw


class FormatText(_Req, tag_field="type", tag="text"):
    pass


class FormatJSONObject(_Req, tag_field="type", tag="json_object"):
    pass


class FormatJSONSchema(_Req, tag_field="type", tag="json_schema"):
    """Responses puts ``name``/``schema``/``strict`` here; chat nests them in ``json_schema``."""

    name: str
    schema: msgspec.Raw
    description: str | UnsetType | None = UNSET
    strict: bool | UnsetType | None = UNSET


TextFormat = FormatText | FormatJSONObject | FormatJSONSchema


class TextConfig(_Req):
    format: TextFormat | UnsetType = UNSET
    verbosity: Literal["low", "medium", "high"] | UnsetType | None = UNSET


class ReasoningConfig(_Req):
    effort: str | UnsetType | None = UNSET
    summary: Literal["auto", "concise", "detailed"] | UnsetType | None = UNSET
    generate_summary: Literal["auto", "concise", "detailed"] | UnsetType | None = UNSET


class ConversationRef(msgspec.Struct):
    id: str


class Prompt(_Req):
    """A prompt template stored on OpenAI's platform (OpenAI-native only)."""

    id: str
    version: str | UnsetType | None = UNSET
    variables: dict[str, str | InputText | InputImage | InputFile] | UnsetType | None = UNSET


# --- the request ----------------------------------------------------------------------------


class ResponsesRequest(_Req):
    """``POST /v1/responses``. ``store`` is true when left out (``UNSET``): see :attr:`stores`."""

    model: str
    input: str | list[InputItem] | UnsetType = UNSET
    instructions: str | UnsetType | None = UNSET
    fallbacks: list[str] | UnsetType = UNSET
    stream: bool | UnsetType | None = UNSET
    stream_options: StreamOptions | UnsetType | None = UNSET
    background: bool | UnsetType | None = UNSET
    conversation: str | ConversationRef | UnsetType | None = UNSET
    include: list[str] | UnsetType | None = UNSET
    max_output_tokens: Annotated[int, Meta(ge=1)] | UnsetType | None = UNSET
    max_tool_calls: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType | None = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET
    previous_response_id: str | UnsetType | None = UNSET
    prompt: Prompt | UnsetType | None = UNSET
    prompt_cache_key: str | UnsetType | None = UNSET
    reasoning: ReasoningConfig | UnsetType | None = UNSET
    safety_identifier: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET
    store: bool | UnsetType | None = UNSET
    temperature: Annotated[float, Meta(ge=0, le=2)] | UnsetType | None = UNSET
    text: TextConfig | UnsetType | None = UNSET
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | UnsetType | None = UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | UnsetType | None = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    tools: list[Tool] | UnsetType = UNSET
    truncation: Literal["auto", "disabled"] | UnsetType | None = UNSET
    user: str | UnsetType | None = UNSET

    @property
    def stores(self) -> bool:
        """Whether the response is kept: OpenAI's default is true."""
        return self.store is not False

    @property
    def conversation_id(self) -> str | None:
        conv = self.conversation
        if isinstance(conv, ConversationRef):
            return conv.id
        return conv if isinstance(conv, str) else None


# --- the response ---------------------------------------------------------------------------


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    # Required by the SDK's model; chat usage does not say, so 0.
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)


class IncompleteDetails(msgspec.Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(msgspec.Struct):
    """``code`` is one of OpenAI's codes (``server_error``, ``rate_limit_exceeded``, ...)."""

    code: str
    message: str


ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


def _default_text() -> TextConfig:
    return TextConfig(format=FormatText(), verbosity="medium")


class Response(msgspec.Struct, kw_only=True):
    """The ``response`` object; ``None`` fields are sent as ``null`` (OpenAI sends them),
    ``UNSET`` ones are left out."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool = False
    completed_at: int | None = None
    conversation: ConversationRef | UnsetType = UNSET
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    prompt: Prompt | UnsetType = UNSET
    prompt_cache_key: str | None = None
    reasoning: ReasoningConfig = msgspec.field(
        default_factory=lambda: ReasoningConfig(effort=None, summary=None)
    )
    safety_identifier: str | None = None
    service_tier: str | None = None
    store: bool = True
    temperature: float | None = 1.0
    text: TextConfig = msgspec.field(default_factory=_default_text)
    tool_choice: ToolChoice = "auto"
    tools: list[Tool] = []
    top_logprobs: int | None = 0
    top_p: float | None = 1.0
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}


class ResponseDeleted(msgspec.Struct):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


# --- conversations --------------------------------------------------------------------------


class Conversation(msgspec.Struct):
    id: str
    created_at: int
    metadata: dict[str, str] = {}
    object: Literal["conversation"] = "conversation"


class ConversationDeleted(msgspec.Struct):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ConversationCreate(_Req):
    """``POST /v1/conversations``."""

    items: list[InputItem] | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType | None = UNSET


class ItemsCreate(_Req):
    """``POST /v1/conversations/{id}/items``."""

    items: Annotated[list[InputItem], Meta(max_length=20)]


class ItemList(msgspec.Struct):
    """A page of items: a conversation's, or a response's ``input_items``. The items carry ids
    (see :func:`proxy.responses.translate.stored_items`)."""

    data: list[InputItem]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: Literal["list"] = "list"


# --- decoding -------------------------------------------------------------------------------


class _Head(msgspec.Struct):
    type: str | UnsetType = UNSET
    role: msgspec.Raw | UnsetType = UNSET
    id: msgspec.Raw | UnsetType = UNSET


class _ToolHead(msgspec.Struct):
    type: str


_HEAD = msgspec.json.Decoder(_Head)
_TOOL_HEAD = msgspec.json.Decoder(_ToolHead)
_TYPED_ITEM = msgspec.json.Decoder(_TypedItem)
_MESSAGE = msgspec.json.Decoder(MessageItem)
_REFERENCE = msgspec.json.Decoder(ItemReference)
_FUNCTION_TOOL = msgspec.json.Decoder(FunctionTool)
_CHOICE_HEAD = msgspec.json.Decoder(str | _ToolHead)
_CHOICE_OPTION = msgspec.json.Decoder(Literal["auto", "none", "required"])
_FUNCTION_CHOICE = msgspec.json.Decoder(FunctionChoice)


def _item(raw: msgspec.Raw, where: str) -> InputItem:
    head = decode_at(where, _HEAD.decode, raw)
    if head.type is UNSET:
        # ``{"role", "content"}`` is a message; ``{"id"}`` alone an item reference.
        if head.role is UNSET and head.id is not UNSET:
            return decode_at(where, _REFERENCE.decode, raw)
        return decode_at(where, _MESSAGE.decode, raw)
    if head.type in _ITEM_TAGS:
        item: InputItem = decode_at(where, _TYPED_ITEM.decode, raw)
        return item
    return raw


def _items(raws: list[msgspec.Raw], where: str) -> list[InputItem]:
    return [_item(raw, f"{where}[{i}]") for i, raw in enumerate(raws)]


def _tool(raw: msgspec.Raw, where: str) -> Tool:
    head = decode_at(where, _TOOL_HEAD.decode, raw)
    return decode_at(where, _FUNCTION_TOOL.decode, raw) if head.type == "function" else raw


def _tool_choice(raw: msgspec.Raw, where: str) -> ToolChoice:
    head = decode_at(where, _CHOICE_HEAD.decode, raw)
    if isinstance(head, str):
        return decode_at(where, _CHOICE_OPTION.decode, raw)
    return decode_at(where, _FUNCTION_CHOICE.decode, raw) if head.type == "function" else raw


def _input(value: Any, where: str) -> Any:
    return _items(value, where) if isinstance(value, list) else value


def _tools(value: Any, where: str) -> Any:
    return [_tool(raw, f"{where}[{i}]") for i, raw in enumerate(value)]


_RAW_LIST = list[msgspec.Raw]
_ITEM_LISTS = {"items": _RAW_LIST | None | UnsetType}

REQUEST_DECODER = PartialDecoder(
    ResponsesRequest,
    {
        "input": str | _RAW_LIST | UnsetType,
        "tools": _RAW_LIST | UnsetType,
        "tool_choice": msgspec.Raw | UnsetType,
    },
    {
        "input": optional(_input),
        "tools": optional(_tools),
        "tool_choice": optional(_tool_choice),
    },
)
CONVERSATION_CREATE_DECODER = PartialDecoder(
    ConversationCreate, _ITEM_LISTS, {"items": optional(_items)}
)
ITEMS_CREATE_DECODER = PartialDecoder(
    ItemsCreate, {"items": Annotated[_RAW_LIST, Meta(max_length=20)]}, {"items": _items}
)
# A stored (or OpenAI's own) response: output items of types the gateway does not model kept Raw.
RESPONSE_DECODER = PartialDecoder(
    Response,
    {"output": _RAW_LIST, "tools": _RAW_LIST, "tool_choice": msgspec.Raw},
    {"output": _items, "tools": _tools, "tool_choice": _tool_choice},
)
_ITEM_ARRAY = msgspec.json.Decoder(_RAW_LIST)


def decode_items(buf: bytes) -> list[InputItem]:
    """A JSON array of items (as stored), each by its ``type``; unmodeled types kept Raw."""
    return _items(_ITEM_ARRAY.decode(buf), "$")


def item_type(item: InputItem) -> str:
    """An item's ``type`` (``message`` when a Raw item leaves it out)."""
    if isinstance(item, msgspec.Raw):
        head = _HEAD.decode(item)
        return "message" if head.type is UNSET else head.type
    return type(item).__struct_config__.tag  # type: ignore[return-value]
