"""Azure OpenAI through the official ``openai`` SDK: URLs, deployments, API versions, content
filter, errors and model lists, against ``FakeAzure`` (Entra ID auth: ``test_azure_entra``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import openai
import pytest

from tests.conftest import Gateway, MakeGateway
from tests.fakes.azure import (
    API_KEY,
    CONTENT_FILTER_MESSAGE,
    FakeAzure,
    content_filter_error,
    fake_azure,
)
from tests.fakes.openai import Behavior, FakeOpenAI

__all__ = ["fake_azure"]

USER = [{"role": "user", "content": "Hello"}]
FIXTURES = Path(__file__).parent.parent / "fixtures" / "azure"


def azure(fake: FakeAzure, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.root_url, "keys": [{"value": API_KEY}], **extra}


async def start(make_gateway: MakeGateway, fake: FakeAzure, **extra: Any) -> Gateway:
    return await make_gateway({"providers": {"azure": azure(fake, **extra)}})


async def test_deployments_url_api_version_and_key(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """A chat goes to the deployment's URL with the GA api-version and the key in `api-key`."""
    gateway = await start(make_gateway, fake_azure)
    result = await gateway.sdk().chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    sent = fake_azure.requests[-1]
    assert "/openai/deployments/gpt-4o-mini/chat/completions" == sent.path
    assert {"api-version": "2024-10-21"} == sent.query
    assert API_KEY == sent.headers["api-key"]
    assert "authorization" not in sent.headers
    assert "gpt-4o-mini" == sent.json["model"]
    assert "gpt-4o-mini-2024-07-18" == result.model
    assert "Hello from the fake!" == result.choices[0].message.content


async def test_deployment_mapping(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """`deployments` maps the model callers name to the deployment in the URL and body."""
    gateway = await start(make_gateway, fake_azure, deployments={"gpt-4o": "chat-prod"})
    result = await gateway.sdk().chat.completions.create(model="azure/gpt-4o", messages=USER)
    sent = fake_azure.requests[-1]
    assert "/openai/deployments/chat-prod/chat/completions" == sent.path
    assert "chat-prod" == sent.json["model"]
    assert "gpt-4o-2024-08-06" == result.model
    extra = (result.model_extra or {})["extra_fields"]
    assert "azure/gpt-4o" == extra["model_requested"]


async def test_configured_api_version(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """`api_version` sets the api-version query, and a newer one lets `store` through."""
    gateway = await start(make_gateway, fake_azure, api_version="2025-04-01-preview")
    await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini", messages=USER, store=True, metadata={"team": "a"}
    )
    sent = fake_azure.requests[-1]
    assert {"api-version": "2025-04-01-preview"} == sent.query
    assert (True, {"team": "a"}) == (sent.json["store"], sent.json["metadata"])


async def test_unknown_deployment_is_not_found(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Azure's 404 DeploymentNotFound (no `type`) keeps its code, with type not_found_error."""
    gateway = await start(make_gateway, fake_azure)
    with pytest.raises(openai.NotFoundError) as info:
        await gateway.sdk().chat.completions.create(model="azure/gpt-5-nope", messages=USER)
    body = info.value.body
    assert isinstance(body, dict)
    assert "DeploymentNotFound" == body["code"]
    assert "not_found_error" == body["type"]
    assert body["message"].startswith("azure: The API deployment for this resource does not exist")
    assert "/openai/deployments/gpt-5-nope/chat/completions" == fake_azure.requests[-1].path


async def test_request_fields_forwarded_unchanged(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Tools, a named tool_choice, response_format, stop and sampling settings go as sent."""
    gateway = await start(make_gateway, fake_azure)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    schema = {"name": "answer", "schema": {"type": "object"}, "strict": True}
    await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini",
        messages=USER,
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "f"}},
        response_format={"type": "json_schema", "json_schema": schema},  # type: ignore[typeddict-item]
        stop=["END"],
        temperature=0.3,
        top_p=0.9,
        max_tokens=77,
        seed=5,
        user="u-1",
    )
    sent = fake_azure.requests[-1].json
    assert [tool] == sent["tools"]
    assert {"type": "function", "function": {"name": "f"}} == sent["tool_choice"]
    assert {"type": "json_schema", "json_schema": schema} == sent["response_format"]
    assert (["END"], 0.3, 0.9, 77, 5, "u-1") == (
        sent["stop"],
        sent["temperature"],
        sent["top_p"],
        sent["max_tokens"],
        sent["seed"],
        sent["user"],
    )


async def test_filter_annotations_pass_through(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """prompt_filter_results and each choice's content_filter_results reach the client."""
    gateway = await start(make_gateway, fake_azure)
    result = await gateway.sdk().chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    prompt = (result.model_extra or {})["prompt_filter_results"]
    assert {"filtered": False, "detected": False} == prompt[0]["content_filter_results"][
        "jailbreak"
    ]
    choice = result.choices[0].model_extra or {}
    assert {"filtered": False, "severity": "safe"} == choice["content_filter_results"]["hate"]


async def test_content_filter_finish(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """An answer the filter cut ends with finish_reason content_filter, whole and streamed."""
    gateway = await start(make_gateway, fake_azure)
    fake_azure.enqueue(*[Behavior(content="Part", finish_reason="content_filter")] * 2)
    result = await gateway.sdk().chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    assert "content_filter" == result.choices[0].finish_reason
    verdict = (result.choices[0].model_extra or {})["content_filter_results"]["violence"]
    assert {"filtered": True, "severity": "medium"} == verdict
    stream = await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini", messages=USER, stream=True
    )
    reasons = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert "content_filter" == reasons[-1]


async def test_content_filter_error(
    make_gateway: MakeGateway, fake_azure: FakeAzure, fake_openai: FakeOpenAI
) -> None:
    """A prompt the filter refused is a 400 content_filter with the verdicts, and no fallback."""
    gateway = await make_gateway(
        {
            "providers": {
                "azure": azure(fake_azure),
                "backup": {
                    "type": "openai",
                    "base_url": fake_openai.base_url,
                    "keys": [{"value": "sk-fake-upstream"}],
                },
            }
        }
    )
    fake_azure.enqueue(Behavior(status=400, error_body=content_filter_error("violence")))
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.sdk().chat.completions.create(
            model="azure/gpt-4o-mini",
            messages=USER,
            extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert ("content_filter", "invalid_request_error", "prompt") == (
        body["code"],
        body["type"],
        body["param"],
    )
    assert f"azure: {CONTENT_FILTER_MESSAGE}" == body["message"]
    inner = body["innererror"]
    assert "ResponsibleAIPolicyViolation" == inner["code"]
    assert {"filtered": True, "severity": "medium"} == inner["content_filter_result"]["violence"]
    assert [] == fake_openai.requests


async def test_rate_limit_keeps_retry_after(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Azure's 429 (no `type`) is a rate_limit_error with retry-after and retry-after-ms."""
    gateway = await start(make_gateway, fake_azure)
    fake_azure.enqueue(Behavior(status=429))
    with pytest.raises(openai.RateLimitError) as info:
        await gateway.sdk().chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    headers = info.value.response.headers
    assert ("2", "1500") == (headers["retry-after"], headers["retry-after-ms"])
    body = info.value.body
    assert isinstance(body, dict)
    assert ("rate_limit_error", "429") == (body["type"], body["code"])
    assert "exceeded token rate limit" in body["message"]


async def test_bad_key_is_an_authentication_error(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Azure's 401 for a wrong key is an authentication_error that does not echo the key."""
    gateway = await make_gateway(
        {
            "providers": {
                "azure": {"base_url": fake_azure.root_url, "keys": [{"value": "wrong-key-123"}]}
            }
        }
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await gateway.sdk().chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    body = info.value.body
    assert isinstance(body, dict)
    assert "authentication_error" == body["type"]
    assert "Access denied due to invalid subscription key" in body["message"]
    assert "wrong-key-123" not in body["message"]


async def test_upstream_headers_pass_through(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Azure's request id, region and rate-limit headers reach the client."""
    gateway = await start(make_gateway, fake_azure)
    raw = await gateway.sdk().chat.completions.with_raw_response.create(
        model="azure/gpt-4o-mini", messages=USER
    )
    assert raw.headers["apim-request-id"]
    assert "East US" == raw.headers["x-ms-region"]
    assert "99" == raw.headers["x-ratelimit-remaining-requests"]
    assert raw.headers["x-thruway-upstream-request-id"] == raw.headers["apim-request-id"]


async def test_stream_prompt_annotation_and_usage(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """The stream's opening prompt annotation is forwarded; usage is counted once, at the end."""
    gateway = await start(make_gateway, fake_azure)
    stream = await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    first = chunks[0]
    assert [] == first.choices
    assert (first.model_extra or {})["prompt_filter_results"][0]["prompt_index"] == 0
    assert "Hello from the fake!" == "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert 1 == len(usage)
    assert (12, 5) == (usage[0].prompt_tokens, usage[0].completion_tokens)
    extra = (chunks[-1].model_extra or {})["extra_fields"]
    assert 12 == extra["billed_usage"]["prompt_tokens"]


async def test_sdk_stream_helper_accumulates(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """The SDK's stream helper builds the final completion past the prompt annotation."""
    gateway = await start(make_gateway, fake_azure)
    async with gateway.sdk().chat.completions.stream(
        model="azure/gpt-4o-mini",
        messages=USER,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    assert "Hello from the fake!" == final.choices[0].message.content
    assert "stop" == final.choices[0].finish_reason


async def test_stream_not_committed_on_the_annotation_alone(
    make_gateway: MakeGateway, fake_azure: FakeAzure, fake_openai: FakeOpenAI
) -> None:
    """A stream that dies after the prompt annotation still falls back: nothing was sent yet."""
    gateway = await make_gateway(
        {
            "providers": {
                "azure": azure(fake_azure),
                "backup": {
                    "type": "openai",
                    "base_url": fake_openai.base_url,
                    "keys": [{"value": "sk-fake-upstream"}],
                },
            }
        }
    )
    fake_azure.enqueue(Behavior(cut_after=1))
    fake_openai.enqueue(Behavior(content="from the backup"))
    stream = await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini",
        messages=USER,
        stream=True,
        extra_body={"fallbacks": ["backup/gpt-4o-mini"]},
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "from the backup" == text


async def test_response_bytes_pass_through(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Azure's answer reaches the client byte for byte, extra_fields appended; usage counted with
    its cached tokens."""
    gateway = await start(make_gateway, fake_azure)
    native = (FIXTURES / "chat_response.json").read_bytes()
    fake_azure.replay = native
    body = {"model": "azure/gpt-4o-mini", "messages": USER}
    resp = await gateway.client.post("/v1/chat/completions", json=body)
    raw = await resp.read()
    assert raw.startswith(native[:-1] + b',"extra_fields":{')
    billed = msgspec.json.decode(raw)["extra_fields"]["billed_usage"]
    assert (1200, 3, 1024) == (
        billed["prompt_tokens"],
        billed["completion_tokens"],
        billed["cached_tokens"],
    )


@pytest.mark.parametrize("fixture", ["stream_async_filter", "stream_async_filter_blocked"])
async def test_async_filter_stream_bytes(
    make_gateway: MakeGateway, fake_azure: FakeAzure, fixture: str
) -> None:
    """Asynchronous Filter annotations go out byte for byte, with an empty delta added."""
    gateway = await start(make_gateway, fake_azure)
    fake_azure.replay = (FIXTURES / f"{fixture}.sse").read_bytes()
    body = {"model": "azure/gpt-4o-mini", "messages": USER, "stream": True}
    resp = await gateway.client.post("/v1/chat/completions", json=body)
    assert 200 == resp.status
    assert (FIXTURES / f"{fixture}.out.sse").read_bytes() == await resp.read()


async def test_async_filter_stream_through_the_sdk(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """With the Asynchronous Filter every chunk the SDK yields has a delta to read."""
    gateway = await start(make_gateway, fake_azure)
    fake_azure.async_filter = True
    fake_azure.enqueue(Behavior(), Behavior(content="Part", finish_reason="content_filter"))
    for expected in ("stop", "content_filter"):
        stream = await gateway.sdk().chat.completions.create(
            model="azure/gpt-4o-mini", messages=USER, stream=True
        )
        text, reasons = "", []
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                reasons.append(choice.finish_reason)
        assert text in ("Hello from the fake!", "Part")
        assert expected == [r for r in reasons if r][-1]


async def test_old_api_version_request(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """For 2024-06-01 the body becomes what that version accepts (golden request fixture)."""
    gateway = await start(make_gateway, fake_azure, api_version="2024-06-01")
    case = msgspec.json.decode((FIXTURES / "request_2024-06-01.json").read_bytes())
    resp = await gateway.client.post("/v1/chat/completions", json=case["unified"])
    assert 200 == resp.status
    await resp.read()
    assert case["native"] == fake_azure.requests[-1].json
    assert {"api-version": "2024-06-01"} == fake_azure.requests[-1].query


async def test_old_api_version_refuses_what_changes_the_answer(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """reasoning_effort, and parallel_tool_calls=false, need newer versions: a 400 naming them."""
    gateway = await start(make_gateway, fake_azure, api_version="2024-06-01")
    client = gateway.sdk()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="azure/gpt-4o-mini", messages=USER, reasoning_effort="low"
        )
    assert ("reasoning_effort", "unsupported_parameter") == (info.value.param, info.value.code)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="azure/gpt-4o-mini", messages=USER, parallel_tool_calls=False
        )
    assert "parallel_tool_calls" == info.value.param
    assert [] == fake_azure.requests


async def test_default_version_drops_newer_fields(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """The GA version gets neither stored-completion fields nor OpenAI-only routing hints."""
    gateway = await start(make_gateway, fake_azure)
    await gateway.sdk().chat.completions.create(
        model="azure/gpt-4o-mini",
        messages=USER,
        store=True,
        metadata={"a": "b"},
        prompt_cache_key="k1",
        safety_identifier="s1",
        max_completion_tokens=40,
    )
    sent = fake_azure.requests[-1].json
    for gone in ("store", "metadata", "prompt_cache_key", "safety_identifier"):
        assert gone not in sent
    assert 40 == sent["max_completion_tokens"]


async def test_v1_api(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """api_version v1: /openai/v1 URLs without api-version, the deployment as the body's model."""
    gateway = await start(
        make_gateway, fake_azure, api_version="v1", deployments={"gpt-4o": "chat-prod"}
    )
    client = gateway.sdk()
    result = await client.chat.completions.create(model="azure/gpt-4o", messages=USER)
    sent = fake_azure.requests[-1]
    assert ("/openai/v1/chat/completions", {}) == (sent.path, sent.query)
    assert ("chat-prod", API_KEY) == (sent.json["model"], sent.headers["api-key"])
    assert "gpt-4o-2024-08-06" == result.model
    embedded = await client.embeddings.create(model="azure/embed-small", input="hi")
    assert "/openai/v1/embeddings" == fake_azure.requests[-1].path
    assert embedded.data[0].embedding
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.speech.create(model="azure/tts", voice="alloy", input="hi")
    assert "unsupported_capability" == info.value.code


async def test_v1_from_base_url_and_preview(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """A base_url ending in /openai/v1 picks the v1 API; `preview` adds its query and audio."""
    gateway = await make_gateway(
        {
            "providers": {
                "azure": {
                    "base_url": fake_azure.root_url + "/openai/v1/",
                    "keys": [{"value": API_KEY}],
                },
                "azure-preview": {"type": "azure", **azure(fake_azure, api_version="preview")},
            }
        }
    )
    client = gateway.sdk()
    await client.chat.completions.create(model="azure/gpt-4o-mini", messages=USER)
    assert ("/openai/v1/chat/completions", {}) == (
        fake_azure.requests[-1].path,
        fake_azure.requests[-1].query,
    )
    speech = await client.audio.speech.create(model="azure-preview/tts", voice="alloy", input="hi")
    assert (await speech.aread()).startswith(b"ID3")
    sent = fake_azure.requests[-1]
    assert ("/openai/v1/audio/speech", {"api-version": "preview"}) == (sent.path, sent.query)
    assert "tts" == sent.json["model"]


async def test_speech_and_transcription_through_deployments(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """Speech and transcription go to their deployments' audio URLs."""
    gateway = await start(make_gateway, fake_azure, deployments={"whisper-1": "whisper"})
    client = gateway.sdk()
    speech = await client.audio.speech.create(
        model="azure/tts", voice="alloy", input="Hello", response_format="wav"
    )
    assert (await speech.aread()).startswith(b"RIFF")
    sent = fake_azure.requests[-1]
    assert "/openai/deployments/tts/audio/speech" == sent.path
    assert {"api-version": "2024-10-21"} == sent.query
    text = await client.audio.transcriptions.create(
        model="azure/whisper-1", file=("a.wav", b"RIFF0000WAVEfmt ", "audio/wav")
    )
    assert "Hello from the fake!" == text.text
    sent = fake_azure.requests[-1]
    assert "/openai/deployments/whisper/audio/transcriptions" == sent.path
    assert ("whisper", b"RIFF0000WAVEfmt ") == (sent.form["model"], sent.files["file"][1])


async def test_legacy_completions_deployment(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """/v1/completions goes to the deployment's own completions URL."""
    gateway = await start(make_gateway, fake_azure)
    result = await gateway.sdk().completions.create(model="azure/instruct", prompt="Say hi")
    assert "Hello from the fake!" == result.choices[0].text
    assert "/openai/deployments/instruct/completions" == fake_azure.requests[-1].path


async def test_models_list(make_gateway: MakeGateway, fake_azure: FakeAzure) -> None:
    """Deployments API: the configured models and deployment names, asking Azure nothing; v1:
    Azure's model list added."""
    gateway = await make_gateway(
        {
            "providers": {
                "azure": azure(
                    fake_azure, models=["gpt-4o-mini"], deployments={"gpt-4o": "chat-prod"}
                ),
                "azure1": {"type": "azure", **azure(fake_azure, api_version="v1")},
            }
        }
    )
    ids = {m.id async for m in gateway.sdk().models.list()}
    assert {"azure/gpt-4o-mini", "azure/gpt-4o"} <= ids
    assert {"azure1/gpt-4o-2024-08-06", "azure1/text-embedding-3-small"} <= ids
    assert [("GET", "/openai/v1/models")] == [(r.method, r.path) for r in fake_azure.requests]


async def test_responses_through_chat_before_azure_had_them(
    make_gateway: MakeGateway, fake_azure: FakeAzure
) -> None:
    """A dated api_version older than Azure's Responses API: /v1/responses still works, through
    the deployment's chat completions."""
    gateway = await start(make_gateway, fake_azure, api_version="2024-10-21")
    resp = await gateway.sdk().responses.create(model="azure/gpt-4o-mini", input="Hi")
    assert resp.status == "completed"
    assert resp.output_text
    sent = fake_azure.requests[-1]
    assert sent.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert sent.query["api-version"] == "2024-10-21"
    again = await gateway.sdk().responses.retrieve(resp.id)
    assert again.output_text == resp.output_text
