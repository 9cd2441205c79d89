"""The unified, OpenAI-shaped schema: msgspec Structs for the requests and responses of each API.

Request-side Structs use ``omit_defaults`` and ``UNSET`` so that what a client left out stays out;
fields the schema does not model are ignored by the typed decode and forwarded untouched from the
raw body (see ``proxy.operations``). This package imports nothing else of the project.
"""
