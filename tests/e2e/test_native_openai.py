"""The ``openai`` SDK, unchanged, against ``/openai/v1``: endpoints the gateway does not model
(files, moderations, images) and those it does (chat) forwarded to an OpenAI or Azure provider,
with the gateway's key check, the provider's key upstream, usage accounted and logged."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import openai
import pytest
from structlog.testing import capture_logs
from yarl import URL

from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.azure import API_KEY as AZURE_KEY
from tests.fakes.azure import FakeAzure
from tests.fakes.openai import Behavior
from tests.fakes.openai_platform import FakeOpenAIPlatform, platform

MASTER = "sk-gateway-master-key"
UPSTREAM = "sk-fake-upstream"
USER = [{"role": "user", "content": "Hello"}]

__all__ = ["fake_azure", "platform"]


@pytest.fixture
async def fake_azure() -> AsyncIterator[FakeAzure]:
    server = await FakeAzure().start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def gateway(make_gateway: MakeGateway, platform: FakeOpenAIPlatform) -> Gateway:
    return await make_gateway(
        {"auth": {"master_key": MASTER}, "providers": {"openai": provider_for(platform)}}
    )


def sdk(gateway: Gateway, **kwargs: object) -> openai.AsyncOpenAI:
    """The SDK at ``/openai/v1`` with the gateway key, closed with the gateway."""
    client = openai.AsyncOpenAI(
        base_url=str(gateway.client.make_url("/openai/v1")),
        api_key=MASTER,
        max_retries=0,
        **kwargs,  # type: ignore[arg-type]
    )
    gateway.sdks.append(client)
    return client


def assert_keys_kept_apart(fake: FakeOpenAIPlatform) -> None:
    """The upstream saw the provider's key and never the gateway's."""
    for rec in fake.requests:
        assert rec.headers["authorization"] == f"Bearer {UPSTREAM}"
        assert MASTER not in str(rec.headers)


async def test_files_upload_list_and_content(
    gateway: Gateway, platform: FakeOpenAIPlatform
) -> None:
    """A multipart upload reaches OpenAI byte for byte; the list and the file's content come
    back as OpenAI sent them."""
    client = sdk(gateway)
    data = b'{"custom_id": "r1"}\n' + bytes(range(256))
    created = await client.files.create(file=("batch.jsonl", data), purpose="batch")
    assert created.filename == "batch.jsonl"
    assert created.bytes == len(data)
    upload = platform.requests[-1]
    assert (upload.method, upload.path) == ("POST", "/v1/files")
    assert upload.files["file"] == ("batch.jsonl", data)
    assert upload.form == {"purpose": "batch"}
    listed = await client.files.list()
    assert [f.id for f in listed.data] == [created.id]
    content = await client.files.content(created.id)
    assert content.content == data
    assert content.response.headers["content-disposition"] == 'attachment; filename="batch.jsonl"'
    assert content.response.headers["x-thruway-provider"] == "openai"
    assert_keys_kept_apart(platform)


async def test_moderation(gateway: Gateway, platform: FakeOpenAIPlatform) -> None:
    """A moderation request and its result pass through unchanged."""
    result = await sdk(gateway).moderations.create(input="I will kill the process")
    assert result.results[0].flagged is True
    assert platform.requests[-1].json == {"input": "I will kill the process"}
    assert_keys_kept_apart(platform)


async def test_image_generation_is_accounted(
    gateway: Gateway, platform: FakeOpenAIPlatform
) -> None:
    """An image answer's usage is accounted on the canonical log line, with the model the
    request named."""
    with capture_logs() as logs:
        images = await sdk(gateway).images.generate(model="gpt-image-1", prompt="a red fox")
    assert base64.b64decode(images.data[0].b64_json or "")
    assert platform.requests[-1].json == {"model": "gpt-image-1", "prompt": "a red fox"}
    (line,) = [e for e in logs if e["event"] == "request"]
    assert line["request_type"] == "openai_passthrough"
    assert (line["provider"], line["model"]) == ("openai", "gpt-image-1")
    assert (line["input_tokens"], line["output_tokens"], line["total_tokens"]) == (10, 272, 282)
    assert line["status"] == 200


async def test_chat_completion_with_bare_model(
    gateway: Gateway, platform: FakeOpenAIPlatform
) -> None:
    """A chat completion names the model as OpenAI does; the reply is OpenAI's, unchanged."""
    platform.enqueue(Behavior(content="Forwarded", usage=(7, 3)))
    with capture_logs() as logs:
        got = await sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert got.choices[0].message.content == "Forwarded"
    assert got.model_extra is not None
    assert "extra_fields" not in got.model_extra
    assert platform.requests[-1].json == {"model": "gpt-4o-mini", "messages": USER}
    (line,) = [e for e in logs if e["event"] == "request"]
    assert (line["input_tokens"], line["output_tokens"]) == (7, 3)


async def test_chat_stream_passes_through(gateway: Gateway, platform: FakeOpenAIPlatform) -> None:
    """A streamed chat completion arrives event by event; its usage chunk is accounted."""
    platform.enqueue(Behavior(content="one two", deltas=["one", " two"], usage=(4, 2)))
    with capture_logs() as logs:
        stream = await sdk(gateway).chat.completions.create(
            model="gpt-4o",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "one two"
    (line,) = [e for e in logs if e["event"] == "request"]
    assert (line["stream"], line["total_tokens"]) == (True, 6)
    assert line["ttfb_ms"] is not None


async def test_upstream_error_kept(gateway: Gateway) -> None:
    """OpenAI's own 404 reaches the SDK as NotFoundError."""
    with pytest.raises(openai.NotFoundError) as info:
        await sdk(gateway).files.content("file-missing")
    assert "file-missing" in str(info.value)


async def test_gateway_key_required(gateway: Gateway, platform: FakeOpenAIPlatform) -> None:
    """Without the gateway key the request stops at the gateway."""
    client = openai.AsyncOpenAI(
        base_url=str(gateway.client.make_url("/openai/v1")), api_key="wrong", max_retries=0
    )
    gateway.sdks.append(client)
    with pytest.raises(openai.AuthenticationError):
        await client.moderations.create(input="hi")
    assert platform.requests == []


async def test_provider_chosen_by_header(
    make_gateway: MakeGateway, platform: FakeOpenAIPlatform
) -> None:
    """With several OpenAI providers and none named openai, the header picks one; without it
    the request is refused, naming the header."""
    async with FakeOpenAIPlatform(api_key="sk-fake-backup") as backup:
        gateway = await make_gateway(
            {
                "providers": {
                    "primary": provider_for(platform),
                    "backup": provider_for(backup, "sk-fake-backup"),
                }
            }
        )
        with pytest.raises(openai.BadRequestError) as info:
            await sdk(gateway).moderations.create(input="hi")
        assert "x-thruway-provider" in str(info.value)
        picked = sdk(gateway, default_headers={"x-thruway-provider": "backup"})
        await picked.moderations.create(input="hi")
        assert len(backup.requests) == 1
        assert "x-thruway-provider" not in backup.requests[-1].headers
        assert platform.requests == []


async def test_non_openai_provider_refused(
    make_gateway: MakeGateway, platform: FakeOpenAIPlatform
) -> None:
    """A provider that does not speak OpenAI's API cannot be named."""
    gateway = await make_gateway(
        {
            "providers": {
                "openai": provider_for(platform),
                "groq": provider_for(platform) | {"type": "groq"},
            }
        }
    )
    client = sdk(gateway, default_headers={"x-thruway-provider": "groq"})
    with pytest.raises(openai.BadRequestError) as info:
        await client.moderations.create(input="hi")
    assert "those configured: openai" in str(info.value)


async def test_azure_v1(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """The only Azure provider serves /openai/v1 with its api-key; the model names the
    deployment."""
    config = {"base_url": fake_azure.root_url, "keys": [{"value": AZURE_KEY}], "api_version": "v1"}
    gateway = await make_gateway({"providers": {"azure": config}})
    client = openai.AsyncOpenAI(
        base_url=str(gateway.client.make_url("/openai/v1")), api_key="sk-any", max_retries=0
    )
    gateway.sdks.append(client)
    got = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert got.choices[0].message.content
    sent = fake_azure.requests[-1]
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["api-key"] == AZURE_KEY
    assert "authorization" not in sent.headers


async def test_azure_dated_version_is_added(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """A dated Azure API version is added to the forwarded query."""
    config = {"base_url": fake_azure.root_url, "keys": [{"value": AZURE_KEY}]}
    gateway = await make_gateway({"providers": {"azure": config}})
    client = openai.AsyncOpenAI(
        base_url=str(gateway.client.make_url("/openai/v1")), api_key="sk-any", max_retries=0
    )
    gateway.sdks.append(client)
    with pytest.raises(openai.NotFoundError):
        await client.files.list(extra_query={"limit": 2})
    sent = fake_azure.requests[-1]
    assert sent.path == "/openai/files"
    assert sent.query == {"limit": "2", "api-version": "2024-10-21"}


async def test_path_escape_refused(gateway: Gateway, platform: FakeOpenAIPlatform) -> None:
    """A path that climbs out of the API root is not forwarded."""
    root = str(gateway.client.make_url("/")).rstrip("/")
    url = URL(root + "/openai/v1/files/%2E%2E/admin", encoded=True)
    resp = await gateway.client.session.get(url, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status == 404
    assert platform.requests == []


async def test_uploads_are_held_to_the_body_limit(
    make_gateway: MakeGateway, platform: FakeOpenAIPlatform
) -> None:
    """An upload over `server.max_body_bytes` is a 413, whether it says its length or is sent
    in chunks; one within the limit goes through."""
    gateway = await make_gateway(
        {
            "auth": {"master_key": MASTER},
            "server": {"max_body_bytes": 4096},
            "providers": {"openai": provider_for(platform)},
        }
    )
    with pytest.raises(openai.APIStatusError) as said:
        await sdk(gateway).files.create(file=("big.jsonl", b"x" * 10_000), purpose="batch")
    assert said.value.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    chunked = await gateway.client.post(
        "/openai/v1/files",
        data=chunks(),
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "multipart/form-data"},
    )
    assert chunked.status == 413
    assert (await chunked.json())["error"]["type"] == "invalid_request_error"
    small = await sdk(gateway).files.create(file=("small.jsonl", b"x" * 100), purpose="batch")
    assert small.bytes == 100
