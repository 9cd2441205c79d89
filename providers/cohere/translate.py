"""The unified chat and embedding requests as Cohere v2 requests, and Cohere's answers back
(pure functions, no I/O).

Choices where the two APIs differ, each documented where it is made:

- ``system`` and ``developer`` messages stay where they are as Cohere ``system`` messages
  (Cohere v2 takes a system turn anywhere in the list);
- an assistant turn's text becomes Cohere's ``tool_plan`` when the turn calls tools (Cohere's
  own shape for it), and ``tool_plan`` comes back as the message's text;
- reasoning text travels as Cohere ``thinking`` content blocks, both ways;
- text files (``file`` parts whose data URL is ``text/*``, JSON, XML, YAML...) become Cohere
  ``documents``; Cohere takes documents only as text;
- Cohere's citations are not returned: OpenAI's chat message has no place for them
  (``annotations`` are URL citations only), and the text they point into is returned whole.
"""

from __future__ import annotations

import base64
import binascii

import msgspec
from msgspec import UNSET, UnsetType

from providers._translated import EmbeddingResult, embedding_inputs
from providers.cohere import wire
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import (
    AllowedToolsChoice,
    AssistantMessage,
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    Choice,
    ContentPart,
    CustomToolChoice,
    DeveloperMessage,
    FilePart,
    FunctionCall,
    FunctionMessage,
    FunctionTool,
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    NamedToolChoice,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from proxy.schemas.common import PromptTokensDetails, Usage
from proxy.schemas.embeddings import EmbeddingRequest

__all__ = [
    "EMBED_INPUT_TYPES",
    "chat_completion",
    "chat_request",
    "embed_request",
    "embedding_result",
    "finish_reason",
    "to_usage",
]

# Cohere's ``tools[].function.parameters`` is required; a function declared without one takes
# no arguments.
_NO_PARAMETERS = msgspec.Raw(b'{"type":"object","properties":{}}')
# reasoning_effort -> Cohere ``thinking.token_budget``. "high" sends no budget: Cohere's
# reasoning guide recommends unlimited thinking; "none" turns thinking off.
_BUDGETS = {"minimal": 512, "low": 1024, "medium": 4096}
# Cohere's ``p`` must lie in [0.01, 0.99] (its reference); OpenAI's top_p 1 (no truncation)
# and 0 (greedy) are sent as the nearest values Cohere accepts.
_P_RANGE = (0.01, 0.99)
EMBED_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
_TEXT_MEDIA = ("application/json", "application/xml", "application/yaml", "application/x-yaml")


def _refuse(provider: str, param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Provider `{provider}` does not support `{param}`: {why}",
        param=param,
        code="unsupported_parameter",
    )


# --- the chat request ---------------------------------------------------------------------


def chat_request(req: ChatRequest, model: str, *, stream: bool, provider: str) -> wire.ChatRequest:
    """The unified request as Cohere's ``POST /v2/chat`` body; a 400 for what Cohere cannot do."""
    _check_unsupported(req, provider)
    messages, documents = _messages(req.messages, provider)
    tools, tool_choice = _tools(req, provider)
    max_tokens = req.max_completion_tokens or req.max_tokens or UNSET
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    return wire.ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        strict_tools=_strict(req),
        documents=documents or UNSET,
        response_format=_response_format(req),
        max_tokens=max_tokens,
        stop_sequences=stop or UNSET,
        temperature=_temperature(req, provider),
        seed=_seed(req, provider),
        frequency_penalty=_penalty(req.frequency_penalty, "frequency_penalty", provider),
        presence_penalty=_penalty(req.presence_penalty, "presence_penalty", provider),
        p=_p(req.top_p),
        tool_choice=tool_choice,
        thinking=_thinking(req.reasoning_effort, max_tokens, provider),
        stream=stream,
    )


def _check_unsupported(req: ChatRequest, provider: str) -> None:
    """Parameters that would change the answer and that Cohere cannot honour.

    Dropped without a word (they do not change the answer): ``user``, ``store``, ``metadata``,
    ``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``prediction``.
    """
    if req.n not in (UNSET, None, 1):
        raise _refuse(provider, "n", "Cohere returns one choice per request.")
    if req.logprobs or req.top_logprobs not in (UNSET, None, 0):
        # Cohere's logprobs give token ids without token text or alternatives, which
        # OpenAI's logprobs object requires.
        param = "logprobs" if req.logprobs else "top_logprobs"
        raise _refuse(provider, param, "Cohere's log probabilities lack OpenAI's token fields.")
    if req.logit_bias:
        raise _refuse(provider, "logit_bias", "Cohere has no token biasing.")
    if req.parallel_tool_calls is False:
        raise _refuse(
            provider, "parallel_tool_calls", "Cohere cannot be limited to one tool call per turn."
        )
    if req.audio is not UNSET or (req.modalities and "audio" in req.modalities):
        raise _refuse(provider, "modalities", "Cohere answers in text only.")
    if req.web_search_options is not UNSET:
        raise _refuse(provider, "web_search_options", "Cohere's chat API has no web search.")
    if req.verbosity not in (UNSET, None):
        raise _refuse(provider, "verbosity", "Cohere has no verbosity setting.")


def _temperature(req: ChatRequest, provider: str) -> float | UnsetType:
    t = req.temperature
    if t is UNSET or t is None:
        return UNSET
    if t > 1:
        # Cohere: "temperature must be between 0 and 1.0 inclusive."
        raise _refuse(provider, "temperature", "Cohere accepts a temperature from 0 to 1.")
    return t


def _penalty(value: float | UnsetType | None, param: str, provider: str) -> float | UnsetType:
    if value is UNSET or value is None:
        return UNSET
    if not 0 <= value <= 1:
        # Cohere: "presence_penalty must be between 0 and 1 inclusive."
        raise _refuse(provider, param, "Cohere accepts a penalty from 0 to 1.")
    return value


def _p(top_p: float | UnsetType | None) -> float | UnsetType:
    if top_p is UNSET or top_p is None:
        return UNSET
    low, high = _P_RANGE
    return min(max(top_p, low), high)


def _seed(req: ChatRequest, provider: str) -> int | UnsetType:
    if req.seed is UNSET or req.seed is None:
        return UNSET
    if req.seed < 0:
        raise _refuse(provider, "seed", "Cohere takes a seed from 0 up.")
    return req.seed


def _thinking(
    effort: str | UnsetType | None, max_tokens: int | UnsetType, provider: str
) -> wire.Thinking | UnsetType:
    if effort is UNSET or effort is None:
        return UNSET
    if effort == "none":
        return wire.Thinking(type="disabled")
    if effort == "high":
        return wire.Thinking(type="enabled")
    budget = _BUDGETS.get(effort)
    if budget is None:
        raise InvalidRequestError(
            f"Unknown `reasoning_effort` `{effort}`: use none, minimal, low, medium or high.",
            param="reasoning_effort",
        )
    if isinstance(max_tokens, int) and budget >= max_tokens:
        # Thinking counts toward the output limit; Cohere's guide says to leave room for the
        # answer itself.
        budget = max(1, max_tokens // 2)
    return wire.Thinking(type="enabled", token_budget=budget)


def _response_format(req: ChatRequest) -> wire.ResponseFormat | UnsetType:
    fmt = req.response_format
    if isinstance(fmt, JSONObjectFormat):
        return wire.ResponseFormat(type="json_object")
    if isinstance(fmt, JSONSchemaFormat):
        # Cohere's json_object takes the schema itself and always enforces it.
        return wire.ResponseFormat(type="json_object", json_schema=fmt.json_schema.schema)
    return UNSET


# --- messages -----------------------------------------------------------------------------


def _messages(
    messages: list[Message], provider: str
) -> tuple[list[wire.Message], list[wire.Document]]:
    out: list[wire.Message] = []
    documents: list[wire.Document] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(m, (SystemMessage, DeveloperMessage)):
            out.append(wire.SystemMessage(content=_system_content(m.content, where, provider)))
        elif isinstance(m, UserMessage):
            user = _user_message(m, where, provider, documents)
            if user is not None:
                out.append(user)
        elif isinstance(m, AssistantMessage):
            out.append(_assistant_message(m, where, provider))
        elif isinstance(m, ToolMessage):
            content = _tool_content(m.content, where, provider)
            out.append(wire.ToolMessage(tool_call_id=m.tool_call_id, content=content))
        elif isinstance(m, FunctionMessage):
            raise _refuse(provider, where, "use `tool` messages rather than `function` ones.")
    return out, documents


def _only_text(parts: list[ContentPart], where: str, provider: str) -> list[wire.TextContent]:
    out = []
    for j, part in enumerate(parts):
        if not isinstance(part, (TextPart, RefusalPart)):
            raise _refuse(provider, f"{where}.content[{j}]", "this message takes text only.")
        out.append(wire.TextContent(text=part.text if isinstance(part, TextPart) else part.refusal))
    return out


def _system_content(
    content: str | list[ContentPart], where: str, provider: str
) -> str | list[wire.TextContent]:
    return content if isinstance(content, str) else _only_text(content, where, provider)


def _tool_content(
    content: str | list[ContentPart], where: str, provider: str
) -> str | list[wire.TextContent | wire.DocumentContent]:
    if isinstance(content, str):
        return content
    parts: list[wire.TextContent | wire.DocumentContent] = [*_only_text(content, where, provider)]
    return parts


def _user_message(
    m: UserMessage, where: str, provider: str, documents: list[wire.Document]
) -> wire.UserMessage | None:
    if isinstance(m.content, str):
        return wire.UserMessage(content=m.content)
    parts: list[wire.TextContent | wire.ImageContent] = []
    for j, part in enumerate(m.content):
        at = f"{where}.content[{j}]"
        if isinstance(part, TextPart):
            parts.append(wire.TextContent(text=part.text))
        elif isinstance(part, ImagePart):
            # Cohere's image_url takes web URLs and data URIs alike: sent as they came.
            url = wire.ImageURL(url=part.image_url.url, detail=part.image_url.detail)
            parts.append(wire.ImageContent(image_url=url))
        elif isinstance(part, FilePart):
            documents.append(_document(part, at, provider, len(documents)))
        else:
            raise _refuse(provider, at, "Cohere takes text, images and text documents.")
    # A message that held only files lives on as top-level documents.
    return wire.UserMessage(content=parts) if parts else None


def _document(part: FilePart, where: str, provider: str, n: int) -> wire.Document:
    data = part.file.file_data
    if data is UNSET:
        raise _refuse(provider, where, "Cohere has no file store: send the file's data inline.")
    head, sep, payload = data.partition(",")
    media = head[5:].split(";")[0] if head.startswith("data:") else ""
    if not sep or not head.endswith(";base64") or not _is_text(media):
        raise _refuse(
            provider, where, "Cohere takes documents as text: send a base64 data URL of text."
        )
    try:
        text = base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequestError(
            "The file's data is not base64-encoded UTF-8 text.", param=where
        ) from None
    title = part.file.filename if part.file.filename is not UNSET else UNSET
    return wire.Document(id=f"doc_{n}", data=wire.DocumentData(text=text, title=title))


def _is_text(media: str) -> bool:
    return media.startswith("text/") or media in _TEXT_MEDIA or media.endswith("+json")


def _assistant_message(m: AssistantMessage, where: str, provider: str) -> wire.AssistantMessage:
    if m.function_call not in (UNSET, None):
        raise _refuse(provider, f"{where}.function_call", "use `tool_calls`.")
    if m.content is UNSET or m.content is None:
        text = ""
    elif isinstance(m.content, str):
        text = m.content
    else:
        text = "".join(p.text for p in _only_text(m.content, where, provider))
    thinking = _thinking_blocks(m)
    if m.tool_calls:
        calls = [
            wire.ToolCall(
                id=c.id,
                function=wire.FunctionCall(name=c.function.name, arguments=c.function.arguments),
            )
            for c in m.tool_calls
        ]
        blocks: list[wire.TextContent | wire.ThinkingContent] = [*thinking]
        return wire.AssistantMessage(
            content=blocks or UNSET, tool_plan=text or UNSET, tool_calls=calls
        )
    if thinking:
        return wire.AssistantMessage(content=[*thinking, wire.TextContent(text=text)])
    return wire.AssistantMessage(content=text)


def _thinking_blocks(m: AssistantMessage) -> list[wire.ThinkingContent]:
    """A previous turn's reasoning, as Cohere's ``thinking`` blocks. Redacted blocks (another
    provider's encrypted reasoning) mean nothing to Cohere and are left out."""
    if m.thinking_blocks:
        return [
            wire.ThinkingContent(thinking=b.thinking)
            for b in m.thinking_blocks
            if b.type == "thinking" and isinstance(b.thinking, str) and b.thinking
        ]
    if isinstance(m.reasoning_content, str) and m.reasoning_content:
        return [wire.ThinkingContent(thinking=m.reasoning_content)]
    return []


# --- tools --------------------------------------------------------------------------------


class _AllowedTool(msgspec.Struct):
    function: _Name | None = None
    name: str | None = None  # the Responses API's flat shape


class _Name(msgspec.Struct):
    name: str


class _Allowed(msgspec.Struct):
    mode: str = "auto"
    tools: list[_AllowedTool] = []


_decode_allowed = msgspec.json.Decoder(_Allowed).decode


def _tools(
    req: ChatRequest, provider: str
) -> tuple[list[wire.Tool] | UnsetType, wire.ToolChoice | UnsetType]:
    """Cohere's tools and ``tool_choice`` (``REQUIRED``/``NONE``; omitted means auto).

    Cohere cannot name the tool to call: a named function (or OpenAI's ``allowed_tools``) is
    sent as only that tool (those tools), with ``REQUIRED`` for a forced call.
    """
    if req.tools is UNSET or not req.tools:
        return UNSET, UNSET
    tools: list[wire.Tool] = []
    for i, tool in enumerate(req.tools):
        if not isinstance(tool, FunctionTool):
            raise _refuse(provider, f"tools[{i}]", "Cohere takes function tools only.")
        f = tool.function
        parameters = f.parameters if f.parameters is not UNSET else _NO_PARAMETERS
        tools.append(
            wire.Tool(
                function=wire.FunctionDef(
                    name=f.name, parameters=parameters, description=f.description
                )
            )
        )
    choice = req.tool_choice
    if choice is UNSET or choice == "auto":
        return tools, UNSET
    if choice == "none":
        return tools, "NONE"
    if choice == "required":
        return tools, "REQUIRED"
    if isinstance(choice, NamedToolChoice):
        return _only(tools, {choice.function.name}), "REQUIRED"
    if isinstance(choice, AllowedToolsChoice):
        allowed = _decode_allowed(choice.allowed_tools)
        names = {t.function.name if t.function else t.name or "" for t in allowed.tools}
        return _only(tools, names), "REQUIRED" if allowed.mode == "required" else UNSET
    assert isinstance(choice, CustomToolChoice)
    raise _refuse(provider, "tool_choice", "Cohere takes function tools only.")


def _only(tools: list[wire.Tool], names: set[str]) -> list[wire.Tool]:
    kept = [t for t in tools if t.function.name in names]
    missing = names - {t.function.name for t in kept}
    if missing:
        raise InvalidRequestError(
            f"`tool_choice` names `{sorted(missing)[0]}`, which is not in `tools`.",
            param="tool_choice",
        )
    return kept


def _strict(req: ChatRequest) -> bool | UnsetType:
    """Cohere's ``strict_tools`` applies to every tool: on when any tool asks for strictness."""
    if req.tools is UNSET:
        return UNSET
    strict = any(isinstance(t, FunctionTool) and t.function.strict for t in req.tools)
    return True if strict else UNSET


# --- the answer ---------------------------------------------------------------------------

_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def finish_reason(reason: str | None, *, called_tools: bool) -> str:
    """Cohere's finish reason as OpenAI's (``ERROR`` and ``TIMEOUT`` are raised by the caller,
    as errors, before this is asked)."""
    mapped = _FINISH.get(reason or "", "stop")
    return "tool_calls" if called_tools and mapped == "stop" else mapped


_NO_TOKENS = wire.Tokens()


def to_usage(usage: wire.WireUsage | None) -> Usage | None:
    """Cohere's usage in OpenAI's terms.

    Counts come from ``billed_units`` (what Cohere charges for), falling back to ``tokens``
    when Cohere sends no billed count: ``tokens`` also counts Cohere's own prompt template,
    which is not billed (its docs on billed vs. generic tokens). ``cached_tokens`` is counted
    over everything the model read, template included, so it is capped at the prompt count to
    keep OpenAI's rule that cached tokens are part of ``prompt_tokens``.
    """
    if usage is None:
        return None
    billed, tokens = usage.billed_units or _NO_TOKENS, usage.tokens or _NO_TOKENS
    prompt = _count(billed.input_tokens, tokens.input_tokens)
    completion = _count(billed.output_tokens, tokens.output_tokens)
    total = prompt + completion
    out = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
    if usage.cached_tokens:
        out.prompt_tokens_details = PromptTokensDetails(
            cached_tokens=min(int(usage.cached_tokens), prompt)
        )
    return out


def _count(billed: float | None, total: float | None) -> int:
    if billed is not None:
        return int(billed)
    return int(total or 0)


def chat_completion(
    resp: wire.ChatResponse, model: str, created: int
) -> tuple[ChatCompletion, str | None]:
    """Cohere's answer as a chat completion, and its finish reason when it is ``ERROR`` or
    ``TIMEOUT`` (the caller raises those as errors)."""
    msg = resp.message
    text = "".join(c.text or "" for c in msg.content or () if c.type == "text")
    reasoning = "".join(c.thinking or "" for c in msg.content or () if c.type == "thinking")
    content = (msg.tool_plan or "") + text
    calls = [
        ToolCall(
            id=c.id or "",
            function=FunctionCall(
                name=(c.function.name if c.function else None) or "",
                arguments=(c.function.arguments if c.function else None) or "{}",
            ),
        )
        for c in msg.tool_calls or ()
    ]
    message = ChatMessage(content=content or None, tool_calls=calls or UNSET)
    if reasoning:
        message.reasoning_content = reasoning
    failed = resp.finish_reason if resp.finish_reason in ("ERROR", "TIMEOUT") else None
    choice = Choice(
        index=0,
        message=message,
        finish_reason=finish_reason(resp.finish_reason, called_tools=bool(calls)),
    )
    usage = to_usage(resp.usage)
    completion = ChatCompletion(id=resp.id, created=created, model=model, choices=[choice])
    if usage is not None:
        completion.usage = usage
    return completion, failed


# --- embeddings ---------------------------------------------------------------------------


def embed_request(
    req: EmbeddingRequest, model: str, input_type: str, provider: str
) -> wire.EmbedRequest:
    """``POST /v2/embed``: float vectors (the gateway packs base64 itself); ``dimensions`` is
    Cohere's ``output_dimension`` (embed-v4: 256, 512, 1024 or 1536)."""
    return wire.EmbedRequest(
        model=model,
        texts=embedding_inputs(req, provider),
        input_type=input_type,
        embedding_types=["float"],
        output_dimension=req.dimensions,
    )


def embedding_result(resp: wire.EmbedResponse) -> EmbeddingResult | None:
    """The vectors and billed tokens; ``None`` when Cohere sent no float vectors."""
    vectors = resp.embeddings.float_
    if vectors is None:
        return None
    billed = resp.meta.billed_units if resp.meta else None
    tokens = int(billed.input_tokens or 0) if billed else 0
    return EmbeddingResult(vectors=vectors, prompt_tokens=tokens)
