"""Speech (``/v1/audio/speech``, JSON in, audio out) and transcription (multipart in)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

__all__ = ["SpeechRequest", "TranscriptionRequest", "TranscriptionUsage"]


class SpeechRequest(msgspec.Struct, omit_defaults=True):
    model: str
    input: Annotated[str, Meta(min_length=1)]
    voice: str | msgspec.Raw
    fallbacks: list[str] | UnsetType = UNSET
    instructions: str | UnsetType = UNSET
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | UnsetType = UNSET
    speed: Annotated[float, Meta(ge=0.25, le=4.0)] | UnsetType = UNSET
    stream_format: Literal["audio", "sse"] | UnsetType = UNSET


class TranscriptionRequest(msgspec.Struct, omit_defaults=True):
    """The text fields of the multipart form (the audio itself travels as the ``file`` part)."""

    model: str
    language: str | UnsetType = UNSET
    prompt: str | UnsetType = UNSET
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"] | (
        UnsetType
    ) = UNSET
    temperature: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    stream: bool | UnsetType = UNSET


class TranscriptionUsage(msgspec.Struct):
    """Token-billed (``type: tokens``) or duration-billed (``type: duration``) usage."""

    type: str = "tokens"
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    seconds: float = 0.0
