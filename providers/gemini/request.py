"""The unified chat request as a Gemini ``generateContent`` body (pure: no I/O).

What needs the network (downloading an image the API cannot fetch itself) is done before, by
the provider: :func:`to_native` receives every image URL of the request already resolved to a
:class:`~providers.gemini.wire.Part` (``media``). The body is the same for the Gemini API and
Vertex AI; only the URL and the credentials differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from providers.gemini.wire import (
    Blob,
    Content,
    FileData,
    FunctionCall,
    FunctionCallingConfig,
    FunctionDeclaration,
    FunctionResponse,
    GenerateContentRequest,
    GenerationConfig,
    Part,
    ThinkingConfig,
    Tool,
    ToolConfig,
)
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import (
    AllowedToolsChoice,
    AssistantMessage,
    ChatRequest,
    ContentPart,
    CustomToolChoice,
    DeveloperMessage,
    FilePart,
    FunctionMessage,
    FunctionTool,
    ImagePart,
    InputAudioPart,
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
from proxy.schemas.chat import FunctionCall as ChatFunctionCall

__all__ = [
    "call_signature",
    "check_request",
    "data_url_part",
    "image_urls",
    "is_gemini_3",
    "reference_part",
    "to_native",
]

# reasoning_effort -> Gemini 2.5 thinkingBudget: low, medium and high as Google's own
# OpenAI-compatible endpoint maps them; minimal gets low's budget, xhigh 2.5 Pro's maximum; 0
# turns thinking off (on the models that allow it; 2.5 Pro answers 400).
_BUDGETS = {
    "none": 0,
    "minimal": 1024,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
}
# Gemini 3 takes a level instead. It cannot turn thinking off; MINIMAL is the closest (Flash
# has it; a model without a level answers 400 naming it, which says what to change).
_LEVELS = {
    "none": "MINIMAL",
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "XHIGH",
}
# Gemini 3 refuses a function-calling turn without the signature it issued ("Function call is
# missing a thought_signature"); for history it never issued (another model's turn, a fallback),
# the thought-signatures guide names this value as the one that skips the check.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# Media the API reads by URL, by file extension (images and PDF, the types it documents).
_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".pdf": "application/pdf",
}
_VERSION = re.compile(r"(?:^|/)gemini-(\d+)")
_TIERS = {"flex": "flex", "priority": "priority", "default": "standard"}
_encode = msgspec.json.Encoder().encode
_T = TypeVar("_T")


class _GoogleExtra(msgspec.Struct):
    thought_signature: str | None = None


class _ExtraContent(msgspec.Struct):
    google: _GoogleExtra | None = None


class _Name(msgspec.Struct):
    name: str


class _ToolRef(msgspec.Struct):
    type: str = "function"
    function: _Name | None = None


class _AllowedTools(msgspec.Struct):
    mode: Literal["auto", "required"]
    tools: list[_ToolRef]


_extra = msgspec.json.Decoder(_ExtraContent).decode
_allowed = msgspec.json.Decoder(_AllowedTools).decode


def is_gemini_3(model: str) -> bool:
    """Whether ``model`` is of the Gemini 3 generation or later (thinking levels, mandatory
    signatures); aliases without a version (``gemini-flash-latest``) count as older."""
    m = _VERSION.search(model)
    return m is not None and int(m.group(1)) >= 3


# --- checks -------------------------------------------------------------------------------


def _unsupported(req: ChatRequest) -> tuple[str, str] | None:
    """The first parameter Gemini cannot honour that would change the answer, and why."""
    if req.logprobs or req.top_logprobs:
        return "logprobs", "the gateway does not translate Gemini's log probabilities."
    if req.logit_bias:
        return "logit_bias", "Gemini has no token biasing."
    if req.tools and req.parallel_tool_calls is False:
        return "parallel_tool_calls", "Gemini cannot be limited to one call per turn."
    if req.modalities and any(m != "text" for m in req.modalities):
        return "modalities", "the gateway serves Gemini's text output only."
    if req.audio is not UNSET:
        return "audio", "the gateway serves Gemini's text output only."
    if req.web_search_options is not UNSET:
        return "web_search_options", "use Gemini's own search grounding (not translated)."
    if isinstance(req.verbosity, str):
        return "verbosity", "Gemini has no verbosity setting."
    for i, t in enumerate(req.tools or ()):
        if not isinstance(t, FunctionTool):
            return f"tools[{i}]", "Gemini has function tools only."
    if isinstance(req.tool_choice, CustomToolChoice):
        return "tool_choice", "Gemini has function tools only."
    return None


def check_request(req: ChatRequest, provider: str) -> None:
    """Refuse (400 naming it) a parameter Gemini cannot honour that would change the answer;
    parameters that change nothing (``user``, ``store``, ``metadata``...) are dropped."""
    refused = _unsupported(req)
    if refused is not None:
        param, why = refused
        raise InvalidRequestError(
            f"Provider `{provider}` does not support `{param}`: {why}",
            param=param,
            code="unsupported_parameter",
        )
    effort = req.reasoning_effort
    if isinstance(effort, str) and effort not in _BUDGETS:
        raise InvalidRequestError(
            f"Unknown `reasoning_effort` `{effort}`; one of: {', '.join(_BUDGETS)}.",
            param="reasoning_effort",
        )


# --- media --------------------------------------------------------------------------------


def image_urls(req: ChatRequest) -> Iterator[str]:
    """Every image URL of the request's user messages, in order."""
    for m in req.messages:
        if isinstance(m, UserMessage) and isinstance(m.content, list):
            for p in m.content:
                if isinstance(p, ImagePart):
                    yield p.image_url.url


def data_url_part(url: str, param: str = "messages") -> Part:
    """A ``data:<type>;base64,<data>`` URL as inline data; its base64 text goes as it came."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64") or not payload:
        raise InvalidRequestError(
            "An inline file must be a base64 data URL: `data:<media type>;base64,<data>`.",
            param=param,
        )
    return Part(inline_data=Blob(mime_type=head[5:-7] or "application/octet-stream", data=payload))


def reference_part(url: str) -> Part | None:
    """The part for a URL the Gemini API downloads itself, or ``None`` when the gateway must.

    Since January 2026 the API reads public and signed https URLs ("External URLs") and its own
    Files API URIs. A URL's media type must be known without downloading it, so only paths
    ending in an extension of a type the API documents go by reference.
    """
    if not url.startswith("https://"):
        return None
    path = url.split("?", 1)[0].split("#", 1)[0]
    if path.startswith("https://generativelanguage.googleapis.com/") and "/files/" in path:
        return Part(file_data=FileData(file_uri=url))
    dot = path.rfind(".")
    media_type = _MEDIA_TYPES.get(path[dot:].lower()) if dot > path.rfind("/") else None
    if media_type is None:
        return None
    return Part(file_data=FileData(file_uri=url, mime_type=media_type))


# --- messages -----------------------------------------------------------------------------


def _text_of(content: str | list[ContentPart], param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for i, p in enumerate(content):
        if isinstance(p, TextPart):
            texts.append(p.text)
        elif isinstance(p, RefusalPart):
            texts.append(p.refusal)
        else:
            raise InvalidRequestError(
                "Only text parts are allowed here.", param=f"{param}.content[{i}]"
            )
    return "".join(texts)


def _user_part(p: ContentPart, media: Mapping[str, Part], param: str) -> Part:
    if isinstance(p, TextPart):
        return Part(text=p.text)
    if isinstance(p, ImagePart):
        return media[p.image_url.url]
    if isinstance(p, InputAudioPart):
        # OpenAI's formats are wav and mp3; Gemini names them by media type.
        fmt = {"mp3": "mpeg"}.get(p.input_audio.format, p.input_audio.format)
        return Part(inline_data=Blob(mime_type=f"audio/{fmt}", data=p.input_audio.data))
    if isinstance(p, FilePart):
        return _file_part(p, param)
    raise InvalidRequestError("A refusal part belongs to assistant messages.", param=param)


def _file_part(p: FilePart, param: str) -> Part:
    f = p.file
    if isinstance(f.file_data, str):
        return data_url_part(f.file_data, f"{param}.file.file_data")
    if isinstance(f.file_id, str) and f.file_id.startswith("https://"):
        # A Gemini Files API URI (or an https URL) named as the file.
        return reference_part(f.file_id) or Part(file_data=FileData(file_uri=f.file_id))
    raise InvalidRequestError(
        "Gemini reads a file inline (`file_data`) or by its Files API URI (`file_id`: "
        "`https://generativelanguage.googleapis.com/v1beta/files/...`).",
        param=f"{param}.file",
    )


def _user_parts(m: UserMessage, media: Mapping[str, Part], param: str) -> list[Part]:
    if isinstance(m.content, str):
        return [Part(text=m.content)]
    return [_user_part(p, media, f"{param}.content[{i}]") for i, p in enumerate(m.content)]


def _arguments(text: str, param: str) -> msgspec.Raw:
    """A tool call's arguments (JSON text) as the object ``functionCall.args`` takes."""
    if not text.strip():
        return msgspec.Raw(b"{}")
    try:
        one_line = msgspec.json.format(text.encode(), indent=0)
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "A tool call's `arguments` must be a JSON object.", param=param
        ) from None
    if not one_line.startswith(b"{"):
        raise InvalidRequestError("A tool call's `arguments` must be a JSON object.", param=param)
    return msgspec.Raw(one_line)


def call_signature(extra: msgspec.Raw | UnsetType) -> str | UnsetType:
    """``extra_content.google.thought_signature``, the shape Google's OpenAI endpoint uses."""
    if extra is UNSET:
        return UNSET
    try:
        google = _extra(extra).google
    except (msgspec.DecodeError, msgspec.ValidationError):
        return UNSET
    return google.thought_signature if google and google.thought_signature else UNSET


def _model_parts(m: AssistantMessage, param: str, *, gemini_3: bool) -> list[Part]:
    parts: list[Part] = []
    text = "" if m.content is None or m.content is UNSET else _text_of(m.content, param)
    # A text answer's signature travels back as the signature of a thinking block; the thought
    # text itself is not sent back (Gemini takes only the signature).
    signature: str | UnsetType = UNSET
    for block in m.thinking_blocks or ():
        if isinstance(block.signature, str):
            signature = block.signature
    if text:
        parts.append(Part(text=text, thought_signature=signature))
    calls = m.tool_calls if isinstance(m.tool_calls, list) else []
    for j, tc in enumerate(calls):
        args = _arguments(tc.function.arguments, f"{param}.tool_calls[{j}].function.arguments")
        call = FunctionCall(name=tc.function.name, args=args, id=tc.id)
        parts.append(Part(function_call=call, thought_signature=call_signature(tc.extra_content)))
    if isinstance(m.function_call, ChatFunctionCall):
        args = _arguments(m.function_call.arguments, f"{param}.function_call.arguments")
        parts.append(Part(function_call=FunctionCall(name=m.function_call.name, args=args)))
    calls_in = [p for p in parts if p.function_call is not UNSET]
    if gemini_3 and calls_in and all(p.thought_signature is UNSET for p in calls_in):
        calls_in[0].thought_signature = SKIP_SIGNATURE
    return parts


def _response(content: str | list[ContentPart] | None, param: str) -> msgspec.Raw:
    """A tool's result as ``functionResponse.response`` (a JSON object): a JSON object result as
    itself, anything else as ``{"output": text}``, the key Google documents for a result."""
    text = "" if content is None else _text_of(content, param)
    if text.lstrip().startswith("{"):
        try:
            return msgspec.Raw(msgspec.json.format(text.encode(), indent=0))
        except msgspec.DecodeError:
            pass
    return msgspec.Raw(b'{"output":' + _encode(text) + b"}")


class _Turns:
    """Builds ``contents`` and the system instruction, message by message."""

    def __init__(self, media: Mapping[str, Part], *, gemini_3: bool) -> None:
        self.system: list[Part] = []
        self.contents: list[Content] = []
        self._media = media
        self._gemini_3 = gemini_3
        self._names: dict[str, str] = {}  # tool call id -> function name
        self._results: Content | None = None  # the open turn of consecutive tool results

    def add(self, m: Message, param: str) -> None:
        if isinstance(m, SystemMessage | DeveloperMessage):
            # Gemini has one system instruction: every system message joins it, in order.
            self.system.append(Part(text=_text_of(m.content, param)))
        elif isinstance(m, UserMessage):
            self._turn(Content(role="user", parts=_user_parts(m, self._media, param)))
        elif isinstance(m, AssistantMessage):
            for tc in m.tool_calls or ():
                self._names[tc.id] = tc.function.name
            parts = _model_parts(m, param, gemini_3=self._gemini_3)
            if parts:  # an empty model turn is refused; an empty history entry says nothing
                self._turn(Content(role="model", parts=parts))
        elif isinstance(m, ToolMessage):
            name = self._names.get(m.tool_call_id)
            if name is None:
                raise InvalidRequestError(
                    f"`tool_call_id` `{m.tool_call_id}` answers no tool call of an earlier "
                    "assistant message; Gemini pairs results with calls by function name.",
                    param=f"{param}.tool_call_id",
                )
            response = _response(m.content, param)
            self._result(FunctionResponse(name=name, response=response, id=m.tool_call_id))
        elif isinstance(m, FunctionMessage):
            self._result(FunctionResponse(name=m.name, response=_response(m.content, param)))

    def _turn(self, content: Content) -> None:
        self.contents.append(content)
        self._results = None

    def _result(self, response: FunctionResponse) -> None:
        # Gemini wants the results of one model turn's calls together, in one user turn.
        if self._results is None:
            self._results = Content(role="user", parts=[])
            self.contents.append(self._results)
        self._results.parts.append(Part(function_response=response))


# --- tools --------------------------------------------------------------------------------


def _declarations(req: ChatRequest) -> list[FunctionDeclaration]:
    return [
        FunctionDeclaration(
            name=t.function.name,
            description=t.function.description,
            parameters_json_schema=t.function.parameters,
        )
        for t in req.tools or ()
        if isinstance(t, FunctionTool)  # check_request refused the others
    ]


def _tool_config(
    req: ChatRequest, declared: list[FunctionDeclaration]
) -> tuple[list[FunctionDeclaration], FunctionCallingConfig | None]:
    """tool_choice as Gemini's calling mode: auto -> AUTO, none -> NONE, required -> ANY, a
    named function -> ANY limited to it; ``allowed_tools`` narrows the declared functions."""
    choice = req.tool_choice
    names = [d.name for d in declared]
    if choice is UNSET:
        return declared, None
    if isinstance(choice, str):
        return declared, FunctionCallingConfig(
            mode={"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
        )
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise InvalidRequestError(
                f"`tool_choice` names `{choice.function.name}`, which is not among `tools`.",
                param="tool_choice",
            )
        config = FunctionCallingConfig(mode="ANY", allowed_function_names=[choice.function.name])
        return declared, config
    if isinstance(choice, AllowedToolsChoice):
        return _allowed_tools(choice, declared)
    return declared, None  # a custom tool choice: check_request refused it


def _allowed_tools(
    choice: AllowedToolsChoice, declared: list[FunctionDeclaration]
) -> tuple[list[FunctionDeclaration], FunctionCallingConfig]:
    try:
        allowed = _allowed(choice.allowed_tools)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequestError(
            f"Invalid `allowed_tools`: {exc}", param="tool_choice.allowed_tools"
        ) from None
    wanted = {t.function.name for t in allowed.tools if t.function is not None}
    kept = [d for d in declared if d.name in wanted]
    if not kept:
        raise InvalidRequestError(
            "`allowed_tools` names none of the declared `tools`.",
            param="tool_choice.allowed_tools",
        )
    if allowed.mode == "required":
        return kept, FunctionCallingConfig(
            mode="ANY", allowed_function_names=[d.name for d in kept]
        )
    return kept, FunctionCallingConfig(mode="AUTO")


# --- generation settings ------------------------------------------------------------------


def _thinking(effort: str | UnsetType | None, *, gemini_3: bool) -> ThinkingConfig | UnsetType:
    if not isinstance(effort, str):
        return UNSET
    show = effort != "none"
    if gemini_3:
        return ThinkingConfig(include_thoughts=show, thinking_level=_LEVELS[effort])
    return ThinkingConfig(include_thoughts=show, thinking_budget=_BUDGETS[effort])


def _generation(req: ChatRequest, *, gemini_3: bool) -> GenerationConfig | UnsetType:
    limit = req.max_completion_tokens
    config = GenerationConfig(
        max_output_tokens=_set(limit) if isinstance(limit, int) else _set(req.max_tokens),
        temperature=_set(req.temperature),
        top_p=_set(req.top_p),
        seed=_set(req.seed),
        presence_penalty=_set(req.presence_penalty),
        frequency_penalty=_set(req.frequency_penalty),
        thinking_config=_thinking(req.reasoning_effort, gemini_3=gemini_3),
    )
    if isinstance(req.stop, str):
        config.stop_sequences = [req.stop]
    elif isinstance(req.stop, list) and req.stop:
        config.stop_sequences = req.stop
    if isinstance(req.n, int) and req.n > 1:
        config.candidate_count = req.n
    fmt = req.response_format
    if isinstance(fmt, JSONObjectFormat | JSONSchemaFormat):
        config.response_mime_type = "application/json"
    if isinstance(fmt, JSONSchemaFormat):
        config.response_json_schema = fmt.json_schema.schema
    return UNSET if config == GenerationConfig() else config


def _set(value: _T | UnsetType | None) -> _T | UnsetType:
    """A request field as a wire field: null and absent are both unsent."""
    return UNSET if value is None else value


# --- the request --------------------------------------------------------------------------


def to_native(req: ChatRequest, *, model: str, media: Mapping[str, Part]) -> GenerateContentRequest:
    """The chat request as Gemini's body; ``media`` holds every image URL, resolved."""
    gemini_3 = is_gemini_3(model)
    turns = _Turns(media, gemini_3=gemini_3)
    for i, m in enumerate(req.messages):
        turns.add(m, f"messages[{i}]")
    body = GenerateContentRequest(
        contents=turns.contents, generation_config=_generation(req, gemini_3=gemini_3)
    )
    if turns.system:
        body.system_instruction = Content(parts=turns.system)
    declared = _declarations(req)
    if declared:
        kept, calling = _tool_config(req, declared)
        body.tools = [Tool(function_declarations=kept)]
        if calling is not None:
            body.tool_config = ToolConfig(function_calling_config=calling)
    if isinstance(req.service_tier, str) and req.service_tier in _TIERS:
        body.service_tier = _TIERS[req.service_tier]
    return body
