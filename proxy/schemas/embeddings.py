"""Embeddings (``/v1/embeddings``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

__all__ = ["Embedding", "EmbeddingList", "EmbeddingRequest", "EmbeddingUsage"]


class EmbeddingRequest(msgspec.Struct, omit_defaults=True):
    model: str
    # A string, strings, a token list or token lists (one array type: see completions.py).
    input: str | list[str | int | list[int]]
    fallbacks: list[str] | UnsetType = UNSET
    encoding_format: Literal["float", "base64"] | UnsetType = UNSET
    dimensions: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    user: str | UnsetType = UNSET


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class Embedding(msgspec.Struct):
    index: int
    # Floats, or (``encoding_format: base64``) the little-endian float32 bytes in base64.
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class EmbeddingList(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"
