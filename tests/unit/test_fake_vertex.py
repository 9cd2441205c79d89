"""Self-tests of the fake Vertex AI, driven by Google's ``google-genai`` SDK in Vertex mode and by
Anthropic's Vertex client (each builds Vertex's URLs and bodies itself), so the fake answers
what the real SDKs send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anthropic
import google.auth.transport.requests
import pytest
from google import genai
from google.genai import types
from google.oauth2 import service_account

from tests.fakes.script import Turn
from tests.fakes.vertex import FakeVertex

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CLAUDE = "claude-sonnet-4-5@20250929"
# The version Anthropic's guide requires (the installed SDK may default to another).
VERSION = {"anthropic_version": "vertex-2023-10-16"}
# google-genai's async client subclasses aiohttp's ClientSession, which aiohttp deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    server = await FakeVertex().start()
    try:
        yield server
    finally:
        await server.close()


def _credentials(fake: FakeVertex) -> service_account.Credentials:
    return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        fake.key, scopes=SCOPES
    )


def _genai(fake: FakeVertex) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project=fake.project,
        location="us-central1",
        credentials=_credentials(fake),
        http_options=types.HttpOptions(base_url=fake.base_url + "/"),
    )


async def _claude(fake: FakeVertex) -> anthropic.AsyncAnthropicVertex:
    creds = _credentials(fake)
    await asyncio.to_thread(creds.refresh, google.auth.transport.requests.Request())
    return anthropic.AsyncAnthropicVertex(
        region="us-central1",
        project_id=fake.project,
        access_token=creds.token,
        base_url=fake.base_url + "/v1",
        max_retries=0,
    )


async def test_genai_generates_and_streams(fake: FakeVertex) -> None:
    """google-genai's Vertex client gets an answer and a stream from the fake, with usage."""
    client = _genai(fake)
    answer = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert answer.text == "Hello from the fake!"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.total_token_count == 17
    assert fake.requests[-1].path == (
        "/v1beta1/projects/fake-project/locations/us-central1/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    )
    pieces = [
        chunk.text
        async for chunk in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Hi"
        )
    ]
    assert "".join(p or "" for p in pieces) == "Hello from the fake!"
    assert fake.requests[-1].query == {"alt": "sse"}


async def test_genai_embeddings(fake: FakeVertex) -> None:
    """google-genai's Vertex embeddings reach :predict (text-embedding) and :embedContent
    (Gemini), and read their answers."""
    client = _genai(fake)
    many = await client.aio.models.embed_content(model="text-embedding-005", contents=["a", "b"])
    assert many.embeddings is not None
    assert len(many.embeddings) == 2
    assert fake.requests[-1].path.endswith("/text-embedding-005:predict")
    one = await client.aio.models.embed_content(model="gemini-embedding-001", contents=["abc"])
    assert one.embeddings is not None
    assert one.embeddings[0].values
    assert fake.requests[-1].path.endswith("/gemini-embedding-001:embedContent")


async def test_genai_scripted_error(fake: FakeVertex) -> None:
    """A scripted quota error reaches google-genai as Vertex's 429 RESOURCE_EXHAUSTED."""
    fake.script(Turn(error="rate_limit"))
    with pytest.raises(genai.errors.ClientError) as info:
        await _genai(fake).aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")


async def test_anthropic_vertex_client(fake: FakeVertex) -> None:
    """Anthropic's Vertex client gets a message (rawPredict) and a stream (streamRawPredict)."""
    client = await _claude(fake)
    user = [{"role": "user", "content": "Hi"}]
    message = await client.messages.create(
        model=CLAUDE,
        max_tokens=100,
        messages=user,  # type: ignore[arg-type]
        extra_body=VERSION,
    )
    assert message.content[0].type == "text"
    assert fake.requests[-1].path.endswith(f"/publishers/anthropic/models/{CLAUDE}:rawPredict")
    async with client.messages.stream(
        model=CLAUDE,
        max_tokens=100,
        messages=user,  # type: ignore[arg-type]
        extra_body=VERSION,
    ) as stream:
        assert await stream.get_final_text() == "Hello from the fake!"
    assert fake.requests[-1].path.endswith(":streamRawPredict")
    await client.close()


async def test_requests_without_a_valid_token_are_refused(fake: FakeVertex) -> None:
    """A token the fake's token endpoint did not issue is Google's 401 UNAUTHENTICATED."""
    client = anthropic.AsyncAnthropicVertex(
        region="us-central1",
        project_id=fake.project,
        access_token="ya29.forged",
        base_url=fake.base_url + "/v1",
        max_retries=0,
    )
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client.messages.create(
            model=CLAUDE,
            max_tokens=10,
            messages=[{"role": "user", "content": "Hi"}],
            extra_body=VERSION,
        )
    assert "invalid authentication credentials" in str(info.value)
    await client.close()


async def test_count_tokens_of_both_publishers(fake: FakeVertex) -> None:
    """google-genai's Vertex count_tokens (contents and system instruction at the top level) and
    Anthropic's Vertex client's count_tokens (count-tokens:rawPredict) get the fake's counts."""
    config = types.CountTokensConfig(system_instruction="Be brief.")
    counted = await _genai(fake).aio.models.count_tokens(
        model="gemini-2.5-flash", contents="Hi there", config=config
    )
    assert counted.total_tokens == 2 + 2 + 3
    assert fake.requests[-1].path.endswith("/publishers/google/models/gemini-2.5-flash:countTokens")
    client = await _claude(fake)
    claude = await client.messages.count_tokens(
        model=CLAUDE,
        messages=[{"role": "user", "content": "Hi there"}],
        extra_body=VERSION,
    )
    assert claude.input_tokens == 2 + 3
    assert fake.requests[-1].path.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert fake.requests[-1].json["model"] == CLAUDE
    await client.close()
