"""The ``bounds`` section: the sane range of every number that enters from
outside (DESIGN rule 18). Exchange events, signals and the simulated
exchange's incoming orders are refused, counted and audited when a price,
quantity or notional lies outside it (``messages.bounds``).

The defaults are wide (prices 1E-12 to 1E+9, quantities up to 1E+12,
notional up to 1E+13, exponents within +/-15, 28 significant digits): they
are there to stop absurd numbers (``9E+999999``), not to second-guess a
market; ``per_symbol`` narrows them for an instrument whose range is known.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator

from config.types import PosDec, PosInt, Section, Symbol
from messages.bounds import bounds_problem


class NumberBounds(Section):
    """The believable range of one instrument's numbers."""

    min_price: PosDec = Decimal("1E-12")
    max_price: PosDec = Decimal("1E+9")
    max_qty: PosDec = Decimal("1E+12")
    max_notional: PosDec = Decimal("1E+13")
    #: |decimal exponent| of any nonzero number (9E+999999 has 999999)
    max_exponent: PosInt = Field(default=15, le=60)
    #: significant digits of any number (more would be rounded, or fill a log line)
    max_digits: PosInt = Field(default=28, le=34)

    @model_validator(mode="after")
    def _consistent(self) -> NumberBounds:
        problem = bounds_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self


class SymbolBounds(Section):
    """Per-symbol overrides: any key left out keeps the account-wide value."""

    min_price: PosDec | None = None
    max_price: PosDec | None = None
    max_qty: PosDec | None = None
    max_notional: PosDec | None = None
    max_exponent: PosInt | None = Field(default=None, le=60)
    max_digits: PosInt | None = Field(default=None, le=34)


class BoundsConfig(NumberBounds):
    #: a snapshot (positions, open orders, fills, balances) with more entries is refused
    max_snapshot_entries: PosInt = 10_000
    per_symbol: dict[Symbol, SymbolBounds] = {}

    @model_validator(mode="after")
    def _per_symbol(self) -> BoundsConfig:
        for symbol in self.per_symbol:
            problem = bounds_problem(self.bounds_for(symbol), f"per_symbol.{symbol}.")
            if problem is not None:
                raise ValueError(problem)
        return self

    def bounds_for(self, symbol: str) -> NumberBounds:
        """The effective range for ``symbol`` (overrides on top of the account-wide one)."""
        base = {name: getattr(self, name) for name in NumberBounds.model_fields}
        override = self.per_symbol.get(symbol)
        if override is not None:
            base.update(override.model_dump(exclude_none=True))
        return NumberBounds.model_construct(**base)
