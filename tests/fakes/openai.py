"""A scriptable fake of the OpenAI HTTP API, for tests that need a real upstream on a socket.

The fake listens on 127.0.0.1 on a random port and answers in OpenAI's wire format: the same
status codes, headers, JSON bodies and server-sent-event bytes, so the official `openai` SDK
(and anything that proxies to OpenAI) can parse everything it sends. It records every request
and consumes one scripted `Behavior` per request, which can make it fail, stall, or cut a
stream in the middle. The Responses API's answers are rendered in `openai_responses`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import string
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import openai_responses as responses

__all__ = ["Behavior", "FakeOpenAI", "Recorded", "fake_openai"]

FINGERPRINT = "fp_fake0c0ffee"
MODEL_CREATED = 1_715_367_049
_KEYS_URL = "https://platform.openai.com/account/api-keys"
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using"
    " your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was"
    " not valid JSON. If you have trouble figuring out how to fix this, please contact us through"
    " our help center at help.openai.com.)"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header"
    " using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with"
    " blank username) if you're accessing the API from your browser and are prompted for a"
    f" username. You can obtain an API key from {_KEYS_URL}."
)
_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_AUDIO_MAGIC = {"mp3": b"ID3\x04\x00", "opus": b"OggS", "aac": b"\xff\xf1", "flac": b"fLaC"}
_ALNUM = string.ascii_letters + string.digits


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@dataclass
class Behavior:
    """How the fake answers one request; the defaults give a plain successful answer.

    `gap_s`, `cut_after` and `stall_after_headers_s` apply to streamed answers (SSE and speech).
    """

    status: int = 200  # >= 400: OpenAI's error body for that status
    error_body: bytes | None = None  # with status >= 400: this body, verbatim
    headers: dict[str, str] = field(default_factory=dict)  # extra or overriding headers
    delay_s: float = 0  # sleep before the response headers
    content: str = "Hello from the fake!"
    deltas: list[str] | None = None  # exact streamed pieces of `content` (default ~3 chars)
    tool_calls: list[dict[str, str]] | None = None  # [{"id", "name", "arguments"}]
    usage: tuple[int, int] = (12, 5)  # prompt (input) and completion (output) tokens
    cached_tokens: int = 0  # of the prompt tokens, read from the provider's prompt cache
    reasoning_tokens: int = 0  # of the completion tokens
    gap_s: float = 0  # sleep between streamed events
    cut_after: int | None = None  # abort the connection after this many events
    stall_after_headers_s: float = 0  # sleep between the headers and the first event
    finish_reason: str | None = None  # default "stop", or "tool_calls" with tool calls
    # Responses streams: (n, code, message) ends the stream with an `error` event after n events.
    stream_error: tuple[int, str, str] | None = None


class _ApiError(Exception):
    """An error the fake answers in OpenAI's `{"error": {...}}` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": type_, "param": param, "code": code}


@dataclass
class _Call:
    request: web.Request
    rec: Recorded
    behavior: Behavior
    started: float = field(default_factory=time.monotonic)
    request_id: str = field(default_factory=lambda: "req_" + secrets.token_hex(16))
    response: web.StreamResponse | None = None
    cut: bool = False


_Handler = Callable[[_Call], Awaitable[web.StreamResponse]]


class FakeOpenAI:
    """An OpenAI-compatible HTTP server on 127.0.0.1, scripted with `enqueue(Behavior(...))`."""

    def __init__(self, api_key: str | None = "sk-fake-upstream") -> None:
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.models: list[str] = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        # A recorded Responses stream to send verbatim (one write per event) instead of one
        # rendered from the script.
        self.replay: bytes | None = None
        self._queue: deque[Behavior] = deque()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing = False
        self._routes: dict[tuple[str, str], _Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completion,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/audio/speech"): self._speech,
            ("POST", "/v1/audio/transcriptions"): self._transcription,
            ("POST", "/v1/audio/translations"): self._transcription,
            ("GET", "/v1/models"): self._model_list,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/responses/input_tokens"): self._input_tokens,
        }

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def enqueue(self, *behaviors: Behavior) -> None:
        """Script the next requests, first in first out; then `Behavior()` applies again."""
        self._queue.extend(behaviors)

    async def start(self) -> FakeOpenAI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        rec = _record(request, await request.read())
        self.requests.append(rec)
        call = _Call(request, rec, self._queue.popleft() if self._queue else Behavior())
        try:
            if call.behavior.delay_s > 0:
                await asyncio.sleep(call.behavior.delay_s)
            try:
                return await self._route(call)
            except _ApiError as err:
                return self._error(call, err)
        except asyncio.CancelledError:
            self._note_disconnect(call)
            raise
        except ConnectionResetError:
            self._note_disconnect(call)
            return call.response or web.Response()

    def _note_disconnect(self, call: _Call) -> None:
        if not (call.cut or self._closing):
            self.disconnects += 1
            self.disconnected.set()

    async def _route(self, call: _Call) -> web.StreamResponse:
        method, path = call.request.method, call.request.path
        if self.api_key is not None:
            auth = call.request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                raise _ApiError(401, _NO_KEY)
            if auth[7:].strip() != self.api_key:
                raise _invalid_key(auth[7:].strip())
        if call.behavior.status >= 400:
            return self._scripted_error(call)
        handler = self._routes.get((method, path))
        if handler is None and method == "GET" and path.startswith("/v1/models/"):
            handler = self._model
        if handler is None:
            raise _ApiError(404, f"Invalid URL ({method} {path})")
        return await handler(call)

    def _headers(
        self, call: _Call, content_type: str, extra: dict[str, str] | None = None
    ) -> CIMultiDict[str]:
        headers = CIMultiDict(
            {
                "Content-Type": content_type,
                "openai-organization": "user-fake",
                "openai-processing-ms": str(int((time.monotonic() - call.started) * 1000)),
                "openai-version": "2020-10-01",
                "x-ratelimit-limit-requests": "10000",
                "x-ratelimit-limit-tokens": "30000000",
                "x-ratelimit-remaining-requests": "9999",
                "x-ratelimit-remaining-tokens": "29999990",
                "x-ratelimit-reset-requests": "6ms",
                "x-ratelimit-reset-tokens": "0s",
                "x-request-id": call.request_id,
            }
        )
        headers.update(extra or {})
        headers.update(call.behavior.headers)
        return headers

    def _json(
        self, call: _Call, payload: Any, status: int = 200, extra: dict[str, str] | None = None
    ) -> web.Response:
        body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        headers = self._headers(call, "application/json", extra)
        return web.Response(body=body, status=status, headers=headers)

    def _text(self, call: _Call, text: str) -> web.Response:
        headers = self._headers(call, "text/plain; charset=utf-8")
        return web.Response(body=text.encode(), headers=headers)

    def _error(
        self, call: _Call, err: _ApiError, extra: dict[str, str] | None = None
    ) -> web.Response:
        return self._json(call, {"error": err.error}, err.status, extra)

    def _scripted_error(self, call: _Call) -> web.Response:
        status, model = call.behavior.status, _model_of(call.rec)
        extra: dict[str, str] = {}
        if status == 429:
            extra = {
                "retry-after": "1",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s",
            }
        if call.behavior.error_body is not None:
            return self._json(call, call.behavior.error_body, status, extra)
        bearer = call.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return self._error(call, _canned_error(status, model, bearer or self.api_key or ""), extra)

    async def _stream(
        self, call: _Call, content_type: str, chunks: Sequence[bytes]
    ) -> web.StreamResponse:
        """Send `chunks` one write each, honouring the stall, gap and cut settings."""
        behavior = call.behavior
        resp = call.response = web.StreamResponse(headers=self._headers(call, content_type))
        await resp.prepare(call.request)
        if behavior.stall_after_headers_s > 0:
            await asyncio.sleep(behavior.stall_after_headers_s)
        for sent, chunk in enumerate(chunks):
            if sent and behavior.gap_s > 0:
                await asyncio.sleep(behavior.gap_s)
            if behavior.cut_after is not None and sent >= behavior.cut_after:
                await self._abort(call)
                return resp
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def _sse(self, call: _Call, events: Sequence[dict[str, Any]]) -> web.StreamResponse:
        chunks = [b"data: " + msgspec.json.encode(event) + b"\n\n" for event in events]
        chunks.append(b"data: [DONE]\n\n")
        return await self._stream(call, "text/event-stream; charset=utf-8", chunks)

    async def _typed_sse(self, call: _Call, events: Sequence[dict[str, Any]]) -> web.StreamResponse:
        """The Responses API's stream: `event: <type>` and `data: <json>` lines, no `[DONE]`."""
        chunks = [
            b"event: %s\ndata: %s\n\n" % (event["type"].encode(), msgspec.json.encode(event))
            for event in events
        ]
        if self.replay is not None:
            chunks = [event + b"\n\n" for event in self.replay.split(b"\n\n") if event.strip()]
        return await self._stream(call, "text/event-stream; charset=utf-8", chunks)

    @staticmethod
    async def _abort(call: _Call) -> None:
        """Let what was written reach the socket, then drop the connection without a last chunk."""
        transport = call.request.transport
        if transport is None:
            return
        for _ in range(100):
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.01)
        call.cut = True
        transport.abort()

    # -- endpoints --------------------------------------------------------------------------

    async def _chat(self, call: _Call) -> web.StreamResponse:
        body, b = _json_body(call.rec, "messages"), call.behavior
        model, choices_n = str(body["model"]), int(body.get("n") or 1)
        calls = _tool_calls(b)
        finish = b.finish_reason or ("tool_calls" if calls else "stop")
        head = {"id": "chatcmpl-" + _random(29), "object": "chat.completion", "created": _now()}
        head["model"] = model
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if calls else b.content}
            message |= {"refusal": None, "annotations": []}
            if calls:
                message["tool_calls"] = calls
            choices = [
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                for i in range(choices_n)
            ]
            tail = {"usage": _usage(b), "service_tier": "default"}
            return self._json(call, head | {"choices": choices} | tail | _fingerprint())

        head |= {"object": "chat.completion.chunk", "service_tier": "default"} | _fingerprint()
        include_usage = _include_usage(body)
        usage_null = {"usage": None} if include_usage else {}

        def chunk(index: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
            return head | {"choices": [choice]} | usage_null

        events: list[dict[str, Any]] = []
        for i in range(choices_n):
            if calls:  # OpenAI opens a tool-only answer with the role and the first call together
                first = {"role": "assistant", "content": None, "tool_calls": [_call_head(calls, 0)]}
                events.append(chunk(i, first | {"refusal": None}))
            else:
                events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
                events += [chunk(i, {"content": piece}) for piece in _deltas(b)]
            for index, tool_call in enumerate(calls):
                if index:
                    events.append(chunk(i, {"tool_calls": [_call_head(calls, index)]}))
                for piece in _split(tool_call["function"]["arguments"], 5):
                    fragment = {"index": index, "function": {"arguments": piece}}
                    events.append(chunk(i, {"tool_calls": [fragment]}))
            events.append(chunk(i, {}, finish))
        if include_usage:
            events.append(head | {"choices": [], "usage": _usage(b)})
        return await self._sse(call, events)

    async def _completion(self, call: _Call) -> web.StreamResponse:
        body, b = _json_body(call.rec, "prompt"), call.behavior
        finish, choices_n = b.finish_reason or "stop", int(body.get("n") or 1)
        head = {"id": "cmpl-" + _random(29), "object": "text_completion", "created": _now()}
        head |= {"model": str(body["model"])} | _fingerprint()
        if not body.get("stream"):
            choices = [
                {"text": b.content, "index": i, "logprobs": None, "finish_reason": finish}
                for i in range(choices_n)
            ]
            return self._json(call, head | {"choices": choices, "usage": _usage(b, details=False)})

        include_usage = _include_usage(body)
        usage_null = {"usage": None} if include_usage else {}

        def chunk(index: int, text: str, reason: str | None = None) -> dict[str, Any]:
            choice = {"text": text, "index": index, "logprobs": None, "finish_reason": reason}
            return head | {"choices": [choice]} | usage_null

        events = [chunk(i, piece) for i in range(choices_n) for piece in _deltas(b)]
        events += [chunk(i, "", finish) for i in range(choices_n)]
        if include_usage:
            events.append(head | {"choices": [], "usage": _usage(b, details=False)})
        return await self._sse(call, events)

    async def _embeddings(self, call: _Call) -> web.StreamResponse:
        body = _json_body(call.rec, "input")
        raw = body["input"]
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            raw = [raw]  # one string, or one array of token ids
        if not isinstance(raw, list) or not raw:
            message = "Invalid 'input': empty array. Expected an array with minimum length 1."
            raise _ApiError(400, message, param="input", code="empty_array")
        dims = int(body.get("dimensions") or 8)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(raw):
            vector = _vector(item if isinstance(item, str) else repr(item), dims)
            packed = struct.pack(f"<{dims}f", *vector)
            embedding: Any = base64.b64encode(packed).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = call.behavior.usage[0]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        payload = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        return self._json(call, payload)

    async def _speech(self, call: _Call) -> web.StreamResponse:
        body = _json_body(call.rec, "input", "voice")
        fmt = str(body.get("response_format") or "mp3")
        if fmt not in _AUDIO_TYPES:
            raise _invalid_value("response_format", fmt)
        audio = _fake_audio(fmt, str(body["input"]))
        chunks = [audio[i : i + 1024] for i in range(0, len(audio), 1024)]
        return await self._stream(call, _AUDIO_TYPES[fmt], chunks)

    async def _transcription(self, call: _Call) -> web.StreamResponse:
        form, b = call.rec.form, call.behavior
        if "file" not in call.rec.files:
            raise _missing("file")
        if not form.get("model"):
            raise _ApiError(400, "you must provide a model parameter")
        fmt = form.get("response_format") or "json"
        text, (audio_tokens, text_tokens) = b.content, b.usage
        if fmt == "json":
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": text_tokens,
                "total_tokens": audio_tokens + text_tokens,
            }
            return self._json(call, {"text": text, "usage": usage})
        if fmt == "verbose_json":
            translate = call.request.path.endswith("/translations")
            segment: dict[str, Any] = {"id": 0, "seek": 0, "start": 0.0, "end": 2.5, "text": text}
            segment |= {"tokens": [50364, 2425, 50489], "temperature": 0.0}
            segment |= {"avg_logprob": -0.25, "compression_ratio": 1.0, "no_speech_prob": 0.01}
            payload: dict[str, Any] = {"task": "translate" if translate else "transcribe"}
            payload |= {"language": "english" if translate else _language(form.get("language"))}
            payload |= {"duration": 2.5, "text": text, "segments": [segment]}
            return self._json(call, payload | {"usage": {"type": "duration", "seconds": 3}})
        if fmt == "text":
            return self._text(call, text)
        if fmt == "srt":
            return self._text(call, f"1\n00:00:00,000 --> 00:00:02,500\n{text}\n\n")
        if fmt == "vtt":
            return self._text(call, f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{text}\n\n")
        raise _invalid_value("response_format", fmt)

    async def _responses(self, call: _Call) -> web.StreamResponse:
        body = _responses_body(call.rec)
        if body.get("input") is None and body.get("prompt") is None:
            raise _missing("input")
        options = body.get("stream_options")
        for name in options if isinstance(options, dict) else ():
            if name not in responses.STREAM_OPTIONS:
                raise _unknown(f"stream_options.{name}")
        if not body.get("stream"):
            return self._json(call, responses.response_object(body, call.behavior))
        events = responses.response_events(body, call.behavior, _deltas(call.behavior))
        return await self._typed_sse(call, events)

    async def _input_tokens(self, call: _Call) -> web.StreamResponse:
        body = _responses_body(call.rec)
        for name in body:
            if name not in responses.COUNT_FIELDS:
                raise _unknown(name)
        count = responses.estimate_tokens(body)
        return self._json(call, {"object": "response.input_tokens", "input_tokens": count})

    async def _model_list(self, call: _Call) -> web.StreamResponse:
        return self._json(call, {"object": "list", "data": [_model_obj(m) for m in self.models]})

    async def _model(self, call: _Call) -> web.StreamResponse:
        model = call.request.path.removeprefix("/v1/models/")
        if model not in self.models:
            raise _canned_error(404, model, "")
        return self._json(call, _model_obj(model))


# -- helpers --------------------------------------------------------------------------------


def _record(request: web.Request, body: bytes) -> Recorded:
    rec = Recorded(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
    )
    if request.content_type == "multipart/form-data":
        rec.form, rec.files = _parse_multipart(request.headers.get("Content-Type", ""), body)
    elif body:
        try:
            rec.json = msgspec.json.decode(body)
        except msgspec.DecodeError:
            rec.json = None
    return rec


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Split a multipart/form-data body exactly, keeping file contents byte for byte."""
    outer = Message()
    outer["Content-Type"] = content_type
    boundary = outer.get_param("boundary")
    form: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not isinstance(boundary, str):
        return form, files
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip()] = value.strip()
        name = headers.get_param("name", header="content-disposition")
        if name is None:
            continue
        name = collapse_rfc2231_value(name)
        filename = headers.get_filename()
        if filename is None:
            form[name] = content.decode("utf-8", "replace")
        else:
            files[name] = (filename, content)
    return form, files


def _json_body(rec: Recorded, *required: str) -> dict[str, Any]:
    if not isinstance(rec.json, dict):
        raise _ApiError(400, _BAD_JSON)
    if not rec.json.get("model"):
        raise _ApiError(400, "you must provide a model parameter")
    for name in required:
        if rec.json.get(name) is None:
            raise _missing(name)
    return rec.json


def _responses_body(rec: Recorded) -> dict[str, Any]:
    if not isinstance(rec.json, dict):
        raise _ApiError(400, _BAD_JSON)
    if not rec.json.get("model"):
        raise _missing("model")
    return rec.json


def _unknown(name: str) -> _ApiError:
    message = f"Unknown parameter: '{name}'."
    return _ApiError(400, message, param=name, code="unknown_parameter")


def _missing(name: str) -> _ApiError:
    message = f"Missing required parameter: '{name}'."
    return _ApiError(400, message, param=name, code="missing_required_parameter")


def _invalid_value(name: str, value: str) -> _ApiError:
    return _ApiError(400, f"Invalid value: '{value}'.", param=name, code="invalid_value")


def _model_of(rec: Recorded) -> str:
    if isinstance(rec.json, dict) and rec.json.get("model"):
        return str(rec.json["model"])
    return rec.form.get("model", "gpt-4o-mini")


def _mask(key: str) -> str:
    return f"{key[:5]}***{key[-4:]}" if len(key) > 9 else "***"


def _invalid_key(key: str) -> _ApiError:
    message = f"Incorrect API key provided: {_mask(key)}. You can find your API key at {_KEYS_URL}."
    return _ApiError(401, message, code="invalid_api_key")


def _canned_error(status: int, model: str, key: str) -> _ApiError:
    """The error OpenAI typically answers with `status`."""
    if status == 400:
        message = (
            "This model's maximum context length is 128000 tokens. However, your messages resulted"
            " in 130000 tokens. Please reduce the length of the messages."
        )
        return _ApiError(400, message, param="messages", code="context_length_exceeded")
    if status == 401:
        return _invalid_key(key)
    if status in (403, 404):
        message = f"The model `{model}` does not exist or you do not have access to it."
        return _ApiError(status, message, code="model_not_found")
    if status == 429:
        message = (
            f"Rate limit reached for {model} in organization org-fake on requests per min (RPM):"
            " Limit 3, Used 3, Requested 1. Please try again in 1s. Visit"
            " https://platform.openai.com/account/rate-limits to learn more."
        )
        return _ApiError(429, message, type_="requests", code="rate_limit_exceeded")
    if status == 500:
        message = "The server had an error while processing your request. Sorry about that!"
        return _ApiError(500, message, type_="server_error")
    if status == 503:
        message = "The engine is currently overloaded, please try again later"
        return _ApiError(503, message, type_="server_error")
    if status == 502:  # Cloudflare, in front of OpenAI
        return _ApiError(502, "Bad gateway.", type_="cf_bad_gateway", code=502)
    if status == 504:
        return _ApiError(504, "Gateway timeout.", type_="cf_gateway_timeout", code=504)
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return _ApiError(status, f"The fake upstream was scripted to fail with {status}.", kind)


def _usage(b: Behavior, *, details: bool = True) -> dict[str, Any]:
    prompt, completion = b.usage
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": b.cached_tokens, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": b.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def _tool_calls(b: Behavior) -> list[dict[str, Any]]:
    return [
        {
            "id": tc.get("id") or "call_" + _random(24),
            "type": "function",
            "function": {"name": tc["name"], "arguments": tc.get("arguments", "{}")},
        }
        for tc in b.tool_calls or []
    ]


def _call_head(calls: list[dict[str, Any]], index: int) -> dict[str, Any]:
    """The first streamed delta of a tool call: its id and name, with empty arguments."""
    tool_call = calls[index]
    function = {"name": tool_call["function"]["name"], "arguments": ""}
    return {"index": index, "id": tool_call["id"], "type": "function", "function": function}


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _deltas(b: Behavior) -> list[str]:
    return list(b.deltas) if b.deltas is not None else _split(b.content, 3)


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _noise(seed: str, size: int) -> bytes:
    out, block = bytearray(), seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def _vector(text: str, dims: int) -> list[float]:
    """Deterministic values in [-1, 1], exactly representable as float32."""
    values = [(byte - 127.5) / 127.5 for byte in _noise(text, dims)]
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *values)))


def _fake_audio(fmt: str, text: str, size: int = 4096) -> bytes:
    if fmt == "wav":
        header = b"RIFF" + struct.pack("<I", size - 8) + b"WAVEfmt "
        header += struct.pack("<IHHIIHH", 16, 1, 1, 24000, 48000, 2, 16)
        header += b"data" + struct.pack("<I", size - 44)
    else:
        header = _AUDIO_MAGIC.get(fmt, b"")
    return header + _noise(text, size - len(header))


def _language(code: str | None) -> str:
    names = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "ja": "japanese"}
    return names.get(code or "en", code or "english")


def _model_obj(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}


def _fingerprint() -> dict[str, str]:
    return {"system_fingerprint": FINGERPRINT}


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _now() -> int:
    return int(time.time())


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started `FakeOpenAI`, closed after the test."""
    fake = await FakeOpenAI().start()
    try:
        yield fake
    finally:
        await fake.close()
