"""The margin check's scenarios: price x IV x spread-multiplier shocks (rule 6).

``ShockGrid`` holds the axes and the two model parameters of a margin run;
scenario ``i`` is one (price, iv, spread) combination, numbered so that the
kernel in ``trading.margin`` can report the worst one by index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple
from collections.abc import Iterable, Sequence


class Scenario(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the scenario's place in the grid
    price_shock: float
    iv_shock: float
    spread_multiplier: float


def _floats(values: Iterable[float | Decimal], name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"ShockGrid.{name}: need at least one finite value")
    return out


@dataclass(frozen=True)
class ShockGrid:
    """Scenario axes plus the two model parameters of a margin run.

    Scenario ``i`` is (price_shocks[a], iv_shocks[b], spread_multipliers[c])
    with ``i = (a * len(iv) + b) * len(spread) + c``. IV shocks are relative
    (+0.30 means iv * 1.30).
    """

    price_shocks: tuple[float, ...] = (-0.03, 0.0, 0.03)
    iv_shocks: tuple[float, ...] = (0.0, 0.30, 0.50)
    spread_multipliers: tuple[float, ...] = (1.0, 1.5, 2.0)
    rate: float = 0.0
    naked_short_rate: float = 0.10

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "price_shocks", _floats(self.price_shocks, "price_shocks"))
        put(self, "iv_shocks", _floats(self.iv_shocks, "iv_shocks"))
        put(self, "spread_multipliers", _floats(self.spread_multipliers, "spread_multipliers"))
        put(self, "rate", float(self.rate))
        put(self, "naked_short_rate", float(self.naked_short_rate))
        if min(self.price_shocks) <= -1 or min(self.iv_shocks) <= -1:
            raise ValueError("ShockGrid: price and iv shocks must be > -100 %")
        if min(self.spread_multipliers) < 0 or self.naked_short_rate < 0:
            raise ValueError("ShockGrid: spread multipliers and naked_short_rate must be >= 0")
        if not math.isfinite(self.rate) or not math.isfinite(self.naked_short_rate):
            raise ValueError("ShockGrid: rate and naked_short_rate must be finite")

    @property
    def size(self) -> int:
        return len(self.price_shocks) * len(self.iv_shocks) * len(self.spread_multipliers)

    def scenario(self, index: int) -> Scenario:
        n_iv, n_sp = len(self.iv_shocks), len(self.spread_multipliers)
        if not 0 <= index < self.size:
            raise IndexError(f"scenario {index} outside 0..{self.size - 1}")
        a, rest = divmod(index, n_iv * n_sp)
        b, c = divmod(rest, n_sp)
        return Scenario(index, self.price_shocks[a], self.iv_shocks[b], self.spread_multipliers[c])

    def scenarios(self) -> list[Scenario]:
        return [self.scenario(i) for i in range(self.size)]


def shock_grid(price_shocks: Sequence[float] = (-0.03, 0.0, 0.03),
               iv_shocks: Sequence[float] = (0.0, 0.30, 0.50),
               spread_multipliers: Sequence[float] = (1.0, 1.5, 2.0),
               rate: float = 0.0, naked_short_rate: float = 0.10) -> ShockGrid:
    """The rule-6 grid (3 x 3 x 3 = 27 scenarios); every axis configurable."""
    return ShockGrid(tuple(price_shocks), tuple(iv_shocks), tuple(spread_multipliers),
                     rate, naked_short_rate)


DEFAULT_GRID = ShockGrid()
