"""Background responses survive the gateway process: killed, stopped, or out of attempts; on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.e2e.test_process import gateway_process
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.script import Turn

KEY = "sk-ant-fake-restart"
MODEL = "anthropic/claude-sonnet-4-5"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = await FakeAnthropic(api_key=KEY).start()
    try:
        yield server
    finally:
        await server.close()


def _config(tmp_path: Path, fake: FakeAnthropic, url: str, **store: Any) -> Path:
    document = {
        "providers": {"anthropic": {"base_url": fake.base_url, "keys": [{"value": KEY}]}},
        "store": {
            "url": url,
            "lease_s": 1.0,
            "poll_interval_s": 0.05,
            **store,
        },
        "logging": {"format": "json"},
    }
    path = tmp_path / "thruway.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


async def _wait(sdk: openai.AsyncOpenAI, rid: str, *statuses: str, timeout: float = 15) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await sdk.responses.retrieve(rid)
        if got.status in statuses:
            return got
        assert loop.time() < deadline, f"{rid} is still {got.status}"
        await asyncio.sleep(0.05)


async def _until(predicate: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline
        await asyncio.sleep(0.02)


def _sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("how", ["kill", "term"])
async def test_interrupted_and_queued_responses_run_after_a_restart(
    tmp_path: Path, fake: FakeAnthropic, store_url: str, how: str
) -> None:
    """One response runs (its upstream stalls) and one waits in the queue when the gateway goes
    away; the next gateway on the same store finishes both."""
    config = _config(tmp_path, fake, store_url, background_concurrency=1)
    fake.script(Turn(text="never sent", delay_s=60), Turn(text="done"), Turn(text="done"))
    async with gateway_process(config) as gw:
        async with _sdk(gw.url) as sdk:
            running = await sdk.responses.create(model=MODEL, input="First.", background=True)
            await _until(lambda: len(fake.requests) == 1)
            waiting = await sdk.responses.create(model=MODEL, input="Second.", background=True)
            assert (await sdk.responses.retrieve(waiting.id)).status == "queued"
        if how == "kill":
            gw.proc.kill()
        else:
            gw.proc.send_signal(signal.SIGTERM)
        await gw.wait()
    async with gateway_process(config) as gw, _sdk(gw.url) as sdk:
        first = await _wait(sdk, running.id, "completed", "failed")
        second = await _wait(sdk, waiting.id, "completed", "failed")
    assert (first.status, first.output_text) == ("completed", "done")
    assert (second.status, second.output_text) == ("completed", "done")
    # The interrupted one was sent again, the queued one once.
    prompts = [r.json["messages"][0]["content"] for r in fake.requests]
    assert sorted(prompts) == ["First.", "First.", "Second."]


async def test_a_response_out_of_attempts_fails_with_a_clear_error(
    tmp_path: Path, fake: FakeAnthropic, store_url: str
) -> None:
    config = _config(tmp_path, fake, store_url, max_attempts=1)
    fake.script(Turn(text="never sent", delay_s=60))
    async with gateway_process(config) as gw:
        async with _sdk(gw.url) as sdk:
            running = await sdk.responses.create(model=MODEL, input="Once.", background=True)
            await _until(lambda: len(fake.requests) == 1)
        gw.proc.kill()
        await gw.wait()
    async with gateway_process(config) as gw, _sdk(gw.url) as sdk:
        failed = await _wait(sdk, running.id, "failed", "completed")
    assert failed.status == "failed"
    assert failed.error is not None
    assert "interrupted" in failed.error.message
    assert len(fake.requests) == 1
