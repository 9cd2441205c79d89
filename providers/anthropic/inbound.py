"""A client's Anthropic Messages request (the ``/anthropic`` route), read and translated to the
unified chat request for a provider of another family (pure; no I/O).

The gateway itself reads only a request's head (:class:`MessagesHead`, :class:`CountHead`:
the model, ``max_tokens``, that there are messages, ``stream``, ``fallbacks``): on the native
path Anthropic checks the rest, so whatever the API adds later passes through. A request to
translate is read whole (:class:`MessagesIn`, :class:`CountRequest`) into tolerant Structs: a
content block is one flat Struct whatever its ``type``, and one the gateway cannot translate (a
server tool's result, a search result...) is refused with a 400 naming it.

Translation (:func:`to_chat`):

- ``system`` becomes a system message (text blocks keep ``cache_control``);
- a user turn's ``tool_result`` blocks become ``tool`` messages, in order, right after the
  assistant turn that called the tools (OpenAI's rule), and its other blocks one user message
  after them; images (base64 or URL) become image parts, PDF documents file parts, plain-text
  documents text;
- an assistant turn's ``thinking``/``redacted_thinking`` blocks become ``thinking_blocks`` (and
  the thinking text ``reasoning_content``), its ``tool_use`` blocks tool calls; a thinking
  block whose signature is the gateway's envelope (see :mod:`.outbound`) gives back the tool
  calls' ``extra_content`` and the blocks it holds;
- ``tools`` become function tools; Anthropic's server tools (``web_search_...``, ``bash_...``)
  exist only at Anthropic and are refused; ``tool_choice`` maps to auto/required/none/named,
  ``disable_parallel_tool_use`` to ``parallel_tool_calls: false``;
- ``thinking`` becomes ``reasoning_effort`` by budget (below 4,096 tokens ``low``, below 16,384
  ``medium``, else ``high``; adaptive thinking takes ``output_config.effort``, ``high`` for
  ``max``, else ``medium``); ``max_tokens`` becomes ``max_completion_tokens`` (OpenAI's
  reasoning models refuse ``max_tokens``), passed as is (a model with a smaller output limit
  refuses it); ``stop_sequences`` ``stop``; ``metadata.user_id`` ``user`` when it fits
  OpenAI's 64 characters. ``top_k`` has no unified equivalent and is not sent.

``cache_control`` marks stay on the text parts for the providers that translate them (Bedrock's
cache points, Claude on Vertex); :func:`without_cache_control` gives the request as forwarded
field for field to an OpenAI-compatible upstream, which has no such field (Claude Code marks
every request).
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from proxy.errors import InvalidRequestError
from proxy.responses.envelope import Envelope, decode_envelope, is_gateway_envelope
from proxy.schemas.chat import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionDefinition,
    FunctionName,
    FunctionTool,
    ImagePart,
    ImageURL,
    Message,
    NamedToolChoice,
    StreamOptions,
    SystemMessage,
    TextPart,
    ThinkingBlock,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
)

__all__ = [
    "CountHead",
    "CountRequest",
    "InBlock",
    "InMessage",
    "InSource",
    "InTool",
    "MessagesHead",
    "MessagesIn",
    "effort_for",
    "to_chat",
    "without_cache_control",
]

_NO_PARAMETERS = msgspec.Raw(b'{"type":"object","properties":{}}')
# OpenAI refuses a longer ``user``.
_USER_MAX = 64
# Tool types that are client tools (a JSON schema the caller runs); anything else is a server
# tool Anthropic runs itself.
_CLIENT_TOOLS = frozenset({"custom"})
# The unified ``reasoning_effort`` levels.
_EFFORTS = frozenset({"minimal", "low", "medium", "high", "xhigh"})


class InSource(msgspec.Struct):
    """An image's or document's ``source``: ``base64`` (``media_type``, ``data``), ``url``,
    ``text`` (a plain-text document's ``data``), ``file`` (``file_id``) or ``content``."""

    type: str
    media_type: str = ""
    data: str = ""
    url: str = ""
    file_id: str = ""


class InBlock(msgspec.Struct):
    """Any content block, by ``type``; the fields its type does not use stay at their
    defaults. ``source`` and ``content`` differ in shape between block types (a search
    result's ``source`` is a URL, a code execution result's ``content`` an object), so they
    are read only for the types translated."""

    type: str
    text: str = ""
    source: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    tool_use_id: str = ""
    content: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b'""'))
    is_error: bool = False
    thinking: str = ""
    signature: str = ""
    data: str = ""
    title: str | None = None
    cache_control: msgspec.Raw | UnsetType = UNSET


class InMessage(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[InBlock]


class InTool(msgspec.Struct):
    name: str = ""
    type: str = "custom"
    description: str | UnsetType = UNSET
    input_schema: msgspec.Raw | UnsetType = UNSET
    strict: bool | UnsetType = UNSET


class InToolChoice(msgspec.Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: str = ""
    disable_parallel_tool_use: bool = False


class InThinking(msgspec.Struct):
    type: str  # enabled, disabled, adaptive
    budget_tokens: int = 0


class InMetadata(msgspec.Struct):
    user_id: str | None = None


class InOutputConfig(msgspec.Struct):
    effort: str | None = None


class MessagesIn(msgspec.Struct, kw_only=True):
    """``POST /v1/messages`` as a client sends it (fields the gateway does not read are kept
    only in the raw body, for the native path)."""

    model: str
    max_tokens: Annotated[int, Meta(ge=1)]
    messages: Annotated[list[InMessage], Meta(min_length=1)]
    system: str | list[InBlock] | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    temperature: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    top_k: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    tools: list[InTool] | UnsetType = UNSET
    tool_choice: InToolChoice | UnsetType = UNSET
    thinking: InThinking | UnsetType = UNSET
    output_config: InOutputConfig | UnsetType = UNSET
    metadata: InMetadata | UnsetType = UNSET
    stream: bool = False
    # The gateway's own: models to try when this one fails.
    fallbacks: list[str] = []


class CountRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    model: str
    messages: Annotated[list[InMessage], Meta(min_length=1)]
    system: str | list[InBlock] | UnsetType = UNSET
    tools: list[InTool] | UnsetType = UNSET
    tool_choice: InToolChoice | UnsetType = UNSET
    thinking: InThinking | UnsetType = UNSET
    output_config: InOutputConfig | UnsetType = UNSET
    fallbacks: list[str] = []


class MessagesHead(msgspec.Struct, kw_only=True):
    """What the gateway reads of every Messages request: where it goes, and how to answer."""

    model: str
    max_tokens: Annotated[int, Meta(ge=1)]
    messages: Annotated[list[msgspec.Raw], Meta(min_length=1)]
    stream: bool = False
    fallbacks: list[str] = []


class CountHead(msgspec.Struct, kw_only=True):
    """What the gateway reads of every token-count request."""

    model: str
    messages: Annotated[list[msgspec.Raw], Meta(min_length=1)]
    fallbacks: list[str] = []


_T = TypeVar("_T")
_SOURCE = msgspec.json.Decoder(InSource)
_CONTENT = msgspec.json.Decoder(str | list[InBlock])


def effort_for(thinking: InThinking | UnsetType, output: InOutputConfig | UnsetType) -> str | None:
    """``reasoning_effort`` for Anthropic's ``thinking`` setting (None: no reasoning asked)."""
    if thinking is UNSET or thinking.type not in ("enabled", "adaptive"):
        return None
    if thinking.type == "adaptive":
        effort = output.effort if output is not UNSET else None
        if effort is None:
            return "medium"
        # Anthropic's ``max`` (and any level added later) is the most there is.
        return effort if effort in _EFFORTS else "high"
    if thinking.budget_tokens < 4096:
        return "low"
    return "medium" if thinking.budget_tokens < 16384 else "high"


def to_chat(req: MessagesIn | CountRequest, model: str, *, stream: bool = False) -> ChatRequest:
    """The unified chat request for ``req``, addressed to ``model`` (``provider/model``)."""
    messages: list[Message] = []
    if req.system is not UNSET:
        system = _system(req.system)
        if system is not None:
            messages.append(system)
    for i, message in enumerate(req.messages):
        if message.role == "user":
            messages += _user(message.content, i)
        else:
            messages.append(_assistant(message.content, i))
    out = ChatRequest(model=model, messages=messages)
    effort = effort_for(req.thinking, req.output_config)
    if effort is not None:
        out.reasoning_effort = effort
    if req.tools is not UNSET and req.tools:
        out.tools = _tools(req.tools)
        if req.tool_choice is not UNSET:
            _tool_choice(out, req.tool_choice)
    if isinstance(req, MessagesIn):
        _sampling(out, req)
    if stream:
        out.stream = True
        out.stream_options = StreamOptions(include_usage=True)
    return out


def _sampling(out: ChatRequest, req: MessagesIn) -> None:
    out.max_completion_tokens = req.max_tokens
    if req.stop_sequences is not UNSET and req.stop_sequences:
        out.stop = list(req.stop_sequences)
    if req.temperature is not UNSET:
        out.temperature = req.temperature
    if req.top_p is not UNSET:
        out.top_p = req.top_p
    if req.metadata is not UNSET:
        user = req.metadata.user_id
        if user and len(user) <= _USER_MAX:
            out.user = user


def without_cache_control(req: ChatRequest) -> ChatRequest:
    """``req`` without ``cache_control`` marks; a system message of text parts as one string."""
    messages: list[Message] = []
    for message in req.messages:
        content = message.content
        if isinstance(message, SystemMessage) and isinstance(content, list):
            text = "\n\n".join(p.text for p in content if isinstance(p, TextPart))
            message = msgspec.structs.replace(message, content=text)
        elif isinstance(content, list) and any(
            isinstance(p, TextPart) and p.cache_control is not UNSET for p in content
        ):
            parts = [
                msgspec.structs.replace(p, cache_control=UNSET) if isinstance(p, TextPart) else p
                for p in content
            ]
            message = msgspec.structs.replace(message, content=parts)
        messages.append(message)
    return msgspec.structs.replace(req, messages=messages)


# --- messages -------------------------------------------------------------------------------


def _read(decoder: msgspec.json.Decoder[_T], raw: msgspec.Raw, where: str) -> _T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"Invalid `{where}`: {exc}", param=where) from None


def _result_blocks(block: InBlock, where: str) -> list[InBlock]:
    content = _read(_CONTENT, block.content, f"{where}.content")
    return [InBlock(type="text", text=content)] if isinstance(content, str) else content


def _system(system: str | list[InBlock]) -> SystemMessage | None:
    if isinstance(system, str):
        return SystemMessage(content=system) if system else None
    parts: list[ContentPart] = []
    for j, block in enumerate(system):
        if block.type != "text":
            raise InvalidRequestError(
                f"`system` takes text blocks, not `{block.type}`.", param=f"system[{j}].type"
            )
        parts.append(TextPart(text=block.text, cache_control=block.cache_control))
    return SystemMessage(content=parts) if parts else None


def _user(content: str | list[InBlock], i: int) -> list[Message]:
    """A user turn: its tool results as ``tool`` messages first, then the rest as one user
    message (both in order)."""
    if isinstance(content, str):
        return [UserMessage(content=content)]
    results: list[Message] = []
    parts: list[ContentPart] = []
    for j, block in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if block.type == "tool_result":
            tool, extra = _tool_result(block, where)
            results.append(tool)
            parts += extra
        else:
            parts.append(_part(block, where))
    if parts:
        results.append(UserMessage(content=parts))
    return results


def _part(block: InBlock, where: str) -> ContentPart:
    kind = block.type
    if kind == "text":
        return TextPart(text=block.text, cache_control=block.cache_control)
    if kind == "image":
        source = _read(_SOURCE, block.source, f"{where}.source")
        return ImagePart(image_url=ImageURL(url=_source_url(source, where)))
    if kind == "document":
        source = _read(_SOURCE, block.source, f"{where}.source")
        if source.type == "text":
            return TextPart(text=source.data, cache_control=block.cache_control)
        url = _source_url(source, where)
        ref = FileRef(file_data=url)
        if block.title:
            ref.filename = block.title
        return FilePart(file=ref)
    raise InvalidRequestError(
        f"A `{kind}` block can be sent only to an Anthropic model; this request goes to "
        "another provider, which takes text, image, document, tool_use, tool_result and "
        "thinking blocks.",
        param=f"{where}.type",
    )


def _source_url(source: InSource, where: str) -> str:
    if source.type == "base64" and source.media_type and source.data:
        return f"data:{source.media_type};base64,{source.data}"
    if source.type == "url" and source.url:
        return source.url
    raise InvalidRequestError(
        f"A `{source.type}` source can be sent only to an Anthropic model; give the file "
        "inline (`base64`) or by `url`.",
        param=f"{where}.source",
    )


def _tool_result(block: InBlock, where: str) -> tuple[ToolMessage, list[ContentPart]]:
    """The ``tool`` message, and the images of the result (OpenAI's tool messages hold text
    only: they follow in the user message)."""
    texts: list[str] = []
    images: list[ContentPart] = []
    for k, inner in enumerate(_result_blocks(block, where)):
        if inner.type == "text":
            texts.append(inner.text)
        else:
            images.append(_part(inner, f"{where}.content[{k}]"))
    text = "\n\n".join(texts)
    if block.is_error:
        # OpenAI's tool messages have no error flag: the model reads it from the text.
        text = f"Error: {text}" if text else "Error"
    return ToolMessage(content=text, tool_call_id=block.tool_use_id), images


def _assistant(content: str | list[InBlock], i: int) -> AssistantMessage:
    if isinstance(content, str):
        return AssistantMessage(content=content)
    texts: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[ThinkingBlock] = []
    reasoning: list[str] = []
    extras: dict[str, msgspec.Raw] = {}
    for j, block in enumerate(content):
        kind = block.type
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use":
            arguments = bytes(block.input).decode() or "{}"
            calls.append(ToolCall(id=block.id, function=FunctionCall(block.name, arguments)))
        elif kind == "thinking" and is_gateway_envelope(block.signature):
            envelope = _envelope(block.signature, f"messages[{i}].content[{j}].signature")
            if envelope is not None:
                thinking += envelope.thinking_blocks
                extras.update(envelope.tool_extras)
        elif kind == "thinking":
            reasoning.append(block.thinking)
            thinking.append(ThinkingBlock(thinking=block.thinking, signature=block.signature))
        elif kind == "redacted_thinking":
            thinking.append(ThinkingBlock(type="redacted_thinking", data=block.data))
        else:
            raise InvalidRequestError(
                f"An assistant `{kind}` block can be sent only to an Anthropic model.",
                param=f"messages[{i}].content[{j}].type",
            )
    for call in calls:
        if call.id in extras:
            call.extra_content = extras[call.id]
    out = AssistantMessage(content="".join(texts) if texts or not calls else None)
    if calls:
        out.tool_calls = calls
    if thinking:
        out.thinking_blocks = thinking
    if reasoning:
        out.reasoning_content = "".join(reasoning)
    return out


def _envelope(signature: str, where: str) -> Envelope | None:
    try:
        return decode_envelope(signature, param=None)
    except InvalidRequestError:
        raise InvalidRequestError(
            "This thinking block's `signature` was issued by this gateway but has been altered; "
            "send the block back exactly as it was returned.",
            param=where,
        ) from None


# --- tools ----------------------------------------------------------------------------------


def _tools(tools: list[InTool]) -> list[Tool]:
    out: list[Tool] = []
    for i, tool in enumerate(tools):
        if tool.type not in _CLIENT_TOOLS or not tool.name:
            raise InvalidRequestError(
                f"Tool `{tool.name}` of type `{tool.type}` is a server tool that only Anthropic "
                "runs; this request goes to another provider, which takes client tools "
                "(`input_schema`) only.",
                param=f"tools[{i}].type",
            )
        schema = tool.input_schema if tool.input_schema is not UNSET else _NO_PARAMETERS
        fn = FunctionDefinition(name=tool.name, description=tool.description, parameters=schema)
        if tool.strict is True:
            fn.strict = True
        out.append(FunctionTool(function=fn))
    return out


def _tool_choice(out: ChatRequest, choice: InToolChoice) -> None:
    picked: ToolChoice
    if choice.type == "any":
        picked = "required"
    elif choice.type == "none":
        picked = "none"
    elif choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError(
                "`tool_choice` of type `tool` needs the tool's `name`.", param="tool_choice.name"
            )
        picked = NamedToolChoice(function=FunctionName(name=choice.name))
    else:
        picked = "auto"
    out.tool_choice = picked
    if choice.disable_parallel_tool_use and choice.type != "none":
        out.parallel_tool_calls = False
