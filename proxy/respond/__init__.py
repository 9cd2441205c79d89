"""The Responses API served: ``POST /v1/responses`` for every provider, the stored responses,
conversations, input-token counts and background responses.

- :mod:`.prepare`: a request with its history (``previous_response_id`` or ``conversation``)
  loaded from the store once, its item references resolved, and its ids chosen;
- :mod:`.run`: one attempt at one target, natively (a provider that serves ``responses``) or
  through chat, as a whole :class:`~.run.Answer` or a stream of Responses events;
- :mod:`.save`: what a finished response leaves in the store;
- :mod:`.worker`: the background worker (claims queued responses, renews its lease, honours
  cancels, and hands an interrupted one back for another attempt);
- :mod:`.handlers`: the HTTP handlers the routes register.
"""
