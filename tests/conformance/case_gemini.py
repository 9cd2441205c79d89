"""Google Gemini API: the conformance case over ``FakeGemini``."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.conformance.cases import ProviderCase, Received
from tests.fakes.gemini import API_KEY, FakeGemini

__all__ = ["CASE", "gemini_received"]


def _text(parts: list[Any]) -> str:
    return "".join(p.get("text", "") for p in parts if not p.get("thought"))


def _result(response: Any) -> str:
    if isinstance(response, dict) and set(response) == {"output"}:
        return str(response["output"])
    return msgspec.json.encode(response).decode()


def gemini_received(rec: Any) -> Received:
    body = rec.json
    out = Received(stream=":streamGenerateContent" in rec.path)
    out.max_tokens = (body.get("generationConfig") or {}).get("maxOutputTokens")
    for part in (body.get("systemInstruction") or {}).get("parts", []):
        out.messages.append(("system", part.get("text", "")))
    for content in body.get("contents", []):
        parts = content.get("parts", [])
        for p in parts:
            if "functionResponse" in p:
                r = p["functionResponse"]
                out.tool_results.append((r.get("id") or r["name"], _result(r["response"])))
            elif "inlineData" in p:
                blob = p["inlineData"]
                out.images.append(f"data:{blob['mimeType']}:{blob['data']}")
            elif "fileData" in p:
                out.images.append(f"url:{p['fileData']['fileUri']}")
        text = _text(parts)
        if text:
            role = "assistant" if content.get("role") == "model" else "user"
            out.messages.append((role, text))
    for tool in body.get("tools", []):
        out.tools += [d["name"] for d in tool.get("functionDeclarations", [])]
    return out


async def _start() -> FakeGemini:
    return await FakeGemini().start()


CASE = ProviderCase(
    id="gemini",
    type="gemini",
    model="gemini-2.5-flash",
    start=_start,
    config=lambda fake: {"base_url": fake.base_url, "keys": [{"value": API_KEY}]},
    received=gemini_received,
    tool_ids_kept=False,  # the Developer API sends calls without ids: the gateway makes them
    streams_arguments=False,  # Gemini sends each function call whole
    # The API downloads https URLs itself (by reference); the scenario's image is at an http
    # URL on 127.0.0.1, which the gateway downloads and sends inline.
    image_urls=False,
    embeddings=True,
    embedding_model="gemini-embedding-001",
)
