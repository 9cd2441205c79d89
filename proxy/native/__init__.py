"""Terminal handlers of the drop-in native routes (``/anthropic``, ``/genai``, ``/bedrock``,
``/openai``): each speaks its API's own request and reply shapes, and reaches any provider, the
provider's native API when it is the same one, the unified translation otherwise."""
