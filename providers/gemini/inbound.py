"""A ``generateContent`` request as a client sends it (the native ``/genai`` routes), read into
the unified :class:`ChatRequest` for providers that do not speak Gemini's API (pure: no I/O).

Google's JSON parser takes each field in camelCase or snake_case, and the google-genai SDK sends
both (``thinkingConfig: {"thinking_budget": ...}``, ``parameters_json_schema``). The body is read
as JSON values, its keys turned to camelCase except inside what is the caller's own data
(function arguments and results, schemas), and then converted into the Structs below.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from providers.gemini.answer import signature_text
from providers.gemini.response import signature_extra
from providers.gemini.schema import json_schema
from providers.gemini.wire import Content, Part
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    FilePart,
    FileRef,
    FunctionDefinition,
    FunctionName,
    FunctionTool,
    ImagePart,
    ImageURL,
    InputAudio,
    InputAudioPart,
    JSONObjectFormat,
    JSONSchema,
    JSONSchemaFormat,
    Message,
    NamedToolChoice,
    ResponseFormat,
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
from proxy.schemas.chat import FunctionCall as ChatFunctionCall

__all__ = [
    "EmbedRequest",
    "GenerateRequest",
    "camel_keys",
    "decode_native",
    "embed_texts",
    "to_chat",
]

# Values that are the caller's own data: their keys are never renamed.
_OPAQUE = frozenset(
    {
        "args",
        "response",
        "parameters",
        "parametersJsonSchema",
        "responseSchema",
        "responseJsonSchema",
        "labels",
        "metadata",
        "fallbacks",
    }
)
_SNAKE = re.compile(r"_([a-z0-9])")
_LEVELS = frozenset({"MINIMAL", "LOW", "MEDIUM", "HIGH"})
# The largest thinkingBudget each effort stands for (the unified efforts' usual budgets).
_BUDGETS = ((0, "none"), (1024, "minimal"), (4096, "low"), (12288, "medium"), (20480, "high"))


def camel_keys(value: Any) -> Any:
    """``value`` (decoded JSON) with every snake_case key in camelCase, except under the keys
    whose values are the caller's data."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key
            out[name] = item if name in _OPAQUE else camel_keys(item)
        return out
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


class FunctionDeclaration(_Wire):
    name: str
    description: str | UnsetType = UNSET
    # Google's OpenAPI-subset schema, or (``parametersJsonSchema``) a JSON Schema.
    parameters: msgspec.Raw | UnsetType = UNSET
    parameters_json_schema: msgspec.Raw | UnsetType = UNSET


class NativeTool(_Wire):
    """A tool: function declarations, or one of Google's built-in tools (named by its key)."""

    function_declarations: list[FunctionDeclaration] = []
    google_search: Any = UNSET
    google_search_retrieval: Any = UNSET
    code_execution: Any = UNSET
    url_context: Any = UNSET
    file_search: Any = UNSET
    google_maps: Any = UNSET
    computer_use: Any = UNSET
    retrieval: Any = UNSET

    def builtin(self) -> str | None:
        for name in self.__struct_fields__:
            if name != "function_declarations" and getattr(self, name) is not UNSET:
                return _SNAKE.sub(lambda m: m.group(1).upper(), name)
        return None


class CallingConfig(_Wire):
    mode: str = "AUTO"
    allowed_function_names: list[str] = []


class NativeToolConfig(_Wire):
    function_calling_config: CallingConfig | UnsetType = UNSET


class ThinkingConfig(_Wire):
    include_thoughts: bool | UnsetType = UNSET
    thinking_budget: int | UnsetType = UNSET
    thinking_level: str | UnsetType = UNSET


class GenerationConfig(_Wire):
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    top_k: float | UnsetType = UNSET
    candidate_count: int | UnsetType = UNSET
    max_output_tokens: int | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    presence_penalty: float | UnsetType = UNSET
    frequency_penalty: float | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    response_mime_type: str | UnsetType = UNSET
    response_schema: msgspec.Raw | UnsetType = UNSET
    response_json_schema: msgspec.Raw | UnsetType = UNSET
    response_modalities: list[str] | UnsetType = UNSET
    response_logprobs: bool | UnsetType = UNSET
    logprobs: int | UnsetType = UNSET
    thinking_config: ThinkingConfig | UnsetType = UNSET


class GenerateRequest(_Wire):
    """``generateContent``'s body (and ``countTokens``' ``generateContentRequest``)."""

    contents: list[Content] = []
    system_instruction: Content | UnsetType = UNSET
    tools: list[NativeTool] = []
    tool_config: NativeToolConfig | UnsetType = UNSET
    generation_config: GenerationConfig | UnsetType = UNSET
    cached_content: str | UnsetType = UNSET


class CountRequest(_Wire):
    """``countTokens``' body: ``contents``, or a whole ``generateContentRequest``."""

    contents: list[Content] = []
    generate_content_request: GenerateRequest | UnsetType = UNSET


class EmbedRequest(_Wire):
    """One ``embedContent`` request (also each of ``batchEmbedContents``' ``requests``)."""

    content: Content
    model: str | UnsetType = UNSET
    task_type: str | UnsetType = UNSET
    title: str | UnsetType = UNSET
    output_dimensionality: int | UnsetType = UNSET


class BatchEmbedRequest(_Wire):
    requests: list[EmbedRequest]


def decode_native(body: bytes, kind: type[Any]) -> Any:
    """``body`` (a JSON object) as ``kind``; a value of the wrong type is a 400 naming it."""
    try:
        # Re-encoded once the keys are renamed: ``msgspec.Raw`` fields (function arguments
        # and results) are filled only by a JSON decoder.
        return msgspec.json.decode(
            msgspec.json.encode(camel_keys(msgspec.json.decode(body))), type=kind
        )
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at ")
        path = where.strip("`").removeprefix("$").lstrip(".") if message else ""
        raise InvalidRequestError(
            f"Invalid request body{f' at `{path}`' if path else ''}: {message or exc}",
            param=path or None,
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None


# --- contents ------------------------------------------------------------------------------


def _refuse(provider: str, what: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Provider `{provider}` cannot take {what} from a Gemini request; send it to a Gemini "
        "model, or leave it out.",
        param=param,
        code="unsupported_parameter",
    )


def _data_url(mime: str, data: str) -> str:
    return f"data:{mime};base64,{data}"


def _user_part(part: Part, provider: str, param: str) -> ContentPart | None:
    if isinstance(part.text, str):
        return TextPart(text=part.text) if part.text else None
    blob = part.inline_data
    if blob is not UNSET:
        mime = blob.mime_type.lower()
        if mime.startswith("image/"):
            return ImagePart(image_url=ImageURL(url=_data_url(mime, blob.data)))
        if mime in ("audio/wav", "audio/x-wav", "audio/mp3", "audio/mpeg"):
            fmt = "wav" if "wav" in mime else "mp3"
            return InputAudioPart(input_audio=InputAudio(data=blob.data, format=fmt))
        return FilePart(file=FileRef(file_data=_data_url(mime, blob.data)))
    ref = part.file_data
    if ref is not UNSET:
        mime = ref.mime_type.lower() if isinstance(ref.mime_type, str) else ""
        if mime.startswith("image/") or not mime:
            return ImagePart(image_url=ImageURL(url=ref.file_uri))
        return FilePart(file=FileRef(file_id=ref.file_uri))
    raise _refuse(provider, "this kind of part (only text, inlineData and fileData)", param)


class _Calls:
    """Tool-call ids: the call's own, else one made up and paired with its result by name."""

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []  # (name, id) of calls awaiting a result
        self._n = 0

    def call_id(self, given: str | UnsetType, name: str) -> str:
        if isinstance(given, str) and given:
            cid = given
        else:
            self._n += 1
            cid = f"call_genai_{self._n}"
        self._open.append((name, cid))
        return cid

    def result_id(self, given: str | UnsetType, name: str, param: str) -> str:
        wanted = given if isinstance(given, str) and given else None
        for i, (open_name, cid) in enumerate(self._open):
            if cid == wanted or (wanted is None and open_name == name):
                del self._open[i]
                return cid
        if wanted is not None:
            return wanted
        raise InvalidRequestError(
            f"A functionResponse for `{name}` answers no functionCall of an earlier model turn.",
            param=param,
        )


def _model_message(content: Content, calls: _Calls, provider: str, param: str) -> Message | None:
    text: list[str] = []
    thoughts: list[str] = []
    blocks: list[ThinkingBlock] = []
    tool_calls: list[ToolCall] = []
    pending: list[str] = []
    for j, part in enumerate(content.parts):
        where = f"{param}.parts[{j}]"
        call = part.function_call
        if call is not UNSET:
            args = bytes(call.args) if call.args is not UNSET else b"{}"
            cid = calls.call_id(call.id, call.name)
            tc = ToolCall(
                id=cid, function=ChatFunctionCall(name=call.name, arguments=args.decode())
            )
            if isinstance(part.thought_signature, str):
                # Gemini's signature of its call (a Gemini model served by another provider).
                tc.extra_content = signature_extra(part.thought_signature)
            tool_calls.append(tc)
        elif part.thought is True:
            # A streamed thought comes in pieces, its signature on the last: one block.
            said = part.text if isinstance(part.text, str) else ""
            thoughts.append(said)
            pending.append(said)
            if isinstance(part.thought_signature, str):
                signature = signature_text(part.thought_signature)
                block = ThinkingBlock(thinking="".join(pending), signature=signature)
                blocks.append(block)
                pending = []
        elif isinstance(part.text, str):
            text.append(part.text)
        else:
            raise _refuse(provider, "this kind of part in a model turn", where)
    if not (text or tool_calls or blocks):
        return None
    message = AssistantMessage(content="".join(text) or None)
    if tool_calls:
        message.tool_calls = tool_calls
    if blocks:
        message.thinking_blocks = blocks
        message.reasoning_content = "".join(thoughts)
    return message


def _user_messages(content: Content, calls: _Calls, provider: str, param: str) -> list[Message]:
    results: list[Message] = []
    parts: list[ContentPart] = []
    for j, part in enumerate(content.parts):
        where = f"{param}.parts[{j}]"
        answer = part.function_response
        if answer is not UNSET:
            cid = calls.result_id(answer.id, answer.name, where)
            results.append(ToolMessage(content=_result_text(answer.response), tool_call_id=cid))
            continue
        got = _user_part(part, provider, where)
        if got is not None:
            parts.append(got)
    if parts:
        texts = [p.text for p in parts if isinstance(p, TextPart)]
        body: str | list[ContentPart] = "".join(texts) if len(texts) == len(parts) else parts
        results.append(UserMessage(content=body))
    return results


class _Output(msgspec.Struct, forbid_unknown_fields=True):
    output: str


_output = msgspec.json.Decoder(_Output).decode


def _result_text(response: msgspec.Raw) -> str:
    """A function's result as tool-message text: ``{"output": text}`` (the key Google documents)
    as that text, anything else as its JSON."""
    try:
        return _output(response).output
    except (msgspec.DecodeError, msgspec.ValidationError):
        return bytes(response).decode()


def _messages(req: GenerateRequest, provider: str) -> list[Message]:
    out: list[Message] = []
    system = req.system_instruction
    if system is not UNSET:
        said = "".join(p.text for p in system.parts if isinstance(p.text, str))
        if said:
            out.append(SystemMessage(content=said))
    calls = _Calls()
    for i, content in enumerate(req.contents):
        param = f"contents[{i}]"
        if content.role == "model":
            message = _model_message(content, calls, provider, param)
            if message is not None:
                out.append(message)
        else:
            out += _user_messages(content, calls, provider, param)
    return out


# --- tools and settings ---------------------------------------------------------------------


def _tools(req: GenerateRequest, provider: str) -> list[Tool]:
    tools: list[Tool] = []
    for i, tool in enumerate(req.tools):
        builtin = tool.builtin()
        if builtin is not None:
            raise _refuse(provider, f"Google's built-in tool `{builtin}`", f"tools[{i}]")
        for j, decl in enumerate(tool.function_declarations):
            param = f"tools[{i}].functionDeclarations[{j}]"
            if decl.parameters_json_schema is not UNSET:
                schema = decl.parameters_json_schema
            elif decl.parameters is not UNSET:
                schema = json_schema(decl.parameters, f"{param}.parameters")
            else:
                schema = msgspec.Raw(b'{"type":"object","properties":{}}')
            definition = FunctionDefinition(
                name=decl.name, description=decl.description, parameters=schema
            )
            tools.append(FunctionTool(function=definition))
    return tools


def _tool_choice(
    req: GenerateRequest, tools: list[Tool]
) -> tuple[list[Tool], ToolChoice | UnsetType]:
    config = req.tool_config
    calling = config.function_calling_config if config is not UNSET else UNSET
    if calling is UNSET or not tools:
        return tools, UNSET
    mode = calling.mode.upper()
    if mode == "NONE":
        return tools, "none"
    if mode != "ANY":
        return tools, "auto"
    names = calling.allowed_function_names
    if len(names) == 1:
        return tools, NamedToolChoice(function=FunctionName(name=names[0]))
    if names:
        tools = [t for t in tools if isinstance(t, FunctionTool) and t.function.name in names]
        if not tools:
            raise InvalidRequestError(
                "`allowedFunctionNames` names none of the declared functions.",
                param="toolConfig.functionCallingConfig.allowedFunctionNames",
            )
    return tools, "required"


def _effort(thinking: ThinkingConfig | UnsetType) -> str | UnsetType:
    """thinkingLevel as the effort of the same name; a thinkingBudget as the effort whose
    budget is nearest (0: none; -1, dynamic: medium)."""
    if thinking is UNSET:
        return UNSET
    level = thinking.thinking_level
    if isinstance(level, str) and level.upper() in _LEVELS:
        return level.lower()
    budget = thinking.thinking_budget
    if not isinstance(budget, int):
        return UNSET
    if budget < 0:
        return "medium"
    for limit, effort in _BUDGETS:
        if budget <= limit:
            return effort
    return "xhigh"


def _format(config: GenerationConfig) -> ResponseFormat | UnsetType:
    if config.response_json_schema is not UNSET:
        schema = config.response_json_schema
    elif config.response_schema is not UNSET:
        schema = json_schema(config.response_schema, "generationConfig.responseSchema")
    elif config.response_mime_type == "application/json":
        return JSONObjectFormat()
    else:
        return UNSET
    return JSONSchemaFormat(json_schema=JSONSchema(name="response", schema=schema))


def _settings(chat: ChatRequest, config: GenerationConfig, provider: str) -> None:
    if config.response_logprobs is True or config.logprobs is not UNSET:
        raise _refuse(provider, "log probabilities", "generationConfig.responseLogprobs")
    modalities = config.response_modalities
    if modalities is not UNSET and any(m.upper() != "TEXT" for m in modalities):
        raise _refuse(
            provider, "non-text response modalities", "generationConfig.responseModalities"
        )
    chat.temperature = config.temperature
    chat.top_p = config.top_p
    chat.max_completion_tokens = config.max_output_tokens
    chat.presence_penalty = config.presence_penalty
    chat.frequency_penalty = config.frequency_penalty
    chat.seed = config.seed
    if config.stop_sequences:
        chat.stop = config.stop_sequences
    if isinstance(config.candidate_count, int) and config.candidate_count > 1:
        chat.n = config.candidate_count
    chat.response_format = _format(config)
    # topK has no equivalent in the unified request; it only narrows sampling, so it is dropped.
    chat.reasoning_effort = _effort(config.thinking_config)


def to_chat(req: GenerateRequest, *, model: str, provider: str, stream: bool) -> ChatRequest:
    """The Gemini request as a unified chat request for ``provider``; what that provider cannot
    take (Google's built-in tools, cached content, log probabilities) is a 400 naming it."""
    if req.cached_content is not UNSET:
        raise _refuse(provider, "`cachedContent`", "cachedContent")
    messages = _messages(req, provider)
    if not any(not isinstance(m, SystemMessage) for m in messages):
        raise InvalidRequestError(
            "`contents` must hold at least one part with content.", param="contents"
        )
    chat = ChatRequest(model=model, messages=messages)
    tools, choice = _tool_choice(req, _tools(req, provider))
    if tools:
        chat.tools = tools
        chat.tool_choice = choice
    if req.generation_config is not UNSET:
        _settings(chat, req.generation_config, provider)
    if stream:
        chat.stream = True
        chat.stream_options = StreamOptions(include_usage=True)
    return chat


def embed_texts(requests: list[EmbedRequest]) -> list[str]:
    """Each request's text (its text parts joined); a part of another kind is a 400."""
    texts = []
    for i, r in enumerate(requests):
        if any(not isinstance(p.text, str) for p in r.content.parts):
            raise InvalidRequestError(
                "Only text parts can be embedded by this provider.",
                param=f"requests[{i}].content.parts",
            )
        texts.append("".join(p.text for p in r.content.parts if isinstance(p.text, str)))
    return texts
