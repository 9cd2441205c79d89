"""OpenAI (the pass-through reference): the conformance case over ``FakeOpenAI``."""

from __future__ import annotations

from typing import Any

from tests.conformance.cases import ProviderCase, Received
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import Turn, split

__all__ = ["CASE", "ScriptedOpenAI", "openai_received"]

_STATUS = {"rate_limit": 429, "overloaded": 503, "server": 500, "auth": 401, "invalid": 400}


class ScriptedOpenAI(FakeOpenAI):
    """``FakeOpenAI`` scripted with neutral turns."""

    def script(self, *turns: Turn) -> None:
        self.enqueue(*(_behavior(t) for t in turns))


def _behavior(t: Turn) -> Behavior:
    return Behavior(
        status=_STATUS[t.error] if t.error else 200,
        delay_s=t.delay_s,
        content=t.text,
        deltas=split(t.text, t.pieces),
        tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in t.tool_calls]
        or None,
        usage=(t.prompt_tokens, t.completion_tokens),
        cached_tokens=t.cached_tokens,
        reasoning_tokens=t.reasoning_tokens,
        gap_s=t.gap_s,
        cut_after=t.cut_after,
        stall_after_headers_s=t.stall_after_headers_s,
        finish_reason=t.finish,
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _image(url: str) -> str:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        return f"data:{head[5:].split(';')[0]}:{data}"
    return f"url:{url}"


def openai_received(rec: Any) -> Received:
    body = rec.json
    out = Received(stream=bool(body.get("stream")))
    out.max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    for m in body.get("messages", []):
        role = "system" if m["role"] == "developer" else m["role"]
        if role == "tool":
            out.tool_results.append((m["tool_call_id"], _text(m["content"])))
            continue
        text = _text(m.get("content"))
        if text:
            out.messages.append((role, text))
        if isinstance(m.get("content"), list):
            out.images += [
                _image(p["image_url"]["url"]) for p in m["content"] if p["type"] == "image_url"
            ]
    out.tools = [t["function"]["name"] for t in body.get("tools", [])]
    return out


async def _start() -> ScriptedOpenAI:
    return await ScriptedOpenAI(api_key="sk-fake-openai").start()


CASE = ProviderCase(
    id="openai",
    type="openai",
    model="gpt-4o-mini",
    start=_start,
    config=lambda fake: {"base_url": fake.base_url, "keys": [{"value": "sk-fake-openai"}]},
    received=openai_received,
    reasoning=False,  # OpenAI's chat API returns no reasoning text
    embeddings=True,
    embedding_model="text-embedding-3-small",
)
