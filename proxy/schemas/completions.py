"""Legacy text completions (``/v1/completions``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from proxy.schemas.chat import StreamOptions
from proxy.schemas.common import Usage

__all__ = ["CompletionRequest", "TextChoice", "TextCompletion"]


class CompletionRequest(msgspec.Struct, omit_defaults=True):
    model: str
    # A string, a list of strings, a token list, or a list of token lists (the upstream checks
    # that a list is not a mixture: msgspec unions allow one array type).
    prompt: str | list[str | int | list[int]]
    fallbacks: list[str] | UnsetType = UNSET
    stream: bool | UnsetType | None = UNSET
    stream_options: StreamOptions | UnsetType | None = UNSET
    max_tokens: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    temperature: Annotated[float, Meta(ge=0, le=2)] | UnsetType | None = UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | UnsetType | None = UNSET
    n: Annotated[int, Meta(ge=1, le=128)] | UnsetType | None = UNSET
    best_of: int | UnsetType | None = UNSET
    echo: bool | UnsetType | None = UNSET
    logprobs: Annotated[int, Meta(ge=0, le=5)] | UnsetType | None = UNSET
    stop: str | list[str] | UnsetType | None = UNSET
    suffix: str | UnsetType | None = UNSET
    seed: int | UnsetType | None = UNSET
    presence_penalty: Annotated[float, Meta(ge=-2, le=2)] | UnsetType | None = UNSET
    frequency_penalty: Annotated[float, Meta(ge=-2, le=2)] | UnsetType | None = UNSET
    logit_bias: dict[str, float] | UnsetType | None = UNSET
    user: str | UnsetType = UNSET


class TextChoice(msgspec.Struct):
    text: str
    index: int = 0
    logprobs: msgspec.Raw | None = None
    finish_reason: str | None = None


class TextCompletion(msgspec.Struct):
    """A completion response, and (``object`` the same) each chunk of a streamed one."""

    id: str
    created: int
    model: str
    choices: list[TextChoice]
    object: Literal["text_completion"] = "text_completion"
    usage: Usage | UnsetType | None = UNSET
