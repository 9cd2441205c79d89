"""AWS Bedrock end to end: the official ``openai`` SDK, the gateway, and ``FakeBedrock``, which
checks every request's SigV4 signature (or Bedrock API key) as Bedrock does.

What the conformance scenarios do not cover: each tool_choice form, response formats, inference
settings, refused and mapped parameters, Bedrock's own errors (throttling, exception messages
inside a stream), reasoning sent back, embeddings, ARNs and deployments, credential sources.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from providers.registry import check_providers, local_base_url_variables, standard_key_variables
from proxy.config import ConfigError, build_config, config_from_env
from tests.conformance.case_bedrock import bedrock_config
from tests.conftest import Gateway, MakeGateway, provider_for
from tests.fakes.bedrock import (
    ACCESS_KEY,
    API_KEY,
    REGION,
    SECRET_KEY,
    BedrockTurn,
    FakeBedrock,
)
from tests.fakes.openai import Behavior, FakeOpenAI
from tests.fakes.script import ToolCallSpec, Turn

CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
MODEL = f"bedrock/{CLAUDE}"
USER: list[Any] = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    server = await FakeBedrock().start()
    try:
        yield server
    finally:
        await server.close()


async def start(
    make_gateway: MakeGateway,
    provider: dict[str, Any],
    env: dict[str, str] | None = None,
    **others: dict[str, Any],
) -> Gateway:
    return await make_gateway({"providers": {"bedrock": provider, **others}}, env=env)


@pytest.fixture
async def sdk(make_gateway: MakeGateway, fake: FakeBedrock) -> openai.AsyncOpenAI:
    gateway = await start(make_gateway, bedrock_config(fake))
    return gateway.sdk()


def sent(fake: FakeBedrock) -> dict[str, Any]:
    body: dict[str, Any] = fake.requests[-1].json
    return body


# --- request translation ------------------------------------------------------------------------


async def test_tool_choice_forms(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """auto, required and a named function become Converse's auto, any and tool; none drops the
    tools."""
    for choice, expected in [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"tool": {"name": "get_weather"}},
        ),
    ]:
        await sdk.chat.completions.create(
            model=MODEL,
            messages=USER,
            tools=[WEATHER],
            tool_choice=choice,  # type: ignore[arg-type]
        )
        assert sent(fake)["toolConfig"]["toolChoice"] == expected
    await sdk.chat.completions.create(
        model=MODEL, messages=USER, tools=[WEATHER], tool_choice="none"
    )
    assert "toolConfig" not in sent(fake)
    await sdk.chat.completions.create(model=MODEL, messages=USER, tools=[WEATHER])
    assert "toolChoice" not in sent(fake)["toolConfig"]


async def test_json_schema_is_native_structured_output(
    sdk: openai.AsyncOpenAI, fake: FakeBedrock
) -> None:
    """json_schema goes as outputConfig.textFormat, the schema as JSON text."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
    }
    fake.script(Turn(text='{"a": 1}'))
    resp = await sdk.chat.completions.create(
        model=MODEL,
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    assert resp.choices[0].message.content == '{"a": 1}'
    text_format = sent(fake)["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    assert text_format["structure"]["jsonSchema"]["name"] == "answer"
    assert json.loads(text_format["structure"]["jsonSchema"]["schema"]) == schema


async def test_json_object_through_a_forced_tool(
    sdk: openai.AsyncOpenAI, fake: FakeBedrock
) -> None:
    """json_object forces the gateway's JSON tool; its input is the answer's text, whole and
    streamed, with finish reason stop."""
    fake.script(Turn(text='{"city": "Paris"}'), Turn(text='{"city": "Paris"}', arg_pieces=3))
    fmt: Any = {"type": "json_object"}
    resp = await sdk.chat.completions.create(model=MODEL, messages=USER, response_format=fmt)
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.tool_calls is None
    assert sent(fake)["toolConfig"]["toolChoice"] == {"any": {}}
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=USER, response_format=fmt, stream=True
    )
    pieces, finish = [], None
    async for chunk in stream:
        for choice in chunk.choices:
            pieces += [choice.delta.content] if choice.delta.content else []
            assert not choice.delta.tool_calls
            finish = choice.finish_reason or finish
    assert (len(pieces), "".join(pieces), finish) == (3, '{"city": "Paris"}', "stop")


async def test_inference_settings(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """temperature, top_p, stop and the output limit go to inferenceConfig; none set, none sent."""
    await sdk.chat.completions.create(model=MODEL, messages=USER)
    assert "inferenceConfig" not in sent(fake)
    await sdk.chat.completions.create(
        model=MODEL, messages=USER, temperature=0.3, top_p=0.9, stop="END", max_completion_tokens=99
    )
    assert sent(fake)["inferenceConfig"] == {
        "maxTokens": 99,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END"],
    }


@pytest.mark.parametrize(
    ("param", "extra"),
    [
        ("n", {"n": 2}),
        ("logprobs", {"logprobs": True}),
        ("presence_penalty", {"presence_penalty": 0.5}),
        ("parallel_tool_calls", {"parallel_tool_calls": False, "tools": [WEATHER]}),
        ("temperature", {"temperature": 1.5}),
    ],
)
async def test_parameters_bedrock_cannot_honour(
    sdk: openai.AsyncOpenAI, fake: FakeBedrock, param: str, extra: dict[str, Any]
) -> None:
    """A parameter that would change the answer and that Converse lacks is a 400 naming it."""
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.chat.completions.create(model=MODEL, messages=USER, **extra)
    assert info.value.param == param
    assert fake.requests == []


async def test_parameters_dropped_or_mapped(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """seed, user and store are dropped; metadata becomes requestMetadata, service_tier
    serviceTier."""
    await sdk.chat.completions.create(
        model=MODEL,
        messages=USER,
        seed=3,
        user="u-1",
        store=True,
        metadata={"team": "search"},
        service_tier="flex",
        n=1,
    )
    body = sent(fake)
    assert body["requestMetadata"] == {"team": "search"}
    assert body["serviceTier"] == {"type": "flex"}
    assert set(body) == {"messages", "requestMetadata", "serviceTier"}


async def test_documents_and_cache_points(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """A PDF becomes a document block; cache_control marks become cache points; cache reads and
    writes count in prompt_tokens."""
    fake.script(Turn(prompt_tokens=1000, cached_tokens=600, cache_creation_tokens=300))
    messages: Any = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise."},
                {
                    "type": "file",
                    "file": {
                        "filename": "q3 report.pdf",
                        "file_data": "data:application/pdf;base64,JVBERg==",
                    },
                },
            ],
        },
    ]
    resp = await sdk.chat.completions.create(model=MODEL, messages=messages)
    body = sent(fake)
    assert body["system"] == [{"text": "Long rules."}, {"cachePoint": {"type": "default"}}]
    assert body["messages"][0]["content"][1] == {
        "document": {"format": "pdf", "name": "q3 report", "source": {"bytes": "JVBERg=="}}
    }
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 1000
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 600


# --- answers and errors -------------------------------------------------------------------------


async def test_stop_reasons(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """A guardrail intervention is content_filter, max_tokens is length."""
    fake.script(
        BedrockTurn(stop_reason="guardrail_intervened"), BedrockTurn(stop_reason="max_tokens")
    )
    resp = await sdk.chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].finish_reason == "content_filter"
    stream = await sdk.chat.completions.create(model=MODEL, messages=USER, stream=True)
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finishes[-1] == "length"


async def test_throttling_is_a_429_that_falls_back(
    make_gateway: MakeGateway, fake: FakeBedrock, fake_backup: FakeOpenAI
) -> None:
    """ThrottlingException is a 429 rate_limit_error; with a fallback, the backup answers."""
    backup = provider_for(fake_backup, "sk-fake-backup")
    gateway = await start(make_gateway, bedrock_config(fake), backup=backup)
    fake.script(Turn(error="rate_limit"), Turn(error="rate_limit"))
    sdk = gateway.sdk()
    with pytest.raises(openai.RateLimitError) as info:
        await sdk.chat.completions.create(model=MODEL, messages=USER)
    body: Any = info.value.body
    assert (body["type"], body["code"]) == ("rate_limit_error", "ThrottlingException")
    assert body["message"].startswith("bedrock: Too many requests")
    fake_backup.enqueue(Behavior(content="from the backup"))
    resp = await sdk.chat.completions.create(
        model=MODEL, messages=USER, extra_body={"fallbacks": ["backup/gpt-4o-mini"]}
    )
    assert resp.choices[0].message.content == "from the backup"


async def test_exception_message_before_content_falls_back(
    make_gateway: MakeGateway, fake: FakeBedrock, fake_backup: FakeOpenAI
) -> None:
    """A throttlingException message right after messageStart comes before any chunk, so the
    fallback still serves the stream."""
    backup = provider_for(fake_backup, "sk-fake-backup")
    gateway = await start(make_gateway, bedrock_config(fake), backup=backup)
    fake.script(BedrockTurn(exception="throttlingException", exception_after=1))
    fake_backup.enqueue(Behavior(content="backup stream"))
    stream = await gateway.sdk().chat.completions.create(
        model=MODEL, messages=USER, stream=True, extra_body={"fallbacks": ["backup/gpt-4o-mini"]}
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "backup stream"


async def test_exception_message_mid_stream(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """A modelStreamErrorException after text ends the stream with the mapped error."""
    fake.script(
        BedrockTurn(
            text="The quick brown fox",
            pieces=4,
            exception="modelStreamErrorException",
            exception_after=3,
            exception_message="The model stopped responding.",
            gap_s=0.05,  # the exception arrives in a later read than the text before it
        )
    )
    stream = await sdk.chat.completions.create(model=MODEL, messages=USER, stream=True)
    got: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            got.extend(c.delta.content for c in chunk.choices if c.delta.content)

    with pytest.raises(openai.APIError) as info:
        await read()
    assert got == ["The q", "uick "]
    assert "The model stopped responding." in info.value.message


async def test_reasoning_round_trip(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """Thinking text and signature come back in thinking_blocks and go back to Bedrock as
    reasoningContent, from a whole answer and from a streamed one."""
    call = ToolCallSpec("tooluse_w1", "get_weather", '{"city": "Paris"}')
    fake.script(
        Turn(text="", tool_calls=[call], reasoning="Need the weather.", reasoning_signature="sig-1")
    )
    resp = await sdk.chat.completions.create(
        model=MODEL, messages=USER, tools=[WEATHER], reasoning_effort="low", max_tokens=5000
    )
    message = resp.choices[0].message
    extra = message.model_extra or {}
    assert extra["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Need the weather.", "signature": "sig-1"}
    ]
    assert sent(fake)["additionalModelRequestFields"] == {
        "thinking": {"budget_tokens": 2048, "type": "enabled"}
    }
    history = [
        *USER,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "tooluse_w1", "content": "18C"},
    ]
    await sdk.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert sent(fake)["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "Need the weather.", "signature": "sig-1"}}
    }

    fake.script(
        Turn(text="", tool_calls=[call], reasoning="Streamed thought.", reasoning_signature="sig-2")
    )
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=USER, tools=[WEATHER], reasoning_effort="low", stream=True
    )
    reasoning, blocks, calls = "", [], []
    async for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta.model_extra or {}
            reasoning += delta.get("reasoning_content") or ""
            blocks += delta.get("thinking_blocks") or []
            calls += choice.delta.tool_calls or []
    assert reasoning == "Streamed thought."
    assert blocks == [{"type": "thinking", "thinking": "Streamed thought.", "signature": "sig-2"}]
    arguments = "".join(c.function.arguments or "" for c in calls if c.function)
    assistant = {
        "role": "assistant",
        "reasoning_content": reasoning,
        "thinking_blocks": blocks,
        "tool_calls": [
            {
                "id": calls[0].id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            }
        ],
    }
    history = [*USER, assistant, {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"}]
    await sdk.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert sent(fake)["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "Streamed thought.", "signature": "sig-2"}}
    }


async def test_redacted_reasoning_round_trip(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """Redacted reasoning comes back as a redacted_thinking block and is returned unchanged."""
    fake.script(BedrockTurn(text="Done.", redacted="c2VjcmV0"))
    resp = await sdk.chat.completions.create(model=MODEL, messages=USER, reasoning_effort="low")
    message = resp.choices[0].message
    assert (message.model_extra or {})["thinking_blocks"] == [
        {"type": "redacted_thinking", "data": "c2VjcmV0"}
    ]
    await sdk.chat.completions.create(
        model=MODEL, messages=[*USER, message.model_dump(exclude_none=True), *USER]
    )
    assert sent(fake)["messages"][1]["content"] == [
        {"reasoningContent": {"redactedContent": "c2VjcmV0"}},
        {"text": "Done."},
    ]


async def test_upstream_headers_pass_through(sdk: openai.AsyncOpenAI) -> None:
    """Bedrock's request id reaches the client."""
    raw = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    assert raw.headers.get("x-amzn-requestid")


# --- embeddings -----------------------------------------------------------------------------


async def test_titan_embeddings(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """Titan takes one text per call: three inputs are three calls, results in input order."""
    model = "bedrock/amazon.titan-embed-text-v2:0"
    texts = ["one", "two words", "three words here"]
    resp = await sdk.embeddings.create(model=model, input=texts, dimensions=256)
    assert sorted(r.json["inputText"] for r in fake.requests) == sorted(texts)
    assert all(r.json["dimensions"] == 256 for r in fake.requests)
    assert resp.usage.prompt_tokens == 1 + 2 + 3
    single = await sdk.embeddings.create(model=model, input="two words", dimensions=256)
    assert resp.data[1].embedding == single.data[0].embedding
    assert len(resp.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.embeddings.create(
            model="bedrock/amazon.titan-embed-text-v1", input="x", dimensions=8
        )
    assert info.value.param == "dimensions"


async def test_cohere_embeddings(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """Cohere takes 96 texts per call; token counts come from Bedrock's header."""
    texts = [f"text {i}" for i in range(100)]
    resp = await sdk.embeddings.create(model="bedrock/cohere.embed-english-v3", input=texts)
    assert [len(r.json["texts"]) for r in fake.requests] == [96, 4]
    assert fake.requests[0].json["input_type"] == "search_document"
    assert len(resp.data) == 100
    assert [d.index for d in resp.data] == list(range(100))
    assert resp.usage.prompt_tokens == 200


async def test_embeddings_of_other_models_are_refused(
    sdk: openai.AsyncOpenAI, fake: FakeBedrock
) -> None:
    """A model outside the Titan and Cohere families is a 400 naming it."""
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.embeddings.create(model=MODEL, input="x")
    assert CLAUDE in info.value.message
    assert fake.requests == []


# --- model ids ------------------------------------------------------------------------------


async def test_arn_through_deployments(make_gateway: MakeGateway, fake: FakeBedrock) -> None:
    """A deployment alias reaches its ARN, percent-encoded in the path as botocore does; the
    alias says which model family it is."""
    config = bedrock_config(fake, deployments={"claude-prod": PROFILE_ARN}, models=["claude-prod"])
    sdk = (await start(make_gateway, config)).sdk()
    await sdk.chat.completions.create(
        model="bedrock/claude-prod", messages=USER, reasoning_effort="low", stream=True
    )
    assert fake.requests[-1].match["model_id"] == PROFILE_ARN
    assert fake.raw_paths[-1] == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile"
        "%2Fa1b2c3d4e5f6/converse-stream"
    )
    assert "thinking" in sent(fake)["additionalModelRequestFields"]
    models = [m.id async for m in sdk.models.list()]
    assert models == ["bedrock/claude-prod"]


async def test_arn_as_the_model_name(sdk: openai.AsyncOpenAI, fake: FakeBedrock) -> None:
    """An inference-profile ARN can be named directly after ``bedrock/``."""
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{CLAUDE}"
    resp = await sdk.chat.completions.create(model=f"bedrock/{arn}", messages=USER)
    assert resp.choices[0].message.content
    assert fake.requests[-1].match["model_id"] == arn


# --- credentials ------------------------------------------------------------------------------


async def test_credentials_from_the_environment(
    make_gateway: MakeGateway, fake: FakeBedrock
) -> None:
    """AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_REGION are enough."""
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
    gateway = await start(make_gateway, {"base_url": fake.root_url}, env=env)
    resp = await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content
    assert (
        fake.requests[-1]
        .headers["Authorization"]
        .startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    )


async def test_configured_headers_are_signed(make_gateway: MakeGateway, fake: FakeBedrock) -> None:
    """Headers from the provider's ``headers`` go upstream and are covered by the signature."""
    config = bedrock_config(fake, headers={"X-Team": "search"})
    await (
        (await start(make_gateway, config))
        .sdk()
        .chat.completions.create(model=MODEL, messages=USER)
    )
    headers = fake.requests[-1].headers
    assert headers["X-Team"] == "search"
    assert "x-team" in headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


async def test_session_token_is_signed(make_gateway: MakeGateway) -> None:
    """Temporary credentials send and sign X-Amz-Security-Token."""
    fake = await FakeBedrock(
        credentials={"ASIATEMPORARY0001": ("temp-secret", "temp-token")}
    ).start()
    try:
        creds = {
            "access_key_id": "ASIATEMPORARY0001",
            "secret_access_key": "temp-secret",
            "session_token": "temp-token",
        }
        gateway = await start(make_gateway, bedrock_config(fake, credentials=creds))
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
        headers = fake.requests[-1].headers
        assert headers["X-Amz-Security-Token"] == "temp-token"
        assert "x-amz-security-token" in headers["Authorization"]
    finally:
        await fake.close()


async def test_profile_from_shared_files(
    make_gateway: MakeGateway, fake: FakeBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``profile`` is read from the shared credentials file (in a thread, by botocore)."""
    creds_file = tmp_path / "credentials"
    creds_file.write_text(
        f"[team]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    gateway = await start(make_gateway, bedrock_config(fake, credentials={"profile": "team"}))
    resp = await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert resp.choices[0].message.content


async def test_no_credentials_anywhere(
    make_gateway: MakeGateway, fake: FakeBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing configured, botocore's chain is searched; finding nothing is a 503 that
    allows a fallback and says what to set."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    gateway = await start(make_gateway, {"base_url": fake.root_url, "region": REGION})
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert info.value.status_code == 503
    assert "no AWS credentials in the standard AWS credential chain" in info.value.message
    assert fake.requests == []


async def test_bedrock_api_keys(make_gateway: MakeGateway, fake: FakeBedrock) -> None:
    """A Bedrock API key, configured or from AWS_BEARER_TOKEN_BEDROCK, is a bearer token; an
    unknown one is refused with Bedrock's 403."""
    keyed = {"base_url": fake.root_url, "region": REGION, "keys": [{"value": API_KEY}]}
    await (
        (await start(make_gateway, keyed)).sdk().chat.completions.create(model=MODEL, messages=USER)
    )
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {API_KEY}"
    env = {"AWS_BEARER_TOKEN_BEDROCK": API_KEY, "AWS_REGION": REGION}
    gateway = await start(make_gateway, {"base_url": fake.root_url}, env=env)
    await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {API_KEY}"
    wrong = {**keyed, "keys": [{"value": "ABSKwrong"}]}
    with pytest.raises(openai.PermissionDeniedError) as info:
        await (
            (await start(make_gateway, wrong))
            .sdk()
            .chat.completions.create(model=MODEL, messages=USER)
        )
    assert "API Key is valid" in info.value.message
    assert "ABSKwrong" not in info.value.message


async def test_wrong_secret(make_gateway: MakeGateway, fake: FakeBedrock) -> None:
    """A signature made with the wrong secret is Bedrock's InvalidSignatureException, a 403
    authentication_error."""
    creds = {"access_key_id": ACCESS_KEY, "secret_access_key": "not-the-secret"}
    gateway = await start(make_gateway, bedrock_config(fake, credentials=creds))
    with pytest.raises(openai.PermissionDeniedError) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    body: Any = info.value.body
    assert (body["type"], body["code"]) == ("authentication_error", "InvalidSignatureException")
    assert "not-the-secret" not in body["message"]


async def test_no_region_means_unavailable(make_gateway: MakeGateway, fake: FakeBedrock) -> None:
    """Without a region anywhere the provider is unavailable, and says why."""
    config = {k: v for k, v in bedrock_config(fake).items() if k != "region"}
    gateway = await start(make_gateway, config, env={})
    with pytest.raises(openai.APIStatusError) as info:
        await gateway.sdk().chat.completions.create(model=MODEL, messages=USER)
    assert info.value.status_code == 503
    assert "AWS region" in info.value.message


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"credentials": {"access_key": "x"}}, "credentials.access_key: unknown field"),
        ({"credentials": {"access_key_id": "x"}}, "go together"),
        (
            {"credentials": {"profile": "p", "access_key_id": "x", "secret_access_key": "y"}},
            "not both",
        ),
        ({"credentials": {"profile": "p"}, "keys": [{"value": "k"}]}, "not both"),
        ({"region": "Frankfurt"}, "expected an AWS region"),
    ],
)
def test_configuration_mistakes(settings: dict[str, Any], complaint: str) -> None:
    """Unusable Bedrock settings fail start-up with a message naming the field."""
    config = build_config({"providers": {"bedrock": settings}}, source="<test>")
    with pytest.raises(ConfigError, match=complaint):
        check_providers(config)


def test_enabled_by_an_api_key_variable() -> None:
    """With no config file, AWS_BEARER_TOKEN_BEDROCK enables a ``bedrock`` provider."""
    env = {"AWS_BEARER_TOKEN_BEDROCK": API_KEY, "AWS_REGION": REGION}
    config = config_from_env(standard_key_variables(), local_base_url_variables(), env)
    keys = config.providers["bedrock"].keys
    assert keys is not None
    assert [k.value for k in keys] == [API_KEY]
