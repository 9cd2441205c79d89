"""A fake of Amazon Bedrock Runtime (Converse, ConverseStream, CountTokens, InvokeModel) on
127.0.0.1.

It speaks Bedrock's wire format: REST-JSON bodies named as in botocore's service model, errors as
``{"message": ...}`` with the exception's name in ``x-amzn-ErrorType``, and ConverseStream as
``application/vnd.amazon.eventstream`` binary messages (prelude, typed headers, JSON payload with
Bedrock's ``p`` padding field, CRC-32s), encoded here by :func:`encode_message` and checked by
botocore's decoder in the tests.

Every request is authenticated as Bedrock does: a SigV4 signature is recomputed with botocore from
the known test credentials and the request as received (method, raw path, signed headers, body)
and compared; a wrong one gets Bedrock's 403 ``InvalidSignatureException`` (or
``UnrecognizedClientException`` for an unknown key). A bearer token must be one of ``api_keys``.
Converse bodies are validated against botocore's ``ConverseRequest`` shape, plus the conversation
rules Bedrock enforces (start with a user turn, alternate roles, declare tools when tool blocks
are present). CountTokens bodies are validated against botocore's ``CountTokensRequest``
(``input`` a union of ``converse`` and ``invokeModel``), a ``converse`` input by the same
conversation rules; it counts for Anthropic's models only, by their bare model id (others:
"The provided model doesn't support counting tokens."), ``inputTokens`` from
:func:`~tests.fakes.script.prompt_tokens` over the texts received.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import itertools
import json
import re
import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import botocore.session
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.validate import ParamValidator

from tests.fakes.base import Exchange, FakeServer, Handler
from tests.fakes.script import Turn, prompt_tokens, split

__all__ = [
    "ACCESS_KEY",
    "API_KEY",
    "REGION",
    "SECRET_KEY",
    "BedrockTurn",
    "FakeBedrock",
    "encode_message",
]

ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fake/Secret+Key/For/The/Bedrock/Fake00"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS1mYWtlLWtleQ=="
REGION = "us-east-1"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_CORAL = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_CORAL_AUTH = "http://internal.amazon.com/coral/com.amazon.coral.service/"
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_INVALID_TOKEN = "The security token included in the request is invalid."
_THROTTLED = "Too many requests, please wait before trying again."
_UNAVAILABLE = "Bedrock is unable to process your request."
_ERRORS = {
    "rate_limit": (429, "ThrottlingException", _THROTTLED),
    "overloaded": (503, "ServiceUnavailableException", _UNAVAILABLE),
    "server": (500, "InternalServerException", "The system encountered an unexpected error."),
    "auth": (403, "UnrecognizedClientException", _INVALID_TOKEN),
    "invalid": (400, "ValidationException", ""),
}
_STOP = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filtered",
}
_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")


@dataclass
class BedrockTurn(Turn):
    """A :class:`Turn` with what only Bedrock can say.

    ``stop_reason``: a native ``stopReason`` instead of the one ``finish`` implies;
    ``exception``: a ConverseStream exception (``throttlingException``...) sent as an exception
    message after ``exception_after`` events; ``redacted``: a redacted reasoning block (base64).
    """

    stop_reason: str | None = None
    exception: str | None = None
    exception_after: int = 1
    exception_message: str = "Too many tokens, please wait before trying again."
    exception_status: int | None = None  # modelStreamErrorException's originalStatusCode
    redacted: str | None = None


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC-32), string-typed
    headers (type 7), the payload, and the CRC-32 of everything before it."""
    encoded = b"".join(
        struct.pack(">B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(name: str, body: dict[str, Any], n: int) -> bytes:
    # Bedrock pads each event's JSON with a "p" field of varying length (hides sizes).
    payload = json.dumps({**body, "p": _PADDING[: 1 + n % len(_PADDING)]}).encode()
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, payload)


def _exception(name: str, body: dict[str, Any]) -> bytes:
    headers = {
        ":exception-type": name,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps(body).encode())


def _vector(text: str, size: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % 32] - 128) / 128 for i in range(size)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class FakeBedrock(FakeServer):
    """Bedrock Runtime. ``credentials``: access key -> (secret, session token or None);
    ``api_keys``: accepted Bedrock API keys; ``region``: what signatures must be scoped to."""

    def __init__(
        self,
        *,
        credentials: dict[str, tuple[str, str | None]] | None = None,
        api_keys: Iterable[str] = (API_KEY,),
        region: str = REGION,
    ) -> None:
        super().__init__()
        self.credentials = (
            credentials if credentials is not None else {ACCESS_KEY: (SECRET_KEY, None)}
        )
        self.api_keys = set(api_keys)
        self.region = region
        # Each request's path as it came on the wire (``Recorded.path`` is decoded).
        self.raw_paths: list[str] = []

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [
            ("POST", "/model/{model_id}/converse", self._converse),
            ("POST", "/model/{model_id}/converse-stream", self._converse_stream),
            ("POST", "/model/{model_id}/invoke", self._invoke),
            ("POST", "/model/{model_id}/count-tokens", self._count_tokens),
        ]

    # --- errors and authentication ----------------------------------------------------------

    @staticmethod
    def error(
        status: int, name: str, message: str, *, namespace: str = _CORAL, key: str = "message"
    ) -> web.Response:
        return FakeServer.json(
            {key: message},
            status=status,
            headers={"x-amzn-ErrorType": f"{name}:{namespace}", "x-amzn-RequestId": _rid()},
        )

    async def check_auth(self, ex: Exchange) -> web.StreamResponse | None:
        self.raw_paths.append(ex.request.raw_path)
        auth = ex.request.headers.get("Authorization")
        if auth is None:
            return self.error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        if auth.startswith("Bearer "):
            if auth[7:] in self.api_keys:
                return None
            # What Bedrock answers for an unknown API key (note the capital M).
            return FakeServer.json(
                {"Message": "Authentication failed: Please make sure your API Key is valid."},
                status=403,
                headers={"x-amzn-RequestId": _rid()},
            )
        return self._check_signature(ex)

    def _check_signature(self, ex: Exchange) -> web.Response | None:
        request = ex.request
        m = _SIGV4.match(request.headers["Authorization"])
        if m is None:
            return self._auth_error(
                "IncompleteSignatureException", "Authorization header is malformed."
            )
        if m["key"] not in self.credentials:
            return self._auth_error(
                "UnrecognizedClientException",
                _INVALID_TOKEN,
            )
        secret, token = self.credentials[m["key"]]
        if token is not None and request.headers.get("X-Amz-Security-Token") != token:
            return self._auth_error(
                "UnrecognizedClientException",
                _INVALID_TOKEN,
            )
        if m["service"] != "bedrock":
            return self._auth_error(
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'bedrock'. ",
            )
        if m["region"] != self.region:
            return self._auth_error(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{m['region']}'. ",
            )
        stamp = request.headers.get("X-Amz-Date", "")
        expired = _expired(stamp)
        if expired:
            return self._auth_error("InvalidSignatureException", expired)
        names = m["signed"].split(";")
        if "host" not in names or "x-amz-date" not in names:
            return self._auth_error(
                "IncompleteSignatureException", "Host and X-Amz-Date must be signed."
            )
        signed = {n: request.headers.get(n, "") for n in names}
        url = f"http://{request.headers['Host']}{request.raw_path}"
        aws = AWSRequest(method=request.method, url=url, data=ex.rec.body, headers=signed)
        aws.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(m["key"], secret, token), m["service"], m["region"])
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        if not hmac.compare_digest(expected, m["signature"]):
            return self._auth_error("InvalidSignatureException", _BAD_SIGNATURE)
        return None

    def _auth_error(self, name: str, message: str) -> web.Response:
        return self.error(403, name, message, namespace=_CORAL_AUTH)

    def _scripted_error(self, turn: Turn) -> web.Response | None:
        if turn.error is None:
            return None
        status, name, message = _ERRORS[turn.error]
        if turn.error == "invalid":
            where = turn.error_param or "messages"
            message = (
                f"1 validation error detected: Value at '{where}' failed to satisfy "
                f"constraint: {turn.error_message}"
            )
        elif turn.error_message != "scripted failure":
            message = turn.error_message
        return self.error(status, name, message)

    # --- Converse ---------------------------------------------------------------------------

    def _check_converse(self, ex: Exchange) -> web.Response | None:
        body = ex.rec.json
        if not isinstance(body, dict):
            return self.error(400, "SerializationException", "Unable to parse the request body.")
        shape = _MODEL.operation_model("Converse").input_shape
        report = ParamValidator().validate({**body, "modelId": ex.rec.match["model_id"]}, shape)
        if report.has_errors():
            return self.error(400, "ValidationException", report.generate_report())
        return _conversation_rules(body)

    async def _converse(self, ex: Exchange) -> web.StreamResponse:
        failed = self._scripted_error(ex.turn) or self._check_converse(ex)
        if failed is not None:
            return failed
        turn = ex.turn
        content = _content(turn, ex.rec.json)
        doc = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _stop_reason(turn, content),
            "usage": _usage(turn),
            "metrics": {"latencyMs": 321},
        }
        return self.json(doc, headers={"x-amzn-RequestId": _rid()})

    async def _converse_stream(self, ex: Exchange) -> web.StreamResponse:
        failed = self._scripted_error(ex.turn) or self._check_converse(ex)
        if failed is not None:
            return failed
        frames = _stream_frames(ex.turn, ex.rec.json)
        return await self.stream(
            ex, frames, content_type=EVENT_STREAM, headers={"x-amzn-RequestId": _rid()}
        )

    # --- CountTokens -------------------------------------------------------------------------

    async def _count_tokens(self, ex: Exchange) -> web.StreamResponse:
        failed = self._scripted_error(ex.turn)
        if failed is not None:
            return failed
        body, model = ex.rec.json, ex.rec.match["model_id"]
        if not isinstance(body, dict):
            return self.error(400, "SerializationException", "Unable to parse the request body.")
        shape = _MODEL.operation_model("CountTokens").input_shape
        report = ParamValidator().validate({**body, "modelId": model}, shape)
        if report.has_errors():
            return self.error(400, "ValidationException", report.generate_report())
        if not model.startswith("anthropic."):
            message = "The provided model doesn't support counting tokens."
            return self.error(400, "ValidationException", message)
        converse = body["input"].get("converse")
        if converse is None:
            tokens = prompt_tokens([body["input"]["invokeModel"]["body"]], messages=0)
            return self.json({"inputTokens": tokens}, headers={"x-amzn-RequestId": _rid()})
        failed = _conversation_rules(converse)
        if failed is not None:
            return failed
        return self.json({"inputTokens": _count(converse)}, headers={"x-amzn-RequestId": _rid()})

    # --- InvokeModel (embeddings) -------------------------------------------------------------

    async def _invoke(self, ex: Exchange) -> web.StreamResponse:
        failed = self._scripted_error(ex.turn)
        if failed is not None:
            return failed
        model = ex.rec.match["model_id"]
        body = ex.rec.json
        if not isinstance(body, dict):
            return self.error(
                400,
                "ValidationException",
                "Malformed input request, please reformat your input and try again.",
            )
        if "titan-embed" in model:
            answer, tokens = _titan(model, body)
        elif "cohere.embed" in model:
            answer, tokens = _cohere(body)
        else:
            return self.error(
                400, "ValidationException", "The provided model identifier is invalid."
            )
        if isinstance(answer, str):
            return self.error(400, "ValidationException", answer)
        headers = {
            "x-amzn-RequestId": _rid(),
            "X-Amzn-Bedrock-Invocation-Latency": "42",
            "X-Amzn-Bedrock-Input-Token-Count": str(tokens),
        }
        return self.json(answer, headers=headers)


def _rid() -> str:
    return str(uuid.uuid4())


def _expired(stamp: str) -> str | None:
    """Bedrock refuses a signature more than five minutes away from its clock."""
    try:
        when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return "X-Amz-Date is missing or malformed."
    now = datetime.datetime.now(datetime.UTC)
    if abs((now - when).total_seconds()) > 300:
        return f"Signature expired: {stamp} is now earlier than the allowed window."
    return None


_NOT_USER_FIRST = (
    "A conversation must start with a user message. Try again with a conversation that starts "
    "with a user message."
)
_NOT_ALTERNATING = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation "
    "alternates between user and assistant roles and try again."
)
_NO_TOOL_CONFIG = (
    "The toolConfig field must be defined when using toolUse and toolResult content blocks."
)
_BLANK_TEXT = (
    "The text field in the ContentBlock object is blank. Add text to the text field, and try again."
)


def _conversation_rules(body: dict[str, Any]) -> web.Response | None:
    messages = body.get("messages") or []
    blocks = [block for m in messages for block in m["content"]]
    problem = None
    if messages and messages[0]["role"] != "user":
        problem = _NOT_USER_FIRST
    elif any(a["role"] == b["role"] for a, b in itertools.pairwise(messages)):
        problem = _NOT_ALTERNATING
    elif any("toolUse" in b or "toolResult" in b for b in blocks) and "toolConfig" not in body:
        problem = _NO_TOOL_CONFIG
    elif any("text" in b and not b["text"].strip() for b in blocks):
        problem = _BLANK_TEXT
    if problem is None:
        return None
    return FakeBedrock.error(400, "ValidationException", problem)


def _count(converse: dict[str, Any]) -> int:
    """The count for a ``converse`` input: its texts (system, messages, tool results)."""
    messages = converse.get("messages") or []
    texts = [b["text"] for b in converse.get("system") or [] if "text" in b]
    for block in (b for m in messages for b in m["content"]):
        if "text" in block:
            texts.append(block["text"])
        for part in block.get("toolResult", {}).get("content", []):
            texts += [part["text"]] if "text" in part else []
    tools = len((converse.get("toolConfig") or {}).get("tools") or [])
    return prompt_tokens(texts, messages=len(messages), tools=tools)


def _forced_tool(body: Any) -> str | None:
    """The tool a request forces (``toolChoice.tool``, or ``any`` with one tool), if any."""
    config = body.get("toolConfig") if isinstance(body, dict) else None
    if not config:
        return None
    choice = config.get("toolChoice") or {}
    if "tool" in choice:
        return str(choice["tool"]["name"])
    if "any" in choice and len(config["tools"]) == 1:
        return str(config["tools"][0]["toolSpec"]["name"])
    return None


def _answer_calls(turn: Turn, body: Any) -> list[tuple[str, str, str]]:
    """(id, name, arguments JSON) of the tool calls; a forced tool gets the text as its input,
    as a model obliged to call it would answer."""
    calls = [(c.id, c.name, c.arguments) for c in turn.tool_calls]
    forced = _forced_tool(body)
    if forced and not calls:
        try:
            value = json.loads(turn.text)
        except ValueError:
            value = {"text": turn.text}
        calls = [("tooluse_forced0001", forced, json.dumps(value))]
    return calls


def _content(turn: Turn, body: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.reasoning is not None:
        text = {"text": turn.reasoning, "signature": turn.reasoning_signature}
        blocks.append({"reasoningContent": {"reasoningText": text}})
    redacted = getattr(turn, "redacted", None)
    if redacted:
        blocks.append({"reasoningContent": {"redactedContent": redacted}})
    calls = _answer_calls(turn, body)
    if turn.text and not (calls and _forced_tool(body)):
        blocks.append({"text": turn.text})
    for call_id, name, arguments in calls:
        blocks.append(
            {"toolUse": {"toolUseId": call_id, "name": name, "input": json.loads(arguments)}}
        )
    return blocks


def _stop_reason(turn: Turn, content: list[dict[str, Any]]) -> str:
    native = getattr(turn, "stop_reason", None)
    if native:
        return str(native)
    if turn.finish is None and any("toolUse" in b for b in content):
        return "tool_use"
    return _STOP[turn.finish_reason]


def _usage(turn: Turn) -> dict[str, int]:
    """Bedrock's ``inputTokens`` leave out cache reads and writes (``Turn.prompt_tokens`` has
    them, as OpenAI's prompt tokens do)."""
    usage = {
        "inputTokens": turn.prompt_tokens - turn.cached_tokens - turn.cache_creation_tokens,
        "outputTokens": turn.completion_tokens,
        "totalTokens": turn.prompt_tokens + turn.completion_tokens,
    }
    if turn.cached_tokens:
        usage["cacheReadInputTokens"] = turn.cached_tokens
    if turn.cache_creation_tokens:
        usage["cacheWriteInputTokens"] = turn.cache_creation_tokens
    return usage


def _stream_events(turn: Turn, body: Any) -> list[tuple[str, dict[str, Any]]]:
    """ConverseStream's events for ``turn``, in Bedrock's order."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    index = 0

    def block(deltas: list[dict[str, Any]], start: dict[str, Any] | None = None) -> None:
        nonlocal index
        if start is not None:
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for delta in deltas:
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1

    if turn.reasoning is not None:
        pieces = [{"reasoningContent": {"text": p}} for p in split(turn.reasoning, turn.pieces)]
        block([*pieces, {"reasoningContent": {"signature": turn.reasoning_signature}}])
    redacted = getattr(turn, "redacted", None)
    if redacted:
        block([{"reasoningContent": {"redactedContent": redacted}}])
    calls = _answer_calls(turn, body)
    if turn.text and not (calls and _forced_tool(body)):
        block([{"text": p} for p in split(turn.text, turn.pieces)])
    for call_id, name, arguments in calls:
        pieces = [{"toolUse": {"input": p}} for p in split(arguments, turn.arg_pieces)]
        block(pieces, {"toolUse": {"toolUseId": call_id, "name": name}})
    content = [{"toolUse": {}}] if calls else []
    events.append(("messageStop", {"stopReason": _stop_reason(turn, content)}))
    events.append(("metadata", {"usage": _usage(turn), "metrics": {"latencyMs": 321}}))
    return events


def _stream_frames(turn: Turn, body: Any) -> list[bytes]:
    frames = [_event(name, doc, n) for n, (name, doc) in enumerate(_stream_events(turn, body))]
    exception = getattr(turn, "exception", None)
    if exception:
        error: dict[str, Any] = {"message": getattr(turn, "exception_message", "")}
        status = getattr(turn, "exception_status", None)
        if status is not None:
            error["originalStatusCode"] = status
        after = getattr(turn, "exception_after", 1)
        frames = [*frames[:after], _exception(exception, error)]
    return frames


_TITAN_KEYS = {"inputText", "dimensions", "normalize", "embeddingTypes", "embeddingConfig"}
_COHERE_KEYS = {"texts", "input_type", "truncate", "embedding_types", "output_dimension", "images"}


def _malformed(detail: str) -> str:
    return f"Malformed input request: {detail}, please reformat your input and try again."


def _titan(model: str, body: dict[str, Any]) -> tuple[dict[str, Any] | str, int]:
    extra = set(body) - _TITAN_KEYS
    if extra:
        return _malformed(f"#: extraneous key [{sorted(extra)[0]}] is not permitted"), 0
    text = body.get("inputText")
    if not isinstance(text, str):
        return _malformed("#: required key [inputText] not found"), 0
    size = body.get("dimensions") or (body.get("embeddingConfig") or {}).get(
        "outputEmbeddingLength"
    )
    vector = _vector(text, size or (1024 if "v2" in model else 1536))
    tokens = _tokens(text)
    return {
        "embedding": vector,
        "embeddingsByType": {"float": vector},
        "inputTextTokenCount": tokens,
    }, tokens


def _cohere(body: dict[str, Any]) -> tuple[dict[str, Any] | str, int]:
    extra = set(body) - _COHERE_KEYS
    if extra:
        return _malformed(f"#: extraneous key [{sorted(extra)[0]}] is not permitted"), 0
    texts = body.get("texts")
    if "input_type" not in body:
        return _malformed("#: required key [input_type] not found"), 0
    if not isinstance(texts, list) or len(texts) > 96:
        found = len(texts) if isinstance(texts, list) else 0
        return _malformed(f"#/texts: expected maximum item count: 96, found: {found}"), 0
    size = body.get("output_dimension") or 1024
    vectors = [_vector(t, size) for t in texts]
    answer: dict[str, Any] = {"id": _rid(), "texts": texts}
    if body.get("embedding_types"):
        answer |= {"embeddings": {"float": vectors}, "response_type": "embeddings_by_type"}
    else:
        answer |= {"embeddings": vectors, "response_type": "embeddings_floats"}
    return answer, sum(_tokens(t) for t in texts)
