"""Every provider the conformance scenarios run against (one line per provider)."""

from __future__ import annotations

from tests.conformance import (
    case_anthropic,
    case_azure,
    case_bedrock,
    case_cohere,
    case_gemini,
    case_openai,
    case_vertex,
)
from tests.conformance.cases import ProviderCase

__all__ = ["CASES"]

CASES: list[ProviderCase] = [
    case_openai.CASE,
    case_gemini.CASE,
    case_cohere.CASE,
    case_anthropic.CASE,
    case_azure.CASE,
    case_azure.ENTRA_CASE,
    case_bedrock.CASE,
    case_vertex.GEMINI_CASE,
    case_vertex.ANTHROPIC_CASE,
]
