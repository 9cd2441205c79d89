"""Azure OpenAI: the conformance cases over ``FakeAzure``, with an API key (the deployments API
at its default version) and with Microsoft Entra ID client credentials."""

from __future__ import annotations

from typing import Any

from tests.conformance.case_openai import openai_received
from tests.conformance.cases import ProviderCase
from tests.fakes.azure import API_KEY, CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeAzure

__all__ = ["CASE", "ENTRA_CASE"]


async def _start() -> FakeAzure:
    return await FakeAzure().start()


async def _start_entra() -> FakeAzure:
    return await FakeAzure(api_key=None).start()


def _config(fake: FakeAzure) -> dict[str, Any]:
    # Callers name the embedding model; the resource serves it as deployment `embed-small`.
    return {
        "base_url": fake.root_url,
        "keys": [{"value": API_KEY}],
        "deployments": {"text-embedding-3-small": "embed-small"},
    }


def _entra_config(fake: FakeAzure) -> dict[str, Any]:
    credentials = {"tenant_id": TENANT_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    return {
        "type": "azure",
        "base_url": fake.root_url,
        "credentials": credentials | {"authority": fake.root_url},
    }


CASE = ProviderCase(
    id="azure",
    type="azure",
    model="gpt-4o-mini",
    start=_start,
    config=_config,
    received=openai_received,
    reasoning=False,  # Azure's o-series return no reasoning text on chat, as OpenAI's
    embeddings=True,
    embedding_model="text-embedding-3-small",
)

ENTRA_CASE = ProviderCase(
    id="azure-entra",
    type="azure",
    model="chat-prod",
    start=_start_entra,
    config=_entra_config,
    received=openai_received,
    reasoning=False,
    embeddings=True,
    embedding_model="embed-small",
)
