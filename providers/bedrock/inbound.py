"""A client's Converse request (``/bedrock/model/{modelId}/converse``) as the unified chat
request, for providers other than Bedrock. Pure.

How Converse maps to the unified (OpenAI) shape:

- ``system`` blocks become one system message; a ``cachePoint`` after a text block becomes that
  part's ``cache_control`` (Anthropic's prompt caching, which the translations honour);
- a user turn's ``toolResult`` blocks become ``tool`` messages (first, as OpenAI wants them right
  after the assistant's calls; a result with ``status: error`` says so in its text, as OpenAI's
  tool messages have no error flag), its other blocks one user message; images and documents
  become ``data:`` URLs, audio an ``input_audio`` part;
- an assistant turn's ``toolUse`` blocks become tool calls, its ``reasoningContent`` thinking
  blocks (text and signature, or redacted data) sent back as they came;
- ``toolConfig`` becomes function tools (``toolChoice`` auto, any, tool: auto, required, a named
  function); ``inferenceConfig`` ``maxTokens``, ``temperature``, ``topP``, ``stopSequences``;
  ``outputConfig.textFormat`` a ``json_schema`` response format; ``requestMetadata`` metadata;
  ``additionalModelRequestFields.thinking`` (Claude) or ``reasoningConfig`` (Nova) a reasoning
  effort.

What would change the answer and cannot be carried to another provider (guardrails, prompt
variables, other model fields, S3 sources, guard/citation/video content) is refused with a 400
naming the field; ``performanceConfig`` and ``additionalModelResponseFieldPaths`` are dropped.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from providers.bedrock import wire as w
from proxy.errors import InvalidRequestError
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
    InputAudio,
    InputAudioPart,
    JSONSchema,
    JSONSchemaFormat,
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

__all__ = ["CONVERSE", "ConverseInput", "NativeConverse", "to_chat"]

# The request type (``Operation.name``) of the ``/bedrock`` Converse routes: a Bedrock provider
# serves it natively, the client's body re-signed and sent as it came.
CONVERSE = "bedrock_converse"

_DOCUMENT_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "txt": "text/plain",
    "md": "text/markdown",
}
_EPHEMERAL = msgspec.Raw(b'{"type":"ephemeral"}')
_encode = msgspec.json.Encoder().encode


class ConverseInput(w.ConverseRequest):
    """A client's Converse body: the request Bedrock takes, with the fields only Bedrock can
    honour (refused when the request goes elsewhere)."""

    guardrail_config: msgspec.Raw | UnsetType = UNSET
    prompt_variables: msgspec.Raw | UnsetType = UNSET


class NativeConverse(msgspec.Struct, frozen=True):
    """A ``/bedrock`` Converse request: the client's body as sent (forwarded as is to Bedrock)
    and its decoded form for a translation, or why it cannot be decoded (a body Bedrock may
    take that the translation does not model, such as an S3 image source)."""

    body: bytes
    request: ConverseInput | None = None
    problem: InvalidRequestError | None = None

    def decoded(self) -> ConverseInput:
        """The decoded request; the 400 that explains why there is none."""
        if self.request is None:
            raise self.problem or InvalidRequestError("The request body cannot be read.")
        return self.request


class _Thinking(msgspec.Struct):
    budget_tokens: int = 0


class _NovaReasoning(msgspec.Struct, rename="camel"):
    max_reasoning_effort: str = "medium"


class _ModelFields(msgspec.Struct, forbid_unknown_fields=True):
    """The ``additionalModelRequestFields`` that have a unified equivalent."""

    thinking: _Thinking | None = None
    reasoningConfig: _NovaReasoning | None = None  # Nova's field name


_model_fields = msgspec.json.Decoder(_ModelFields).decode


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _untranslatable(field: str, provider: str) -> InvalidRequestError:
    return _bad(
        f"`{field}` is a Bedrock feature: it cannot be carried to provider `{provider}`.", field
    )


def to_chat(req: ConverseInput, *, model: str, provider: str, stream: bool) -> ChatRequest:
    """The unified chat request for ``req`` sent to ``provider`` (``model``: the gateway's
    ``provider/model`` name; ``stream``: usage is asked for, so that it is accounted)."""
    for field, value in (
        ("guardrailConfig", req.guardrail_config),
        ("promptVariables", req.prompt_variables),
    ):
        if value is not UNSET:
            raise _untranslatable(field, provider)
    messages: list[Message] = []
    if isinstance(req.system, list) and req.system:
        messages.append(SystemMessage(content=_system_parts(req.system, provider)))
    for i, turn in enumerate(req.messages):
        messages.extend(_turn(turn, f"messages[{i}]", provider))
    if not messages:
        raise _bad("`messages` must hold at least one message.", "messages")
    chat = ChatRequest(model=model, messages=messages)
    if stream:
        chat.stream = True
        chat.stream_options = StreamOptions(include_usage=True)
    _inference(req, chat)
    _tools(req, chat)
    _model_request_fields(req, chat, provider)
    if isinstance(req.request_metadata, dict) and req.request_metadata:
        chat.metadata = dict(req.request_metadata)
    if isinstance(req.service_tier, w.ServiceTier) and req.service_tier.type in ("default", "flex"):
        chat.service_tier = req.service_tier.type
    return chat


# --- content ---------------------------------------------------------------------------------


def _system_parts(blocks: list[w.SystemBlock], provider: str) -> list[ContentPart]:
    parts: list[ContentPart] = []
    for j, block in enumerate(blocks):
        if isinstance(block.text, str):
            parts.append(TextPart(text=block.text))
        elif isinstance(block.cache_point, w.CachePoint):
            _mark_cached(parts, block.cache_point)
        else:
            raise _untranslatable(f"system[{j}]", provider)
    return parts


def _mark_cached(parts: list[ContentPart], point: w.CachePoint) -> None:
    """A cache point caches the prefix up to it: the part before it gets ``cache_control``."""
    if not parts or not isinstance(parts[-1], TextPart):
        return
    mark = _EPHEMERAL
    if isinstance(point.ttl, str):
        mark = msgspec.Raw(_encode({"type": "ephemeral", "ttl": point.ttl}))
    parts[-1].cache_control = mark


def _media_url(mime: str, source: w.MediaSource) -> str:
    return f"data:{mime};base64,{source.data}"


def _turn(turn: w.Message, at: str, provider: str) -> list[Message]:
    if turn.role == "assistant":
        return [_assistant(turn, at, provider)]
    if turn.role != "user":
        raise _bad(f"A message's role is `user` or `assistant`, not `{turn.role}`.", f"{at}.role")
    results: list[Message] = []
    parts: list[ContentPart] = []
    for j, block in enumerate(turn.content):
        where = f"{at}.content[{j}]"
        if isinstance(block.tool_result, w.ToolResultBlock):
            results.append(_tool_result(block.tool_result, where, provider))
        elif isinstance(block.cache_point, w.CachePoint):
            _mark_cached(parts, block.cache_point)
        else:
            parts.append(_user_part(block, where, provider))
    if parts:
        results.append(UserMessage(content=parts))
    return results


def _user_part(block: w.ContentBlock, where: str, provider: str) -> ContentPart:
    if isinstance(block.text, str):
        return TextPart(text=block.text)
    if isinstance(block.image, w.ImageBlock):
        url = _media_url(f"image/{block.image.format}", block.image.source)
        return ImagePart(image_url=ImageURL(url=url))
    if isinstance(block.document, w.DocumentBlock):
        doc = block.document
        mime = _DOCUMENT_TYPES.get(doc.format)
        if mime is None:
            raise _bad(f"Unknown document format `{doc.format}`.", f"{where}.document.format")
        ref = FileRef(file_data=_media_url(mime, doc.source), filename=f"{doc.name}.{doc.format}")
        return FilePart(file=ref)
    if isinstance(block.audio, w.AudioBlock):
        audio = InputAudio(data=block.audio.source.data, format=block.audio.format)
        return InputAudioPart(input_audio=audio)
    raise _untranslatable(where, provider)


def _tool_result(result: w.ToolResultBlock, where: str, provider: str) -> ToolMessage:
    parts: list[ContentPart] = []
    for k, item in enumerate(result.content):
        if isinstance(item.text, str):
            parts.append(TextPart(text=item.text))
        elif isinstance(item.json, msgspec.Raw):
            parts.append(TextPart(text=bytes(item.json).decode()))
        elif isinstance(item.image, w.ImageBlock):
            url = _media_url(f"image/{item.image.format}", item.image.source)
            parts.append(ImagePart(image_url=ImageURL(url=url)))
        else:
            raise _untranslatable(f"{where}.toolResult.content[{k}]", provider)
    if result.status == "error":
        parts.insert(0, TextPart(text="Error:"))
    content: str | list[ContentPart] = parts
    if all(isinstance(p, TextPart) for p in parts):
        content = "\n".join(p.text for p in parts if isinstance(p, TextPart))
    return ToolMessage(content=content, tool_call_id=result.tool_use_id)


def _assistant(turn: w.Message, at: str, provider: str) -> AssistantMessage:
    texts: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[ThinkingBlock] = []
    reasoning: list[str] = []
    for j, block in enumerate(turn.content):
        if isinstance(block.text, str):
            texts.append(block.text)
        elif isinstance(block.tool_use, w.ToolUseBlock):
            use = block.tool_use
            arguments = FunctionCall(name=use.name, arguments=bytes(use.input).decode())
            calls.append(ToolCall(id=use.tool_use_id, function=arguments))
        elif isinstance(block.reasoning_content, w.ReasoningContent):
            content = block.reasoning_content
            if isinstance(content.reasoning_text, w.ReasoningText):
                text = content.reasoning_text
                reasoning.append(text.text)
                thinking.append(ThinkingBlock(thinking=text.text, signature=text.signature))
            elif isinstance(content.redacted_content, str):
                thinking.append(
                    ThinkingBlock(type="redacted_thinking", data=content.redacted_content)
                )
        elif block.cache_point is UNSET:
            raise _untranslatable(f"{at}.content[{j}]", provider)
    message = AssistantMessage(content="".join(texts) if texts else None)
    if calls:
        message.tool_calls = calls
    if thinking:
        message.thinking_blocks = thinking
    if reasoning:
        message.reasoning_content = "".join(reasoning)
    return message


# --- settings --------------------------------------------------------------------------------


def _inference(req: ConverseInput, chat: ChatRequest) -> None:
    config = req.inference_config
    if isinstance(config, w.InferenceConfig):
        if isinstance(config.max_tokens, int):
            chat.max_completion_tokens = config.max_tokens
        if isinstance(config.temperature, (int, float)):
            chat.temperature = config.temperature
        if isinstance(config.top_p, (int, float)):
            chat.top_p = config.top_p
        if isinstance(config.stop_sequences, list) and config.stop_sequences:
            chat.stop = list(config.stop_sequences)
    output = req.output_config
    if isinstance(output, w.OutputConfig):
        spec = output.text_format.structure.json_schema
        schema = JSONSchema(
            name=spec.name if isinstance(spec.name, str) else "response",
            schema=msgspec.Raw(spec.schema.encode()),
            strict=True,
        )
        if isinstance(spec.description, str):
            schema.description = spec.description
        chat.response_format = JSONSchemaFormat(json_schema=schema)


def _tools(req: ConverseInput, chat: ChatRequest) -> None:
    config = req.tool_config
    if not isinstance(config, w.ToolConfig):
        return
    tools: list[Tool] = []
    for entry in config.tools:
        spec = entry.tool_spec
        definition = FunctionDefinition(name=spec.name, parameters=spec.input_schema.json)
        if isinstance(spec.description, str):
            definition.description = spec.description
        if spec.strict is True:
            definition.strict = True
        tools.append(FunctionTool(function=definition))
    if tools:
        chat.tools = tools
    choice = config.tool_choice
    if isinstance(choice, w.ToolChoice):
        picked: ToolChoice | None = None
        if isinstance(choice.tool, w.NamedTool):
            picked = NamedToolChoice(function=FunctionName(name=choice.tool.name))
        elif isinstance(choice.any, w.Empty):
            picked = "required"
        elif isinstance(choice.auto, w.Empty):
            picked = "auto"
        if picked is not None and tools:
            chat.tool_choice = picked


def _effort(budget: int) -> str:
    """A Claude thinking budget as the nearest reasoning effort."""
    if budget <= 2048:
        return "low"
    if budget <= 8192:
        return "medium"
    return "high"


def _model_request_fields(req: ConverseInput, chat: ChatRequest, provider: str) -> None:
    raw = req.additional_model_request_fields
    if not isinstance(raw, msgspec.Raw):
        return
    try:
        fields = _model_fields(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _bad(
            f"`additionalModelRequestFields` cannot be carried to provider `{provider}` (only "
            f"`thinking` and `reasoningConfig` have an equivalent): {exc}",
            "additionalModelRequestFields",
        ) from None
    if fields.thinking is not None and fields.thinking.budget_tokens > 0:
        chat.reasoning_effort = _effort(fields.thinking.budget_tokens)
    elif fields.reasoningConfig is not None:
        chat.reasoning_effort = fields.reasoningConfig.max_reasoning_effort
