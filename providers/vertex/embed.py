"""Embeddings on Vertex AI (pure): Vertex's own endpoints, not the Gemini API's.

The Gemini embedding models (``gemini-embedding-001``, ``gemini-embedding-2``...) take one
input per request (``gemini-embedding-001 supports one instance per request``) and are called
as Google's SDK calls them, with ``:embedContent`` (usage in ``usageMetadata``); the others
(``text-embedding-005``, ``text-multilingual-embedding-002``) take up to 250 inputs in one
``:predict`` (usage: each prediction's ``statistics.token_count``).
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET

from providers._translated import EmbeddingResult
from providers.gemini.wire import Content, Part
from providers.vertex.wire import (
    EmbedContentConfig,
    EmbedContentRequest,
    EmbedContentResponse,
    PredictInstance,
    PredictParameters,
    PredictRequest,
    PredictResponse,
)

__all__ = [
    "embed_content_body",
    "embed_content_result",
    "one_per_request",
    "predict_body",
    "predict_result",
]

_encode = msgspec.json.Encoder().encode
_predicted = msgspec.json.Decoder(PredictResponse).decode
_embedded = msgspec.json.Decoder(EmbedContentResponse).decode


def one_per_request(model: str) -> bool:
    """Whether the model is served by ``:embedContent``, one input per request (the rule of
    Google's SDK: a Gemini model)."""
    return "gemini" in model


def predict_body(texts: list[str], dimensions: int | None) -> bytes:
    body = PredictRequest(instances=[PredictInstance(content=t) for t in texts])
    if dimensions:
        body.parameters = PredictParameters(output_dimensionality=dimensions)
    return _encode(body)


def predict_result(body: bytes, count: int) -> EmbeddingResult | None:
    """The vectors and summed token counts; ``None`` when the answer has not ``count`` of
    them."""
    got = _predicted(body)
    if len(got.predictions) != count:
        return None
    tokens = 0
    for p in got.predictions:
        stats = p.embeddings.statistics
        tokens += int(stats.token_count) if stats is not None else 0
    return EmbeddingResult(
        vectors=[p.embeddings.values for p in got.predictions], prompt_tokens=tokens
    )


def embed_content_body(text: str, dimensions: int | None) -> bytes:
    config = EmbedContentConfig(output_dimensionality=dimensions) if dimensions else UNSET
    body = EmbedContentRequest(
        content=Content(parts=[Part(text=text)]), embed_content_config=config
    )
    return _encode(body)


def embed_content_result(bodies: list[bytes]) -> EmbeddingResult | None:
    """One ``:embedContent`` answer per input, in order; ``None`` when one has no vector."""
    vectors: list[list[float]] = []
    tokens = 0
    for body in bodies:
        got = _embedded(body)
        if got.embedding is None:
            return None
        vectors.append(got.embedding.values)
        tokens += got.usage_metadata.prompt_token_count if got.usage_metadata else 0
    return EmbeddingResult(vectors=vectors, prompt_tokens=tokens)
