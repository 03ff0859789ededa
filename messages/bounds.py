"""Sane ranges for the numbers that cross a trust boundary (DESIGN rule 18).

A message that decodes is well-formed, not believable: ``Decimal('9E+999999')``
is finite, positive and a valid price to the codec, and it overflowed the
coordinator's arithmetic (a crash loop) and poisoned the simulated
exchange's book. Every price, quantity and notional that enters from outside
(exchange events at the gateway, orders at the simulated exchange, signals
at the gate) is checked here first: a range per instrument, a bound on the
exponent and on the number of significant digits, and a notional computed
under :data:`CONTEXT`, which traps instead of silently rounding to infinity,
zero or a clamped exponent.

The functions return ``None`` for a believable value, else a short reason
that names the field and the value (truncated), so the caller can count,
audit and refuse it. They never raise on any input. This module sits in
``messages/`` because both the runtime (``trading``) and the simulated
exchange (a leaf that must not import ``trading``) check with it.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from messages.exchange import (BalanceSnapshot, FillsSnapshot, OpenOrder, OpenOrdersSnapshot,
                               OrderExpired)
from messages.market import Bar, Quote
from messages.orders import CancelConfirmed, OrderFilled, OrderRequest, PositionSnapshot, Signal

#: Arithmetic on checked numbers: an overflow, underflow, clamped exponent,
#: invalid operation, division by zero or a float mixed in raises rather
#: than yielding Infinity, 0 or a silently altered value. (Inexact and
#: Rounded stay untrapped: a 28-digit price times a 28-digit quantity rounds.)
CONTEXT = decimal.Context(
    prec=34, rounding=decimal.ROUND_HALF_EVEN, Emax=99, Emin=-99,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
           decimal.Underflow, decimal.Subnormal, decimal.Clamped, decimal.FloatOperation])

_ZERO = Decimal(0)
#: longest value text quoted in a reason (a hostile number can be 1 MB of digits)
_SHOWN = 40


_DIGITS: dict[int, decimal.Context] = {}


def _digits_context(max_digits: int) -> decimal.Context:
    """A context that traps only Rounded at ``max_digits`` digits: counting a
    coefficient's digits with ``as_tuple()`` costs several times more, per
    number, on the quote path."""
    ctx = _DIGITS.get(max_digits)
    if ctx is None:
        ctx = _DIGITS[max_digits] = decimal.Context(prec=max_digits, Emax=decimal.MAX_EMAX,
                                                    Emin=decimal.MIN_EMIN, traps=[decimal.Rounded])
    return ctx


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}...({len(text)} chars)"


@dataclass(frozen=True, slots=True)
class NumberBounds:
    """The believable range of one instrument's numbers.

    ``max_exponent`` bounds the decimal exponent of any nonzero number
    (``1E+16`` and ``1E-16`` are both out with 15); ``max_digits`` bounds
    its significant digits, so nothing is rounded when it is used and no
    megabyte-long number reaches a log line.
    """

    min_price: Decimal = Decimal("1E-12")
    max_price: Decimal = Decimal("1E+9")
    max_qty: Decimal = Decimal("1E+12")
    max_notional: Decimal = Decimal("1E+13")
    max_exponent: int = 15
    max_digits: int = 28
    #: derived for the fast path (``fast_ok``): the smallest magnitude the
    #: exponent limit allows, and a context that signals Rounded past max_digits
    tiny: Decimal = field(init=False, repr=False, compare=False)
    digits: decimal.Context = field(init=False, repr=False, compare=False)
    #: the smallest believable price: max(min_price, tiny) (``quote_ok``)
    price_floor: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = bounds_problem(self)
        if problem is not None:
            raise ValueError(problem)
        object.__setattr__(self, "tiny", Decimal(f"1E-{self.max_exponent}"))
        object.__setattr__(self, "digits", _digits_context(self.max_digits))
        object.__setattr__(self, "price_floor", max(self.min_price, self.tiny))


def bounds_problem(b: Any, prefix: str = "") -> str | None:
    """Why ``b`` (anything with NumberBounds' fields) is not a usable range, or None."""
    for name in ("min_price", "max_price", "max_qty", "max_notional"):
        v = getattr(b, name)
        if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
            return f"{prefix}{name}: must be a positive finite decimal, got {_show(v)}"
    for name, lo, hi in (("max_exponent", 1, 60), ("max_digits", 1, 34)):
        v = getattr(b, name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            return f"{prefix}{name}: must be an integer in [{lo}, {hi}], got {v!r}"
    if b.min_price >= b.max_price:
        return f"{prefix}min_price: {b.min_price} must be below max_price {b.max_price}"
    for name in ("min_price", "max_price", "max_qty", "max_notional"):
        v = getattr(b, name)
        if abs(v.adjusted()) > b.max_exponent:
            return (f"{prefix}{name}: {v} has an exponent beyond max_exponent {b.max_exponent}, "
                    f"so no value could reach it")
    return None


@dataclass(frozen=True, slots=True)
class Bounds:
    """Account-wide defaults, per-symbol overrides and the size of a snapshot."""

    default: NumberBounds = field(default_factory=NumberBounds)
    per_symbol: Mapping[str, NumberBounds] = field(default_factory=dict)
    #: a snapshot (positions, open orders, fills, balances) with more entries is refused
    max_snapshot_entries: int = 10_000

    def for_symbol(self, symbol: Any) -> NumberBounds:
        return self.per_symbol.get(symbol, self.default) if isinstance(symbol, str) else self.default


DEFAULT_BOUNDS = Bounds()


def bounds_from_config(section: Any) -> Bounds:
    """Bounds from a validated ``bounds`` config section (``config.bounds``;
    read by attribute, so this leaf imports no config code)."""
    def number_bounds(b: Any) -> NumberBounds:
        return NumberBounds(min_price=Decimal(b.min_price), max_price=Decimal(b.max_price),
                            max_qty=Decimal(b.max_qty), max_notional=Decimal(b.max_notional),
                            max_exponent=int(b.max_exponent), max_digits=int(b.max_digits))

    return Bounds(default=number_bounds(section),
                  per_symbol={sym: number_bounds(section.bounds_for(sym))
                              for sym in section.per_symbol},
                  max_snapshot_entries=int(section.max_snapshot_entries))


# -- single numbers -----------------------------------------------------------------


def number_problem(value: Any, name: str, b: NumberBounds, *, lo: Decimal | None,
                   hi: Decimal, signed: bool = False, zero: bool = False) -> str | None:
    """Why ``value`` is no believable number for ``name``, or None.

    ``lo``/``hi`` bound the magnitude (``lo`` None: no lower bound beyond
    positive); ``signed`` allows negatives (positions, PnL); ``zero`` allows 0.
    """
    if type(value) is not Decimal:
        return f"{name}: expected a decimal, got {type(value).__name__}"
    if not value.is_finite():
        return f"{name}: {_show(value)} is not finite"
    if value == _ZERO:
        return None if zero else f"{name}: must not be zero"
    if value < _ZERO and not signed:
        return f"{name}: {_show(value)} must be positive"
    exp = value.adjusted()
    if exp > b.max_exponent or exp < -b.max_exponent:
        return f"{name}: {_show(value)} exponent {exp} beyond +/-{b.max_exponent}"
    try:  # a context of max_digits signals Rounded for any longer coefficient
        b.digits.plus(value)
    except decimal.Rounded:
        digits = len(value.as_tuple().digits)
        return f"{name}: {_show(value)} has {digits} significant digits (max {b.max_digits})"
    mag = -value if value < _ZERO else value
    if mag > hi:
        return f"{name}: {_show(value)} above the sane maximum {hi}"
    if lo is not None and mag < lo:
        return f"{name}: {_show(value)} below the sane minimum {lo}"
    return None


def fast_ok(value: Any, b: NumberBounds, lo: Decimal | None, hi: Decimal) -> bool:
    """True when ``value`` is certainly believable (the common case, cheaply):
    a finite Decimal, zero or within [max(lo, tiny), hi] in magnitude (which
    also keeps its exponent in bounds, ``hi`` being checked against them),
    and no more digits than allowed. False means: ask ``number_problem``."""
    if type(value) is not Decimal or not value.is_finite():
        return False
    if value:
        mag = value.copy_abs()
        if mag > hi or mag < b.tiny or (lo is not None and mag < lo):
            return False
    try:
        b.digits.plus(value)
    except decimal.Rounded:
        return False
    return True


def quote_ok(q: Quote, b: NumberBounds) -> bool:
    """True when every number of ``q`` is certainly believable: what
    :func:`fast_ok` says of its prices and sizes (and their signs), in one call
    and a few comparisons. Every quote pays it twice (at the simulated
    exchange's door and at the gateway's), so it is written for that; the
    tests hold it equal to the number-by-number checks. False means: ask
    ``number_problem`` for the reason."""
    bid, ask, bsz, asz = q.bid, q.ask, q.bid_size, q.ask_size
    if (type(bid) is not Decimal or type(ask) is not Decimal or type(bsz) is not Decimal
            or type(asz) is not Decimal):
        return False
    lo, hi, tiny, qmax = b.price_floor, b.max_price, b.tiny, b.max_qty
    try:  # a NaN in an ordering comparison raises InvalidOperation; an infinity fails it
        if not (lo <= bid <= hi and lo <= ask <= hi):
            return False
        if (bsz and not tiny <= bsz <= qmax) or (asz and not tiny <= asz <= qmax):
            return False
        plus = b.digits.plus  # signals Rounded past max_digits significant digits
        plus(bid)
        plus(ask)
        plus(bsz)
        plus(asz)
    except (decimal.Rounded, decimal.InvalidOperation):
        return False
    return True


def price_problem(value: Any, name: str, b: NumberBounds, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    return number_problem(value, name, b, lo=b.min_price, hi=b.max_price)


def qty_problem(value: Any, name: str, b: NumberBounds, *, signed: bool = False,
                zero: bool = False) -> str | None:
    return number_problem(value, name, b, lo=None, hi=b.max_qty, signed=signed, zero=zero)


def amount_problem(value: Any, name: str, b: NumberBounds) -> str | None:
    """Cash, fees, PnL: signed, zero allowed, at most ``max_notional`` in size."""
    return number_problem(value, name, b, lo=None, hi=b.max_notional, signed=True, zero=True)


def notional_problem(qty: Decimal, price: Decimal, name: str, b: NumberBounds) -> str | None:
    """``|qty * price|`` within ``max_notional`` (both already checked on their own)."""
    try:
        notional = abs(CONTEXT.multiply(qty, price))
    except decimal.DecimalException as exc:
        return f"{name}: qty {_show(qty)} x price {_show(price)} is not computable ({type(exc).__name__})"
    if notional > b.max_notional:
        return f"{name}: notional {notional:.6E} above the sane maximum {b.max_notional}"
    return None


def first(*problems: str | None) -> str | None:
    for p in problems:
        if p is not None:
            return p
    return None


# -- whole messages ------------------------------------------------------------------


def fill_problem(ev: OrderFilled, bounds: Bounds = DEFAULT_BOUNDS,
                 where: str = "OrderFilled") -> str | None:
    b = bounds.for_symbol(ev.symbol)
    problem = first(qty_problem(ev.qty, f"{where}.qty", b),
                    price_problem(ev.price, f"{where}.price", b),
                    qty_problem(ev.leaves_qty, f"{where}.leaves_qty", b, zero=True),
                    amount_problem(ev.fee, f"{where}.fee", b))
    return problem or notional_problem(ev.qty, ev.price, f"{where}.notional", b)


def order_problem(order: OrderRequest, bounds: Bounds = DEFAULT_BOUNDS,
                  mark: Decimal | None = None) -> str | None:
    """An incoming order's numbers (the simulated exchange's door). ``mark``
    prices a market order's notional when it has no price of its own."""
    b = bounds.for_symbol(order.symbol)
    problem = first(qty_problem(order.qty, "qty", b),
                    price_problem(order.price, "price", b, optional=True),
                    price_problem(order.trigger_price, "trigger_price", b, optional=True))
    if problem is not None:
        return problem
    price = order.price if order.price is not None else (order.trigger_price or mark)
    return notional_problem(order.qty, price, "notional", b) if price is not None else None


def signal_problem(sig: Signal, bounds: Bounds = DEFAULT_BOUNDS) -> str | None:
    b = bounds.for_symbol(sig.symbol)
    return first(qty_problem(sig.qty, "qty", b),
                 price_problem(sig.stop_loss, "stop_loss", b, optional=True))


def _entries_problem(items: Any, where: str, bounds: Bounds) -> str | None:
    n = len(items)
    if n > bounds.max_snapshot_entries:
        return f"{where}: {n} entries, more than the sane maximum {bounds.max_snapshot_entries}"
    return None


def _open_order_problem(o: OpenOrder, bounds: Bounds, where: str) -> str | None:
    b = bounds.for_symbol(o.symbol)
    return first(qty_problem(o.qty, f"{where}.qty", b),
                 qty_problem(o.leaves_qty, f"{where}.leaves_qty", b, zero=True),
                 price_problem(o.price, f"{where}.price", b, optional=True),
                 price_problem(o.trigger_price, f"{where}.trigger_price", b, optional=True))


def event_problem(ev: Any, bounds: Bounds = DEFAULT_BOUNDS) -> str | None:
    """Why an exchange event's numbers are not believable, or None.

    Types without numbers (acks, rejects, errors, stream status) pass.
    """
    kind = type(ev)
    if kind is Quote:
        b = bounds.for_symbol(ev.symbol)
        # the quote path: one cheap check of every number, the named reason only on failure
        if quote_ok(ev, b):
            return None
        return first(price_problem(ev.bid, "Quote.bid", b), price_problem(ev.ask, "Quote.ask", b),
                     qty_problem(ev.bid_size, "Quote.bid_size", b, zero=True),
                     qty_problem(ev.ask_size, "Quote.ask_size", b, zero=True))
    if kind is OrderFilled:
        return fill_problem(ev, bounds)
    if kind is Bar:
        b = bounds.for_symbol(ev.symbol)
        return first(*(price_problem(getattr(ev, f), f"Bar.{f}", b)
                       for f in ("open", "high", "low", "close")),
                     qty_problem(ev.volume, "Bar.volume", b, zero=True))
    if kind is OrderExpired:
        return qty_problem(ev.expired_qty, "OrderExpired.expired_qty", bounds.for_symbol(ev.symbol),
                           zero=True)
    if kind is CancelConfirmed:
        return qty_problem(ev.canceled_qty, "CancelConfirmed.canceled_qty",
                           bounds.for_symbol(ev.symbol), zero=True)
    if kind is PositionSnapshot:
        problem = _entries_problem(ev.positions, "PositionSnapshot.positions", bounds)
        if problem is not None:
            return problem
        for i, (sym, qty) in enumerate(ev.positions):
            problem = qty_problem(qty, f"PositionSnapshot.positions[{i}] ({sym[:32]})",
                                  bounds.for_symbol(sym), signed=True, zero=True)
            if problem is not None:
                return problem
        for i, (sym, price) in enumerate(ev.entry_prices):
            problem = price_problem(price, f"PositionSnapshot.entry_prices[{i}] ({sym[:32]})",
                                    bounds.for_symbol(sym))
            if problem is not None:
                return problem
        return None
    if kind is OpenOrdersSnapshot:
        problem = _entries_problem(ev.orders, "OpenOrdersSnapshot.orders", bounds)
        return problem or first(*(_open_order_problem(o, bounds, f"OpenOrdersSnapshot.orders[{i}]")
                                  for i, o in enumerate(ev.orders)))
    if kind is FillsSnapshot:
        problem = _entries_problem(ev.fills, "FillsSnapshot.fills", bounds)
        return problem or first(*(fill_problem(f, bounds, f"FillsSnapshot.fills[{i}]")
                                  for i, f in enumerate(ev.fills)))
    if kind is BalanceSnapshot:
        b = bounds.default
        problem = _entries_problem(ev.balances, "BalanceSnapshot.balances", bounds)
        return problem or first(*(amount_problem(v, f"BalanceSnapshot.balances[{i}]", b)
                                  for i, (_, v) in enumerate(ev.balances)),
                                amount_problem(ev.realized_pnl, "BalanceSnapshot.realized_pnl", b),
                                amount_problem(ev.fees_paid, "BalanceSnapshot.fees_paid", b))
    return None
