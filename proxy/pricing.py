"""What a request cost: the price table shipped with the gateway, the config's overrides, and
the arithmetic from billed usage to USD.

The table (``proxy/data/prices.json``) lists, per provider type, each model's prices in USD per
million tokens, with the date they were checked (``as_of``). Its ``also`` section names the other
price lists a provider type serves models of (Vertex AI: Gemini's and Anthropic's). Model ids are
matched as sent, then with their dated or versioned decorations taken off, so
``gpt-4o-mini-2024-07-18``, ``claude-sonnet-4-5@20250929`` and
``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` find ``gpt-4o-mini`` and ``claude-sonnet-4-5``.
"""

from __future__ import annotations

import re
from importlib import resources

import msgspec

from proxy.config import GatewayConfig, ModelPrice
from proxy.schemas.common import BilledUsage

__all__ = ["PriceTable", "Pricing", "cost_usd", "load_price_table", "model_candidates"]

# Distinct (provider, model) pairs remembered; past this, prices are still found, not cached
# (model names come from callers, and a passthrough upstream may accept any).
_CACHE_LIMIT = 4096


class PriceTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    as_of: str
    providers: dict[str, dict[str, ModelPrice]]
    # Provider type -> the other price lists it serves models of, in the order tried.
    also: dict[str, tuple[str, ...]] = {}
    unit: str = "USD per million tokens"
    notes: str = ""
    sources: dict[str, str] = {}


_decode_table = msgspec.json.Decoder(PriceTable).decode


def load_price_table(data: bytes | None = None) -> PriceTable:
    """The table shipped in the package, or one given as JSON bytes."""
    if data is None:
        data = resources.files("proxy").joinpath("data", "prices.json").read_bytes()
    return _decode_table(data)


# Leading routing/vendor segments: Bedrock's ``us.`` / ``global.`` inference-profile region and
# ``anthropic.`` / ``amazon.`` vendor; a path such as ``models/`` or ``publishers/x/models/``.
_PREFIX = re.compile(r"^(?:.*/)?(?:[a-z]+\.)*")
# Trailing version decorations, taken off one at a time: ``-v1:0`` (Bedrock), ``@20250929`` or
# ``@001`` (Vertex AI), ``-20250929`` (Anthropic), ``-2024-07-18`` (OpenAI), ``-001`` (Gemini),
# ``-latest``.
_SUFFIXES = (
    re.compile(r"-v\d+(?::\d+)?$"),
    re.compile(r"@[\w.-]+$"),
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),
    re.compile(r"-\d{8}$"),
    re.compile(r"-\d{3}$"),
    re.compile(r"-latest$"),
)


def model_candidates(model: str) -> list[str]:
    """The ids to look ``model`` up as, most specific first."""
    name = model.strip().lower()
    out = [name]
    bare = _PREFIX.sub("", name, count=1)
    if bare and bare != name:
        out.append(bare)
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            shorter = suffix.sub("", bare, count=1)
            if shorter and shorter != bare:
                bare = shorter
                out.append(bare)
                changed = True
    return out


def cost_usd(price: ModelPrice, usage: BilledUsage) -> float:
    """The USD cost of ``usage`` at ``price``: cached prompt tokens (part of ``prompt_tokens``)
    at ``cached_input``, reasoning tokens (part of ``completion_tokens``) at ``reasoning``."""
    cached = min(max(usage.cached_tokens, 0), usage.prompt_tokens)
    reasoning = min(max(usage.reasoning_tokens, 0), usage.completion_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    reasoning_price = price.output if price.reasoning is None else price.reasoning
    micro = (
        (usage.prompt_tokens - cached) * price.input
        + cached * cached_price
        + (usage.completion_tokens - reasoning) * price.output
        + reasoning * reasoning_price
    )
    # Rounded to a millionth of a cent: float noise otherwise shows in logs and responses.
    return round(micro / 1_000_000, 8)


class Pricing:
    """The price of each configured provider's models, looked up once per (provider, model).

    Overrides from the config's ``pricing`` (``provider/model``, by the provider's name or its
    type) come before the table; each is tried with every candidate id of the model.
    """

    __slots__ = ("_cache", "_overrides", "_table", "_types", "_warned")

    def __init__(self, config: GatewayConfig, table: PriceTable | None = None) -> None:
        self._table = load_price_table() if table is None else table
        self._types = {name: p.type or name for name, p in config.providers.items()}
        overrides: dict[str, dict[str, ModelPrice]] = {}
        for key, price in config.pricing.items():
            provider, _, model = key.partition("/")
            overrides.setdefault(provider, {})[model.lower()] = price
        self._overrides = overrides
        self._cache: dict[tuple[str, str], ModelPrice | None] = {}
        self._warned: set[tuple[str, str]] = set()

    @property
    def as_of(self) -> str:
        return self._table.as_of

    def price(self, provider: str, model: str) -> ModelPrice | None:
        """The price of ``model`` on the provider named ``provider``; None when unknown."""
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._find(provider, model)
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[key] = found
        return found

    def cost_usd(self, provider: str, model: str, usage: BilledUsage) -> float | None:
        """The cost of ``usage``; None when the model has no known price."""
        price = self.price(provider, model)
        return None if price is None else cost_usd(price, usage)

    def first_miss(self, provider: str, model: str) -> bool:
        """True the first time an unpriced (provider, model) is reported (to log it once)."""
        key = (provider, model)
        if key in self._warned or len(self._warned) >= _CACHE_LIMIT:
            return False
        self._warned.add(key)
        return True

    def _find(self, provider: str, model: str) -> ModelPrice | None:
        type_ = self._types.get(provider, provider)
        candidates = model_candidates(model)
        for source in dict.fromkeys((provider, type_)):
            prices = self._overrides.get(source)
            if prices:
                for name in candidates:
                    if name in prices:
                        return prices[name]
        lists = self._table.providers
        for source in (type_, *self._table.also.get(type_, ())):
            prices = lists.get(source)
            if prices:
                for name in candidates:
                    if name in prices:
                        return prices[name]
        return None
