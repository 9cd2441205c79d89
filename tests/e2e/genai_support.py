"""What the ``/genai`` end-to-end tests share: the google-genai SDK pointed at a gateway with a
Gemini, an Anthropic and an OpenAI upstream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import types

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.openai import FakeOpenAI

__all__ = ["CLAUDE", "GEMINI", "GPT", "MODELS", "WEATHER", "Env", "genai_env", "sdk"]

ANTHROPIC_KEY = "sk-ant-fake"
GEMINI = "gemini-2.5-flash"
CLAUDE = "anthropic/claude-sonnet-4-5-20250929"
GPT = "openai/gpt-4o-mini"
MODELS = [GEMINI, CLAUDE, GPT]
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)


@dataclass
class Env:
    gemini: FakeGemini
    anthropic: FakeAnthropic
    openai: FakeOpenAI
    gateway: Gateway
    client: genai.Client

    def last(self, model: str) -> Any:
        """The body the upstream serving ``model`` received last."""
        if model.startswith("anthropic/"):
            return self.anthropic.requests[-1].json
        if model.startswith("openai/"):
            return self.openai.requests[-1].json
        return self.gemini.requests[-1].json


def sdk(gateway: Gateway, version: str = "v1beta", key: str = "sk-anything") -> genai.Client:
    """The SDK against ``gateway``'s ``/genai``; the caller closes it (``aio.aclose``)."""
    root = str(gateway.client.make_url("/genai"))
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=root, api_version=version)
    )


@contextlib.asynccontextmanager
async def genai_env(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> AsyncIterator[Env]:
    gemini = await FakeGemini().start()
    anthropic = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    gateway = await make_gateway(
        {
            "providers": {
                "gemini": {"base_url": gemini.base_url, "keys": [{"value": API_KEY}]},
                "anthropic": {
                    "base_url": anthropic.base_url,
                    "keys": [{"value": ANTHROPIC_KEY}],
                },
                "openai": provider_for(fake_openai),
            }
        }
    )
    client = sdk(gateway)
    try:
        yield Env(gemini, anthropic, fake_openai, gateway, client)
    finally:
        await client.aio.aclose()
        await gemini.close()
        await anthropic.close()
