"""Every provider the conformance scenarios run against (one line per provider)."""

from __future__ import annotations

from tests.conformance import case_bedrock, case_openai
from tests.conformance.cases import ProviderCase

__all__ = ["CASES"]

CASES: list[ProviderCase] = [
    case_openai.CASE,
    case_bedrock.CASE,
]
