"""Bad input: a 4xx in OpenAI's error shape, with the JSON path in ``param``, never a 500."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import openai
import pytest

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.openai import FakeOpenAI

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "Hi"}]


async def _error(resp: Any, status: int) -> dict[str, Any]:
    assert status == resp.status
    assert "application/json" == resp.content_type
    assert resp.headers["x-request-id"]
    body = msgspec.json.decode(await resp.read())
    assert {"message", "type", "param", "code"} == set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "Expected `object`"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "model"),
        (b'{"model": "openai/gpt-4o"}', "messages", "messages"),
        (b'{"model": "openai/gpt-4o", "messages": []}', "messages", "length"),
        (b'{"model": 5, "messages": []}', "model", "Expected `str`"),
        (
            b'{"model": "openai/gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}',
            "messages[0].role",
            "wizard",
        ),
        (
            b'{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": 3}]}',
            "messages[0].content",
            "Expected",
        ),
        (
            b'{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": 9}',
            "temperature",
            "<= 2",
        ),
        (
            b'{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}], '
            b'"stream": "yes"}',
            "stream",
            "Expected `bool",
        ),
        (
            b'{"model": "openai/gpt-4o", "messages": [{"role": "tool", "content": "x"}]}',
            "messages[0].tool_call_id",
            "tool_call_id",
        ),
    ],
)
async def test_invalid_chat_bodies(
    gateway: Gateway, fake_openai: FakeOpenAI, body: bytes, param: str | None, fragment: str
) -> None:
    """Malformed JSON, wrong types and missing fields are 400s that point at the culprit."""
    resp = await gateway.client.post(CHAT, data=body, headers={"Content-Type": "application/json"})
    error = await _error(resp, 400)
    assert "invalid_request_error" == error["type"]
    assert param == error["param"]
    assert fragment in error["message"]
    assert [] == fake_openai.requests


async def test_unknown_provider_names_the_configured_ones(gateway: Gateway) -> None:
    """A model without a known provider prefix is a 400 listing the configured providers."""
    for model in ("gpt-4o-mini", "anthropic/claude-sonnet-4-5"):
        resp = await gateway.client.post(CHAT, json={"model": model, "messages": USER})
        error = await _error(resp, 400)
        assert "model" == error["param"]
        assert "Configured providers: backup, openai." in error["message"]


async def test_unsupported_operation(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """An endpoint the provider does not serve is a 400 of type unsupported_capability."""
    gateway = await make_gateway(
        {"providers": {"perplexity": provider_for(fake_openai, type="perplexity")}}
    )
    resp = await gateway.client.post(
        "/v1/embeddings", json={"model": "perplexity/sonar", "input": "x"}
    )
    error = await _error(resp, 400)
    assert "unsupported_capability" == error["type"]
    assert "`perplexity`" in error["message"]


async def test_body_over_the_limit(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """A body over ``server.max_body_bytes`` is a 413 stating the limit."""
    gateway = await make_gateway(
        {"server": {"max_body_bytes": 2048}, "providers": {"openai": provider_for(fake_openai)}}
    )
    resp = await gateway.client.post(
        CHAT, json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x" * 5000}]}
    )
    error = await _error(resp, 413)
    assert "2048 bytes" in error["message"]


async def test_wrong_method_and_unknown_route(gateway: Gateway) -> None:
    """A wrong method is a 405 naming the allowed one; an unknown path is OpenAI's 404."""
    resp = await gateway.client.get(CHAT)
    error = await _error(resp, 405)
    assert "POST" in error["message"]
    assert "POST" == resp.headers["Allow"]
    resp = await gateway.client.post("/v1/nonsense", json={})
    error = await _error(resp, 404)
    assert "Invalid URL (POST /v1/nonsense)" == error["message"]


async def test_sdk_sees_bad_request_errors(gateway: Gateway) -> None:
    """The SDK raises BadRequestError carrying the gateway's param."""
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk().chat.completions.create(model="openai/gpt-4o", messages=USER, top_p=3)
    assert "top_p" == info.value.param


async def test_multipart_without_file(gateway: Gateway) -> None:
    """A transcription without its audio file is a 400 naming ``file``."""
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("model", "openai/whisper-1")
    resp = await gateway.client.post("/v1/audio/transcriptions", data=form)
    error = await _error(resp, 400)
    assert "file" == error["param"]
    resp = await gateway.client.post("/v1/audio/transcriptions", json={"model": "openai/whisper-1"})
    error = await _error(resp, 400)
    assert "multipart/form-data" in error["message"]


async def test_master_key(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> None:
    """With a master key, inference needs it (Bearer or x-api-key); health does not."""
    gateway = await make_gateway(
        {
            "auth": {"master_key": "sk-master-123"},
            "providers": {"openai": provider_for(fake_openai)},
        }
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await gateway.sdk(api_key="sk-wrong").chat.completions.create(
            model="openai/gpt-4o", messages=USER
        )
    assert "sk-wrong" not in str(info.value.body)
    result = await gateway.sdk(api_key="sk-master-123").chat.completions.create(
        model="openai/gpt-4o", messages=USER
    )
    assert result.choices
    assert "Bearer sk-fake-upstream" == fake_openai.requests[-1].headers["authorization"]
    resp = await gateway.client.post(
        CHAT,
        json={"model": "openai/gpt-4o", "messages": USER},
        headers={"x-api-key": "sk-master-123"},
    )
    assert 200 == resp.status
    error = await _error(await gateway.client.post(CHAT, json={}), 401)
    assert "authentication_error" == error["type"]
    assert 200 == (await gateway.client.get("/health")).status
