"""What each inference route is: its request type, how its body is read, and the decoded request.

A route is registered with :func:`add_endpoint`, which records its :class:`Operation`; the
middlewares look the operation up from ``request.match_info.route`` and so recognise inference
routes without a list of paths. The decoded body travels to the provider as an :class:`Inbound`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Literal

import msgspec
from aiohttp import web

from proxy.errors import GatewayError
from proxy.schemas.audio import SpeechRequest, TranscriptionRequest
from proxy.schemas.chat import ChatRequest
from proxy.schemas.completions import CompletionRequest
from proxy.schemas.embeddings import EmbeddingRequest
from proxy.schemas.responses import ResponsesRequest

__all__ = [
    "ADMIN",
    "CHAT",
    "COMPLETION",
    "EMBEDDING",
    "INPUT_TOKENS",
    "KEY_ADMIN",
    "LIST_MODELS",
    "OPERATIONS",
    "RESPONSES",
    "ROUTE_OPERATIONS",
    "SPEECH",
    "STATEFUL",
    "TRANSCRIPTION",
    "Inbound",
    "Operation",
    "Target",
    "Upload",
    "add_endpoint",
    "operation_of",
]

# Fields that carry a conversation's content: never copied into logs or ``model_params``.
_CONTENT = frozenset(
    {"messages", "prompt", "input", "tools", "functions", "instructions", "prediction", "suffix"}
)
# Fields only the gateway reads; never forwarded upstream.
GATEWAY_FIELDS = frozenset({"fallbacks", "fallbacks[]"})
# Fields the gateway reads, or that say who the caller is.
_GATEWAY_READS = GATEWAY_FIELDS | {"model", "stream", "user", "metadata"}


class Operation(msgspec.Struct, frozen=True):
    """What an inference route is.

    The hooks let a route family speak another API's dialect through the same middleware chain
    (the native ``/anthropic``, ``/genai``, ``/bedrock`` routes):

    - ``decode``: the body (JSON) into an :class:`Inbound`, in place of the unified schemas; it
      may read the request too (a model named in the path). It raises ``GatewayError`` on bad
      input.
    - ``render_error``: a ``GatewayError`` as that API's error body (JSON bytes); the status and
      headers stay the error's own, plus ``error_headers`` (Bedrock names its exception in a
      header).
    """

    name: str  # the request type, as in logs and ``extra_fields.request_type``
    body: Literal["json", "multipart", "none"]
    # The body names ``provider/model`` and is served by one provider at a time.
    routed: bool = True
    content_fields: frozenset[str] = _CONTENT
    decode: Callable[[web.Request, bytes], Inbound] | None = None
    render_error: Callable[[GatewayError], bytes] | None = None
    error_headers: Callable[[GatewayError], Mapping[str, str]] | None = None

    @property
    def admin(self) -> bool:
        """The gateway's own admin API (no usage records)."""
        return self.name in _ADMIN_NAMES

    @property
    def not_params(self) -> frozenset[str]:
        """Fields never shown as ``model_params``: content, and what the gateway reads itself."""
        return self.content_fields | _GATEWAY_READS


CHAT = Operation("chat_completion", "json")
COMPLETION = Operation("text_completion", "json")
EMBEDDING = Operation("embedding", "json")
SPEECH = Operation("speech", "json")
TRANSCRIPTION = Operation("transcription", "multipart")
LIST_MODELS = Operation("list_models", "none", routed=False)
RESPONSES = Operation("responses", "json")
# ``POST /v1/responses/input_tokens``: a Responses request whose input tokens are counted.
INPUT_TOKENS = Operation("input_tokens", "json")
# Routes that read or change what the gateway stored (responses, conversations): they need the
# caller's key like inference routes, and read their own bodies.
STATEFUL = Operation("stored_state", "none", routed=False)
# The gateway's own state (breakers, load, usage): behind the master key, no body.
ADMIN = Operation("admin", "none", routed=False)
# Virtual keys and teams: the master key only, and only when one is configured; the handlers
# read their own bodies.
KEY_ADMIN = Operation("key_admin", "none", routed=False)

_ADMIN_NAMES = frozenset({ADMIN.name, KEY_ADMIN.name})

OPERATIONS = (
    CHAT,
    COMPLETION,
    EMBEDDING,
    SPEECH,
    TRANSCRIPTION,
    LIST_MODELS,
    RESPONSES,
    INPUT_TOKENS,
    STATEFUL,
    ADMIN,
    KEY_ADMIN,
)

SCHEMAS: dict[str, type[Any]] = {
    CHAT.name: ChatRequest,
    COMPLETION.name: CompletionRequest,
    EMBEDDING.name: EmbeddingRequest,
    SPEECH.name: SpeechRequest,
    TRANSCRIPTION.name: TranscriptionRequest,
    RESPONSES.name: ResponsesRequest,
    INPUT_TOKENS.name: ResponsesRequest,
}


class Target(msgspec.Struct, frozen=True, gc=False):
    """One place a request can be served: a provider, its model name, and the fallback position."""

    provider: str
    model: str
    index: int = 0

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


class Upload(msgspec.Struct, frozen=True):
    """A file part of a multipart request, held in memory (bounded by the body-size limit)."""

    field: str
    filename: str
    content_type: str
    data: bytes


class Inbound(msgspec.Struct):
    """A decoded client request.

    ``typed`` is the checked Struct; ``raw`` keeps every top-level field of a JSON body as the
    client sent it (fields the schema does not model included), so OpenAI-compatible upstreams get
    them unchanged. A multipart body has ``fields`` and ``uploads`` instead.
    """

    op: Operation
    typed: Any
    model: str
    fallbacks: list[str]
    stream: bool = False
    wants_usage: bool = False
    raw: dict[str, msgspec.Raw] | None = None
    fields: list[tuple[str, str]] | None = None
    uploads: list[Upload] | None = None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Which operation each inference route serves; routes not in it are not inference routes.
ROUTE_OPERATIONS = web.AppKey[dict[Hashable, Operation]]("route_operations")


def add_endpoint(
    app: web.Application, method: str, path: str, op: Operation, handler: Handler
) -> None:
    """Register an inference route: the middlewares recognise it by its operation."""
    route = app.router.add_route(method, path, handler)
    app.setdefault(ROUTE_OPERATIONS, {})[route] = op


def operation_of(request: web.Request) -> Operation | None:
    """The route's operation (looked up once per request, then kept on the request)."""
    if _OPERATION in request:
        return request[_OPERATION]
    got = request.app.get(ROUTE_OPERATIONS, _NONE).get(request.match_info.route)
    request[_OPERATION] = got
    return got


_NONE: dict[Hashable, Operation] = {}
_OPERATION = web.RequestKey[Operation | None]("operation")
