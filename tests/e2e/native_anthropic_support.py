"""What the ``/anthropic`` end-to-end tests share: Anthropic (native), OpenAI and Gemini fakes
behind one gateway, and the official anthropic SDK in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import API_KEY as GEMINI_KEY
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

ANT_KEY = "sk-ant-fake-native"
MASTER = "sk-gateway-master"
CLAUDE = "claude-sonnet-4-5-20250929"
USER: list[Any] = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass
class Env:
    ant: FakeAnthropic
    openai: FakeOpenAI
    gemini: FakeGemini
    gateway: Gateway
    sdk: anthropic.AsyncAnthropic

    def url(self, path: str) -> str:
        return str(self.gateway.client.make_url(path))


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeAnthropic, FakeGemini]]:
    ant = await FakeAnthropic(api_key=ANT_KEY).start()
    gemini = await FakeGemini().start()
    try:
        yield ant, gemini
    finally:
        await ant.close()
        await gemini.close()


def config(ant: FakeAnthropic, gemini: FakeGemini, openai: FakeOpenAI, **extra: Any) -> Any:
    return {
        "auth": {"master_key": MASTER},
        "providers": {
            "anthropic": {"base_url": ant.base_url, "keys": [{"value": ANT_KEY}]},
            "openai": provider_for(openai),
            "gemini": {"base_url": gemini.base_url, "keys": [{"value": GEMINI_KEY}]},
        },
        **extra,
    }


@pytest.fixture
async def env(
    make_gateway: MakeGateway, fakes: tuple[FakeAnthropic, FakeGemini], fake_openai: FakeOpenAI
) -> AsyncIterator[Env]:
    ant, gemini = fakes
    gateway = await make_gateway(config(ant, gemini, fake_openai))
    base = str(gateway.client.make_url("/anthropic"))
    sdk = anthropic.AsyncAnthropic(base_url=base, api_key=MASTER, max_retries=0)
    try:
        yield Env(ant, fake_openai, gemini, gateway, sdk)
    finally:
        await sdk.close()


def event_names(raw: bytes) -> list[str]:
    """The event names of an SSE body, in order."""
    return [
        line.removeprefix(b"event: ").decode()
        for line in raw.split(b"\n")
        if line.startswith(b"event: ")
    ]
