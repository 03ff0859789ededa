"""Exit-plan settings and the trailing stop's arithmetic, without actors.

``ExitSettings`` is what the stop manager needs per symbol: rule 8's
slippage bound and fallback delay, how often a trailing stop may move
(``trailing_step_bps``, ``trailing_interval_s``: a level that moved less
than the step, or sooner than the interval, waits) and the plan parts an
entry gets when it carries a plan but leaves them out (``take_profit_bps``
from the entry price, ``trailing_percent``, ``time_limit_s``). Config
(``stops`` and ``stops.per_symbol``) builds them; the launcher hands the
result to the manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from messages.enums import Side
from messages.orders import ExitPlan

BPS = Decimal(10_000)
HUNDRED = Decimal(100)
PRICE_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class ExitSettings:
    slippage_bps: Decimal = Decimal(50)
    fallback_after_s: float = 2.0
    trailing_step_bps: Decimal = Decimal(10)
    trailing_interval_s: float = 1.0
    take_profit_bps: Decimal | None = None
    trailing_percent: Decimal | None = None
    time_limit_s: float | None = None

    def complete(self, plan: ExitPlan, side: Side, entry_price: Decimal | None) -> ExitPlan:
        """``plan`` with this symbol's default parts filled in where it has none."""
        tp = plan.take_profit
        if tp is None and self.take_profit_bps is not None and entry_price is not None:
            move = entry_price * self.take_profit_bps / BPS
            tp = plain_price(entry_price + move if side is Side.BUY else entry_price - move)
        trail_pct = plan.trailing_percent
        if not plan.trailing and self.trailing_percent is not None:
            trail_pct = self.trailing_percent
        limit = plan.time_limit_s if plan.time_limit_s is not None else self.time_limit_s
        if (tp, trail_pct, limit) == (plan.take_profit, plan.trailing_percent, plan.time_limit_s):
            return plan
        return ExitPlan(plan.stop_loss, tp, plan.trailing_distance, trail_pct, limit)


@dataclass(frozen=True)
class ExitSettingsBook:
    """Defaults and per-symbol overrides (only the fields an override names)."""

    default: ExitSettings = ExitSettings()
    per_symbol: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> ExitSettingsBook:
        """From ``StopsConfig.exit_settings()`` (validated there)."""
        return cls(ExitSettings(**plain.get("default", {})),
                   {sym: dict(o) for sym, o in (plain.get("per_symbol") or {}).items()})

    def for_symbol(self, symbol: str) -> ExitSettings:
        override = self.per_symbol.get(symbol)
        return replace(self.default, **override) if override else self.default


def plain_price(price: Decimal) -> Decimal:
    """Quantized and never in exponent form (94.525, not 9.4525E+1)."""
    return Decimal(f"{price.quantize(PRICE_QUANTUM).normalize():f}")


def trail_level(anchor: Decimal, position_side: Side, distance: Decimal | None,
                percent: Decimal | None) -> Decimal:
    """The trailing stop for a best price of ``anchor``: below it for a long,
    above it for a short."""
    gap = distance if distance is not None else anchor * (percent or Decimal(0)) / HUNDRED
    return plain_price(anchor - gap if position_side is Side.BUY else anchor + gap)


def better(a: Decimal, b: Decimal, position_side: Side) -> bool:
    """``a`` is strictly more in the position's favour than ``b``."""
    return a > b if position_side is Side.BUY else a < b


def ratchet_due(old: Decimal, new: Decimal, position_side: Side, step_bps: Decimal) -> bool:
    """Moving from ``old`` to ``new`` is in the position's favour by at least the step."""
    if not better(new, old, position_side):
        return False
    return abs(new - old) >= old * step_bps / BPS
