"""Responses <-> chat for a whole request and a whole answer (the stream is in :mod:`.stream`).

Used for every provider but OpenAI and Azure, which serve ``/v1/responses`` natively.

``to_chat``: the earlier items (``history``, loaded by the caller from ``previous_response_id``
or the conversation) then the request's ``input`` become chat messages. The assistant side of a
turn (a run of reasoning, assistant-message and ``function_call`` items) becomes ONE assistant
message: its text, its ``tool_calls`` (id = ``call_id``) and its reasoning (``reasoning_content``
and, from the gateway's envelope, ``thinking_blocks`` and each tool call's ``extra_content``),
which is how providers that check signatures want a turn back. A run with reasoning alone
(an answer cut before any text) is dropped: chat has no message for it.

``item_reference`` items must be resolved by the caller (:func:`resolve_item_references`, against
the conversation's or the previous response's items) before ``to_chat``, which refuses any left.
Items only OpenAI serves (``computer_call``, ``web_search_call``...), built-in tools and
``prompt`` templates are 400s naming them.

``from_chat``: a reasoning item first (reasoning text as its summary, the envelope as its
``encrypted_content``, always included: clients echo it), then the message (text with
annotations and logprobs, refusal), then one ``function_call`` item per tool call, the calls past
``max_tool_calls`` dropped. Item ids are ``rs_``/``msg_``/``fc_`` + random hex.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
from msgspec import UNSET

from proxy.errors import InvalidRequestError
from proxy.responses.envelope import (
    IdFactory,
    decode_envelope,
    is_gateway_envelope,
    new_item_id,
)
from proxy.responses.output import (
    annotations_of,
    kept_calls,
    logprobs_of,
    new_response,
    outcome,
    reasoning_item,
    response_usage,
)
from proxy.schemas import chat
from proxy.schemas.responses import (
    ContentPart,
    FormatJSONObject,
    FormatText,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputFile,
    InputImage,
    InputItem,
    InputText,
    ItemReference,
    MessageItem,
    OutputItem,
    OutputText,
    ReasoningConfig,
    ReasoningItem,
    Refusal,
    Response,
    ResponsesRequest,
    TextConfig,
    TextFormat,
    Tool,
    ToolChoice,
    item_type,
)

__all__ = [
    "drop_gateway_reasoning",
    "from_chat",
    "output_as_input",
    "resolve_item_references",
    "stored_items",
    "to_chat",
]

_LOGPROBS_INCLUDE = "message.output_text.logprobs"
# Same name and meaning in both APIs.
_SAME = (
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "user",
)


def to_chat(req: ResponsesRequest, history: Sequence[InputItem]) -> chat.ChatRequest:
    """The chat request for ``history`` then ``req.input``, with the request's settings."""
    if req.prompt is not UNSET and req.prompt is not None:
        raise InvalidRequestError(
            "Prompt templates (`prompt`) are stored on OpenAI's platform; only OpenAI models "
            "can use them. Send `instructions` and `input` instead.",
            param="prompt",
            code="unsupported_parameter",
        )
    messages: list[chat.Message] = []
    if isinstance(req.instructions, str) and req.instructions:
        messages.append(chat.SystemMessage(content=req.instructions))
    messages += _messages([*history, *_input_items(req)], first_input=len(history))
    if not messages:
        raise InvalidRequestError(
            "The request has no input: send `input` (or `instructions`).", param="input"
        )
    out = chat.ChatRequest(model=req.model, messages=messages, fallbacks=req.fallbacks)
    if isinstance(req.tools, list) and req.tools:
        out.tools = [_tool(tool, i) for i, tool in enumerate(req.tools)]
    if req.tool_choice is not UNSET:
        out.tool_choice = _tool_choice(req.tool_choice)
    _options(req, out)
    return out


def _input_items(req: ResponsesRequest) -> list[InputItem]:
    if isinstance(req.input, str):
        return [MessageItem(role="user", content=req.input)]
    return [] if req.input is UNSET else list(req.input)


def _options(req: ResponsesRequest, out: chat.ChatRequest) -> None:
    for name in _SAME:
        value = getattr(req, name)
        if value is not UNSET and value is not None:
            setattr(out, name, value)
    if isinstance(req.text, TextConfig):
        if req.text.format is not UNSET:
            out.response_format = _format(req.text.format)
        if isinstance(req.text.verbosity, str):
            out.verbosity = req.text.verbosity
    if isinstance(req.reasoning, ReasoningConfig) and isinstance(req.reasoning.effort, str):
        out.reasoning_effort = req.reasoning.effort
    if isinstance(req.max_output_tokens, int):
        out.max_completion_tokens = req.max_output_tokens
    if isinstance(req.top_logprobs, int):
        out.logprobs = True
        out.top_logprobs = req.top_logprobs
    if isinstance(req.include, list) and _LOGPROBS_INCLUDE in req.include:
        out.logprobs = True
    if req.stream is True:
        out.stream = True
        # The gateway accounts every response, and the final event carries usage.
        out.stream_options = chat.StreamOptions(include_usage=True)


def _format(fmt: TextFormat) -> chat.ResponseFormat:
    if isinstance(fmt, FormatText):
        return chat.TextFormat()
    if isinstance(fmt, FormatJSONObject):
        return chat.JSONObjectFormat()
    schema = chat.JSONSchema(name=fmt.name, schema=fmt.schema, strict=fmt.strict)
    if isinstance(fmt.description, str):
        schema.description = fmt.description
    return chat.JSONSchemaFormat(json_schema=schema)


# --- tools ----------------------------------------------------------------------------------


def _tool(tool: Tool, i: int) -> chat.Tool:
    if isinstance(tool, msgspec.Raw):
        raise InvalidRequestError(
            f"`tools[{i}]` is OpenAI's built-in `{item_type(tool)}` tool, which only OpenAI "
            "models run; other models take `function` tools.",
            param=f"tools[{i}]",
            code="unsupported_tool",
        )
    fn = chat.FunctionDefinition(name=tool.name)
    if isinstance(tool.strict, bool):
        fn.strict = tool.strict
    if isinstance(tool.description, str):
        fn.description = tool.description
    if tool.parameters is not UNSET and bytes(tool.parameters).strip() != b"null":
        fn.parameters = tool.parameters
    return chat.FunctionTool(function=fn)


class _ToolRef(msgspec.Struct):
    type: str
    name: str | None = None


class _AllowedTools(msgspec.Struct):
    type: str
    mode: Literal["auto", "required"] = "auto"
    tools: list[_ToolRef] = []


class _ChatAllowedTools(msgspec.Struct):
    mode: str
    tools: list[chat.NamedToolChoice]


_allowed_tools = msgspec.json.Decoder(_AllowedTools).decode
_encode = msgspec.json.Encoder().encode


def _tool_choice(choice: ToolChoice) -> chat.ToolChoice:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, FunctionChoice):
        return chat.NamedToolChoice(function=chat.FunctionName(name=choice.name))
    try:
        allowed = _allowed_tools(choice)
    except msgspec.DecodeError:
        allowed = _AllowedTools(type=item_type(choice))
    names = [t.name for t in allowed.tools if t.type == "function" and t.name]
    if allowed.type != "allowed_tools" or len(names) != len(allowed.tools):
        raise InvalidRequestError(
            f"`tool_choice` of type `{allowed.type}` is for OpenAI's built-in tools, which only "
            "OpenAI models run; use `auto`, `none`, `required`, a function, or `allowed_tools` "
            "listing functions.",
            param="tool_choice",
            code="unsupported_parameter",
        )
    refs = [chat.NamedToolChoice(function=chat.FunctionName(name=n)) for n in names]
    raw = msgspec.Raw(_encode(_ChatAllowedTools(mode=allowed.mode, tools=refs)))
    return chat.AllowedToolsChoice(allowed_tools=raw)


# --- items to messages ----------------------------------------------------------------------


def _sub(param: str | None, suffix: str) -> str | None:
    return None if param is None else param + suffix


class _Turn:
    """The assistant side of one turn, gathered from consecutive items."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.refusals: list[str] = []
        self.calls: list[chat.ToolCall] = []
        self.reasoning: list[str] = []
        self.blocks: list[chat.ThinkingBlock] = []
        self.extras: dict[str, msgspec.Raw] = {}

    def take(self, item: InputItem, param: str | None) -> bool:
        if isinstance(item, ReasoningItem):
            self._reasoning(item, param)
        elif isinstance(item, FunctionCallItem):
            fn = chat.FunctionCall(name=item.name, arguments=item.arguments)
            self.calls.append(chat.ToolCall(id=item.call_id, function=fn))
        elif isinstance(item, MessageItem) and item.role == "assistant":
            self._assistant(item, param)
        else:
            return False
        return True

    def _reasoning(self, item: ReasoningItem, param: str | None) -> None:
        parts = item.content if item.content else item.summary
        text = "\n\n".join(p.text for p in parts if p.text)
        if text:
            self.reasoning.append(text)
        envelope = decode_envelope(item.encrypted_content, param=param)
        if envelope is not None:
            self.blocks += envelope.thinking_blocks
            self.extras.update(envelope.tool_extras)

    def _assistant(self, item: MessageItem, param: str | None) -> None:
        if isinstance(item.content, str):
            self.texts.append(item.content)
            return
        texts = []
        for j, part in enumerate(item.content):
            if isinstance(part, (OutputText, InputText)):
                texts.append(part.text)
            elif isinstance(part, Refusal):
                self.refusals.append(part.refusal)
            else:
                raise InvalidRequestError(
                    "An assistant message holds text and refusals only.",
                    param=_sub(param, f".content[{j}]"),
                )
        if texts:
            self.texts.append("".join(texts))

    def messages(self) -> list[chat.Message]:
        """The turn as chat messages: one assistant message, or none for reasoning alone."""
        if not (self.texts or self.refusals or self.calls):
            return []
        for call in self.calls:
            if call.id in self.extras:
                call.extra_content = self.extras[call.id]
        msg = chat.AssistantMessage(content="\n\n".join(self.texts) if self.texts else None)
        if self.refusals:
            msg.refusal = "\n\n".join(self.refusals)
        if self.calls:
            msg.tool_calls = self.calls
        if self.reasoning:
            msg.reasoning_content = "\n\n".join(self.reasoning)
        if self.blocks:
            msg.thinking_blocks = self.blocks
        return [msg]


def _messages(items: Sequence[InputItem], *, first_input: int) -> list[chat.Message]:
    out: list[chat.Message] = []
    turn = _Turn()
    for k, item in enumerate(items):
        # Items from ``history`` are the gateway's own: no request path to point at.
        param = f"input[{k - first_input}]" if k >= first_input else None
        if not turn.take(item, param):
            out += turn.messages()
            turn = _Turn()
            out.append(_message(item, param))
    return out + turn.messages()


def _message(item: InputItem, param: str | None) -> chat.Message:
    if isinstance(item, MessageItem):
        content = _content(item.content, param)
        if item.role == "system":
            return chat.SystemMessage(content=content)
        if item.role == "developer":
            return chat.DeveloperMessage(content=content)
        return chat.UserMessage(content=content)
    if isinstance(item, FunctionCallOutputItem):
        return chat.ToolMessage(
            content=_content(item.output, param, ".output"), tool_call_id=item.call_id
        )
    if isinstance(item, ItemReference):
        raise InvalidRequestError(
            f"Item `{item.id}` is not an item of this conversation or of the previous response; "
            "send the item itself.",
            param=param,
            code="item_not_found",
        )
    where = f"`{param}`" if param else "An earlier item"
    raise InvalidRequestError(
        f"{where} is a `{item_type(item)}` item, which only OpenAI models handle.",
        param=param,
        code="unsupported_item",
    )


def _content(
    content: str | Sequence[ContentPart], param: str | None, field: str = ".content"
) -> str | list[chat.ContentPart]:
    if isinstance(content, str):
        return content
    return [_part(part, _sub(param, f"{field}[{j}]")) for j, part in enumerate(content)]


def _part(part: ContentPart, where: str | None) -> chat.ContentPart:
    if isinstance(part, (InputText, OutputText)):
        return chat.TextPart(text=part.text)
    if isinstance(part, Refusal):
        return chat.RefusalPart(refusal=part.refusal)
    if isinstance(part, InputImage):
        return _image(part, where)
    return _file(part, where)


def _image(part: InputImage, where: str | None) -> chat.ImagePart:
    if not isinstance(part.image_url, str):
        raise InvalidRequestError(
            "Images by `file_id` are OpenAI files, which only OpenAI models read; send "
            "`image_url` (a URL or a data URL).",
            param=_sub(where, ".image_url"),
            code="unsupported_parameter",
        )
    url = chat.ImageURL(url=part.image_url)
    if part.detail is not UNSET:
        # ``original`` (full resolution) is the closest to chat's ``high``.
        url.detail = "high" if part.detail == "original" else part.detail
    return chat.ImagePart(image_url=url)


def _file(part: InputFile, where: str | None) -> chat.FilePart:
    if isinstance(part.file_url, str):
        raise InvalidRequestError(
            "Files by `file_url` are fetched by OpenAI only; send the file as `file_data`.",
            param=_sub(where, ".file_url"),
            code="unsupported_parameter",
        )
    ref = chat.FileRef()
    if isinstance(part.file_data, str):
        ref.file_data = part.file_data
    if isinstance(part.file_id, str):
        ref.file_id = part.file_id
    if isinstance(part.filename, str):
        ref.filename = part.filename
    if ref.file_data is UNSET and ref.file_id is UNSET:
        raise InvalidRequestError("An `input_file` needs `file_data` or `file_id`.", param=where)
    return chat.FilePart(file=ref)


# --- answers --------------------------------------------------------------------------------


def from_chat(
    completion: chat.ChatCompletion,
    req: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    completed_at: int | None = None,
    new_id: IdFactory = new_item_id,
) -> Response:
    """The ``Response`` for a chat answer to :func:`to_chat`'s request (first choice)."""
    resp = new_response(req, response_id=response_id, created_at=created_at, model=completion.model)
    choice = completion.choices[0] if completion.choices else None
    resp.status, resp.incomplete_details = outcome(choice.finish_reason if choice else None)
    if choice is not None:
        item_status: _ItemStatus = "completed" if resp.status == "completed" else "incomplete"
        resp.output = _output(choice, req, new_id, item_status)
    if completion.usage is not UNSET:
        resp.usage = response_usage(completion.usage)
    if isinstance(completion.service_tier, str):
        resp.service_tier = completion.service_tier
    if resp.status == "completed":
        resp.completed_at = completed_at
    return resp


_ItemStatus = Literal["completed", "incomplete"]


def _output(
    choice: chat.Choice, req: ResponsesRequest, new_id: IdFactory, status: _ItemStatus
) -> list[OutputItem]:
    msg = choice.message
    calls = kept_calls(msg.tool_calls or [], req.max_tool_calls)
    extras = {c.id: c.extra_content for c in calls if c.extra_content is not UNSET}
    blocks = msg.thinking_blocks or []
    out: list[OutputItem] = []
    if msg.reasoning_content or blocks or extras:
        text = msg.reasoning_content or ""
        out.append(reasoning_item(new_id("rs"), text, blocks, extras))
    parts: list[ContentPart] = []
    if msg.content:
        logprobs = logprobs_of(choice.logprobs)
        annotations = annotations_of(msg.annotations)
        parts.append(OutputText(text=msg.content, annotations=annotations, logprobs=logprobs))
    if msg.refusal:
        parts.append(Refusal(refusal=msg.refusal))
    if parts:
        out.append(MessageItem(role="assistant", content=parts, id=new_id("msg"), status=status))
    for call in calls:
        fn = call.function
        out.append(
            FunctionCallItem(
                call_id=call.id,
                name=fn.name,
                arguments=fn.arguments,
                id=new_id("fc"),
                status=status,
            )
        )
    return out


# --- items kept between turns ---------------------------------------------------------------


def output_as_input(response: Response) -> list[InputItem]:
    """A stored response's output as the items the next turn's history holds: the same shapes
    (an output item is a valid input item), so reasoning envelopes and call ids survive."""
    return list(response.output)


def stored_items(items: Sequence[InputItem], *, new_id: IdFactory = new_item_id) -> list[InputItem]:
    """Items as a conversation or a response's ``input_items`` lists them: each with an ``id``
    and a ``status``, message content as parts (``input_text``, or ``output_text`` for the
    assistant). Items already carrying an id keep it."""
    return [_stored(item, new_id) for item in items]


def _stored(item: InputItem, new_id: IdFactory) -> InputItem:
    if isinstance(item, MessageItem):
        return MessageItem(
            role=item.role,
            content=_stored_content(item),
            id=item.id or new_id("msg"),
            status=item.status or "completed",
            phase=item.phase,
        )
    if isinstance(item, FunctionCallItem):
        return msgspec.structs.replace(
            item, id=item.id or new_id("fc"), status=item.status or "completed"
        )
    if isinstance(item, FunctionCallOutputItem):
        return msgspec.structs.replace(
            item, id=item.id or new_id("fco"), status=item.status or "completed"
        )
    if isinstance(item, ReasoningItem):
        return msgspec.structs.replace(item, id=item.id or new_id("rs"))
    return item


def _stored_content(item: MessageItem) -> list[ContentPart]:
    assistant = item.role == "assistant"
    if isinstance(item.content, str):
        text = item.content
        return [OutputText(text=text) if assistant else InputText(text=text)]
    if not assistant:
        return list(item.content)
    return [OutputText(text=p.text) if isinstance(p, InputText) else p for p in item.content]


def resolve_item_references(
    items: Sequence[InputItem], known: Mapping[str, InputItem]
) -> list[InputItem]:
    """``items`` (a request's ``input``) with each ``item_reference`` replaced by the item of
    that id in ``known`` (the conversation's or previous response's items); a 400 for an id
    not there."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, ItemReference):
            found = known.get(item.id)
            if found is None:
                raise InvalidRequestError(
                    f"Item `{item.id}` is not an item of this conversation or of the previous "
                    "response.",
                    param=f"input[{i}]",
                    code="item_not_found",
                )
            item = found
        out.append(item)
    return out


def drop_gateway_reasoning(items: Sequence[InputItem]) -> list[InputItem]:
    """``items`` without the reasoning items that carry the gateway's envelope: for a request
    forwarded to OpenAI natively after turns served by another provider (OpenAI cannot read
    them, and would refuse the request)."""
    return [
        item
        for item in items
        if not (isinstance(item, ReasoningItem) and is_gateway_envelope(item.encrypted_content))
    ]
