"""OpenAI-compatible services: each gets OpenAI's body adjusted to what it accepts."""

from __future__ import annotations

import msgspec
import openai
import pytest
from structlog.testing import capture_logs

from tests.conftest import MakeGateway, provider_for
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "Hi"}]


async def test_groq_refuses_documented_parameters(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Groq documents logprobs and n>1 as 400s: refused up front, naming the parameter."""
    gateway = await make_gateway({"providers": {"groq": provider_for(fake_openai, type="groq")}})
    client = gateway.sdk()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="groq/llama", messages=USER, logprobs=True)
    assert "logprobs" == info.value.param
    assert "unsupported_parameter" == info.value.code
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="groq/llama", messages=USER, n=2)
    assert [] == fake_openai.requests
    await client.chat.completions.create(
        model="groq/llama", messages=USER, n=1, logprobs=False, store=True, metadata={"a": "b"}
    )
    sent = fake_openai.requests[-1].json
    assert (1, False) == (sent["n"], sent["logprobs"])
    assert "store" not in sent
    assert "metadata" not in sent


async def test_mistral_gets_its_own_field_names(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Mistral 422s on OpenAI-only fields: they are renamed or dropped before it sees them."""
    gateway = await make_gateway(
        {"providers": {"mistral": provider_for(fake_openai, type="mistral")}}
    )
    stream = await gateway.sdk().chat.completions.create(
        model="mistral/mistral-small-latest",
        messages=USER,
        max_completion_tokens=50,
        seed=3,
        user="u1",
        stream=True,
    )
    _ = [c async for c in stream]
    sent = fake_openai.requests[-1].json
    assert 50 == sent["max_tokens"]
    assert 3 == sent["random_seed"]
    for gone in ("max_completion_tokens", "seed", "user", "stream_options"):
        assert gone not in sent


async def test_keyless_local_server(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """A keyless local server (``keys: []``) gets no Authorization header."""
    fake_openai.api_key = None
    gateway = await make_gateway(
        {
            "providers": {
                "local-llm": {"type": "openai", "base_url": fake_openai.base_url, "keys": []}
            }
        }
    )
    result = await gateway.sdk().chat.completions.create(model="local-llm/qwen3", messages=USER)
    assert result.choices[0].message.content
    assert "authorization" not in fake_openai.requests[-1].headers
    assert "qwen3" == fake_openai.requests[-1].json["model"]


async def test_key_allow_lists(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """A key is used only for the models its ``models`` patterns allow."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "keys": [
                        {"value": "sk-fake-upstream", "models": ["gpt-4o*"]},
                        {"value": "sk-other", "models": ["o3"], "weight": 5},
                    ],
                }
            }
        }
    )
    for _ in range(5):
        await gateway.sdk().chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert {"Bearer sk-fake-upstream"} == {r.headers["authorization"] for r in fake_openai.requests}
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk().chat.completions.create(model="openai/gpt-5", messages=USER)
    assert "model_not_allowed" == info.value.code


async def test_model_list_with_restricted_keys(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """Listing models concerns no model in particular, so a key limited to some models serves."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "keys": [{"value": "sk-fake-upstream", "models": ["gpt-4o*"]}],
                }
            }
        }
    )
    listed = [m.id for m in (await gateway.sdk().models.list()).data]
    assert "openai/gpt-4o-mini" in listed


async def test_canonical_log_line_accounts_stream_usage(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """One canonical line per request carries status, provider, model, tokens and attempts."""
    gateway = await make_gateway({"providers": {"openai": provider_for(fake_openai)}})
    with capture_logs() as logs:
        resp = await gateway.client.post(
            "/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": USER, "stream": True},
        )
        await resp.read()
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert 1 == len(lines)
    line = lines[0]
    assert (200, "openai", "gpt-4o-mini", True, 1) == (
        line["status"],
        line["provider"],
        line["model"],
        line["stream"],
        line["attempts"],
    )
    assert (12, 5, 17) == (line["input_tokens"], line["output_tokens"], line["total_tokens"])
    assert line["ttfb_ms"] <= line["latency_ms"]
    assert "Hi" not in msgspec.json.encode(line).decode()
