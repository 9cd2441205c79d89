"""Google's Gemini API, translated to and from the unified (OpenAI-shaped) schema.

- ``wire``: the API's JSON types;
- ``request``: a chat request as a ``generateContent`` body;
- ``response``: an answer as a chat completion (finish reasons, usage, tool-call ids);
- ``stream``: ``streamGenerateContent`` events as chunks;
- ``errors``: Google's error answers as the gateway's errors;
- ``provider``: URLs, the key, media downloads, embeddings, the model list.
"""

from providers.gemini.provider import TYPES, GeminiProvider

__all__ = ["TYPES", "GeminiProvider"]
