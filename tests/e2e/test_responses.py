"""The Responses API through the official openai SDK, for providers served through translation
(Anthropic, Gemini) and natively (OpenAI), on SQLite and on PostgreSQL.

Each test runs against every (provider, store) pair: the fake upstream is scripted with neutral
turns, and what it received is checked in its own wire format where it matters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.conftest import Gateway, MakeGateway
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import FakeServer
from tests.fakes.gemini import API_KEY as GEMINI_KEY
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn, split

ANTHROPIC_KEY = "sk-ant-fake-responses"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@dataclass
class Upstream:
    name: str
    fake: FakeServer
    model: str
    config: dict[str, Any]
    # The text of every message the upstream received in its last request, oldest first.
    texts: Callable[[Any], list[str]]


def _anthropic_texts(body: Any) -> list[str]:
    out = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
            continue
        for block in content:
            if block["type"] == "text":
                out.append(block["text"])
            elif block["type"] == "tool_use":
                out.append(f"call:{block['id']}:{block['name']}")
            elif block["type"] == "tool_result":
                inner = block["content"]
                text = inner if isinstance(inner, str) else "".join(b["text"] for b in inner)
                out.append(f"result:{block['tool_use_id']}:{text}")
    return out


def _gemini_texts(body: Any) -> list[str]:
    out = []
    for content in body["contents"]:
        for part in content["parts"]:
            if "text" in part and not part.get("thought"):
                out.append(part["text"])
            elif "functionCall" in part:
                out.append(f"call:{part['functionCall']['name']}")
            elif "functionResponse" in part:
                response = part["functionResponse"]["response"]
                out.append(f"result:{part['functionResponse']['name']}:{json.dumps(response)}")
    return out


def _openai_texts(body: Any) -> list[str]:
    out = []
    for item in body["input"]:
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            if isinstance(content, str):
                out.append(content)
            else:
                out += [part["text"] for part in content if "text" in part]
        elif kind == "function_call":
            out.append(f"call:{item['call_id']}:{item['name']}")
        elif kind == "function_call_output":
            out.append(f"result:{item['call_id']}:{item['output']}")
    return out


OPENAI_TOO_LONG = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)


class ScriptedOpenAI:
    """The fake OpenAI scripted with the neutral turns the other fakes take."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.base_url = fake.base_url

    @property
    def requests(self) -> list[Any]:
        return [r for r in self.fake.requests if r.path == "/v1/responses"]

    def script(self, *turns: Turn) -> None:
        self.fake.enqueue(*(self._behavior(turn) for turn in turns))

    @staticmethod
    def _behavior(turn: Turn) -> Behavior:
        if turn.error is not None:
            status = {"rate_limit": 429, "overloaded": 503, "server": 500, "auth": 401}
            code = "context_length_exceeded" if turn.error == "invalid" else None
            error = {
                "message": turn.error_message,
                "type": "invalid_request_error",
                "param": turn.error_param,
                "code": code,
            }
            return Behavior(
                status=status.get(turn.error, 400),
                error_body=json.dumps({"error": error}).encode(),
            )
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in turn.tool_calls]
        return Behavior(
            content=turn.text,
            deltas=split(turn.text, turn.pieces) if turn.text else None,
            tool_calls=calls or None,
            usage=(turn.prompt_tokens, turn.completion_tokens),
            delay_s=turn.delay_s,
            cut_after=turn.cut_after,
            finish_reason=turn.finish,
        )

    async def close(self) -> None:
        await self.fake.close()


@pytest.fixture(params=["openai", "anthropic", "gemini"])
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    if request.param == "openai":
        scripted: Any = ScriptedOpenAI(await FakeOpenAI().start())
        made = Upstream(
            "openai",
            scripted,
            "openai/gpt-4.1-mini",
            {"base_url": scripted.base_url, "keys": [{"value": scripted.fake.api_key}]},
            _openai_texts,
        )
        try:
            yield made
        finally:
            await scripted.close()
        return
    if request.param == "anthropic":
        fake: FakeServer = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
        made = Upstream(
            "anthropic",
            fake,
            "anthropic/claude-sonnet-4-5",
            {"base_url": fake.base_url, "keys": [{"value": ANTHROPIC_KEY}]},  # type: ignore[attr-defined]
            _anthropic_texts,
        )
    else:
        fake = await FakeGemini().start()
        made = Upstream(
            "gemini",
            fake,
            "gemini/gemini-2.5-flash",
            {"base_url": fake.base_url, "keys": [{"value": GEMINI_KEY}]},  # type: ignore[attr-defined]
            _gemini_texts,
        )
    try:
        yield made
    finally:
        await fake.close()


@dataclass
class Env:
    up: Upstream
    gateway: Gateway
    sdk: openai.AsyncOpenAI

    @property
    def model(self) -> str:
        return self.up.model

    def sent(self, index: int = -1) -> list[str]:
        return self.up.texts(self.up.fake.requests[index].json)


@pytest.fixture
async def env(store_url: str, make_gateway: MakeGateway, upstream: Upstream) -> Env:
    # store_url first: set up first, torn down last, after the gateways (closing, a gateway
    # writes its last usage records to the store).
    gateway = await make_gateway(
        {
            "providers": {upstream.name: upstream.config},
            "store": {"url": store_url, "poll_interval_s": 0.05, "lease_s": 2},
        }
    )
    return Env(upstream, gateway, gateway.sdk())


def script(env: Env, *turns: Turn) -> None:
    env.up.fake.script(*turns)


async def wait_for(env: Env, response_id: str, *statuses: str, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await env.sdk.responses.retrieve(response_id)
        if got.status in statuses:
            return got
        assert asyncio.get_running_loop().time() < deadline, f"still {got.status}"
        await asyncio.sleep(0.05)


# --- one turn ---------------------------------------------------------------------------------


async def test_text_answer_is_stored_and_retrievable(env: Env) -> None:
    script(env, Turn(text="Paris is the capital.", prompt_tokens=21, completion_tokens=6))
    resp = await env.sdk.responses.create(
        model=env.model,
        input="What is the capital of France?",
        instructions="Answer briefly.",
        metadata={"case": "text"},
    )
    assert resp.status == "completed"
    assert resp.output_text == "Paris is the capital."
    assert resp.id.startswith("resp_")
    assert resp.instructions == "Answer briefly."
    assert resp.metadata == {"case": "text"}
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (21, 6)
    extra = resp.model_extra or {}
    assert extra["extra_fields"]["provider"] == env.up.name
    assert extra["extra_fields"]["request_type"] == "responses"
    assert env.sent() == ["What is the capital of France?"]

    again = await env.sdk.responses.retrieve(resp.id)
    assert again.output_text == "Paris is the capital."
    assert again.status == "completed"
    items = await env.sdk.responses.input_items.list(resp.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "What is the capital of France?"  # type: ignore[union-attr]


async def test_unstored_response_is_not_kept(env: Env) -> None:
    resp = await env.sdk.responses.create(model=env.model, input="Hi", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        await env.sdk.responses.retrieve(resp.id)


async def test_delete(env: Env) -> None:
    resp = await env.sdk.responses.create(model=env.model, input="Hi")
    await env.sdk.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        await env.sdk.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        await env.sdk.responses.delete(resp.id)


async def test_structured_output(env: Env) -> None:
    script(env, Turn(text='{"city": "Paris", "population": 2102650}'))
    resp = await env.sdk.responses.create(
        model=env.model,
        input="Biggest French city, as JSON.",
        text={
            "format": {
                "type": "json_schema",
                "name": "city",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "population": {"type": "integer"},
                    },
                    "required": ["city", "population"],
                    "additionalProperties": False,
                },
            }
        },
    )
    assert json.loads(resp.output_text) == {"city": "Paris", "population": 2102650}
    fmt = resp.text.format  # type: ignore[union-attr]
    assert fmt.type == "json_schema"
    sent = json.dumps(env.up.fake.requests[-1].json)
    assert "population" in sent  # the schema reached the upstream


# --- the tool loop ----------------------------------------------------------------------------


async def test_two_turn_tool_loop_through_previous_response_id(env: Env) -> None:
    script(
        env,
        Turn(
            text="",
            tool_calls=[ToolCallSpec("toolu_01A", "get_weather", '{"city": "Paris"}')],
            finish="tool_calls",
        ),
        Turn(text="It is sunny in Paris."),
    )
    first = await env.sdk.responses.create(
        model=env.model,
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}

    second = await env.sdk.responses.create(
        model=env.model,
        previous_response_id=first.id,
        tools=[WEATHER],  # type: ignore[list-item]
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}
        ],
    )
    assert second.output_text == "It is sunny in Paris."
    assert second.previous_response_id == first.id
    sent = env.sent()
    assert sent[0] == "Weather in Paris?"
    # The call and its result went back, matched to each other.
    assert any(s.startswith("call:") and "get_weather" in s for s in sent)
    results = [s for s in sent if s.startswith("result:")]
    assert len(results) == 1
    assert "sunny" in results[0]
    if env.up.name == "openai":
        # The gateway keeps the state: OpenAI gets the whole history, unstored.
        body = env.up.fake.requests[-1].json
        assert body["store"] is False
        assert "previous_response_id" not in body
        assert body["model"] == "gpt-4.1-mini"
    if env.up.name in ("anthropic", "openai"):
        assert f"call:{call.call_id}:get_weather" in sent
        assert results[0].startswith(f"result:{call.call_id}:")


async def test_unknown_previous_response_is_a_400(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.responses.create(
            model=env.model, input="Hi", previous_response_id="resp_does_not_exist"
        )
    body: Any = caught.value.body
    assert body["param"] == "previous_response_id"
    assert "resp_does_not_exist" in body["message"]
    assert env.up.fake.requests == []


async def test_builtin_tool_is_refused_by_name(env: Env) -> None:
    if env.up.name == "openai":
        # OpenAI's own tools go to OpenAI as they are.
        await env.sdk.responses.create(
            model=env.model, input="Search the news.", tools=[{"type": "web_search"}]
        )
        assert env.up.fake.requests[-1].json["tools"] == [{"type": "web_search"}]
        return
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.responses.create(
            model=env.model, input="Search the news.", tools=[{"type": "web_search"}]
        )
    body: Any = caught.value.body
    assert "web_search" in body["message"]
    assert body["param"] == "tools[0]"
    assert env.up.fake.requests == []


# --- streaming --------------------------------------------------------------------------------


async def test_stream_event_order_and_final_response(env: Env) -> None:
    script(env, Turn(text="One two three four.", pieces=4))
    async with env.sdk.responses.stream(model=env.model, input="Count.") as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types.count("response.output_text.delta") == 4
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "One two three four."
    stored = await env.sdk.responses.retrieve(final.id)
    assert stored.status == "completed"
    assert stored.output_text == "One two three four."


async def test_stream_of_a_tool_call(env: Env) -> None:
    script(
        env,
        Turn(
            text="",
            tool_calls=[ToolCallSpec("toolu_02B", "get_weather", '{"city": "Rome"}')],
            finish="tool_calls",
        ),
    )
    async with env.sdk.responses.stream(
        model=env.model,
        input="Weather in Rome?",
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in types
    assert "response.function_call_arguments.done" in types
    call = next(item for item in final.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"city": "Rome"}


async def test_stream_failure_after_start_ends_with_response_failed(env: Env) -> None:
    script(env, Turn(text="a b c d e f", pieces=6, cut_after=3))
    async with env.sdk.responses.stream(model=env.model, input="Go.") as stream:
        events = [event async for event in stream]
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed"
    failed: Any = events[-1]
    assert failed.response.error.code == "server_error"
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    stored = await env.sdk.responses.retrieve(failed.response.id)
    assert stored.status == "failed"


# --- conversations ----------------------------------------------------------------------------


async def test_conversation_collects_turns(env: Env) -> None:
    conv = await env.sdk.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}],
        metadata={"topic": "names"},
    )
    assert conv.metadata == {"topic": "names"}
    script(env, Turn(text="Nice to meet you, Ada."), Turn(text="You are Ada."))
    await env.sdk.responses.create(model=env.model, input="Hello!", conversation=conv.id)
    second = await env.sdk.responses.create(
        model=env.model, input="What is my name?", conversation=conv.id
    )
    assert second.output_text == "You are Ada."
    assert env.sent() == [
        "My name is Ada.",
        "Hello!",
        "Nice to meet you, Ada.",
        "What is my name?",
    ]
    items = await env.sdk.conversations.items.list(conv.id, order="asc")
    assert len(items.data) == 5
    texts = [item.content[0].text for item in items.data]  # type: ignore[union-attr]
    assert texts == [
        "My name is Ada.",
        "Hello!",
        "Nice to meet you, Ada.",
        "What is my name?",
        "You are Ada.",
    ]
    one = await env.sdk.conversations.items.retrieve(items.data[1].id, conversation_id=conv.id)  # type: ignore[union-attr]
    assert one.id == items.data[1].id  # type: ignore[union-attr]
    updated = await env.sdk.conversations.update(conv.id, metadata={"topic": "ada"})
    assert updated.metadata == {"topic": "ada"}
    added = await env.sdk.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "user", "content": "Bye."}]
    )
    assert len(added.data) == 1
    await env.sdk.conversations.items.delete(added.data[0].id, conversation_id=conv.id)  # type: ignore[union-attr]
    assert len((await env.sdk.conversations.items.list(conv.id)).data) == 5
    deleted = await env.sdk.conversations.delete(conv.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        await env.sdk.conversations.retrieve(conv.id)


async def test_previous_response_and_conversation_together_is_a_400(env: Env) -> None:
    conv = await env.sdk.conversations.create()
    first = await env.sdk.responses.create(model=env.model, input="Hi")
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.responses.create(
            model=env.model, input="Again", previous_response_id=first.id, conversation=conv.id
        )
    assert (caught.value.body or {})["param"] == "conversation"  # type: ignore[index]


# --- background -------------------------------------------------------------------------------


async def test_background_runs_and_is_polled(env: Env) -> None:
    script(env, Turn(text="Done in the background.", delay_s=0.2))
    queued = await env.sdk.responses.create(model=env.model, input="Work.", background=True)
    assert queued.status in ("queued", "in_progress")
    assert queued.background is True
    done = await wait_for(env, queued.id, "completed")
    assert done.output_text == "Done in the background."


async def test_background_cancel(env: Env) -> None:
    script(env, Turn(text="never", delay_s=30))
    queued = await env.sdk.responses.create(model=env.model, input="Slow.", background=True)
    await wait_for(env, queued.id, "in_progress")
    cancelled = await env.sdk.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    again = await env.sdk.responses.retrieve(queued.id)
    assert again.status == "cancelled"


async def test_only_background_responses_can_be_cancelled(env: Env) -> None:
    resp = await env.sdk.responses.create(model=env.model, input="Hi")
    with pytest.raises(openai.BadRequestError):
        await env.sdk.responses.cancel(resp.id)


async def test_background_without_store_is_a_400(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.responses.create(model=env.model, input="Hi", background=True, store=False)
    assert (caught.value.body or {})["param"] == "background"  # type: ignore[index]


async def test_background_stream_resumes_from_a_sequence_number(env: Env) -> None:
    script(env, Turn(text="alpha beta gamma delta", pieces=4))
    stream = await env.sdk.responses.create(
        model=env.model, input="Stream.", background=True, stream=True
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    response_id = events[0].response.id  # type: ignore[union-attr]
    resumed = await env.sdk.responses.retrieve(response_id, stream=True, starting_after=3)
    again = [event async for event in resumed]
    assert [e.sequence_number for e in again] == [e.sequence_number for e in events[4:]]
    assert again[-1].type == "response.completed"
    final: Any = again[-1]
    assert final.response.output_text == "alpha beta gamma delta"


# --- input tokens -----------------------------------------------------------------------------


async def test_input_tokens_are_counted_by_the_provider(env: Env) -> None:
    raw = await env.sdk.responses.input_tokens.with_raw_response.count(
        model=env.model, input="Count these words please.", instructions="Be brief."
    )
    got = raw.parse()
    assert got.input_tokens > 0
    assert raw.headers["x-thruway-token-count"] == "provider"
    fake: Any = env.up.fake
    counted = fake.fake.requests[-1] if env.up.name == "openai" else fake.requests[-1]
    assert "count" in counted.path.lower() or "input_tokens" in counted.path
    assert "Count these words please." in json.dumps(counted.json)


async def test_input_tokens_are_estimated_where_the_provider_cannot_count(
    make_gateway: MakeGateway, fake_backup: FakeOpenAI
) -> None:
    gateway = await make_gateway(
        {"providers": {"groq": {"base_url": fake_backup.base_url, "keys": [{"value": "k"}]}}}
    )
    raw = await gateway.sdk().responses.input_tokens.with_raw_response.count(
        model="groq/llama-3.3-70b", input="Count these words please."
    )
    assert raw.parse().input_tokens > 0
    assert raw.headers["x-thruway-token-count"] == "estimated"
    assert fake_backup.requests == []


# --- who may see what -------------------------------------------------------------------------


async def test_stored_state_is_scoped_to_the_callers_key(
    store_url: str, make_gateway: MakeGateway
) -> None:
    """Two gateways share one store, each with its own key: neither caller can read, list,
    continue, cancel or delete what the other stored."""
    async with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        providers = {"anthropic": {"base_url": fake.base_url, "keys": [{"value": ANTHROPIC_KEY}]}}
        store = {"url": store_url}
        alice_gw = await make_gateway(
            {"providers": providers, "store": store, "auth": {"master_key": "key-alice"}}
        )
        bob_gw = await make_gateway(
            {"providers": providers, "store": store, "auth": {"master_key": "key-bob"}}
        )
        alice = alice_gw.sdk(api_key="key-alice")
        bob = bob_gw.sdk(api_key="key-bob")
        model = "anthropic/claude-sonnet-4-5"
        mine = await alice.responses.create(model=model, input="Secret plans.")
        conv = await alice.conversations.create(items=[{"role": "user", "content": "Secret."}])
        assert (await alice.responses.retrieve(mine.id)).id == mine.id
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.input_items.list(mine.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.cancel(mine.id)
        with pytest.raises(openai.NotFoundError):
            await bob.conversations.retrieve(conv.id)
        with pytest.raises(openai.NotFoundError):
            await bob.conversations.items.list(conv.id)
        with pytest.raises(openai.BadRequestError):
            await bob.responses.create(model=model, input="More?", previous_response_id=mine.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.create(model=model, input="More?", conversation=conv.id)
        # Alice still has everything.
        assert (await alice.responses.retrieve(mine.id)).output_text
        assert len((await alice.conversations.items.list(conv.id)).data) == 1


# --- truncation -------------------------------------------------------------------------------

TOO_LONG = {
    "openai": OPENAI_TOO_LONG,
    "anthropic": "prompt is too long: 215000 tokens > 200000 maximum",
    "gemini": "The input token count (1200000) exceeds the maximum number of tokens allowed "
    "(1048576).",
}


async def _two_turns(env: Env) -> str:
    script(env, Turn(text="First answer."), Turn(text="Second answer."))
    first = await env.sdk.responses.create(model=env.model, input="First question.")
    second = await env.sdk.responses.create(
        model=env.model, input="Second question.", previous_response_id=first.id
    )
    return second.id


@pytest.mark.parametrize("stream", [False, True])
async def test_truncation_auto_drops_the_oldest_turns(env: Env, stream: bool) -> None:
    previous = await _two_turns(env)
    overflow = Turn(error="invalid", error_message=TOO_LONG[env.up.name])
    script(env, overflow, overflow, Turn(text="Fits now."))
    kwargs: dict[str, Any] = {
        "model": env.model,
        "input": "Third question.",
        "previous_response_id": previous,
        "truncation": "auto",
    }
    if stream:
        async with env.sdk.responses.stream(**kwargs) as events:
            resp = await events.get_final_response()
    else:
        resp = await env.sdk.responses.create(**kwargs)
    assert resp.output_text == "Fits now."
    assert resp.truncation == "auto"
    sent = [env.sent(i) for i in (-3, -2, -1)]
    assert sent[0] == [
        "First question.",
        "First answer.",
        "Second question.",
        "Second answer.",
        "Third question.",
    ]
    assert sent[1] == ["Second question.", "Second answer.", "Third question."]
    assert sent[2] == ["Third question."]
    # What is stored is the whole conversation: the next turn starts from all of it again.
    items = await env.sdk.responses.input_items.list(resp.id, order="asc")
    assert len(items.data) == 5


async def test_truncation_disabled_lets_the_provider_error_through(env: Env) -> None:
    previous = await _two_turns(env)
    script(env, Turn(error="invalid", error_message=TOO_LONG[env.up.name]))
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.responses.create(
            model=env.model, input="Third question.", previous_response_id=previous
        )
    assert TOO_LONG[env.up.name] in str(caught.value)
    assert len(env.up.fake.requests) == 3


async def test_truncation_gives_up_when_the_input_alone_is_too_long(env: Env) -> None:
    script(env, Turn(error="invalid", error_message=TOO_LONG[env.up.name]))
    with pytest.raises(openai.BadRequestError):
        await env.sdk.responses.create(model=env.model, input="Huge.", truncation="auto")
    assert len(env.up.fake.requests) == 1


async def test_reasoning_streams_as_a_summary_and_goes_back_next_turn(env: Env) -> None:
    if env.up.name == "openai":
        pytest.skip("OpenAI returns no reasoning text")
    script(
        env,
        Turn(
            text="",
            reasoning="The user wants the weather; call the tool.",
            tool_calls=[ToolCallSpec("toolu_03C", "get_weather", '{"city": "Oslo"}')],
            finish="tool_calls",
        ),
        Turn(text="Cold in Oslo."),
    )
    async with env.sdk.responses.stream(
        model=env.model,
        input="Weather in Oslo?",
        tools=[WEATHER],  # type: ignore[list-item]
        reasoning={"effort": "low", "summary": "auto"},
    ) as stream:
        types = [event.type async for event in stream]
        first = await stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in types
    reasoning = next(item for item in first.output if item.type == "reasoning")
    assert reasoning.summary[0].text == "The user wants the weather; call the tool."
    assert reasoning.encrypted_content  # what the provider needs back (signatures)
    call = next(item for item in first.output if item.type == "function_call")
    second = await env.sdk.responses.create(
        model=env.model,
        previous_response_id=first.id,
        tools=[WEATHER],  # type: ignore[list-item]
        reasoning={"effort": "low"},
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-5C"}],
    )
    assert second.output_text == "Cold in Oslo."
    body = json.dumps(env.up.fake.requests[-1].json)
    # The signed reasoning went back with the tool call (fakes refuse a turn without it).
    assert "sig-fake-0001" in body or "thoughtSignature" in body


async def test_cost_is_in_extra_fields(env: Env) -> None:
    """A priced model's Responses answer, whole or streamed, says what it cost."""
    if env.up.name != "openai":
        pytest.skip("the fake OpenAI's model is the one with a price in the shipped table")
    resp = await env.sdk.responses.create(model=env.model, input="Hi")
    extra = (resp.model_extra or {})["extra_fields"]
    assert extra["cost_usd"] > 0
    stream = await env.sdk.responses.create(model=env.model, input="Hi", stream=True)
    events = [event async for event in stream]
    last = events[-1]
    assert last.type == "response.completed"
    assert (last.model_extra or {})["extra_fields"]["cost_usd"] > 0


async def test_bad_conversation_input_names_the_field(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.conversations.create(items=[{"role": "wizard", "content": "x"}])  # type: ignore[list-item]
    body: Any = caught.value.body
    assert body["param"] == "items[0].role"
    with pytest.raises(openai.BadRequestError) as caught:
        await env.sdk.conversations.update("conv_x", metadata="nope")  # type: ignore[arg-type]
    assert (caught.value.body or {})["param"] == "metadata"  # type: ignore[index]
