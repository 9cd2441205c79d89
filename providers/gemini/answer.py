"""Unified answers in Gemini's shape, for the native ``/genai`` routes when another provider
served the request (pure): a chat completion as a ``GenerateContentResponse``, chat chunks as
``streamGenerateContent`` events, embeddings as ``embedContent``/``batchEmbedContents``
answers, and the gateway's errors as Google's error body.
"""

from __future__ import annotations

import base64
import binascii

import msgspec
from msgspec import UNSET, UnsetType

from providers.gemini.request import call_signature
from providers.gemini.wire import (
    Candidate,
    Content,
    ContentEmbedding,
    EmbeddingUsage,
    EmbedResponse,
    ErrorBody,
    ErrorEnvelope,
    FunctionCall,
    GenerateContentResponse,
    Part,
    UsageMetadata,
)
from proxy.errors import GatewayError
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ChatMessage, ThinkingBlock
from proxy.schemas.common import BilledUsage, Usage

__all__ = [
    "GOOGLE_STATUSES",
    "ChunkReader",
    "embed_answer",
    "error_body",
    "from_completion",
    "google_status",
    "signature_text",
    "usage_metadata",
]

_encode = msgspec.json.Encoder().encode
_FINISH = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
# google.rpc.Code names by HTTP status, as Google's APIs answer them.
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_NAMES = frozenset(GOOGLE_STATUSES.values()) | {
    "FAILED_PRECONDITION",
    "OUT_OF_RANGE",
    "ALREADY_EXISTS",
    "DATA_LOSS",
    "UNKNOWN",
}


# --- errors --------------------------------------------------------------------------------


def google_status(error: GatewayError) -> str:
    """The ``google.rpc.Code`` name of an error: an upstream Google status it carries as its
    code, else the one of its HTTP status."""
    if error.code in _NAMES:
        return str(error.code)
    if error.status in GOOGLE_STATUSES:
        return GOOGLE_STATUSES[error.status]
    return "INTERNAL" if error.status >= 500 else "FAILED_PRECONDITION"


class _Info(msgspec.Struct):
    """A ``google.rpc.ErrorInfo`` detail: the gateway's own error type, code and parameter."""

    reason: str
    metadata: dict[str, str]
    domain: str = "thruway"
    type: str = msgspec.field(default="type.googleapis.com/google.rpc.ErrorInfo", name="@type")


class _Error(msgspec.Struct):
    code: int
    message: str
    status: str
    details: list[_Info]


class _Envelope(msgspec.Struct):
    error: _Error


def error_body(error: GatewayError) -> bytes:
    """``{"error": {"code", "message", "status", "details"}}``, as Google's APIs answer."""
    metadata = {"type": error.type}
    if error.param:
        metadata["param"] = error.param
    reason = (error.code or error.type).upper()
    body = _Error(error.status, error.message, google_status(error), [_Info(reason, metadata)])
    return _encode(_Envelope(body))


def error_event(error: GatewayError) -> bytes:
    """The error as a stream event's JSON (no details: an SDK reads the code and message)."""
    body = ErrorBody(code=error.status, message=error.message, status=google_status(error))
    return _encode(ErrorEnvelope(error=body))


# --- answers -------------------------------------------------------------------------------


def usage_metadata(usage: Usage) -> UsageMetadata:
    """OpenAI's usage as Gemini's: the thinking tokens apart from the answer's."""
    c = usage.completion_tokens_details
    p = usage.prompt_tokens_details
    reasoning = (c.reasoning_tokens or 0) if c else 0
    return UsageMetadata(
        prompt_token_count=usage.prompt_tokens,
        candidates_token_count=max(usage.completion_tokens - reasoning, 0),
        thoughts_token_count=reasoning,
        cached_content_token_count=(p.cached_tokens or 0) if p else 0,
        total_token_count=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )


def _args(arguments: str) -> msgspec.Raw:
    """A tool call's arguments (JSON text) as ``functionCall.args`` (an object)."""
    try:
        one_line = msgspec.json.format(arguments.encode() or b"{}", indent=-1)
    except msgspec.DecodeError:
        one_line = b""
    if not one_line.startswith(b"{"):
        # Not an object: kept whole rather than lost.
        one_line = b'{"arguments":' + _encode(arguments) + b"}"
    return msgspec.Raw(one_line)


def signature_bytes(signature: str) -> str:
    """A provider's signature as ``thoughtSignature``, which Gemini types as bytes (base64):
    its text's bytes, so any signature travels and comes back as it was."""
    return base64.b64encode(signature.encode()).decode()


def signature_text(signature: str) -> str:
    """The signature :func:`signature_bytes` wrote (SDKs may send it back URL-safe, without
    padding); a value that is not one is returned as it is."""
    padded = signature.replace("-", "+").replace("_", "/")
    padded += "=" * (-len(padded) % 4)
    try:
        return base64.b64decode(padded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return signature


def _thought_parts(reasoning: str | None, blocks: list[ThinkingBlock]) -> list[Part]:
    signed = [b for b in blocks if isinstance(b.signature, str)]
    if signed:
        return [
            Part(
                text=b.thinking if isinstance(b.thinking, str) else "",
                thought=True,
                thought_signature=signature_bytes(b.signature),
            )
            for b in signed
            if isinstance(b.signature, str)
        ]
    return [Part(text=reasoning, thought=True)] if reasoning else []


def _parts(message: ChatMessage) -> list[Part]:
    reasoning = message.reasoning_content if isinstance(message.reasoning_content, str) else None
    blocks = message.thinking_blocks if isinstance(message.thinking_blocks, list) else []
    parts = _thought_parts(reasoning, blocks)
    text = message.content or message.refusal
    if text:
        parts.append(Part(text=text))
    for tc in message.tool_calls or ():
        call = FunctionCall(name=tc.function.name, args=_args(tc.function.arguments), id=tc.id)
        # Gemini's own signature of a call (Vertex AI's Gemini, translated) goes back on it.
        parts.append(Part(function_call=call, thought_signature=call_signature(tc.extra_content)))
    return parts


def from_completion(completion: ChatCompletion, *, model: str) -> GenerateContentResponse:
    """A whole chat completion as ``generateContent``'s answer, a candidate per choice."""
    candidates = [
        Candidate(
            content=Content(parts=_parts(c.message), role="model"),
            finish_reason=_FINISH.get(c.finish_reason or "stop", "OTHER"),
            index=c.index,
        )
        for c in completion.choices
    ]
    usage = completion.usage
    return GenerateContentResponse(
        candidates=candidates,
        usage_metadata=usage_metadata(usage) if usage is not UNSET else None,
        model_version=model,
        response_id=completion.id,
    )


class _Call:
    __slots__ = ("arguments", "id", "name", "signature")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments = ""
        self.signature: str | UnsetType = UNSET

    def part(self) -> Part:
        call = FunctionCall(name=self.name, args=_args(self.arguments), id=self.id or UNSET)
        return Part(function_call=call, thought_signature=self.signature)


class _Candidate:
    __slots__ = ("calls", "finish", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.calls: dict[int, _Call] = {}
        self.finish: str | None = None


class ChunkReader:
    """Chat chunks in, ``streamGenerateContent`` events out (pure; one per stream).

    Text and thoughts go out as they come; tool calls, whose arguments OpenAI-shaped streams
    send in pieces, go out whole (as Gemini sends them) with the candidate's finish reason, in
    the last event, which also carries the usage (held until the usage chunk or the end).
    """

    def __init__(self, *, model: str, response_id: str) -> None:
        self._model = model
        self._id = response_id
        self._candidates: dict[int, _Candidate] = {}
        self.usage: Usage | None = None

    def _event(self, candidates: list[Candidate], usage: Usage | None = None) -> bytes:
        return _encode(
            GenerateContentResponse(
                candidates=candidates,
                usage_metadata=usage_metadata(usage) if usage is not None else None,
                model_version=self._model,
                response_id=self._id,
            )
        )

    def feed(self, chunk: ChatCompletionChunk) -> list[bytes]:
        if isinstance(chunk.usage, Usage):
            self.usage = chunk.usage
        out: list[Candidate] = []
        for choice in chunk.choices:
            state = self._candidates.get(choice.index)
            if state is None:
                state = self._candidates[choice.index] = _Candidate(choice.index)
            delta = choice.delta
            parts: list[Part] = []
            if isinstance(delta.reasoning_content, str) and delta.reasoning_content:
                parts.append(Part(text=delta.reasoning_content, thought=True))
            for block in delta.thinking_blocks or ():
                if isinstance(block.signature, str):
                    signature = signature_bytes(block.signature)
                    parts.append(Part(text="", thought=True, thought_signature=signature))
            text = delta.content or delta.refusal
            if isinstance(text, str) and text:
                parts.append(Part(text=text))
            for tc in delta.tool_calls or ():
                call = state.calls.setdefault(tc.index, _Call())
                if isinstance(tc.id, str):
                    call.id = tc.id
                if tc.extra_content is not UNSET:
                    call.signature = call_signature(tc.extra_content)
                if tc.function is not UNSET:
                    if isinstance(tc.function.name, str):
                        call.name += tc.function.name
                    if isinstance(tc.function.arguments, str):
                        call.arguments += tc.function.arguments
            if choice.finish_reason:
                state.finish = choice.finish_reason
            if parts:
                out.append(Candidate(content=Content(parts=parts, role="model"), index=state.index))
        return [self._event(out)] if out else []

    def finish(self) -> list[bytes]:
        """The last event: each candidate's tool calls and finish reason, and the usage."""
        final = []
        for state in self._candidates.values():
            parts = [state.calls[i].part() for i in sorted(state.calls)]
            final.append(
                Candidate(
                    content=Content(parts=parts, role="model") if parts else None,
                    finish_reason=_FINISH.get(state.finish or "stop", "OTHER"),
                    index=state.index,
                )
            )
        if not final and self.usage is None:
            return []
        return [self._event(final, self.usage)]


# --- embeddings ----------------------------------------------------------------------------


def embed_answer(vectors: list[list[float]], usage: BilledUsage | None, *, single: bool) -> bytes:
    """``embedContent``'s answer (one ``embedding``) or ``batchEmbedContents``' (``embeddings``)."""
    got = [ContentEmbedding(values=v) for v in vectors]
    meta = EmbeddingUsage(prompt_token_count=usage.prompt_tokens) if usage else None
    if single:
        return _encode(EmbedResponse(embedding=got[0], usage_metadata=meta))
    return _encode(EmbedResponse(embeddings=got, usage_metadata=meta))
