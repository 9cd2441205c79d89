"""Vertex AI: the conformance cases over ``FakeVertex`` (with its token endpoint), one for a
Gemini model and one for a Claude model, each signed in with a service-account key."""

from __future__ import annotations

from typing import Any

from tests.conformance.case_anthropic import anthropic_received
from tests.conformance.case_gemini import gemini_received
from tests.conformance.cases import ProviderCase
from tests.fakes.vertex import FakeVertex

__all__ = ["ANTHROPIC_CASE", "GEMINI_CASE"]


async def _start() -> FakeVertex:
    return await FakeVertex().start()


def _config(fake: FakeVertex) -> dict[str, Any]:
    return {
        "base_url": fake.base_url,
        "region": "us-central1",
        "credentials": {"service_account_json": fake.key_json},
    }


GEMINI_CASE = ProviderCase(
    id="vertex-gemini",
    type="vertex",
    model="gemini-2.5-flash",
    start=_start,
    config=_config,
    received=gemini_received,
    tool_ids_kept=False,  # Vertex's v1 function calls have no id: the gateway makes them
    streams_arguments=False,  # each function call comes whole
    image_urls=False,  # only gs:// URIs go by reference; the gateway downloads the others
    embeddings=True,
    embedding_model="gemini-embedding-001",
)

ANTHROPIC_CASE = ProviderCase(
    id="vertex-anthropic",
    type="vertex",
    model="claude-sonnet-4-5@20250929",
    start=_start,
    config=_config,
    received=anthropic_received,
    image_urls=False,  # Claude on Vertex refuses URL sources: the gateway sends base64
)
