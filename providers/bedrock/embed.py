"""Embeddings through InvokeModel: the request bodies of the embedding families Bedrock hosts, and
their answers. Pure.

- Amazon Titan (``amazon.titan-embed-text-v2:0``, ``-text-v1``, ``-image-v1``): one text per
  call (``inputText``), answered ``{"embedding": [...], "inputTextTokenCount": n}``; several
  inputs are several calls. Text v2 takes ``dimensions`` (256, 512, 1024), the multimodal model
  ``embeddingConfig.outputEmbeddingLength``; text v1 has a fixed size.
- Cohere (``cohere.embed-english-v3``, ``-multilingual-v3``, ``cohere.embed-v4:0``): up to 96
  ``texts`` per call with a required ``input_type`` (``search_document`` here: OpenAI's API has
  no such field), answered ``{"embeddings": [[...]]}`` or, by type, ``{"embeddings": {"float":
  [[...]]}}``; v4 takes ``output_dimension``. Cohere's body has no token count: Bedrock's
  ``X-Amzn-Bedrock-Input-Token-Count`` header has it.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from providers.bedrock import wire as w
from proxy.errors import InvalidRequestError
from proxy.schemas.embeddings import EmbeddingRequest

__all__ = ["COHERE_BATCH", "cohere_bodies", "cohere_vectors", "titan_body", "titan_vector"]

COHERE_BATCH = 96
_encode = msgspec.json.Encoder().encode
_titan = msgspec.json.Decoder(w.TitanResponse).decode
_cohere = msgspec.json.Decoder(w.CohereResponse).decode


def _no_dimensions(model: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Bedrock model `{model}` returns vectors of one fixed size: `dimensions` is not taken.",
        param="dimensions",
        code="unsupported_parameter",
    )


def titan_body(text: str, req: EmbeddingRequest, model: str) -> bytes:
    body = w.TitanRequest(input_text=text)
    if req.dimensions is not UNSET:
        lowered = model.lower()
        if "text-v2" in lowered:
            body.dimensions = req.dimensions
        elif "image" in lowered:
            body.embedding_config = w.TitanEmbeddingConfig(req.dimensions)
        else:
            raise _no_dimensions(model)
    return _encode(body)


def titan_vector(body: bytes) -> tuple[list[float], int]:
    """The vector and the input's token count."""
    got = _titan(body)
    return got.embedding, got.input_text_token_count


def cohere_bodies(texts: list[str], req: EmbeddingRequest, model: str) -> list[bytes]:
    """One body per batch of at most :data:`COHERE_BATCH` texts."""
    dimension: int | UnsetType = UNSET
    if req.dimensions is not UNSET:
        if "v4" not in model.lower():
            raise _no_dimensions(model)
        dimension = req.dimensions
    return [
        _encode(
            w.CohereRequest(
                texts=texts[i : i + COHERE_BATCH],
                input_type="search_document",
                embedding_types=["float"],
                output_dimension=dimension,
            )
        )
        for i in range(0, len(texts), COHERE_BATCH)
    ]


def cohere_vectors(body: bytes) -> list[list[float]]:
    got = _cohere(body).embeddings
    return got.floats if isinstance(got, w.CohereByType) else got
