"""Each fault of the faulty fake, one request at a time, through the gateway with a fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.conftest import Gateway, MakeGateway
from tests.fakes.faulty import Fault, FaultPlan, FaultyOpenAI
from tests.fakes.openai import FakeOpenAI

FULL_TEXT = "Hello from the fake!"
ARGS: dict[str, Any] = {
    "model": "flaky/gpt-4o-mini",
    "messages": [{"role": "user", "content": "Hi"}],
    "extra_body": {"fallbacks": ["backup/gpt-4o-mini"]},
}
BEFORE_FIRST_BYTE = [f for f in Fault if f is not Fault.NONE]


async def read_text(
    stream: openai.AsyncStream[ChatCompletionChunk],
) -> tuple[str, openai.APIError | None]:
    """The streamed text, and the error event that ended the stream, if one did."""
    text = ""
    try:
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
    except openai.APIError as exc:
        return text, exc
    return text, None


@pytest.fixture
async def primary() -> AsyncIterator[FaultyOpenAI]:
    async with FaultyOpenAI() as fake:
        yield fake


@pytest.fixture
async def gateway(
    make_gateway: MakeGateway, primary: FaultyOpenAI, fake_backup: FakeOpenAI
) -> Gateway:
    def provider(fake: FakeOpenAI, key: str, **extra: Any) -> dict[str, Any]:
        no_retries = {"max_retries": 0}
        return {"base_url": fake.base_url, "keys": [{"value": key}], "retry": no_retries, **extra}

    return await make_gateway(
        {
            "providers": {
                "flaky": {"type": "openai", **provider(primary, "sk-fake-upstream", timeout_s=0.5)},
                "backup": {"type": "openai", **provider(fake_backup, "sk-fake-backup")},
            }
        }
    )


@pytest.mark.parametrize("fault", BEFORE_FIRST_BYTE, ids=lambda f: f.value)
async def test_json_request_falls_back_from_each_fault(
    gateway: Gateway, primary: FaultyOpenAI, fake_backup: FakeOpenAI, fault: Fault
) -> None:
    """Whatever the primary does wrong to a JSON request, the fallback answers it."""
    primary.plan = FaultPlan.spread(1.0, seed=1, only=[fault], stall_s=30)
    raw = await gateway.sdk().chat.completions.with_raw_response.create(**ARGS)
    assert FULL_TEXT == raw.parse().choices[0].message.content
    assert "backup" == raw.headers["x-thruway-provider"]
    assert [fault] == [i.fault for i in primary.history]
    assert 1 == len(fake_backup.requests)


@pytest.mark.parametrize(
    "fault",
    list(BEFORE_FIRST_BYTE),
    ids=lambda f: f.value,
)
async def test_stream_falls_back_from_each_fault_before_its_first_event(
    gateway: Gateway, primary: FaultyOpenAI, fake_backup: FakeOpenAI, fault: Fault
) -> None:
    """Whatever the primary does wrong to a stream before its first event, the client gets
    one clean stream from the fallback."""
    primary.plan = FaultPlan.spread(1.0, seed=1, only=[fault], stall_s=30, events_before_fault=0)
    stream = await gateway.sdk().chat.completions.create(stream=True, **ARGS)
    text = ""
    try:
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
    except ValueError as exc:  # the SDK's JSONDecodeError on an event that is not JSON
        raise AssertionError(f"the client received a malformed event: {exc}") from exc
    assert FULL_TEXT == text
    assert "backup" == stream.response.headers["x-thruway-provider"]
    assert 1 == len(fake_backup.requests)


@pytest.mark.parametrize("fault", [Fault.STALL_MID, Fault.TRUNCATED], ids=lambda f: f.value)
async def test_stream_failing_after_its_first_event_ends_with_an_error_event(
    gateway: Gateway, primary: FaultyOpenAI, fake_backup: FakeOpenAI, fault: Fault
) -> None:
    """A stream whose upstream fails after its first event ends with an error event, and the
    fallback is not tried (the response was committed)."""
    primary.plan = FaultPlan.spread(1.0, seed=1, only=[fault], stall_s=30, events_before_fault=2)
    stream = await gateway.sdk().chat.completions.create(stream=True, **ARGS)
    text, error = await read_text(stream)
    assert type(error) is openai.APIError  # an error event, not a status or connection error
    assert "flaky" in error.message
    assert FULL_TEXT.startswith(text)
    assert FULL_TEXT != text
    assert [] == fake_backup.requests
