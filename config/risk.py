"""The ``risk`` section: pre-trade limits and the gate's fail-closed switches.

Defaults are DESIGN rule 4's. The limits that make sense per instrument
(sizes, spread, volatility, participation, loss per trade, concentration)
can be overridden per symbol; ``limits_for(symbol)`` resolves them, so the
coordinator never merges overrides by hand. Account-wide figures (daily
loss, rate limit, breaker) are deliberately not per symbol.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import model_validator

from config.types import (Fraction, Ident, NonNegFloat, PosDec, PosFloat, PosInt, Section,
                          Symbol)


def check_size_order(limits: Any, prefix: str = "") -> None:
    """min_order_size <= max_order_size <= max_position_size, or the gate rejects everything."""
    lo, hi, pos = limits.min_order_size, limits.max_order_size, limits.max_position_size
    if lo > hi:
        raise ValueError(f"{prefix}min_order_size: {lo} is above max_order_size {hi}")
    if hi > pos:
        raise ValueError(f"{prefix}max_order_size: {hi} is above max_position_size {pos}")


class Limits(Section):
    """The limits that can differ per symbol (all quantities in units of the instrument)."""

    max_position_size: PosDec = Decimal("1000")
    max_order_size: PosDec = Decimal("100")
    min_order_size: PosDec = Decimal("1")
    #: bid/ask spread above which entries are refused (basis points of mid)
    max_spread_bps: PosDec = Decimal("50")
    #: realised volatility (std-dev of returns over the feature window) above which entries stop
    max_volatility: PosDec = Decimal("0.02")
    #: an order may be at most this fraction of average daily volume
    max_volume_participation: Fraction = Decimal("0.10")
    #: worst-case loss of one trade (distance to its stop times quantity), in account currency
    max_loss_per_trade: PosDec = Decimal("100")
    #: one symbol's exposure as a fraction of account equity
    max_position_concentration: Fraction = Decimal("0.10")


class SymbolLimits(Section):
    """Per-symbol overrides: any key left out keeps the account-wide value."""

    max_position_size: PosDec | None = None
    max_order_size: PosDec | None = None
    min_order_size: PosDec | None = None
    max_spread_bps: PosDec | None = None
    max_volatility: PosDec | None = None
    max_volume_participation: Fraction | None = None
    max_loss_per_trade: PosDec | None = None
    max_position_concentration: Fraction | None = None


class RateLimit(Section):
    """Token bucket for orders sent to the broker (every purpose, exits included)."""

    orders_per_s: PosDec = Decimal("10")
    burst: PosInt = 20


class CircuitBreaker(Section):
    """Opens after ``failures_to_open`` consecutive broker failures or rejects,
    half-opens after ``cool_off_s``, closes on the next success."""

    failures_to_open: PosInt = 5
    cool_off_s: PosFloat = 30.0


class RiskConfig(Limits):
    #: rule 3: no fresh position snapshot -> refuse risk-increasing orders
    fail_closed_on_missing_positions: bool = True
    #: a position snapshot older than this is stale (must exceed reconciler.poll_s)
    position_staleness_s: PosFloat = 30.0
    #: rule 5: realised + unrealised loss for the day at which the kill switch trips
    max_daily_loss: PosDec = Decimal("1000")
    #: no new entry on a symbol for this long after a stop-out
    stop_out_cooldown_s: NonNegFloat = 60.0
    #: refuse an entry that would add to an open position in the same direction
    block_duplicate_positions: bool = True
    rate_limit: RateLimit = RateLimit()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    #: rule 2: accounts allowed to hold long and short at once; every other account nets
    hedging_mode: dict[Ident, bool] = {}
    per_symbol: dict[Symbol, SymbolLimits] = {}

    @model_validator(mode="after")
    def _consistent(self) -> RiskConfig:
        check_size_order(self)
        for symbol in self.per_symbol:
            check_size_order(self.limits_for(symbol), prefix=f"per_symbol.{symbol}.")
        return self

    def limits_for(self, symbol: str) -> Limits:
        """The effective limits for ``symbol`` (overrides on top of the account-wide ones)."""
        base = {name: getattr(self, name) for name in Limits.model_fields}
        override = self.per_symbol.get(symbol)
        if override is not None:
            base.update(override.model_dump(exclude_none=True))
        return Limits.model_construct(**base)

    def hedging_enabled(self, account: str) -> bool:
        """Netting is the default: only accounts listed ``true`` may hold both sides."""
        return bool(self.hedging_mode.get(account, False))
