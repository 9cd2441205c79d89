"""The Responses API served through chat: pure translation between Responses requests, items,
objects and stream events and the unified chat schema (no I/O; the routes, the store and the
background jobs are wired around these functions).

- :mod:`.translate`: ``to_chat``, ``from_chat``, ``output_as_input`` and the item helpers;
- :mod:`.stream`: ``ResponsesStream``, chat chunks in, Responses events out, and ``encode_event``;
- :mod:`.output`: the ``Response`` object echoing a request, usage, logprobs, annotations;
- :mod:`.envelope`: what a provider needs echoed back (Anthropic thinking signatures, Gemini
  thought signatures) carried through Responses items as ``encrypted_content``; item ids.
"""
