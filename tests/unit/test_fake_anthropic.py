"""Self-tests of the fake Anthropic upstream, driven with the official ``anthropic`` SDK: what
the SDK parses, the fake renders in Anthropic's real wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic import AnthropicTurn, FakeAnthropic, Model
from tests.fakes.script import ToolCallSpec, Turn

KEY = "sk-ant-fake-self-test"
USER: list[Any] = [{"role": "user", "content": "Hi"}]
WEATHER = ToolCallSpec("toolu_01", "get_weather", '{"city": "Paris"}')


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = await FakeAnthropic(api_key=KEY).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


async def test_message(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    """A message parses in the SDK with its usage split the Anthropic way and a request id."""
    fake.script(Turn(prompt_tokens=120, cached_tokens=100, cache_creation_tokens=5))
    raw = await client.messages.with_raw_response.create(
        model="claude-opus-4-7", max_tokens=100, messages=USER
    )
    assert raw.headers["request-id"].startswith("req_")
    message = await raw.parse()
    assert message.id.startswith("msg_")
    assert message.model == "claude-opus-4-7"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello from the fake!"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (15, 100)
    assert (usage.cache_creation_input_tokens, usage.output_tokens) == (5, 5)
    sent = fake.requests[-1].headers
    # This SDK major sends API version 2026-10-21 and the key as a bearer token.
    assert (sent["anthropic-version"], sent["Authorization"]) == ("2026-10-21", f"Bearer {KEY}")


async def test_stream_with_thinking_and_tools(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    """The SDK's stream accumulator rebuilds thinking (with signature), text and tool input."""
    fake.script(Turn(text="Let me check.", reasoning="Use the tool.", tool_calls=[WEATHER]))
    async with client.messages.stream(
        model="claude-opus-4-7",
        max_tokens=4000,
        messages=USER,
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        message = await stream.get_final_message()
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text", "tool_use"]
    thinking, text, tool = message.content
    assert (thinking.thinking, thinking.signature) == ("Use the tool.", "sig-fake-0001")  # type: ignore[union-attr]
    assert text.text == "Let me check."  # type: ignore[union-attr]
    assert (tool.id, tool.name, tool.input) == ("toolu_01", "get_weather", {"city": "Paris"})  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 5


async def test_stream_error_event(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    """An error event after message_start is raised by the SDK as Anthropic's overload."""
    fake.script(AnthropicTurn(stream_error="overloaded_error"))
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(
            model="claude-opus-4-7", max_tokens=100, messages=USER
        ) as stream:
            await stream.get_final_message()
    assert "Overloaded" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("overloaded", anthropic.InternalServerError, 529),
        ("rate_limit", anthropic.RateLimitError, 429),
        ("server", anthropic.InternalServerError, 500),
        ("auth", anthropic.AuthenticationError, 401),
        ("invalid", anthropic.BadRequestError, 400),
    ],
)
async def test_scripted_errors(
    fake: FakeAnthropic,
    client: anthropic.AsyncAnthropic,
    kind: Any,
    error: type[anthropic.APIStatusError],
    status: int,
) -> None:
    """Each scripted error has Anthropic's status and error body."""
    fake.script(Turn(error=kind))
    with pytest.raises(error) as info:
        await client.messages.create(model="claude-opus-4-7", max_tokens=100, messages=USER)
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["request_id"].startswith("req_")
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"


async def test_refusals(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    """The fake refuses what Anthropic refuses: an unanswered tool_use, sampling parameters
    under API version 2026-10-21, a wrong key."""
    messages: list[Any] = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}],
        },
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="claude-opus-4-7", max_tokens=100, messages=messages)
    assert "toolu_9" in str(info.value)
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model="claude-opus-4-7", max_tokens=100, messages=USER, extra_body={"temperature": 0.5}
        )
    assert "temperature" in str(info.value)
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="wrong", max_retries=0
    ) as other:
        with pytest.raises(anthropic.AuthenticationError):
            await other.messages.create(model="claude-opus-4-7", max_tokens=10, messages=USER)


async def test_model_pages(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    """The model list pages with has_more and after_id, as the SDK's auto-paging expects."""
    fake.models.append(
        Model("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z")
    )
    ids = [m.id async for m in client.models.list(limit=2)]
    assert ids == [m.id for m in fake.models]
    assert [r.query.get("after_id") for r in fake.requests] == [None, "claude-sonnet-4-5-20250929"]


async def test_count_tokens(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    """The SDK's count_tokens gets the fake's deterministic count (words + 3 per message + 10
    per tool); a field the endpoint does not take is refused as an extra input."""
    tool: Any = {"name": "f", "input_schema": {"type": "object"}}
    counted = await client.messages.count_tokens(
        model="claude-opus-4-7", system="Be brief.", messages=USER, tools=[tool]
    )
    assert counted.input_tokens == 2 + 1 + 3 + 10
    assert fake.requests[-1].path == "/v1/messages/count_tokens"
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.count_tokens(
            model="claude-opus-4-7", messages=USER, extra_body={"max_tokens": 10}
        )
    assert "max_tokens: Extra inputs are not permitted" in str(info.value)
