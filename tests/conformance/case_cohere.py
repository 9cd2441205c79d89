"""Cohere (native v2 API): the conformance case over ``FakeCohere``."""

from __future__ import annotations

from typing import Any

from tests.conformance.cases import ProviderCase, Received
from tests.fakes.cohere import FakeCohere

__all__ = ["CASE", "cohere_received"]

KEY = "co-fake-key"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _image(url: str) -> str:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        return f"data:{head[5:].split(';')[0]}:{data}"
    return f"url:{url}"


def cohere_received(rec: Any) -> Received:
    """What ``FakeCohere`` received on ``/v2/chat``, normalised: a tool turn's plan counts as
    the assistant's text, as the gateway sends it."""
    body = rec.json
    out = Received(stream=bool(body.get("stream")), max_tokens=body.get("max_tokens"))
    for m in body["messages"]:
        if m["role"] == "tool":
            out.tool_results.append((m["tool_call_id"], _text(m["content"])))
            continue
        text = _text(m.get("content")) or m.get("tool_plan", "")
        if text:
            out.messages.append((m["role"], text))
        if isinstance(m.get("content"), list):
            out.images += [
                _image(p["image_url"]["url"]) for p in m["content"] if p["type"] == "image_url"
            ]
    out.tools = [t["function"]["name"] for t in body.get("tools", [])]
    return out


async def _start() -> FakeCohere:
    return await FakeCohere(api_key=KEY).start()


CASE = ProviderCase(
    id="cohere",
    type="cohere",
    model="command-a-03-2025",
    start=_start,
    config=lambda fake: {"base_url": fake.base_url, "keys": [{"value": KEY}]},
    received=cohere_received,
    image_urls=True,  # Cohere's image_url takes web URLs as well as data URIs
    reasoning=True,
    embeddings=True,
    embedding_model="embed-v4.0",
)
