"""Azure OpenAI with Microsoft Entra ID: client-credentials tokens fetched once, reused, renewed
ahead of expiry, refetched when refused; a static token; token-endpoint failures."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.conftest import Gateway, MakeGateway
from tests.fakes.azure import CLIENT_ID, CLIENT_SECRET, SCOPE, TENANT_ID, FakeAzure

USER = [{"role": "user", "content": "Hello"}]


def entra(fake: FakeAzure, **credentials: str) -> dict[str, Any]:
    creds = {"tenant_id": TENANT_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    creds |= {"authority": fake.root_url, **credentials}
    return {"type": "azure", "base_url": fake.root_url, "credentials": creds}


async def chat(gateway: Gateway) -> str | None:
    result = await gateway.sdk().chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    return result.choices[0].message.content


@pytest.fixture
async def fake() -> Any:
    server = await FakeAzure(api_key=None).start()
    yield server
    await server.close()


async def test_token_fetched_once_and_reused(make_gateway: MakeGateway, fake: FakeAzure) -> None:
    """One token request serves sequential and concurrent calls, sent as a bearer token."""
    gateway = await make_gateway({"providers": {"azure": entra(fake)}})
    assert "Hello from the fake!" == await chat(gateway)
    await asyncio.gather(*(chat(gateway) for _ in range(5)))
    await chat(gateway)
    assert 1 == len(fake.token_requests)
    form = fake.token_requests[0]
    assert {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": SCOPE,
    } == form
    tokens = {r.headers["authorization"] for r in fake.requests}
    assert 1 == len(tokens)
    assert next(iter(tokens)).removeprefix("Bearer ") in fake.tokens
    assert all("api-key" not in r.headers for r in fake.requests)


async def test_concurrent_first_use_fetches_one_token(
    make_gateway: MakeGateway, fake: FakeAzure
) -> None:
    """Calls that all start before any token exists wait for one shared token request."""
    gateway = await make_gateway({"providers": {"azure": entra(fake)}})
    await asyncio.gather(*(chat(gateway) for _ in range(6)))
    assert 1 == len(fake.token_requests)
    assert 6 == len(fake.requests)


async def test_token_renewed_near_expiry(make_gateway: MakeGateway, fake: FakeAzure) -> None:
    """A token is renewed once past its renewal point (half of a short life), not per call."""
    fake.token_lifetime_s = 2
    gateway = await make_gateway({"providers": {"azure": entra(fake)}})
    await chat(gateway)
    await chat(gateway)
    assert 1 == len(fake.token_requests)
    await asyncio.sleep(1.1)
    await chat(gateway)
    await chat(gateway)
    assert 2 == len(fake.token_requests)
    first, *_, last = [r.headers["authorization"] for r in fake.requests]
    assert first != last


async def test_failed_renewal_keeps_the_valid_token(
    make_gateway: MakeGateway, fake: FakeAzure
) -> None:
    """A renewal that fails while the token is still valid serves on with it, asking again only
    after a pause rather than on every call."""
    fake.token_lifetime_s = 4
    gateway = await make_gateway({"providers": {"azure": entra(fake)}})
    await chat(gateway)
    await asyncio.sleep(2.1)
    fake.token_outage = True
    assert "Hello from the fake!" == await chat(gateway)
    assert "Hello from the fake!" == await chat(gateway)
    assert 2 == len(fake.token_requests)
    assert 1 == len({r.headers["authorization"] for r in fake.requests})


async def test_token_endpoint_outage_without_a_token(
    make_gateway: MakeGateway, fake: FakeAzure
) -> None:
    """With no valid token, the token endpoint's 503 is the call's retryable 503."""
    fake.token_outage = True
    gateway = await make_gateway({"providers": {"azure": entra(fake)}})
    with pytest.raises(openai.InternalServerError) as info:
        await chat(gateway)
    assert 503 == info.value.status_code
    body = info.value.body
    assert isinstance(body, dict)
    assert "temporarily_unavailable" == body["code"]
    assert "the Entra ID token endpoint failed: AADSTS50196" in body["message"]


async def test_refused_token_is_fetched_again(make_gateway: MakeGateway, fake: FakeAzure) -> None:
    """A token Azure refuses (revoked) fails that call; the next call gets a new token."""
    gateway = await make_gateway({"providers": {"azure": entra(fake)}})
    await chat(gateway)
    fake.tokens.clear()
    with pytest.raises(openai.AuthenticationError):
        await chat(gateway)
    assert "Hello from the fake!" == await chat(gateway)
    assert 2 == len(fake.token_requests)


async def test_wrong_client_secret(make_gateway: MakeGateway, fake: FakeAzure) -> None:
    """Entra ID's invalid_client is a 401 authentication_error naming it, without the secret."""
    gateway = await make_gateway(
        {"providers": {"azure": entra(fake, client_secret="not-the-secret-0000")}}
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await chat(gateway)
    body = info.value.body
    assert isinstance(body, dict)
    assert ("authentication_error", "invalid_client") == (body["type"], body["code"])
    assert body["message"].startswith("azure: Entra ID refused the client credentials")
    assert "AADSTS7000215" in body["message"]
    assert "Trace ID" not in body["message"]
    assert "not-the-secret-0000" not in body["message"]
    assert [] == fake.requests


async def test_unreachable_token_endpoint_falls_back(
    make_gateway: MakeGateway, fake: FakeAzure, fake_azure_backup: FakeAzure
) -> None:
    """A token endpoint that cannot be reached is a retryable error: the fallback answers."""
    closed = await FakeAzure().start()
    dead_authority = closed.root_url
    await closed.close()
    gateway = await make_gateway(
        {
            "providers": {
                "azure": entra(fake, authority=dead_authority),
                "backup": {
                    "type": "azure",
                    "base_url": fake_azure_backup.root_url,
                    "keys": [{"value": fake_azure_backup.azure_key}],
                },
            }
        }
    )
    result = await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini",
        messages=USER,
        extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
    )
    assert "backup" == (result.model_extra or {})["extra_fields"]["provider"]


async def test_static_token(make_gateway: MakeGateway, fake: FakeAzure) -> None:
    """credentials.token is sent as the bearer token as is; no token endpoint is asked."""
    token = fake.issue_token()
    config = {"type": "azure", "base_url": fake.root_url, "credentials": {"token": token}}
    gateway = await make_gateway({"providers": {"azure": config}})
    assert "Hello from the fake!" == await chat(gateway)
    assert f"Bearer {token}" == fake.requests[-1].headers["authorization"]
    assert [] == fake.token_requests


@pytest.fixture
async def fake_azure_backup() -> Any:
    server = await FakeAzure().start()
    yield server
    await server.close()
