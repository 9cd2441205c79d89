"""Google's ``Schema`` (the OpenAPI 3.0 subset of ``parameters`` and ``responseSchema``) as the
JSON Schema other providers take (pure).

Google writes types in capitals (``OBJECT``), marks optional values with ``nullable``, and adds
``propertyOrdering``; numeric limits may come as strings (proto3 JSON writes int64 so). Field
names may be camelCase or snake_case, as everywhere in Google's JSON.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from proxy.errors import InvalidRequestError

__all__ = ["json_schema"]

_SNAKE = re.compile(r"_([a-z0-9])")
_INTEGERS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)
_NUMBERS = frozenset({"minimum", "maximum"})
_DROPPED = frozenset({"propertyOrdering", "example"})


def _camel(key: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key


def _number(value: Any, name: str, param: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"`{name}` must be a number.", param=f"{param}.{name}") from None


def json_schema(schema: msgspec.Raw, param: str) -> msgspec.Raw:
    """``schema`` (a Google ``Schema``) as JSON Schema; ``param`` names it in errors."""
    try:
        decoded = msgspec.json.decode(schema)
    except msgspec.DecodeError:
        raise InvalidRequestError("A schema must be a JSON object.", param=param) from None
    return msgspec.Raw(msgspec.json.encode(_convert(decoded, param)))


def _convert(schema: Any, param: str) -> Any:
    if not isinstance(schema, dict):
        raise InvalidRequestError("A schema must be a JSON object.", param=param)
    out: dict[str, Any] = {}
    nullable = False
    for raw_key, value in schema.items():
        key = _camel(raw_key)
        if key == "type":
            kind = str(value).lower()
            if kind != "type_unspecified":
                out["type"] = kind
        elif key == "nullable":
            nullable = value is True
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {
                name: _convert(sub, f"{param}.properties.{name}") for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _convert(value, f"{param}.items")
        elif key == "anyOf" and isinstance(value, list):
            out["anyOf"] = [_convert(sub, f"{param}.anyOf[{i}]") for i, sub in enumerate(value)]
        elif key in _INTEGERS:
            out[key] = _number(value, key, param, int)
        elif key in _NUMBERS:
            out[key] = _number(value, key, param, float)
        elif key not in _DROPPED:
            out[key] = value
    if nullable:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out
