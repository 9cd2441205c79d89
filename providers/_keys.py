"""Choosing which of a provider's API keys serves a request."""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Sequence

from proxy.config import KeyConfig

__all__ = ["KeyRing"]


class KeyRing:
    """Weighted random choice among the keys whose ``models`` allow the requested model.

    ``models`` entries are shell-style patterns (``"*"``, ``"gpt-4o*"``). A provider with no keys is
    keyless and :meth:`choose` returns ``None``.
    """

    __slots__ = ("_cache", "_keys")

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self._keys = tuple(keys)
        self._cache: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}

    @property
    def keyless(self) -> bool:
        return not self._keys

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(k.value for k in self._keys)

    def eligible(self, model: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        got = self._cache.get(model)
        if got is None:
            idx = tuple(
                i
                for i, k in enumerate(self._keys)
                if any(fnmatch.fnmatchcase(model, pattern) for pattern in k.models)
            )
            got = (idx, tuple(self._keys[i].weight for i in idx))
            if len(self._cache) < 4096:
                self._cache[model] = got
        return got

    def any_key(self) -> int | None:
        """A key for a request about no particular model (the model list)."""
        if not self._keys:
            return None
        weights = [k.weight for k in self._keys]
        return random.choices(range(len(self._keys)), weights)[0]  # noqa: S311

    def choose(self, model: str, avoid: Callable[[int], bool] | None = None) -> int | None:
        """The index of the key to use, or ``None`` when keyless; raises ``LookupError`` when no
        key allows the model. Keys for which ``avoid`` is true (rate-limited, cooling down,
        behind an open breaker) are chosen only when every allowed key is to be avoided."""
        if not self._keys:
            return None
        idx, weights = self.eligible(model)
        if not idx:
            raise LookupError(model)
        if avoid is not None:
            kept = [(i, w) for i, w in zip(idx, weights, strict=True) if not avoid(i)]
            if kept and len(kept) < len(idx):
                idx, weights = tuple(i for i, _ in kept), tuple(w for _, w in kept)
        if len(idx) == 1:
            return idx[0]
        return random.choices(idx, weights)[0]  # noqa: S311 - load spreading, not security
