"""Fallbacks: tried in order on a retryable failure, only before the first byte."""

from __future__ import annotations

import msgspec
import openai
import pytest

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import Behavior, FakeOpenAI

USER = [{"role": "user", "content": "Hi"}]
WITH_FALLBACK = {"fallbacks": ["backup/gpt-4o-mini"]}


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retryable_status_falls_back(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI, status: int
) -> None:
    """A retryable upstream error moves the request to the next target."""
    fake_openai.enqueue(Behavior(status=status))
    fake_backup.enqueue(Behavior(content="from backup"))
    raw = await gateway.sdk().chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=USER, extra_body=WITH_FALLBACK
    )
    result = raw.parse()
    assert "from backup" == result.choices[0].message.content
    assert "backup" == raw.headers["x-thruway-provider"]
    extra = result.model_extra["extra_fields"]
    assert (1, "backup") == (extra["fallback_index"], extra["provider"])
    assert "Bearer sk-fake-backup" == fake_backup.requests[-1].headers["authorization"]
    assert "gpt-4o-mini" == fake_backup.requests[-1].json["model"]


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_caller_errors_do_not_fall_back(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI, status: int
) -> None:
    """An error the caller must fix is returned at once; the fallback is not tried."""
    fake_openai.enqueue(Behavior(status=status))
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk().chat.completions.create(
            model="openai/gpt-4o-mini", messages=USER, extra_body=WITH_FALLBACK
        )
    assert status == info.value.status_code
    assert [] == fake_backup.requests


async def test_timeout_falls_back(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """An upstream that stalls past its timeout is abandoned for the fallback."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": provider_for(fake_openai, timeout_s=0.2),
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )
    fake_openai.enqueue(Behavior(delay_s=3))
    result = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, extra_body=WITH_FALLBACK
    )
    assert "backup" == result.model_extra["extra_fields"]["provider"]


async def test_unreachable_falls_back(make_gateway: MakeGateway, fake_backup: FakeOpenAI) -> None:
    """A refused connection falls back too."""
    gateway = await make_gateway(
        {
            "providers": {
                "dead": {"type": "vllm", "base_url": "http://127.0.0.1:9/v1"},
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )
    result = await gateway.sdk().chat.completions.create(
        model="dead/m", messages=USER, extra_body=WITH_FALLBACK
    )
    assert "backup" == result.model_extra["extra_fields"]["provider"]


async def test_stream_falls_back_before_the_first_event(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """An upstream that answers 200 and dies before its first event still falls back."""
    fake_openai.enqueue(Behavior(cut_after=0))
    fake_backup.enqueue(Behavior(deltas=["ok"]))
    resp = await gateway.client.post(
        "/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": USER, "stream": True, **WITH_FALLBACK},
    )
    assert 200 == resp.status
    assert "backup" == resp.headers["x-thruway-provider"]
    raw = await resp.read()
    assert b'"content":"ok"' in raw
    assert b'"error"' not in raw


async def test_stream_error_status_falls_back(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """A 429 answer to a streaming request falls back, and the client sees one clean stream."""
    fake_openai.enqueue(Behavior(status=429))
    stream = await gateway.sdk().chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, stream=True, extra_body=WITH_FALLBACK
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "Hello from the fake!" == text
    assert 1 == len(fake_backup.requests)


async def test_every_target_failing_returns_the_primary_error(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_backup: FakeOpenAI
) -> None:
    """When all targets fail the primary's status comes back, saying what the fallbacks did."""
    fake_openai.enqueue(Behavior(status=429))
    fake_backup.enqueue(Behavior(status=503))
    with pytest.raises(openai.RateLimitError) as info:
        await gateway.sdk().chat.completions.create(
            model="openai/gpt-4o-mini", messages=USER, extra_body=WITH_FALLBACK
        )
    message = info.value.body["message"]  # type: ignore[index]
    assert message.startswith("openai: ")
    assert "fallbacks also failed: backup/gpt-4o-mini: 503" in message


async def test_unavailable_provider_falls_back(
    make_gateway: MakeGateway, fake_backup: FakeOpenAI
) -> None:
    """A configured provider without a key is skipped for the fallback, and named if alone."""
    gateway = await make_gateway(
        {
            "providers": {
                "groq": {"keys": [{"value": ""}]},
                "backup": provider_for(fake_backup, "sk-fake-backup"),
            }
        }
    )
    result = await gateway.sdk().chat.completions.create(
        model="groq/llama-3.3-70b-versatile", messages=USER, extra_body=WITH_FALLBACK
    )
    assert "backup" == result.model_extra["extra_fields"]["provider"]
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk().chat.completions.create(
            model="groq/llama-3.3-70b-versatile", messages=USER
        )
    assert 503 == info.value.status_code
    assert "GROQ_API_KEY" in info.value.body["message"]  # type: ignore[index]


async def test_fallback_names_are_checked_up_front(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A malformed or unknown fallback is a 400 naming it, before any upstream call."""
    for fallbacks, param in ((["nope/x"], "fallbacks[0]"), (["backup/m", "bare"], "fallbacks[1]")):
        resp = await gateway.client.post(
            "/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": USER, "fallbacks": fallbacks},
        )
        assert 400 == resp.status
        error = msgspec.json.decode(await resp.read())["error"]
        assert param == error["param"]
    assert [] == [r for r in fake_openai.requests if r.path != "/v1/models"]
