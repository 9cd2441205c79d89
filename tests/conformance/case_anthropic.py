"""Anthropic: the conformance case over :class:`~tests.fakes.anthropic.FakeAnthropic`."""

from __future__ import annotations

from typing import Any

from tests.conformance.cases import ProviderCase, Received
from tests.fakes.anthropic import FakeAnthropic

__all__ = ["CASE", "anthropic_received"]

KEY = "sk-ant-fake-conformance"


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content or []


def _text(blocks: list[dict[str, Any]]) -> str:
    return "".join(b["text"] for b in blocks if b["type"] == "text")


def _image(block: dict[str, Any]) -> str:
    source = block["source"]
    if source["type"] == "url":
        return f"url:{source['url']}"
    return f"data:{source['media_type']}:{source['data']}"


def anthropic_received(rec: Any) -> Received:
    body = rec.json
    out = Received(stream=bool(body.get("stream")), max_tokens=body.get("max_tokens"))
    system = body.get("system")
    if system:
        out.messages.append(("system", _text(_blocks(system))))
    for message in body["messages"]:
        blocks = _blocks(message["content"])
        for block in blocks:
            if block["type"] == "tool_result":
                out.tool_results.append((block["tool_use_id"], _text(_blocks(block["content"]))))
            elif block["type"] == "image":
                out.images.append(_image(block))
        text = _text(blocks)
        if text:
            out.messages.append((message["role"], text))
    out.tools = [t["name"] for t in body.get("tools", [])]
    return out


async def _start() -> FakeAnthropic:
    return await FakeAnthropic(api_key=KEY).start()


CASE = ProviderCase(
    id="anthropic",
    type="anthropic",
    model="claude-sonnet-4-6",
    start=_start,
    config=lambda fake: {"base_url": fake.base_url, "keys": [{"value": KEY}]},
    received=anthropic_received,
)
