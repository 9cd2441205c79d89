"""A virtual key is held to its allow-lists, rate limits and budget on every drop-in route, and
each SDK sees the refusal as its own error."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.e2e.genai_support import sdk as genai_sdk
from tests.e2e.test_keys import ADMIN, MASTER, create_key
from tests.e2e.test_native_bedrock import converse, raises, runtime
from tests.fakes.openai import Behavior, FakeOpenAI

MODEL = "openai/gpt-4o-mini"
# The genai SDK's async transport subclasses aiohttp's ClientSession, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)
USER: list[Any] = [{"role": "user", "content": "Hi"}]


def assert_never_upstream(fake: FakeOpenAI, *secrets: str) -> None:
    """The upstream saw its own key only, never a virtual key."""
    assert fake.requests
    for rec in fake.requests:
        for secret in secrets:
            assert secret not in str(rec.headers)
            assert secret.encode() not in rec.body


async def _gateway(make_gateway: MakeGateway, fake: FakeOpenAI) -> Gateway:
    return await make_gateway(
        {
            "providers": {"openai": provider_for(fake)},
            "auth": {"master_key": MASTER, "key_cache_ttl_s": 0},
            "pricing": {"openai/priced": {"input": 0, "output": 1000}},
        }
    )


def _anthropic(gateway: Gateway, key: str) -> anthropic.AsyncAnthropic:
    base = str(gateway.client.make_url("/anthropic"))
    return anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0)


async def test_anthropic_sdk_meets_the_keys_limits(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """On `/anthropic` a key past its rate limit raises `RateLimitError` (with the limit
    headers), one outside its allow-list `PermissionDeniedError`, one past its budget a 402."""
    gateway = await _gateway(make_gateway, fake_openai)
    limited = (await create_key(gateway, rate_limit={"rpm": 1}, models=[MODEL, "openai/priced"]))[
        "key"
    ]
    client = _anthropic(gateway, limited)
    try:
        first = await client.messages.with_raw_response.create(
            model=MODEL, max_tokens=16, messages=USER
        )
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=16, messages=USER)
        assert caught.value.response.headers["retry-after"]
        with pytest.raises(anthropic.PermissionDeniedError):
            await client.messages.create(model="openai/gpt-4o", max_tokens=16, messages=USER)
    finally:
        await client.close()

    broke = (await create_key(gateway, budget={"max_usd": 0.001, "period": "1d"}))["key"]
    client = _anthropic(gateway, broke)
    try:
        with pytest.raises(anthropic.APIStatusError) as refused:
            await client.messages.create(model="openai/priced", max_tokens=10, messages=USER)
        assert refused.value.status_code == 402
        assert refused.value.body["error"]["type"]  # Anthropic's shape
    finally:
        await client.close()
    assert_never_upstream(fake_openai, limited, broke)


async def test_genai_sdk_meets_the_keys_limits(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """On `/genai` a key past its rate limit gets Google's 429 `RESOURCE_EXHAUSTED`, one outside
    its allow-list a 403."""
    gateway = await _gateway(make_gateway, fake_openai)
    key = (await create_key(gateway, rate_limit={"rpm": 1}, models=[MODEL]))["key"]
    client = genai_sdk(gateway, key=key)
    try:
        got = await client.aio.models.generate_content(model=MODEL, contents="Hi")
        assert got.text
        with pytest.raises(genai_errors.ClientError) as caught:
            await client.aio.models.generate_content(model=MODEL, contents="Hi")
        assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
        with pytest.raises(genai_errors.ClientError) as denied:
            await client.aio.models.generate_content(model="openai/gpt-4o", contents="Hi")
        assert denied.value.code == 403
    finally:
        await client.aio.aclose()
    assert_never_upstream(fake_openai, key)


async def test_boto3_meets_the_keys_limits(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """On `/bedrock` a key past its rate limit raises boto3's `ThrottlingException`, one with
    an unknown key `AccessDeniedException`-style 401, named in `x-amzn-ErrorType` too."""
    gateway = await _gateway(make_gateway, fake_openai)
    key = (await create_key(gateway, rate_limit={"rpm": 1}))["key"]
    client = runtime(gateway, api_key=key)
    body = {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
    assert (await converse(client, **body))["output"]["message"]["content"]
    throttled = await raises(lambda: client.converse(**body))
    assert throttled.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"]
    stranger = runtime(gateway, api_key="sk-thr-unknown")
    unknown = await raises(lambda: stranger.converse(**body))
    assert unknown.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert_never_upstream(fake_openai, key)


async def test_openai_passthrough_meets_the_keys_limits(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    """On `/openai/v1` a key's allow-list covers the forwarded model (and keeps a key limited to
    some models off model-less endpoints), and its rate limit counts forwarded requests."""
    gateway = await _gateway(make_gateway, fake_openai)
    key = (await create_key(gateway, rate_limit={"rpm": 2}, models=[MODEL]))["key"]
    base = str(gateway.client.make_url("/openai/v1"))
    client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0)
    try:
        fake_openai.enqueue(Behavior())
        done = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert done.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="gpt-4o", messages=USER)
        with pytest.raises(openai.PermissionDeniedError):
            await client.models.list()
        await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    finally:
        await client.close()
    assert_never_upstream(fake_openai, key)
    statuses: list[int] = []
    for _ in range(100):  # the usage writer flushes every second
        logs = await (await gateway.client.get("/api/logs?limit=50", headers=ADMIN)).json()
        statuses = sorted(r["status"] for r in logs["data"] if r["route"].startswith("/openai/"))
        if len(statuses) == 5:
            break
        await asyncio.sleep(0.05)
    assert statuses == [200, 200, 403, 403, 429]
