"""Vertex AI's own wire types: where its bodies differ from the Gemini API's and Anthropic's.

Gemini on Vertex takes the Gemini API's ``generateContent`` body (``providers.gemini.wire``)
plus ``labels`` and without ``serviceTier`` (the v1 ``GenerateContentRequest`` has no such field:
Vertex takes the tier as the ``X-Vertex-AI-LLM-Shared-Request-Type`` header). Embeddings are
Vertex's own: ``:predict`` (``instances``/``predictions``, the text-embedding models) and
``:embedContent`` (one content per request, the Gemini embedding models).
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from providers.gemini import wire as gemini

__all__ = [
    "CountTokensRequest",
    "EmbedContentConfig",
    "EmbedContentRequest",
    "EmbedContentResponse",
    "ErrorProbe",
    "GenerateContentRequest",
    "PredictInstance",
    "PredictParameters",
    "PredictRequest",
    "PredictResponse",
]


class GenerateContentRequest(gemini.GenerateContentRequest):
    """``labels``: billing and reporting labels (keys and values up to 63 characters of
    lowercase letters, digits, ``_`` and ``-``; keys start with a letter)."""

    labels: dict[str, str] | UnsetType = UNSET


class CountTokensRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    """``:countTokens`` on Vertex: the prompt's parts at the top level (``model`` and
    ``instances`` are for other kinds of models)."""

    contents: list[gemini.Content]
    system_instruction: gemini.Content | UnsetType = UNSET
    tools: list[gemini.Tool] | UnsetType = UNSET


# --- :predict (text-embedding-005, text-multilingual-embedding-002, ...) -----------------------


class PredictInstance(msgspec.Struct, omit_defaults=True):
    # The instance's keys are snake_case (``task_type``), unlike the rest of the API.
    content: str
    task_type: str | UnsetType = UNSET


class PredictParameters(msgspec.Struct, rename="camel", omit_defaults=True):
    output_dimensionality: int | UnsetType = UNSET


class PredictRequest(msgspec.Struct, omit_defaults=True):
    instances: list[PredictInstance]
    parameters: PredictParameters | UnsetType = UNSET


class EmbeddingStatistics(msgspec.Struct):
    # A protobuf Value: a JSON number, which may be written 7 or 7.0.
    token_count: float = 0
    truncated: bool = False


class PredictedEmbedding(msgspec.Struct):
    values: list[float] = []
    statistics: EmbeddingStatistics | None = None


class Prediction(msgspec.Struct):
    embeddings: PredictedEmbedding


class PredictResponse(msgspec.Struct):
    predictions: list[Prediction] = []


# --- :embedContent (gemini-embedding-001, gemini-embedding-2, ...) ----------------------------


class EmbedContentConfig(msgspec.Struct, rename="camel", omit_defaults=True):
    output_dimensionality: int | UnsetType = UNSET


class EmbedContentRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    content: gemini.Content
    embed_content_config: EmbedContentConfig | UnsetType = UNSET


class EmbedContentResponse(msgspec.Struct, rename="camel"):
    embedding: gemini.ContentEmbedding | None = None
    usage_metadata: gemini.EmbeddingUsage | None = None
    truncated: bool = False


# --- errors ------------------------------------------------------------------------------


class _ProbedError(msgspec.Struct):
    type: str | None = None
    status: str | None = None


class ErrorProbe(msgspec.Struct):
    """Enough of an error body to tell Anthropic's (``{"type": "error", "error": {"type"}}``,
    from the model) from Google's (``{"error": {"code", "status"}}``, from Vertex itself)."""

    type: str | None = None
    error: _ProbedError | None = None
