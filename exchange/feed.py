"""A seeded random-walk quote source for the standalone exchange server.

``python main.py exchange`` runs with no runtime attached, so the server
needs a market of its own: every ``interval`` it asks this feed for the next
quote of each symbol and treats it like any quote (moves the book, fills what
it crosses, publishes it to subscribers). Pure: it only computes quotes.
"""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

from messages import Quote
from messages.types import Price, Quantity, Symbol

DEFAULT_PRICE = Decimal("100")
TICK = Decimal("0.01")


class RandomWalkFeed:
    def __init__(self, symbols: list[str] | tuple[str, ...], *, seed: int = 0,
                 start_prices: dict[str, Decimal] | None = None, step_bps: float = 5.0,
                 spread_bps: float = 2.0, size: Decimal = Decimal("100")) -> None:
        if not symbols:
            raise ValueError("RandomWalkFeed needs at least one symbol")
        self.symbols = tuple(symbols)
        self._rng = random.Random(seed)
        prices = start_prices or {}
        self.mid = {s: Decimal(prices.get(s, DEFAULT_PRICE)) for s in self.symbols}
        self.step_bps = step_bps
        self.spread_bps = spread_bps
        self.size = size

    def next_quotes(self, now: datetime) -> list[Quote]:
        out = []
        for sym in self.symbols:
            # The random step is a float (a numeric kernel); prices stay Decimal.
            step = Decimal(repr(self._rng.gauss(0.0, self.step_bps) / 10_000))
            mid = max(TICK * 10, (self.mid[sym] * (1 + step)).quantize(TICK))
            self.mid[sym] = mid
            half = max(TICK, (mid * Decimal(repr(self.spread_bps / 20_000))).quantize(TICK))
            out.append(Quote(Symbol(sym), Price(mid - half), Price(mid + half), now,
                             bid_size=Quantity(self.size), ask_size=Quantity(self.size)))
        return out
