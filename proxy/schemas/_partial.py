"""Decoding a body whose lists mix typed and pass-through elements, with exact error paths.

msgspec decodes a tagged union only when every element names its tag, and has no fallback for
tags it does not know. :class:`PartialDecoder` decodes the body with chosen fields read as
``msgspec.Raw``, then hands each to a function that decodes its parts one by one; an error in a
part is re-anchored at the part's JSON path, so it reads as if msgspec had decoded it in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import UNSET

__all__ = ["Fix", "PartialDecoder", "decode_at", "optional", "relocate"]

_T = TypeVar("_T")
# Turns a field read as Raw into its typed value; given the field's JSON path for errors.
Fix = Callable[[Any, str], Any]


def relocate(exc: msgspec.ValidationError, where: str) -> msgspec.ValidationError:
    """msgspec's error for a part of the body, with its path made absolute (``where`` + path)."""
    message, sep, path = str(exc).rpartition(" - at `")
    if not sep:
        return msgspec.ValidationError(f"{exc} - at `{where}`")
    return msgspec.ValidationError(f"{message} - at `{where}{path.rstrip('`')[1:]}`")


def decode_at(where: str, decode: Callable[[bytes], _T], raw: msgspec.Raw) -> _T:
    try:
        return decode(raw)
    except msgspec.ValidationError as exc:
        raise relocate(exc, where) from None


def optional(fix: Fix) -> Fix:
    """``fix`` for a field that may be absent or null."""

    def run(value: Any, where: str) -> Any:
        return value if value is UNSET or value is None else fix(value, where)

    return run


class PartialDecoder(Generic[_T]):
    """Decodes a body into ``cls`` with the given fields first read as ``Raw``, then each turned
    into its typed value by its ``fix`` (given the field's JSON path for errors)."""

    def __init__(self, cls: type[_T], raw_types: dict[str, Any], fixes: dict[str, Fix]) -> None:
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for f in msgspec.structs.fields(cls):  # type: ignore[arg-type]
            kind = raw_types.get(f.name, f.type)
            if f.default is not msgspec.NODEFAULT:
                fields.append((f.name, kind, f.default))
            elif f.default_factory is not msgspec.NODEFAULT:
                fields.append((f.name, kind, msgspec.field(default_factory=f.default_factory)))
            else:
                fields.append((f.name, kind))
        wire = msgspec.defstruct(f"_Wire{cls.__name__}", fields, kw_only=True)
        self._cls = cls
        self._wire = msgspec.json.Decoder(wire)
        self._fixes = fixes

    def decode(self, buf: bytes | bytearray | memoryview | str) -> _T:
        wire = self._wire.decode(buf)
        values = msgspec.structs.asdict(wire)
        for name, fix in self._fixes.items():
            values[name] = fix(values[name], f"$.{name}")
        return self._cls(**values)
