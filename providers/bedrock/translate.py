"""The unified chat request as a Converse request. Pure (images arrive downloaded).

Choices where Converse differs from OpenAI's API (each follows Bedrock's documented behaviour):

- ``tool_choice: "none"``: Converse has no such choice, so the tools are left out; when the
  conversation already holds tool calls or results, Bedrock refuses a request without
  ``toolConfig`` ("The toolConfig field must be defined when using toolUse and toolResult content
  blocks"), so the tools are then sent without a ``toolChoice`` (the model may still call one).
  Tool history with no tools declared gets a declaration per tool name it uses, for the same
  reason.
- ``response_format: json_schema`` uses Converse's native structured output
  (``outputConfig.textFormat``, the schema as JSON text); ``json_object`` has no native form
  (Bedrock's structured output needs a schema whose objects all say ``additionalProperties:
  false``), so it is a forced tool (``JSON_TOOL``, ``toolChoice.any``) whose input is returned
  as the message's text.
- ``reasoning_effort`` becomes a thinking budget for Anthropic Claude
  (``additionalModelRequestFields.thinking``) and ``reasoningConfig`` for Amazon Nova; other
  models are refused with a 400 naming the parameter.
- Parameters Converse cannot carry and that change the answer (``n`` > 1, ``logprobs``,
  penalties, ``logit_bias``, audio output, web search, ``verbosity``, ``parallel_tool_calls:
  false``) are refused with a 400 naming them; ``seed``, ``user``, ``store``, ``prediction``,
  ``prompt_cache_key`` and ``safety_identifier`` are dropped; ``metadata`` becomes
  ``requestMetadata`` and ``service_tier`` Bedrock's ``serviceTier``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from providers.bedrock import wire as w
from providers.bedrock.messages import turns
from providers.bedrock.response import JSON_TOOL
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import (
    AllowedToolsChoice,
    ChatRequest,
    CustomToolChoice,
    FunctionTool,
    JSONObjectFormat,
    JSONSchemaFormat,
    NamedToolChoice,
)

__all__ = ["count_request", "model_family", "to_converse"]

_JSON_TOOL_SPEC = w.ToolSpec(
    name=JSON_TOOL,
    description="Give the complete answer as a JSON object.",
    input_schema=w.InputSchema(json=msgspec.Raw(b'{"type":"object"}')),
)
_ANY_OBJECT = msgspec.Raw(b'{"type":"object","properties":{}}')

# Claude's thinking budget per effort; Anthropic's minimum budget is 1024 tokens.
_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
_MIN_BUDGET = 1024
# Room for the answer after the thinking budget when the caller set no output limit.
_ANSWER_ROOM = 4096
_NOVA_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_SERVICE_TIERS = frozenset({"default", "flex", "priority"})
# requestMetadata's documented key and value pattern.
_METADATA = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")


class _ClaudeThinking(msgspec.Struct):
    budget_tokens: int
    type: str = "enabled"


class _NovaReasoning(msgspec.Struct, rename="camel"):
    max_reasoning_effort: str
    type: str = "enabled"


class _ModelFields(msgspec.Struct, omit_defaults=True):
    """``additionalModelRequestFields``: model-specific fields Converse passes on as they are."""

    thinking: _ClaudeThinking | UnsetType = UNSET
    reasoningConfig: _NovaReasoning | UnsetType = UNSET  # Nova's field name


_encode = msgspec.json.Encoder().encode


def model_family(*names: str) -> Literal["claude", "nova", "titan", "cohere", "other"]:
    """The model family a model id (or ARN, or the alias callers use for it) names."""
    for name in names:
        lowered = name.lower()
        if "anthropic" in lowered or "claude" in lowered:
            return "claude"
        if "nova" in lowered:
            return "nova"
        if "titan-embed" in lowered:
            return "titan"
        if "cohere.embed" in lowered:
            return "cohere"
    return "other"


# --- the request -----------------------------------------------------------------------------


def to_converse(
    req: ChatRequest,
    *,
    model: str,
    aliases: Sequence[str] = (),
    media: Mapping[str, tuple[str, bytes]] | None = None,
) -> w.ConverseRequest:
    """The Converse body for ``req`` sent to ``model`` (``aliases``: the names callers use for it
    in ``deployments``, which may say what family an ARN is); ``media``: downloaded images."""
    _refuse_unsupported(req)
    media = media or {}
    system, messages = turns(req, media)
    max_tokens = req.max_completion_tokens or req.max_tokens or None
    fields, max_tokens = _reasoning(req, model_family(model, *aliases), max_tokens)
    body = w.ConverseRequest(messages=messages)
    if system:
        body.system = system
    config = _inference_config(req, max_tokens)
    if config is not None:
        body.inference_config = config
    tool_config = _tool_config(req, messages)
    if tool_config is not None:
        body.tool_config = tool_config
    if isinstance(req.response_format, JSONSchemaFormat) and req.response_format.json_schema.schema:
        body.output_config = _output_config(req.response_format)
    if fields is not None:
        body.additional_model_request_fields = msgspec.Raw(_encode(fields))
    _map_passive(req, body)
    return body


def count_request(body: w.ConverseRequest) -> w.CountTokensRequest:
    """``CountTokens``' body for a Converse body: the fields that shape the input (the model's
    additional fields too: a Claude thinking setting changes the count)."""
    converse = w.ConverseTokensRequest(
        messages=body.messages,
        system=body.system,
        tool_config=body.tool_config,
        additional_model_request_fields=body.additional_model_request_fields,
    )
    return w.CountTokensRequest(input=w.CountTokensInput(converse=converse))


def _bad(message: str, param: str, code: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def _unsupported(param: str, why: str) -> InvalidRequestError:
    return _bad(f"Bedrock's Converse API {why}.", param, "unsupported_parameter")


def _refuse_unsupported(req: ChatRequest) -> None:
    """Parameters that would change the answer and that Converse cannot carry."""
    if req.n not in (UNSET, None, 1):
        raise _unsupported("n", "returns one choice per request (`n` must be 1)")
    if req.logprobs or req.top_logprobs:
        raise _unsupported("logprobs", "returns no log probabilities")
    if req.logit_bias:
        raise _unsupported("logit_bias", "has no logit bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) not in (UNSET, None, 0, 0.0):
            raise _unsupported(name, f"has no `{name}`")
    if req.modalities not in (UNSET, None) and set(req.modalities or ()) - {"text"}:
        raise _unsupported("modalities", "answers with text only")
    if req.audio is not UNSET:
        raise _unsupported("audio", "answers with text only")
    if req.web_search_options is not UNSET:
        raise _unsupported("web_search_options", "has no web search")
    if req.verbosity not in (UNSET, None):
        raise _unsupported("verbosity", "has no verbosity setting")
    if req.parallel_tool_calls is False and req.tools:
        raise _unsupported("parallel_tool_calls", "cannot turn off parallel tool calls")
    if req.temperature not in (UNSET, None) and (req.temperature or 0) > 1:
        raise _bad("Bedrock's `temperature` ranges from 0 to 1.", "temperature")


def _map_passive(req: ChatRequest, body: w.ConverseRequest) -> None:
    """Fields that do not change the answer: mapped where Converse has an equivalent."""
    if req.metadata:
        # Invocation-log metadata; entries outside Bedrock's documented pattern are dropped.
        kept = {
            k: v
            for k, v in req.metadata.items()
            if k and _METADATA.fullmatch(k) and _METADATA.fullmatch(v)
        }
        if kept:
            body.request_metadata = dict(list(kept.items())[:16])
    if isinstance(req.service_tier, str) and req.service_tier in _SERVICE_TIERS:
        body.service_tier = w.ServiceTier(type=req.service_tier)


def _inference_config(req: ChatRequest, max_tokens: int | None) -> w.InferenceConfig | None:
    config = w.InferenceConfig()
    if max_tokens:
        config.max_tokens = max_tokens
    if isinstance(req.temperature, (int, float)):
        config.temperature = req.temperature
    if isinstance(req.top_p, (int, float)):
        config.top_p = req.top_p
    if isinstance(req.stop, str):
        config.stop_sequences = [req.stop]
    elif isinstance(req.stop, list) and req.stop:
        config.stop_sequences = list(req.stop)
    return config if config != w.InferenceConfig() else None


def _reasoning(
    req: ChatRequest, family: str, max_tokens: int | None
) -> tuple[_ModelFields | None, int | None]:
    """The model fields for ``reasoning_effort``, and the output limit they need."""
    effort = req.reasoning_effort
    if effort in (UNSET, None, "none"):
        return None, max_tokens
    if not isinstance(effort, str) or effort not in _BUDGETS:
        raise _bad(
            f"`reasoning_effort` must be one of none, {', '.join(_BUDGETS)}.", "reasoning_effort"
        )
    if family == "nova":
        return _ModelFields(reasoningConfig=_NovaReasoning(_NOVA_EFFORT[effort])), max_tokens
    if family != "claude":
        raise _unsupported(
            "reasoning_effort",
            "takes a reasoning setting for Anthropic Claude and Amazon Nova models only (name "
            "the model, or a `deployments` alias of its ARN, so that it says which)",
        )
    budget = _BUDGETS[effort]
    if max_tokens is None:
        max_tokens = budget + _ANSWER_ROOM
    elif max_tokens <= budget:
        # Claude wants max_tokens above the budget: the budget shrinks to fit the caller's limit.
        if max_tokens <= _MIN_BUDGET:
            raise _bad(
                f"With `reasoning_effort`, Claude needs `max_tokens` above {_MIN_BUDGET} (its "
                "minimum thinking budget).",
                "max_tokens",
            )
        budget = max_tokens - 1
    return _ModelFields(thinking=_ClaudeThinking(budget_tokens=budget)), max_tokens


def _output_config(fmt: JSONSchemaFormat) -> w.OutputConfig:
    spec = fmt.json_schema
    schema = spec.schema
    assert isinstance(schema, msgspec.Raw)
    definition = w.JsonSchemaDefinition(schema=bytes(schema).decode(), name=spec.name)
    if isinstance(spec.description, str):
        definition.description = spec.description
    return w.OutputConfig(
        text_format=w.OutputFormat(
            type="json_schema", structure=w.OutputStructure(json_schema=definition)
        )
    )


# --- tools -----------------------------------------------------------------------------------


def _tool_config(req: ChatRequest, messages: list[w.Message]) -> w.ToolConfig | None:
    fmt = req.response_format
    wants_json = isinstance(fmt, JSONObjectFormat) or (
        isinstance(fmt, JSONSchemaFormat) and not fmt.json_schema.schema
    )
    tools = _tool_entries(req)
    if wants_json:
        if tools:
            raise _bad(
                "On Bedrock, `response_format: json_object` is served by a forced tool and "
                "cannot be combined with `tools`; use `json_schema`.",
                "response_format",
            )
        return w.ToolConfig(
            tools=[w.ToolEntry(tool_spec=_JSON_TOOL_SPEC)],
            tool_choice=w.ToolChoice(any=w.Empty()),
        )
    history = _tool_names_in(messages)
    if not tools:
        if not history:
            return None
        # Bedrock refuses tool blocks without a toolConfig: declare what the history used.
        tools = [
            w.ToolEntry(tool_spec=w.ToolSpec(name=n, input_schema=w.InputSchema(json=_ANY_OBJECT)))
            for n in sorted(history)
        ]
        return w.ToolConfig(tools=tools)
    choice = req.tool_choice
    if choice == "none":
        return w.ToolConfig(tools=tools) if history else None
    if choice == "auto":
        return w.ToolConfig(tools=tools, tool_choice=w.ToolChoice(auto=w.Empty()))
    if choice == "required":
        return w.ToolConfig(tools=tools, tool_choice=w.ToolChoice(any=w.Empty()))
    if isinstance(choice, NamedToolChoice):
        named = w.ToolChoice(tool=w.NamedTool(name=choice.function.name))
        return w.ToolConfig(tools=tools, tool_choice=named)
    if isinstance(choice, (AllowedToolsChoice, CustomToolChoice)):
        raise _unsupported("tool_choice", "takes auto, none, required or one named function")
    return w.ToolConfig(tools=tools)


def _tool_entries(req: ChatRequest) -> list[w.ToolEntry]:
    entries: list[w.ToolEntry] = []
    for i, tool in enumerate(req.tools or ()):
        if not isinstance(tool, FunctionTool):
            raise _unsupported(f"tools[{i}]", "takes function tools only")
        fn = tool.function
        if fn.name == JSON_TOOL:
            raise _bad(f"The tool name `{JSON_TOOL}` is reserved.", f"tools[{i}].function.name")
        params = fn.parameters if isinstance(fn.parameters, msgspec.Raw) else _ANY_OBJECT
        if bytes(params).strip() == b"null":
            params = _ANY_OBJECT
        spec = w.ToolSpec(name=fn.name, input_schema=w.InputSchema(json=params))
        if isinstance(fn.description, str) and fn.description:
            spec.description = fn.description
        if fn.strict is True:
            spec.strict = True
        entries.append(w.ToolEntry(tool_spec=spec))
    return entries


def _tool_names_in(messages: list[w.Message]) -> set[str]:
    names: set[str] = set()
    results = False
    for m in messages:
        for block in m.content:
            if isinstance(block.tool_use, w.ToolUseBlock):
                names.add(block.tool_use.name)
            results = results or block.tool_result is not UNSET
    if results and not names:
        # Results of calls made outside this history: any declaration satisfies Bedrock.
        names.add("tool")
    return names
