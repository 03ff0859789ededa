"""Rule 6's margin gate for one order group: the whole book plus the group, shocked.

The group actor asks the coordinator for a :class:`PortfolioSnapshot` (its
positions, in-flight orders, quotes and equity: the coordinator owns the
book, so nobody keeps a second copy), turns it into ``trading.margin.Leg``
objects here and runs :func:`evaluate` on the shared executor. Everything in
this module is a pure function of its inputs, so the tests can recompute
exactly what the gate decided.

Pricing choices, and why:

* spot of an option is its underlying's mid; its volatility is implied from
  the option's own mid (``trading.instruments.implied_vol``), so the grid's
  "now" is the market. A spec ``iv`` is the fallback for an option without a
  quote; without either the leg is unpriced.
* in-flight orders count as if they fill (the gate's own worst case), so two
  groups submitted together cannot both pass on the same margin.
* anything unpriced fails closed: the group is rejected (``no_market_data``)
  rather than checked against a book that is missing a position.
* available margin is the account's equity (starting cash + realized +
  unrealized, from the coordinator); the worst scenario must need at most
  ``margin_limit`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from collections.abc import Iterable

from trading.margin import (CALL, DEFAULT_GRID, PUT, STOCK, Leg, LegArrays, ShockGrid,
                             check_legs)
from trading.group_spec import GroupSpec
from trading.instruments import implied_vol, parse_option


class Unpriced(ValueError):
    """A leg or position the grid cannot value (no quote, no volatility)."""


@dataclass(frozen=True)
class PortfolioView:
    """The coordinator's answer, as plain dicts."""

    positions: dict[str, Decimal]
    pending: dict[str, tuple[Decimal, Decimal]]    # symbol -> (buys, sells) in flight
    quotes: dict[str, tuple[Decimal, Decimal]]     # symbol -> (bid, ask)
    equity: Decimal
    now: datetime


@dataclass(frozen=True)
class MarginVerdict:
    ok: bool
    worst: Decimal
    limit_value: Decimal
    available: Decimal
    scenario: tuple[float, float, float]   # (price shock, iv shock, spread multiplier)
    unshocked: Decimal | None              # margin at no shock, narrowest spread
    legs: int

    def inputs(self) -> dict[str, Any]:
        p, v, m = self.scenario
        return {"worst_case_margin": str(self.worst), "limit_value": str(self.limit_value),
                "available_margin": str(self.available),
                "worst_scenario": {"price_shock": p, "iv_shock": v, "spread_multiplier": m},
                "unshocked_margin": None if self.unshocked is None else str(self.unshocked),
                "legs_evaluated": self.legs}


def grid_from_config(cfg: Any) -> ShockGrid:
    """``config.schema.ShockGrid`` (Decimal lists) -> ``trading.margin.ShockGrid``."""
    return ShockGrid(cfg.price, cfg.iv, cfg.spread)  # ShockGrid makes them float tuples


def _mid(quotes: dict[str, tuple[Decimal, Decimal]], symbol: str) -> tuple[float, float] | None:
    q = quotes.get(symbol)
    if q is None:
        return None
    bid, ask = q
    return float((bid + ask) / 2), float((ask - bid) / 2)


def margin_leg(symbol: str, qty: Decimal, book: PortfolioView, *,
               iv_hint: Decimal | None = None, multiplier: Decimal = Decimal(1)) -> Leg:
    """One signed quantity of ``symbol`` as a grid leg, priced from the book's quotes."""
    opt = parse_option(symbol)
    own = _mid(book.quotes, symbol)
    if opt is None:
        if own is None:
            raise Unpriced(f"{symbol}: no quote")
        return Leg(STOCK, qty, own[0], half_spread=own[1], multiplier=multiplier,
                   underlying=symbol)
    und = _mid(book.quotes, opt.underlying)
    if und is None:
        raise Unpriced(f"{symbol}: no quote for the underlying {opt.underlying}")
    years = opt.years_to_expiry(book.now)
    iv = None
    if own is not None:
        iv = implied_vol(opt.is_call, price=own[0], spot=und[0], strike=float(opt.strike), years=years)
    if iv is None and iv_hint is not None:
        iv = float(iv_hint)
    if iv is None:
        raise Unpriced(f"{symbol}: no volatility (no usable quote and no iv given)")
    return Leg(CALL if opt.is_call else PUT, qty, und[0], strike=opt.strike, expiry_years=years,
               iv=iv, half_spread=own[1] if own is not None else 0, multiplier=multiplier,
               underlying=opt.underlying)


def build_legs(group: GroupSpec, book: PortfolioView) -> tuple[list[Leg], list[Leg]]:
    """(portfolio legs, group legs); raises :class:`Unpriced` naming every gap."""
    hints: dict[str, Decimal] = {}
    for g in group.legs:
        if g.iv is not None:
            hints.setdefault(g.underlying, g.iv)
    problems: list[str] = []
    portfolio: list[Leg] = []
    for symbol, qty in _book_quantities(book):
        opt = parse_option(symbol)
        try:
            portfolio.append(margin_leg(symbol, qty, book,
                                        iv_hint=hints.get(opt.underlying) if opt else None))
        except Unpriced as exc:
            problems.append(f"position {exc}")
    legs: list[Leg] = []
    for g in group.legs:
        try:
            legs.append(margin_leg(g.symbol, g.sign * g.qty, book, iv_hint=g.iv,
                                   multiplier=g.multiplier))
        except Unpriced as exc:
            problems.append(f"leg {exc}")
    if problems:
        raise Unpriced("; ".join(problems))
    return portfolio, legs


def _book_quantities(book: PortfolioView) -> Iterable[tuple[str, Decimal]]:
    for symbol, qty in sorted(book.positions.items()):
        if qty != 0:
            yield symbol, qty
    for symbol, (buys, sells) in sorted(book.pending.items()):
        if buys > 0:
            yield symbol, buys
        if sells > 0:
            yield symbol, -sells


def evaluate(portfolio: list[Leg], group: list[Leg], available: Decimal, limit: Decimal,
             grid: ShockGrid | None = None) -> MarginVerdict:
    """The gate (runs on the shared executor): ``margin_check``, plus the figures the
    audit record needs to show *which* scenario broke the limit."""
    grid = grid or DEFAULT_GRID
    legs = LegArrays.from_legs([*portfolio, *group])
    decision, result = check_legs(legs, available, limit, grid)  # one grid evaluation
    unshocked = None
    if result is not None:
        per = result.per_scenario
        calm = [s.index for s in grid.scenarios()
                if s.price_shock == 0.0 and s.iv_shock == 0.0]
        if calm:
            calm_min = float(min(per[i] for i in calm))
            unshocked = Decimal(repr(calm_min)).quantize(Decimal("0.000001"))
    sc = decision.scenario
    return MarginVerdict(decision.ok, decision.worst, decision.limit_value, Decimal(available),
                         (sc.price_shock, sc.iv_shock, sc.spread_multiplier), unshocked, len(legs))
