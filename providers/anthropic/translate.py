"""The unified chat request as Anthropic's Messages request (pure; no I/O).

- System and developer messages, wherever they stand, become the top-level ``system``: a string,
  or text blocks when a part carries ``cache_control``.
- The other messages become alternating ``user``/``assistant`` turns: consecutive messages of one
  role are merged into one turn; tool results are ``tool_result`` blocks of a user turn, paired by
  ``tool_use_id``; an assistant message's ``thinking_blocks`` go first in its turn, unchanged
  (Anthropic refuses a tool-use turn whose thinking is missing when thinking is on).
- Images by URL are sent as URLs, data URLs as base64; ``file`` parts (a data URL in
  ``file_data``) as ``document`` blocks (PDF, plain text) or images.
- ``response_format`` ``json_object`` (and ``json_schema`` where structured outputs are not
  available, see :mod:`providers.anthropic.models`) is a forced tool, :data:`JSON_TOOL`, whose
  input the response translation returns as the message text.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from providers._translated import parse_data_url
from providers.anthropic import models
from providers.anthropic.wire import (
    AdaptiveThinking,
    Base64Source,
    Block,
    CountTokensRequest,
    DocumentBlock,
    EnabledThinking,
    ImageBlock,
    JSONOutputFormat,
    MessageParam,
    MessagesRequest,
    Metadata,
    OutputConfig,
    PlainTextSource,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolParam,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
)
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    DeveloperMessage,
    FilePart,
    FunctionTool,
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    NamedToolChoice,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)

__all__ = ["JSON_TOOL", "count_body", "to_native"]

# From this API version on, a request with temperature, top_p or top_k is refused (400).
SAMPLING_REMOVED = "2026-10-21"
# The tool that carries a JSON answer; a client tool may not use the name.
JSON_TOOL = "json_response"
_ANY_OBJECT = msgspec.Raw(b'{"type":"object"}')
_NO_PARAMETERS = msgspec.Raw(b'{"type":"object","properties":{}}')
_EMPTY_OBJECT = msgspec.Raw(b"{}")
_decode = msgspec.json.decode

Thinking = EnabledThinking | AdaptiveThinking
ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


def to_native(
    req: ChatRequest, model: str, *, stream: bool, provider: str, api_version: str
) -> MessagesRequest:
    """``req`` for ``POST /v1/messages`` under ``api_version``; a 400 for what Anthropic
    cannot honour."""
    refuse_unsupported(req, provider, api_version)
    version = models.claude_version(model)
    system, turns = convert_messages(req.messages)
    out = MessagesRequest(model=model, max_tokens=0, messages=turns)
    if system:
        plain = all(b.cache_control is UNSET for b in system)
        out.system = "\n\n".join(b.text for b in system) if plain else system
    thinking, effort = _thinking(req.reasoning_effort, version)
    out.max_tokens, out.thinking = _max_tokens(req, version, thinking)
    if effort:
        out.output_config = OutputConfig(effort=effort)
    if isinstance(req.stop, str):
        out.stop_sequences = [req.stop]
    elif req.stop:
        out.stop_sequences = list(req.stop)
    if req.temperature is not None and req.temperature is not UNSET:
        if req.temperature > 1:
            raise InvalidRequestError(
                f"Provider `{provider}` takes a temperature from 0 to 1.", param="temperature"
            )
        out.temperature = req.temperature
    if req.top_p is not None and req.top_p is not UNSET:
        out.top_p = req.top_p
    _apply_tools(out, req, version, provider)
    user = req.safety_identifier or req.user
    if user:
        out.metadata = Metadata(user_id=user)
    if stream:
        out.stream = True
    return out


def count_body(native: MessagesRequest, model: str) -> CountTokensRequest:
    """The ``count_tokens`` body for a translated Messages request: the fields that shape its
    input, ``model`` named (Vertex AI's Messages body leaves it to the URL)."""
    return CountTokensRequest(
        anthropic_version=native.anthropic_version,
        model=model,
        messages=native.messages,
        system=native.system,
        tools=native.tools,
        tool_choice=native.tool_choice,
        thinking=native.thinking,
    )


def _refuse(provider: str, param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Provider `{provider}` does not support `{param}`: {why}",
        param=param,
        code="unsupported_parameter",
    )


def refuse_unsupported(req: ChatRequest, provider: str, api_version: str) -> None:
    """Parameters that would change the answer and that Anthropic has no equivalent for."""
    if api_version >= SAMPLING_REMOVED:
        for name in ("temperature", "top_p"):
            if getattr(req, name) not in (UNSET, None):
                raise _refuse(
                    provider, name, f"API version {api_version} has no sampling settings."
                )
    if req.n not in (UNSET, None, 1):
        raise _refuse(provider, "n", "it returns one choice per request.")
    if req.logprobs:
        raise _refuse(provider, "logprobs", "it returns no log probabilities.")
    if req.top_logprobs not in (UNSET, None, 0):
        raise _refuse(provider, "top_logprobs", "it returns no log probabilities.")
    if req.logit_bias:
        raise _refuse(provider, "logit_bias", "it has no token biases.")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) not in (UNSET, None, 0):
            raise _refuse(provider, name, "it has no repetition penalties.")
    if req.audio is not UNSET or (req.modalities and "audio" in req.modalities):
        raise _refuse(provider, "modalities", "it answers in text only.")
    if req.web_search_options is not UNSET:
        raise _refuse(provider, "web_search_options", "use its web search tool natively.")
    if req.verbosity not in (UNSET, None):
        raise _refuse(provider, "verbosity", "it has no verbosity setting.")


# --- reasoning and limits -------------------------------------------------------------------


def _thinking(
    effort: str | UnsetType | None, version: models.Version | None
) -> tuple[Thinking | None, str | None]:
    if effort is UNSET or effort is None or effort == "none":
        return None, None
    if effort not in models.BUDGETS:
        known = ", ".join(["none", *models.BUDGETS])
        raise InvalidRequestError(
            f"`reasoning_effort` must be one of: {known}.", param="reasoning_effort"
        )
    if models.takes_adaptive_thinking(version):
        return AdaptiveThinking(display="summarized"), models.ADAPTIVE_EFFORT[effort]
    return EnabledThinking(budget_tokens=models.BUDGETS[effort]), None


def _max_tokens(
    req: ChatRequest, version: models.Version | None, thinking: Thinking | None
) -> tuple[int, Thinking | UnsetType]:
    """``max_tokens`` (required by Anthropic) and the thinking setting that fits under it."""
    asked = req.max_completion_tokens or req.max_tokens or None
    if not isinstance(thinking, EnabledThinking):
        return asked or models.default_max_tokens(version), thinking or UNSET
    if asked is None:
        default = models.default_max_tokens(version)
        # The budget is part of max_tokens and must be below it.
        return max(default, thinking.budget_tokens + 4096), thinking
    if asked <= models.MIN_BUDGET:
        raise InvalidRequestError(
            f"With `reasoning_effort`, `max_tokens` must be above {models.MIN_BUDGET}: "
            "Anthropic's smallest thinking budget is part of it.",
            param="max_completion_tokens" if req.max_completion_tokens else "max_tokens",
        )
    if thinking.budget_tokens >= asked:
        thinking = EnabledThinking(budget_tokens=max(models.MIN_BUDGET, asked // 2))
    return asked, thinking


# --- tools and output format ----------------------------------------------------------------


def _apply_tools(
    out: MessagesRequest, req: ChatRequest, version: models.Version | None, provider: str
) -> None:
    tools = _tools(req, provider)
    if tools:
        out.tools = tools
        choice = _tool_choice(req, provider)
        if choice is not None:
            out.tool_choice = choice
    fmt = req.response_format
    if isinstance(fmt, JSONSchemaFormat):
        if fmt.json_schema.schema is UNSET:
            raise InvalidRequestError(
                "`response_format.json_schema.schema` is required.",
                param="response_format.json_schema.schema",
            )
        if models.has_structured_outputs(version):
            config = out.output_config if out.output_config is not UNSET else OutputConfig()
            config.format = JSONOutputFormat(schema=fmt.json_schema.schema)
            out.output_config = config
            return
        _force_json_tool(out, fmt.json_schema.schema, provider)
    elif isinstance(fmt, JSONObjectFormat):
        _force_json_tool(out, _ANY_OBJECT, provider)


def _force_json_tool(out: MessagesRequest, schema: msgspec.Raw, provider: str) -> None:
    """A JSON answer as the input of a forced tool; Anthropic refuses a forced tool next to
    thinking, and other tools could no longer be chosen, so both are refused."""
    if out.tools is not UNSET or out.thinking is not UNSET:
        raise InvalidRequestError(
            f"Provider `{provider}` gives a JSON answer without a schema through a forced tool, "
            "which cannot be combined with `tools` or `reasoning_effort`; use a `json_schema` "
            "response format instead.",
            param="response_format",
            code="unsupported_parameter",
        )
    description = "Give the answer as this tool's input: a JSON object."
    out.tools = [ToolParam(name=JSON_TOOL, input_schema=schema, description=description)]
    out.tool_choice = ToolChoiceTool(name=JSON_TOOL)


def _tools(req: ChatRequest, provider: str) -> list[ToolParam]:
    if req.tools is UNSET:
        return []
    out: list[ToolParam] = []
    for i, tool in enumerate(req.tools):
        if not isinstance(tool, FunctionTool):
            raise _refuse(provider, f"tools[{i}]", "only function tools are supported.")
        fn = tool.function
        if fn.name == JSON_TOOL:
            raise InvalidRequestError(
                f"The tool name `{JSON_TOOL}` is reserved by the gateway for JSON answers.",
                param=f"tools[{i}].function.name",
            )
        param = ToolParam(
            name=fn.name,
            input_schema=fn.parameters if fn.parameters is not UNSET else _NO_PARAMETERS,
            description=fn.description,
        )
        if fn.strict:
            param.strict = True
        out.append(param)
    return out


def _tool_choice(req: ChatRequest, provider: str) -> ToolChoice | None:
    single: bool | UnsetType = True if req.parallel_tool_calls is False else UNSET
    choice = req.tool_choice
    if choice is UNSET or choice == "auto":
        return ToolChoiceAuto(disable_parallel_tool_use=single) if single else None
    if choice == "required":
        return ToolChoiceAny(disable_parallel_tool_use=single)
    if choice == "none":
        return ToolChoiceNone()
    if isinstance(choice, NamedToolChoice):
        return ToolChoiceTool(name=choice.function.name, disable_parallel_tool_use=single)
    raise _refuse(provider, "tool_choice", "it takes auto, none, required or a named function.")


# --- messages -------------------------------------------------------------------------------


def convert_messages(messages: list[Message]) -> tuple[list[TextBlock], list[MessageParam]]:
    """The system blocks, and the conversation as alternating turns."""
    system: list[TextBlock] = []
    turns: list[tuple[str, list[Block]]] = []
    for i, message in enumerate(messages):
        if isinstance(message, SystemMessage | DeveloperMessage):
            system += _system_blocks(message.content, i)
            continue
        role, blocks = _turn(message, i)
        if not blocks:
            # Anthropic refuses empty turns; an empty message adds nothing.
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return system, [_message(role, blocks) for role, blocks in turns]


def _message(role: str, blocks: list[Block]) -> MessageParam:
    only = blocks[0]
    if len(blocks) == 1 and isinstance(only, TextBlock) and only.cache_control is UNSET:
        return MessageParam(role="user" if role == "user" else "assistant", content=only.text)
    return MessageParam(role="user" if role == "user" else "assistant", content=blocks)


def _turn(message: Message, i: int) -> tuple[str, list[Block]]:
    if isinstance(message, UserMessage):
        return "user", _user_blocks(message.content, f"messages[{i}].content")
    if isinstance(message, AssistantMessage):
        return "assistant", _assistant_blocks(message, i)
    if isinstance(message, ToolMessage):
        content = message.content
        result: str | list[TextBlock | ImageBlock]
        if isinstance(content, str):
            result = content
        else:
            result = [
                b
                for b in _user_blocks(content, f"messages[{i}].content")
                if isinstance(b, TextBlock | ImageBlock)
            ]
        return "user", [ToolResultBlock(tool_use_id=message.tool_call_id, content=result)]
    raise InvalidRequestError(
        "The legacy `function` role has no tool-call id to pair its result with; "
        "use `tool` messages.",
        param=f"messages[{i}].role",
    )


def _system_blocks(content: str | list[ContentPart], i: int) -> list[TextBlock]:
    if isinstance(content, str):
        return [TextBlock(text=content)] if content else []
    out: list[TextBlock] = []
    for j, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise InvalidRequestError(
                "A system or developer message may hold text only.",
                param=f"messages[{i}].content[{j}]",
            )
        if part.text:
            out.append(TextBlock(text=part.text, cache_control=part.cache_control))
    return out


def _user_blocks(content: str | list[ContentPart], where: str) -> list[Block]:
    if isinstance(content, str):
        return [TextBlock(text=content)] if content else []
    out: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            # Anthropic refuses empty text blocks.
            if part.text:
                out.append(TextBlock(text=part.text, cache_control=part.cache_control))
        elif isinstance(part, ImagePart):
            out.append(_image(part.image_url.url, f"{where}[{j}]"))
        elif isinstance(part, FilePart):
            out.append(_file(part, f"{where}[{j}]"))
        else:
            raise InvalidRequestError(
                f"Anthropic takes text, images and files here, not `{_part_type(part)}`.",
                param=f"{where}[{j}]",
            )
    return out


def _part_type(part: ContentPart) -> str:
    return "refusal" if isinstance(part, RefusalPart) else "input_audio"


def _image(url: str, where: str) -> ImageBlock:
    if url.startswith("data:"):
        media_type, _ = _data_url(url, where)
        return ImageBlock(source=Base64Source(media_type=media_type, data=url.partition(",")[2]))
    if url.startswith(("http://", "https://")):
        return ImageBlock(source=URLSource(url=url))
    raise InvalidRequestError(
        "An image must be an http(s) URL or a base64 data URL.", param=f"{where}.image_url.url"
    )


def _data_url(url: str, where: str) -> tuple[str, bytes]:
    try:
        return parse_data_url(url)
    except InvalidRequestError as exc:
        raise InvalidRequestError(exc.message, param=where) from None


def _file(part: FilePart, where: str) -> Block:
    ref = part.file
    if ref.file_data is UNSET:
        raise InvalidRequestError(
            "Anthropic takes files inline: give `file_data` as a base64 data URL "
            "(`file_id` names a file of another provider).",
            param=f"{where}.file",
        )
    media_type, data = _data_url(ref.file_data, f"{where}.file.file_data")
    if media_type.startswith("image/"):
        return _image(ref.file_data, where)
    title = ref.filename
    if media_type == "application/pdf":
        payload = ref.file_data.partition(",")[2]
        return DocumentBlock(source=Base64Source(media_type=media_type, data=payload), title=title)
    if media_type == "text/plain":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError(
                "A text/plain file must be UTF-8.", param=f"{where}.file.file_data"
            ) from None
        return DocumentBlock(source=PlainTextSource(media_type=media_type, data=text), title=title)
    raise InvalidRequestError(
        f"Anthropic takes PDF, plain-text and image files, not `{media_type}`.",
        param=f"{where}.file.file_data",
    )


def _assistant_blocks(message: AssistantMessage, i: int) -> list[Block]:
    out: list[Block] = []
    for block in message.thinking_blocks or ():
        if block.type == "redacted_thinking":
            if block.data:
                out.append(RedactedThinkingBlock(data=block.data))
        elif block.signature:
            # Sent back as it came; one without its signature would be refused, so it is left out.
            out.append(ThinkingBlock(thinking=block.thinking or "", signature=block.signature))
    content = message.content
    if isinstance(content, str):
        if content:
            out.append(TextBlock(text=content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, TextPart) and part.text:
                out.append(TextBlock(text=part.text, cache_control=part.cache_control))
            elif isinstance(part, RefusalPart) and part.refusal:
                out.append(TextBlock(text=part.refusal))
            elif not isinstance(part, TextPart | RefusalPart):
                raise InvalidRequestError(
                    "An assistant message may hold text only.",
                    param=f"messages[{i}].content[{j}]",
                )
    for j, call in enumerate(message.tool_calls or ()):
        where = f"messages[{i}].tool_calls[{j}].function.arguments"
        arguments = _arguments(call.function.arguments, where)
        out.append(ToolUseBlock(id=call.id, name=call.function.name, input=arguments))
    return out


def _arguments(arguments: str, where: str) -> msgspec.Raw:
    """A tool call's arguments as the JSON object Anthropic's ``input`` must be."""
    if not arguments.strip():
        return _EMPTY_OBJECT
    try:
        value = _decode(arguments)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestError("Tool-call arguments must be a JSON object.", param=where)
    return msgspec.Raw(arguments.encode())
