"""A venue's instrument rules in the risk gate: refused before the order leaves.

Venue-neutral: the rules are data (per symbol: tick size, lot step, min/max
quantity, separate lot rules for market orders, min notional, price limits
and a price band around the reference price), loaded from the venue's
markets at start (``exchange.ccxt_venue.markets`` for Binance; a stock or
an option venue fills the same fields). A symbol without rules is not
checked, so the simulated exchange behaves as before.

Two steps, both pure:

* :func:`conform` (the coordinator, before the decision): the quantity is
  rounded DOWN to the lot step, never up (an order is never bigger than
  asked); a limit or trigger price is put on the tick in the passive
  direction (a buy's price down, a sell's up), so it is never more
  aggressive than asked and a stop's slippage bound still holds;
* :func:`check` (the gate): what still breaks a rule is refused with a
  reason code (``venue_lot_size``, ``venue_min_notional``,
  ``venue_tick_size``, ``venue_price_band``) and the rule's numbers in the
  audit record. Reduce-only orders are exempt from the min notional, as at
  Binance; every other rule applies to them too (the venue would refuse them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from messages.enums import Side
from messages.types import Price, Quantity
from trading.reasons import Reason


@dataclass(frozen=True)
class InstrumentRules:
    tick_size: Decimal | None = None
    step_size: Decimal | None = None
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    market_step_size: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None
    min_notional: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    #: a limit price must lie within reference * price_band_down .. * price_band_up
    price_band_up: Decimal | None = None
    price_band_down: Decimal | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "instrument rules") -> InstrumentRules:
        """From ``{"tick_size": "0.1", ...}``; ValueError names a bad entry."""
        known = {f.name for f in fields(cls)}
        kw: dict[str, Decimal] = {}
        for key, raw in data.items():
            if key not in known:
                raise ValueError(f"{where}: unknown rule {key!r}")
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                raise ValueError(f"{where}.{key}: {raw!r} is not a number") from None
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{where}.{key}: {raw!r} must be a positive number")
            kw[key] = value
        return cls(**kw)

    def lot(self, market: bool) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        """(step, min, max) for this kind of order."""
        if market:
            return (self.market_step_size or self.step_size, self.market_min_qty or self.min_qty,
                    self.market_max_qty or self.max_qty)
        return self.step_size, self.min_qty, self.max_qty


def round_down(qty: Decimal, step: Decimal | None) -> Decimal:
    if step is None:
        return qty
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def _on_tick(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


@dataclass(frozen=True)
class Conformed:
    qty: Quantity
    price: Price | None
    trigger: Price | None
    #: what changed, for the audit record (empty when nothing did)
    notes: dict[str, str]


def conform(rules: InstrumentRules | None, side: Side, qty: Quantity, *, price: Price | None,
            trigger: Price | None, market: bool) -> Conformed:
    if rules is None:
        return Conformed(qty, price, trigger, {})
    notes: dict[str, str] = {}
    step = rules.lot(market)[0]
    new_qty = Quantity(round_down(qty, step))
    if new_qty != qty:
        notes["qty_requested"] = str(qty)
    tick = rules.tick_size
    new_price, new_trigger = price, trigger
    if tick is not None and price is not None:
        new_price = Price(_on_tick(price, tick, side))
        if new_price != price:
            notes["price_requested"] = str(price)
    if tick is not None and trigger is not None:
        new_trigger = Price(_on_tick(trigger, tick, side))
        if new_trigger != trigger:
            notes["trigger_requested"] = str(trigger)
    return Conformed(new_qty, new_price, new_trigger, notes)


def check(rules: InstrumentRules | None, qty: Decimal, *, price: Decimal | None,
          reference: Decimal | None, market: bool, reduce_only: bool,
          trigger: Decimal | None = None) -> tuple[Reason, dict[str, Any]] | None:
    """The first rule the order breaks (reason, numbers), or None."""
    if rules is None:
        return None
    step, lo, hi = rules.lot(market)
    if qty <= 0 or (step is not None and qty % step != 0):
        return Reason.VENUE_LOT_SIZE, {"step_size": step, "note": "quantity not on the lot step "
                                                                  "(or below one step)"}
    if lo is not None and qty < lo:
        return Reason.VENUE_LOT_SIZE, {"min_qty": lo}
    if hi is not None and qty > hi:
        return Reason.VENUE_LOT_SIZE, {"max_qty": hi}
    tick = rules.tick_size
    for name, value in (("price", price), ("trigger_price", trigger)):
        if value is None:
            continue
        if tick is not None and value % tick != 0:
            return Reason.VENUE_TICK_SIZE, {"tick_size": tick, "field": name}
        if rules.min_price is not None and value < rules.min_price:
            return Reason.VENUE_PRICE_BAND, {"min_price": rules.min_price, "field": name}
        if rules.max_price is not None and value > rules.max_price:
            return Reason.VENUE_PRICE_BAND, {"max_price": rules.max_price, "field": name}
    if price is not None and reference is not None and reference > 0:
        if rules.price_band_up is not None and price > reference * rules.price_band_up:
            return Reason.VENUE_PRICE_BAND, {"reference": reference, "band_up": rules.price_band_up}
        if rules.price_band_down is not None and price < reference * rules.price_band_down:
            return Reason.VENUE_PRICE_BAND, {"reference": reference,
                                             "band_down": rules.price_band_down}
    notional_price = price if price is not None else reference
    if (not reduce_only and rules.min_notional is not None and notional_price is not None
            and qty * notional_price < rules.min_notional):
        return Reason.VENUE_MIN_NOTIONAL, {"notional": qty * notional_price,
                                           "min_notional": rules.min_notional}
    return None


def rules_table(raw: dict[str, dict[str, Any]]) -> dict[str, InstrumentRules]:
    """``{symbol: {rule: value}}`` (a venue's markets, as data) -> rules."""
    return {sym: InstrumentRules.from_mapping(r, where=f"instrument rules {sym}")
            for sym, r in raw.items()}
