"""Vertex AI translation, pure functions against golden fixtures (``tests/fixtures/vertex``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from providers._sse import SSEParser
from providers.anthropic.stream import AnthropicStream
from providers.gemini.request import data_url_part, image_urls
from providers.gemini.response import from_native
from providers.gemini.stream import EventReader, GeminiStream
from providers.gemini.wire import GenerateContentResponse, Part
from providers.vertex.embed import (
    embed_content_body,
    embed_content_result,
    one_per_request,
    predict_body,
    predict_result,
)
from providers.vertex.errors import map_error
from providers.vertex.translate import (
    claude_body,
    default_root,
    gemini_body,
    labels,
    model_url,
    reference_part,
    route,
    shared_request_type,
    with_images,
)
from proxy.errors import InvalidRequestError
from proxy.redact import Redactor
from proxy.schemas.chat import ChatCompletionChunk, ChatRequest, ImagePart, UserMessage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vertex"
SCRUB = Redactor(["ya29.secret-token-0123456789"])
CREATED = 1756728000


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _request(doc: dict[str, Any]) -> ChatRequest:
    doc = {"model": "vertex/gemini-2.5-flash", **doc}
    return msgspec.json.decode(msgspec.json.encode(doc), type=ChatRequest)


def _plain(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def _gemini(req: ChatRequest, model: str = "gemini-2.5-flash") -> Any:
    """The Vertex body as plain JSON values; media resolved as the provider resolves it, without
    the network (the fixtures hold only gs:// URIs and data URLs)."""
    media: dict[str, Part] = {}
    for url in image_urls(req):
        part = data_url_part(url) if url.startswith("data:") else reference_part(url)
        assert part is not None
        media[url] = part
    return _plain(gemini_body(req, model=model, media=media))


def _sse(chunks: list[ChatCompletionChunk]) -> bytes:
    return b"".join(b"data: " + msgspec.json.encode(c) + b"\n\n" for c in chunks)


# --- golden fixtures ----------------------------------------------------------------------


def test_gemini_request_golden() -> None:
    """A request using every translated feature becomes exactly the fixture's Vertex body: no
    call or result ids, no serviceTier, HIGH for xhigh, valid metadata as labels, gs:// by
    reference with its media type."""
    req = msgspec.json.decode(_fixture("gemini_request.unified.json"), type=ChatRequest)
    got = _gemini(req, model="gemini-3-pro-preview")
    assert got == msgspec.json.decode(_fixture("gemini_request.native.json"))


def test_claude_request_golden() -> None:
    """A Claude request becomes Anthropic's Messages body without model and with Vertex's
    anthropic_version."""
    req = msgspec.json.decode(_fixture("claude_request.unified.json"), type=ChatRequest)
    got = claude_body(req, "claude-sonnet-4-5@20250929", stream=True, provider="vertex")
    encoded = msgspec.json.encode(got)
    assert encoded.startswith(b'{"anthropic_version":"vertex-2023-10-16",')
    assert _plain(got) == msgspec.json.decode(_fixture("claude_request.native.json"))


def test_gemini_response_golden() -> None:
    """A Vertex answer (createTime, trafficType, calls without ids) becomes exactly the
    fixture's chat completion, with generated call ids and cached and reasoning tokens."""
    native = msgspec.json.decode(
        _fixture("gemini_response.native.json"), type=GenerateContentResponse
    )
    got = from_native(native, model="gemini-2.5-flash", created=CREATED, fallback_id="x")
    assert _plain(got) == msgspec.json.decode(_fixture("gemini_response.unified.json"))


@pytest.mark.parametrize("step", [1, 13, 8192])
def test_gemini_stream_golden(step: int) -> None:
    """Vertex's streamGenerateContent?alt=sse transcript, read in any slicing, becomes exactly
    the fixture's chunk bytes."""
    raw = _fixture("gemini_stream.native.sse")
    reader, chunks = EventReader(), []
    translator = GeminiStream(
        model="gemini-2.5-flash", id="chatcmpl-req-1", created=CREATED, provider="vertex",
        scrub=SCRUB,
    )  # fmt: skip
    for i in range(0, len(raw), step):
        for event in reader.feed(raw[i : i + step]):
            chunks += translator.feed(event)
    for event in reader.close():
        chunks += translator.feed(event)
    chunks += translator.finish()
    usage = translator.usage_chunk()
    assert usage is not None
    assert _sse([*chunks, usage]) == _fixture("gemini_stream.chunks.sse")


def test_claude_stream_golden() -> None:
    """A streamRawPredict transcript becomes exactly the fixture's chunk bytes."""
    parser = SSEParser()
    translator = AnthropicStream(
        provider="vertex", model="claude-sonnet-4-5@20250929", request_id="req-1", scrub=SCRUB
    )
    chunks: list[ChatCompletionChunk] = []
    for event in [*parser.feed(_fixture("claude_stream.native.sse")), *parser.close()]:
        chunks += translator.feed(event)
    chunks += translator.finish()
    usage = translator.usage_chunk()
    assert usage is not None
    chunks.append(usage)
    for chunk in chunks:
        chunk.created = CREATED
    assert _sse(chunks) == _fixture("claude_stream.chunks.sse")


# --- routing and URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gemini-2.5-flash", ("google", "gemini-2.5-flash")),
        ("text-embedding-005", ("google", "text-embedding-005")),
        ("claude-opus-4-1@20250805", ("anthropic", "claude-opus-4-1@20250805")),
        ("anthropic/claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("google/gemini-3-pro-preview", ("google", "gemini-3-pro-preview")),
    ],
)
def test_route(model: str, expected: tuple[str, str]) -> None:
    """Claude ids go to Anthropic, others to Google, unless a publisher prefix says."""
    assert route(model) == expected


@pytest.mark.parametrize("model", ["meta/llama-4-maverick", "google/a/b", "anthropic/"])
def test_other_publishers_are_refused(model: str) -> None:
    """Other publishers' models are a 400 naming the model."""
    with pytest.raises(InvalidRequestError, match="OpenAI-compatible") as info:
        route(model)
    assert info.value.param == "model"


@pytest.mark.parametrize(
    ("location", "root"),
    [
        ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
    ],
)
def test_default_root(location: str, root: str) -> None:
    """The API root of a location: regional host, the global host, the multi-regions."""
    assert default_root(location) == root


def test_model_url_keeps_the_version_separator() -> None:
    """A Claude id's ``@version`` stays as it is in the URL; the method follows a colon."""
    url = model_url(
        "https://global-host", "v1", project="my-proj", location="global",
        publisher="anthropic", model="claude-sonnet-4-5@20250929", method="rawPredict",
    )  # fmt: skip
    assert url == (
        "https://global-host/v1/projects/my-proj/locations/global/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict"
    )


# --- body details -------------------------------------------------------------------------


def test_labels_keep_only_valid_entries() -> None:
    """Metadata entries that are not valid labels (upper case, too long, spaces) are dropped."""
    metadata = {"team": "ml", "Team": "x", "ok_key": "Has Space", "k": "v" * 64, "run-id": "r-1"}
    assert labels(metadata) == {"team": "ml", "run-id": "r-1"}
    assert labels({"Bad": "x"}) is msgspec.UNSET
    assert labels(None) is msgspec.UNSET


@pytest.mark.parametrize(
    ("tier", "header"),
    [("priority", "priority"), ("flex", "flex"), ("default", None), ("auto", None), (None, None)],
)
def test_service_tier_header(tier: str | None, header: str | None) -> None:
    """priority and flex become Vertex's shared-request-type header; the others nothing."""
    req = _request({"messages": [{"role": "user", "content": "x"}], "service_tier": tier})
    assert shared_request_type(req) == header
    assert "serviceTier" not in _gemini(req)


def test_cloud_storage_uri_needs_a_known_extension() -> None:
    """A gs:// URI without a known extension is a 400; other URLs are left to download."""
    with pytest.raises(InvalidRequestError, match="file extension"):
        reference_part("gs://bucket/photo")
    assert reference_part("https://example.com/a.png") is None


def test_with_images_copies_the_request() -> None:
    """Image URLs are replaced in a copy (detail kept); the caller's request is untouched."""
    req = _request(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is it?"},
                        {"type": "image_url", "image_url": {"url": "https://x/a", "detail": "low"}},
                    ],
                }
            ]
        }
    )
    got = with_images(req, {"https://x/a": "data:image/png;base64,AAAA"})
    message = got.messages[0]
    assert isinstance(message, UserMessage)
    assert isinstance(message.content, list)
    image = message.content[1]
    assert isinstance(image, ImagePart)
    assert (image.image_url.url, image.image_url.detail) == ("data:image/png;base64,AAAA", "low")
    assert _plain(req)["messages"][0]["content"][1]["image_url"]["url"] == "https://x/a"


# --- embeddings ---------------------------------------------------------------------------


def test_predict_body_and_result() -> None:
    """:predict takes every input as an instance; token counts (JSON numbers) are summed."""
    assert predict_body(["a", "b"], 256) == (
        b'{"instances":[{"content":"a"},{"content":"b"}],"parameters":{"outputDimensionality":256}}'
    )
    assert predict_body(["a"], None) == b'{"instances":[{"content":"a"}]}'
    answer = (
        b'{"predictions":[{"embeddings":{"statistics":{"truncated":false,"token_count":3.0},'
        b'"values":[0.5,-0.25]}},{"embeddings":{"statistics":{"truncated":false,'
        b'"token_count":4},"values":[1.0,0.0]}}],"metadata":{"billableCharacterCount":9}}'
    )
    result = predict_result(answer, 2)
    assert result is not None
    assert (result.vectors, result.prompt_tokens) == ([[0.5, -0.25], [1.0, 0.0]], 7)
    assert predict_result(answer, 3) is None


def test_embed_content_body_and_result() -> None:
    """:embedContent takes one content with embedContentConfig; usage is promptTokenCount."""
    assert embed_content_body("hi", 64) == (
        b'{"content":{"parts":[{"text":"hi"}]},"embedContentConfig":{"outputDimensionality":64}}'
    )
    answers = [
        b'{"embedding":{"values":[0.1]},"usageMetadata":{"promptTokenCount":2},"truncated":false}',
        b'{"embedding":{"values":[0.2]},"usageMetadata":{"promptTokenCount":5}}',
    ]
    result = embed_content_result(answers)
    assert result is not None
    assert (result.vectors, result.prompt_tokens) == ([[0.1], [0.2]], 7)
    assert embed_content_result([b'{"truncated":true}']) is None
    assert one_per_request("gemini-embedding-001")
    assert not one_per_request("text-embedding-005")


# --- errors -------------------------------------------------------------------------------


def _error(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return map_error(status, body, headers or {}, provider="vertex", scrub=SCRUB)


def test_google_quota_error_is_a_retryable_rate_limit() -> None:
    """Vertex's 429 RESOURCE_EXHAUSTED (for Gemini or Claude) is a retryable rate limit."""
    body = b'{"error":{"code":429,"message":"Resource exhausted. Please try again later.",'
    body += b'"status":"RESOURCE_EXHAUSTED"}}'
    err = _error(429, body, {"retry-after": "3"})
    assert (err.status, err.type, err.retryable) == (429, "rate_limit_error", True)
    assert err.message == "vertex: Resource exhausted. Please try again later."
    assert err.headers == {"retry-after": "3"}


def test_listed_google_error() -> None:
    """An error wrapped in a one-element list, as Vertex sometimes sends, is read the same."""
    body = b'[{"error":{"code":403,"message":"Permission \'aiplatform.endpoints.predict\' denied'
    body += b' on ya29.secret-token-0123456789","status":"PERMISSION_DENIED"}}]'
    err = _error(403, body)
    assert (err.status, err.type, err.retryable) == (403, "permission_error", False)
    assert "ya29.secret" not in err.message


def test_unauthenticated_is_an_authentication_error() -> None:
    """401 UNAUTHENTICATED (a token Vertex refuses) keeps its status and is not retried."""
    body = b'{"error":{"code":401,"message":"Request had invalid authentication credentials.",'
    body += b'"status":"UNAUTHENTICATED"}}'
    err = _error(401, body)
    assert (err.status, err.type, err.retryable) == (401, "authentication_error", False)


@pytest.mark.parametrize(
    ("status", "kind", "type_", "retryable"),
    [
        (529, "overloaded_error", "overloaded_error", True),
        (400, "invalid_request_error", "invalid_request_error", False),
        (500, "api_error", "api_error", True),
    ],
)
def test_claude_errors_in_anthropic_shape(
    status: int, kind: str, type_: str, retryable: bool
) -> None:
    """A Claude model's own errors (Anthropic's shape) map as the Anthropic provider's do."""
    body = b'{"type":"error","error":{"type":"%s","message":"Overloaded"},' % kind.encode()
    body += b'"request_id":"req_vrtx_011"}'
    err = _error(status, body)
    assert (err.status, err.type, err.retryable) == (status, type_, retryable)
    assert err.message == "vertex: Overloaded"


def test_error_that_is_not_json() -> None:
    """A proxy's HTML page keeps its status, with the start of its text."""
    err = _error(502, b"<html>Bad Gateway</html>")
    assert (err.status, err.retryable) == (502, True)
    assert "Bad Gateway" in err.message
