"""AWS Bedrock (Converse): the conformance case over ``FakeBedrock``, signed with SigV4."""

from __future__ import annotations

from typing import Any

from tests.conformance.cases import ProviderCase, Received
from tests.fakes.bedrock import ACCESS_KEY, REGION, SECRET_KEY, FakeBedrock

__all__ = ["CASE", "bedrock_config", "bedrock_received"]

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def bedrock_config(fake: FakeBedrock, **extra: Any) -> dict[str, Any]:
    return {
        "type": "bedrock",
        "base_url": fake.root_url,
        "region": REGION,
        "credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
        **extra,
    }


def _result_text(content: list[dict[str, Any]]) -> str:
    return "".join(c.get("text", "") for c in content)


def bedrock_received(rec: Any) -> Received:
    body = rec.json
    out = Received(stream=rec.path.endswith("/converse-stream"))
    out.max_tokens = body.get("inferenceConfig", {}).get("maxTokens")
    out.messages = [("system", b["text"]) for b in body.get("system", []) if "text" in b]
    for m in body["messages"]:
        text = "".join(b["text"] for b in m["content"] if "text" in b)
        if text:
            out.messages.append((m["role"], text))
        for block in m["content"]:
            if "image" in block:
                image = block["image"]
                out.images.append(f"data:{_MIME[image['format']]}:{image['source']['bytes']}")
            if "toolResult" in block:
                result = block["toolResult"]
                out.tool_results.append((result["toolUseId"], _result_text(result["content"])))
    out.tools = [t["toolSpec"]["name"] for t in body.get("toolConfig", {}).get("tools", [])]
    return out


async def _start() -> FakeBedrock:
    return await FakeBedrock().start()


CASE = ProviderCase(
    id="bedrock",
    type="bedrock",
    model="anthropic.claude-3-7-sonnet-20250219-v1:0",
    start=_start,
    config=bedrock_config,
    received=bedrock_received,
    image_urls=False,  # Converse takes image bytes (or S3): URLs are downloaded by the gateway
    embeddings=True,
    embedding_model="amazon.titan-embed-text-v2:0",
)
