"""Self-tests of the fake Azure OpenAI resource, driven by the official SDK's Azure client (which
builds Azure's URLs itself) and by plain HTTP for what the SDK never sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes import azure as fakes
from tests.fakes.azure import API_KEY, CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeAzure

fake_azure = fakes.fake_azure  # the fixture, visible here without a conftest

USER: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def client(fake_azure: FakeAzure) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=fake_azure.root_url,
        api_key=API_KEY,
        api_version="2024-10-21",
        max_retries=0,
    ) as sdk:
        yield sdk


async def raw(
    fake: FakeAzure,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.root_url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_sdk_azure_client_chat_and_stream(
    client: openai.AsyncAzureOpenAI, fake_azure: FakeAzure
) -> None:
    """The SDK's Azure client gets a chat answer and a stream, with Azure's filter fields."""
    result = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert "Hello from the fake!" == result.choices[0].message.content
    assert "gpt-4o-mini-2024-07-18" == result.model
    assert "prompt_filter_results" in (result.model_extra or {})
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert [] == chunks[0].choices
    assert "Hello from the fake!" == "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    )
    assert "/openai/deployments/gpt-4o-mini/chat/completions" == fake_azure.requests[-1].path


async def test_sdk_azure_client_with_an_entra_token(fake_azure: FakeAzure) -> None:
    """A token from the fake token endpoint is accepted as the SDK's azure_ad_token."""
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
        form |= {"client_secret": CLIENT_SECRET, "scope": fakes.SCOPE}
        url = f"{fake_azure.root_url}/{TENANT_ID}/oauth2/v2.0/token"
        async with session.post(url, data=form) as resp:
            token = (await resp.json())["access_token"]
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=fake_azure.root_url, azure_ad_token=token, api_version="2024-10-21"
    ) as sdk:
        result = await sdk.embeddings.create(model="embed-small", input="hi")
    assert result.data[0].embedding
    assert f"Bearer {token}" == fake_azure.requests[-1].headers["authorization"]


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("", 404, {"code": "404", "message": "Resource not found"}),
        (
            "?api-version=2023-01-01",
            400,
            {"code": "BadRequest", "message": "API version not supported"},
        ),
    ],
)
async def test_api_version_is_required(
    fake_azure: FakeAzure, query: str, status: int, error: dict[str, str]
) -> None:
    """Without api-version Azure answers 404 Resource not found; an unknown one is a 400."""
    path = "/openai/deployments/gpt-4o-mini/chat/completions" + query
    got = await raw(fake_azure, "POST", path, body={"messages": USER}, headers={"api-key": API_KEY})
    assert (status, {"error": error}) == got


async def test_dated_version_refuses_newer_arguments(fake_azure: FakeAzure) -> None:
    """A dated version answers an argument it predates with "Unrecognized request argument"."""
    path = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-06-01"
    body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    status, doc = await raw(fake_azure, "POST", path, body=body, headers={"api-key": API_KEY})
    assert 400 == status
    assert "Unrecognized request argument supplied: stream_options" == doc["error"]["message"]


async def test_token_endpoint_refuses_a_wrong_secret(fake_azure: FakeAzure) -> None:
    """A wrong client secret is Entra ID's 401 invalid_client with an AADSTS description."""
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
        form |= {"client_secret": "nope", "scope": fakes.SCOPE}
        url = f"{fake_azure.root_url}/{TENANT_ID}/oauth2/v2.0/token"
        async with session.post(url, data=form) as resp:
            assert 401 == resp.status
            doc = await resp.json()
    assert "invalid_client" == doc["error"]
    assert doc["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert [7000215] == doc["error_codes"]


async def test_responses_at_both_styles(fake_azure: FakeAzure) -> None:
    """The SDK's Azure client reaches the dated /openai/responses (the deployment as model); the
    v1 API serves /openai/v1/responses; a dated version before 2025-03-01-preview is refused."""
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=fake_azure.root_url,
        api_key=API_KEY,
        api_version="2025-03-01-preview",
        max_retries=0,
    ) as sdk:
        response = await sdk.responses.create(model="chat-prod", input="Hi")
    assert "gpt-4o-2024-08-06" == response.model
    assert "Hello from the fake!" == response.output_text
    dated = fake_azure.requests[-1]
    assert ("/openai/responses", "2025-03-01-preview") == (dated.path, dated.query["api-version"])
    body = {"model": "chat-prod", "input": "Hi"}
    status, doc = await raw(
        fake_azure, "POST", "/openai/v1/responses", body=body, headers={"api-key": API_KEY}
    )
    assert (200, "response", "gpt-4o-2024-08-06") == (status, doc["object"], doc["model"])
    status, doc = await raw(
        fake_azure,
        "POST",
        "/openai/responses?api-version=2024-10-21",
        body=body,
        headers={"api-key": API_KEY},
    )
    assert (400, "API version not supported") == (status, doc["error"]["message"])
