"""What tokens cost: a price table per model, in US dollars per million tokens.

    table = PriceTable.default().with_prices({"qwen": Price(input=0.4, output=1.2)})
    table.price("gpt-4o-mini").cost(prompt_tokens=1200, completion_tokens=300)  # 0.00036
    table.price("smollm2")  # Price(input=0.0, output=0.0): local models cost nothing

Names match exactly first, then by ``fnmatch`` pattern (``claude-3-5-sonnet*``), the longest
pattern winning; a provider prefix (``openai/gpt-4o``) is ignored when nothing matches the
whole name. A model the table does not know is free: embedded and self-hosted models are the
common case, and a made-up price would be worse than none. The defaults are list prices at the
time of writing; configure ``pricing:`` to follow your contracts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

PER = 1_000_000  #: prices are per this many tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    input: float = 0.0  #: dollars per million prompt tokens
    output: float = 0.0  #: dollars per million completion tokens

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"price {name} must be a finite number >= 0, not {value!r}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / PER

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0


FREE = Price()

#: List prices (USD per 1M tokens) of common hosted models.
DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o": Price(input=2.5, output=10.0),
    "gpt-4o-2024-*": Price(input=2.5, output=10.0),
    "gpt-4o-mini*": Price(input=0.15, output=0.6),
    "gpt-4.1": Price(input=2.0, output=8.0),
    "gpt-4.1-mini*": Price(input=0.4, output=1.6),
    "gpt-4.1-nano*": Price(input=0.1, output=0.4),
    "o3-mini*": Price(input=1.1, output=4.4),
    "o4-mini*": Price(input=1.1, output=4.4),
    "gpt-3.5-turbo*": Price(input=0.5, output=1.5),
    "claude-opus-4*": Price(input=15.0, output=75.0),
    "claude-sonnet-4*": Price(input=3.0, output=15.0),
    "claude-3-7-sonnet*": Price(input=3.0, output=15.0),
    "claude-3-5-sonnet*": Price(input=3.0, output=15.0),
    "claude-3-5-haiku*": Price(input=0.8, output=4.0),
    "claude-3-haiku*": Price(input=0.25, output=1.25),
    "deepseek-chat": Price(input=0.27, output=1.1),
    "deepseek-reasoner": Price(input=0.55, output=2.19),
    "qwen-max*": Price(input=1.6, output=6.4),
    "qwen-plus*": Price(input=0.4, output=1.2),
    "qwen-turbo*": Price(input=0.05, output=0.2),
}


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: Mapping[str, Price] = field(default_factory=dict)

    @classmethod
    def default(cls) -> PriceTable:
        return cls(dict(DEFAULT_PRICES))

    def with_prices(self, prices: Mapping[str, Price]) -> PriceTable:
        """A table where ``prices`` override (or add to) these."""
        return PriceTable({**self.prices, **prices})

    def find(self, model: str) -> Price | None:
        """The price of ``model``; ``None`` when the table does not know it."""
        exact = self.prices.get(model)
        if exact is not None:
            return exact
        best: tuple[int, Price] | None = None
        for pattern, price in self.prices.items():
            if fnmatchcase(model, pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), price)
        if best is not None:
            return best[1]
        if "/" in model:
            return self.find(model.rsplit("/", 1)[1])
        return None

    def price(self, model: str) -> Price:
        found = self.find(model)
        return found if found is not None else FREE

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.price(model).cost(prompt_tokens, completion_tokens)
