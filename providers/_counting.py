"""Input-token counts asked of the upstream, for translated providers that have such an endpoint
(Anthropic's ``count_tokens``, Gemini's ``countTokens``, Bedrock's ``CountTokens``).

A :class:`CountingProvider` implements :class:`providers.base.CountsTokens` once: key choice,
the HTTP exchange and its errors (mapped like the provider's other calls, status kept). A
subclass supplies the pure parts: the counting request, built with the same chat translation
as ``send`` and cut to what the endpoint takes, and the count read from the answer.
"""

from __future__ import annotations

from abc import abstractmethod

import msgspec

from providers._translated import Prepared, TranslatingProvider
from providers.base import Call
from proxy.errors import UnsupportedCapabilityError
from proxy.schemas.chat import ChatRequest

__all__ = ["CountingProvider", "estimate_input_tokens"]

_encode = msgspec.json.Encoder().encode


def estimate_input_tokens(req: ChatRequest) -> int:
    """An estimate of a chat request's input tokens where no upstream counts them: about four
    bytes of its messages' and tools' JSON a token."""
    tools = req.tools if isinstance(req.tools, list) else []
    return max(1, (len(_encode(req.messages)) + len(_encode(tools))) // 4)


class CountingProvider(TranslatingProvider):
    """A translated provider whose upstream counts a chat request's input tokens."""

    @abstractmethod
    async def prepare_count(self, req: ChatRequest, model: str, key: int | None) -> Prepared:
        """The upstream request that counts ``req``'s input tokens for ``model``."""

    @abstractmethod
    def count_response(self, body: bytes) -> int:
        """The count in the upstream's answer (a decode error is the upstream's fault: 502)."""

    async def count_tokens(self, call: Call) -> int:
        """The input tokens of ``call`` (a chat request) as the upstream counts them."""
        inbound = call.inbound
        if inbound.op.name != "chat_completion":
            raise UnsupportedCapabilityError(self.name, f"token counts of {inbound.op.name}")
        key = self._key_index(call)
        model = self.upstream_model(call.target.model)
        prepared = await self.prepare_count(inbound.typed, model, key)
        passed = self.client_headers(call.client_headers)
        if passed:
            prepared.headers = {**prepared.headers, **passed}
        body, _ = await self.fetch(prepared, call.timeout_s)
        try:
            return self.count_response(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.bad_response("token count") from exc
