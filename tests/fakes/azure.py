"""A fake Azure OpenAI resource: ``FakeOpenAI``'s answers at Azure's URLs, with Azure's auth,
``api-version`` check, deployments, content-filter annotations and errors, and a fake Microsoft
Entra ID token endpoint.

- ``/openai/deployments/{deployment}/{chat/completions,completions,embeddings,audio/speech,
  audio/transcriptions}?api-version=...``: the deployment names the model (``deployments``:
  deployment -> the model it serves, which the answers name, as Azure's do);
- ``/openai/v1/{chat/completions,embeddings,audio/*,models,responses}``: the body's ``model``
  names the deployment; ``api-version`` is optional (``v1`` or ``preview``);
- ``/openai/responses[/input_tokens]?api-version=...`` (2025-03-01-preview on): the Responses
  API of the dated versions, the body's ``model`` naming the deployment;
- ``/{tenant}/oauth2/v2.0/token``: the client-credentials grant; issued tokens are accepted as
  ``Authorization: Bearer`` until they expire.

Bodies are JSON with sorted keys, as Azure's are. Streams open with the prompt-annotation chunk
(``"choices": []``, ``prompt_filter_results``); each choice carries ``content_filter_results``;
``async_filter`` switches to the Asynchronous Filter's shape (annotation-only chunks without
``delta``), and ``replay`` sends a recorded answer verbatim. A dated ``api-version`` refuses
arguments newer than itself, as Azure does.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs

import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.openai import Behavior, FakeOpenAI, Recorded, _Call
from tests.fakes.script import Turn, split

__all__ = [
    "API_KEY",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "TENANT_ID",
    "FakeAzure",
    "content_filter_error",
    "fake_azure",
    "verdicts",
]

API_KEY = "0123456789abcdef0123456789abcdef"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "4f1a2b3c-0000-4000-8000-00000000c11e"
CLIENT_SECRET = "fake~Secret.Value-0123456789"
SCOPE = "https://cognitiveservices.azure.com/.default"
DEPLOYMENTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "chat-prod": "gpt-4o-2024-08-06",
    "embed-small": "text-embedding-3-small",
    "text-embedding-3-small": "text-embedding-3-small",
    "instruct": "gpt-35-turbo-instruct",
    "tts": "tts-1",
    "whisper": "whisper",
}
# The dated versions this fake serves (a selection of Azure's GA and preview versions).
API_VERSIONS = frozenset(
    {
        "2024-02-01",
        "2024-06-01",
        "2024-08-01-preview",
        "2024-09-01-preview",
        "2024-10-21",
        "2024-12-01-preview",
        "2025-01-01-preview",
        "2025-03-01-preview",
        "2025-04-01-preview",
    }
)
# The first dated version with the Responses API (``/openai/responses?api-version=...``).
RESPONSES_SINCE = "2025-03-01-preview"
# Request arguments and the first dated version that accepts them (Azure's API changelog).
_ADDED = {
    "stream_options": "2024-09-01",
    "max_completion_tokens": "2024-09-01",
    "parallel_tool_calls": "2024-09-01",
    "store": "2024-12-01",
    "metadata": "2024-12-01",
    "reasoning_effort": "2024-12-01",
    "prediction": "2025-01-01",
    "prompt_cache_key": "9999",
    "safety_identifier": "9999",
    "service_tier": "9999",
}
CONTENT_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management"
    " policy. Please modify your prompt and retry. To learn more about our content filtering"
    " policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
_BAD_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a"
    " valid key for an active subscription and use a correct regional API endpoint for your"
    " resource."
)
_BAD_TOKEN = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect"
    " (https://cognitiveservices.azure.com), or have expired."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within"
    " the last 5 minutes, please wait a moment and try again."
)
_STATUS = {"rate_limit": 429, "overloaded": 503, "server": 500, "auth": 401, "invalid": 400}
_encode = msgspec.json.Encoder(order="sorted").encode


def verdicts(filtered: str | None = None, *, prompt: bool = False) -> dict[str, Any]:
    """Azure's ``content_filter_results``: every category safe, or ``filtered`` blocked."""
    out: dict[str, Any] = {
        category: {"filtered": False, "severity": "safe"}
        for category in ("hate", "self_harm", "sexual", "violence")
    }
    if prompt:
        out["jailbreak"] = {"filtered": False, "detected": False}
    else:
        out["protected_material_code"] = {"filtered": False, "detected": False}
        out["protected_material_text"] = {"filtered": False, "detected": False}
    if filtered is not None:
        out[filtered] = {"filtered": True, "severity": "medium"}
    return out


def content_filter_error(category: str = "violence") -> bytes:
    """The 400 Azure answers when the prompt trips the content filter (the shape its service
    sends: ``innererror.content_filter_result``, singular, unlike its OpenAPI spec)."""
    error = {
        "message": CONTENT_FILTER_MESSAGE,
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": verdicts(category, prompt=True),
        },
    }
    return msgspec.json.encode({"error": error})


def _azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeAzure(FakeOpenAI):
    """An Azure OpenAI resource on 127.0.0.1 (module docstring).

    ``api_key`` None refuses API keys (Entra ID only); ``token_lifetime_s`` is the life of the
    tokens the fake token endpoint issues; ``token_requests`` records the token requests.
    """

    def __init__(
        self,
        api_key: str | None = API_KEY,
        *,
        deployments: dict[str, str] | None = None,
        token_lifetime_s: int = 3599,
    ) -> None:
        super().__init__(api_key=None)
        self.azure_key = api_key
        self.deployments = dict(DEPLOYMENTS if deployments is None else deployments)
        self.token_lifetime_s = token_lifetime_s
        self.token_requests: list[dict[str, str]] = []
        self.tokens: dict[str, float] = {}  # issued token -> expiry (monotonic)
        self.async_filter = False
        # A recorded answer to send verbatim (a stream: one write per event) instead of one
        # rendered from the script.
        self.replay: bytes | None = None
        # Set: the token endpoint is down and answers Entra ID's 503.
        self.token_outage = False

    def script(self, *turns: Turn) -> None:
        """Queue provider-neutral turns (the conformance suite's interface)."""
        self.enqueue(*(_behavior(t) for t in turns))

    # -- routing ------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/oauth2/v2.0/token"):
            return await self._token(request)
        return await super()._dispatch(request)

    async def _route(self, call: _Call) -> web.StreamResponse:
        path, query = call.request.path, call.rec.query
        if path.startswith("/openai/deployments/"):
            deployment, _, op = path.removeprefix("/openai/deployments/").partition("/")
            version = query.get("api-version")
            if version is None:
                return self._json(call, _azure_error("404", "Resource not found"), 404)
            if version not in API_VERSIONS:
                return self._json(
                    call, _azure_error("BadRequest", "API version not supported"), 400
                )
        elif path in ("/openai/responses", "/openai/responses/input_tokens"):
            # The Responses API of the dated versions: the body's model names the deployment.
            op, deployment = path.removeprefix("/openai/"), ""
            version = query.get("api-version")
            if version is None or version not in API_VERSIONS or version < RESPONSES_SINCE:
                return self._json(
                    call, _azure_error("BadRequest", "API version not supported"), 400
                )
            version = None  # the chat API's argument history does not apply
        elif path.startswith("/openai/v1/"):
            op, deployment, version = path.removeprefix("/openai/v1/"), "", None
            if query.get("api-version", "v1") not in ("v1", "preview"):
                return self._json(
                    call, _azure_error("BadRequest", "API version not supported"), 400
                )
        else:
            return self._json(call, _azure_error("404", "Resource not found"), 404)
        denied = self._denied(call)
        if denied is not None:
            return denied
        if call.request.method == "GET" and op == "models":
            return self._json(call, {"data": [_model(m) for m in self.deployments.values()]})
        deployment = deployment or _model_of(call.rec)
        if deployment not in self.deployments:
            return self._json(call, _azure_error("DeploymentNotFound", _NO_DEPLOYMENT), 404)
        refused = _unrecognized(call.rec, version)
        if refused is not None:
            return self._json(call, refused, 400)
        if call.behavior.status >= 400:
            return self._scripted_error(call)
        handler = self._routes.get((call.request.method, "/v1/" + op))
        if handler is None:
            return self._json(call, _azure_error("404", "Resource not found"), 404)
        call.rec = _with_model(call.rec, self.deployments[deployment])
        return await handler(call)

    def _denied(self, call: _Call) -> web.Response | None:
        headers = call.request.headers
        key = headers.get("api-key")
        if key is not None:
            if self.azure_key is not None and key == self.azure_key:
                return None
            return self._json(call, _azure_error("401", _BAD_KEY), 401)
        auth = headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if token and self.tokens.get(token, 0.0) > time.monotonic():
            return None
        if not token:
            return self._json(call, _azure_error("401", _BAD_KEY), 401)
        return self._json(call, _azure_error("401", _BAD_TOKEN), 401)

    def issue_token(self, lifetime_s: float | None = None) -> str:
        """A token this resource accepts (what an Entra ID token is to a real one)."""
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(24)
        life = self.token_lifetime_s if lifetime_s is None else lifetime_s
        self.tokens[token] = time.monotonic() + life
        return token

    async def _token(self, request: web.Request) -> web.Response:
        """Microsoft identity platform's v2.0 token endpoint, client-credentials grant only."""
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        self.token_requests.append(form)
        if self.token_outage:
            message = "The service is temporarily unavailable. Please try again later."
            return _aad_error(503, "temporarily_unavailable", 50196, message)
        tenant = request.path.split("/")[1]
        if tenant != TENANT_ID:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            message = "The provided value for scope is not valid."
            return _aad_error(400, "invalid_scope", 70011, message)
        if form.get("client_id") != CLIENT_ID:
            message = f"Application with identifier '{form.get('client_id')}' was not found."
            return _aad_error(400, "unauthorized_client", 700016, message)
        if form.get("client_secret") != CLIENT_SECRET:
            message = "Invalid client secret provided. Ensure the secret being sent in the request"
            message += " is the client secret value, not the client secret ID."
            return _aad_error(401, "invalid_client", 7000215, message)
        life = self.token_lifetime_s
        reply = {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life}
        reply["access_token"] = self.issue_token()
        return web.json_response(reply, headers={"Cache-Control": "no-store, no-cache"})

    # -- Azure's shapes ------------------------------------------------------------------------

    def _headers(
        self, call: _Call, content_type: str, extra: dict[str, str] | None = None
    ) -> CIMultiDict[str]:
        headers = CIMultiDict(
            {
                "Content-Type": content_type,
                "apim-request-id": call.request_id.removeprefix("req_"),
                "x-request-id": call.request_id.removeprefix("req_"),
                "x-ms-region": "East US",
                "x-ms-rai-invoked": "true",
                "x-content-type-options": "nosniff",
                "x-ratelimit-remaining-requests": "99",
                "x-ratelimit-limit-requests": "100",
                "x-ratelimit-remaining-tokens": "99990",
                "x-ratelimit-limit-tokens": "100000",
                "azureml-model-session": "d089-20240827193015",
            }
        )
        headers.update(extra or {})
        headers.update(call.behavior.headers)
        return headers

    def _json(
        self, call: _Call, payload: Any, status: int = 200, extra: dict[str, str] | None = None
    ) -> web.Response:
        if isinstance(payload, dict) and payload.get("object") in (
            "chat.completion",
            "text_completion",
        ):
            payload = self.replay if self.replay is not None else self._annotated(call, payload)
        body = payload if isinstance(payload, bytes) else _encode(payload)
        return super()._json(call, body, status, extra)

    def _annotated(self, call: _Call, payload: dict[str, Any]) -> dict[str, Any]:
        payload.pop("service_tier", None)  # OpenAI's field; Azure sends none
        for choice in payload["choices"]:
            blocked = choice.get("finish_reason") == "content_filter"
            choice["content_filter_results"] = verdicts("violence" if blocked else None)
        return payload | {"prompt_filter_results": _prompt_results()}

    async def _sse(self, call: _Call, events: Sequence[dict[str, Any]]) -> web.StreamResponse:
        if self.replay is not None:
            writes = [event + b"\n\n" for event in self.replay.split(b"\n\n") if event.strip()]
            return await self._stream(call, "text/event-stream; charset=utf-8", writes)
        out = [_prompt_chunk(events[0])] if events else []
        for event in events:
            event.pop("service_tier", None)  # OpenAI's field; Azure sends none
            out += self._stream_chunks(event)
        chunks = [b"data: " + _encode(e) + b"\n\n" for e in out]
        chunks.append(b"data: [DONE]\n\n")
        return await self._stream(call, "text/event-stream; charset=utf-8", chunks)

    def _stream_chunks(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """One of ``FakeOpenAI``'s chunks as Azure streams it (one or, with the Asynchronous
        Filter, more chunks)."""
        if not event["choices"]:
            return [event]  # the usage chunk
        choice = event["choices"][0]
        delta = choice.get("delta", {})
        reason = choice.get("finish_reason")
        if self.async_filter:
            if reason is None:
                return [event]  # tokens go out unannotated; annotations follow
            if reason == "content_filter":
                return [_annotation(event, "violence", reason)]
            return [_annotation(event), event, _annotation(event)]
        if reason == "content_filter":
            choice["content_filter_results"] = verdicts("violence")
        elif reason is not None or delta.get("role"):
            choice["content_filter_results"] = {}
        else:
            choice["content_filter_results"] = verdicts()
        return [event]

    def _scripted_error(self, call: _Call) -> web.Response:
        status, b = call.behavior.status, call.behavior
        if b.error_body is not None:
            return self._json(call, b.error_body, status)
        if status == 401:
            return self._json(call, _azure_error("401", _BAD_KEY), 401)
        if status == 404:
            return self._json(call, _azure_error("DeploymentNotFound", _NO_DEPLOYMENT), 404)
        if status == 429:
            message = (
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version"
                " 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing"
                " tier. Please retry after 2 seconds. Please go here:"
                " https://aka.ms/oai/quotaincrease if you would like to further increase the"
                " default rate limit."
            )
            extra = {"retry-after": "2", "retry-after-ms": "1500"}
            extra["x-ratelimit-remaining-requests"] = "0"
            return self._json(call, _azure_error("429", message), 429, extra)
        if status == 500:
            message = (
                "The server had an error processing your request. Sorry about that! You can retry"
                " your request, or contact us through an Azure support request at:"
                " https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error."
            )
            error = {"message": message, "type": "server_error", "param": None, "code": None}
            return self._json(call, {"error": error}, 500)
        if status == 503:
            message = "The service is temporarily unable to process your request."
            message += " Please try again later."
            return self._json(call, _azure_error("ServiceUnavailable", message), 503)
        return super()._scripted_error(call)


def _prompt_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": verdicts(prompt=True)}]


def _prompt_chunk(first: dict[str, Any]) -> dict[str, Any]:
    """The chunk Azure opens a stream with: the prompt's verdict and nothing else."""
    chunk = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    chunk["prompt_filter_results"] = _prompt_results()
    if "usage" in first:
        chunk["usage"] = None
    return chunk


def _annotation(
    event: dict[str, Any], filtered: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """An Asynchronous Filter annotation: verdicts for text already sent, no ``delta``."""
    choice = {"index": 0, "finish_reason": reason, "content_filter_results": verdicts(filtered)}
    choice["content_filter_offsets"] = {"check_offset": 44, "start_offset": 44, "end_offset": 198}
    chunk = {"choices": [choice], "created": 0, "id": "", "model": "", "object": ""}
    if "usage" in event:
        chunk["usage"] = None
    return chunk


def _model(model: str) -> dict[str, Any]:
    capabilities = {"chat_completion": True, "completion": False, "embeddings": False}
    capabilities |= {"fine_tune": False, "inference": True}
    return {
        "id": model,
        "object": "model",
        "created_at": 1721174400,
        "status": "succeeded",
        "capabilities": capabilities,
        "lifecycle_status": "generally-available",
        "deprecation": {"inference": 1777593600},
    }


def _model_of(rec: Recorded) -> str:
    if isinstance(rec.json, dict) and isinstance(rec.json.get("model"), str):
        return str(rec.json["model"])
    return rec.form.get("model", "")


def _with_model(rec: Recorded, model: str) -> Recorded:
    """The request as the handlers read it: the deployment's model named (the recording keeps
    what the gateway sent)."""
    if rec.files:
        return dataclasses.replace(rec, form={**rec.form, "model": model})
    if isinstance(rec.json, dict):
        return dataclasses.replace(rec, json={**rec.json, "model": model})
    return rec


def _unrecognized(rec: Recorded, version: str | None) -> dict[str, Any] | None:
    if version is None or not isinstance(rec.json, dict):
        return None
    for name, since in _ADDED.items():
        if name in rec.json and version[:10] < since:
            message = f"Unrecognized request argument supplied: {name}"
            error = {"message": message, "type": "invalid_request_error"}
            return {"error": error | {"param": None, "code": None}}
    return None


def _aad_error(status: int, error: str, code: int, message: str) -> web.Response:
    trace = "2a6bd4c1-2b5e-4b5f-a9f3-3f0e4c2a9d00"
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    description = f"AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}"
    description += f"\r\nTimestamp: {stamp}"
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return web.json_response(body, status=status)


def _behavior(t: Turn) -> Behavior:
    return Behavior(
        status=_STATUS[t.error] if t.error else 200,
        delay_s=t.delay_s,
        content=t.text,
        deltas=split(t.text, t.pieces),
        tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in t.tool_calls]
        or None,
        usage=(t.prompt_tokens, t.completion_tokens),
        cached_tokens=t.cached_tokens,
        reasoning_tokens=t.reasoning_tokens,
        gap_s=t.gap_s,
        cut_after=t.cut_after,
        stall_after_headers_s=t.stall_after_headers_s,
        finish_reason=t.finish,
    )


@pytest.fixture
async def fake_azure() -> AsyncIterator[FakeAzure]:
    """A started ``FakeAzure`` (API key ``API_KEY``), closed after the test."""
    fake = await FakeAzure().start()
    try:
        yield fake
    finally:
        await fake.close()
