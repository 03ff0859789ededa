"""The simulated exchange's accounts: positions, cash, realized PnL, fill history.

``Accounts`` holds every account, each opened on first use with the
settings' starting cash in the quote currency. One ``Account`` is the
positions, cash, fees and realized PnL of one name.

The fill history is what ``QueryFills(since_cursor)`` reads: a client that
lost stream events while disconnected asks for everything after the last
cursor it saw. It is bounded (``fill_history``) so memory stays flat over a
long run; a cursor older than the window just returns what is still kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from messages import OrderFilled, OrderRequest, Side
from messages.types import Price, Quantity

ZERO = Decimal("0")
# Decimal operands: comparing or multiplying a Decimal with an int converts
# the int first (same result, slower); the order path does this per fill.
_ONE = Decimal(1)
_MINUS_ONE = Decimal(-1)
_BUY = Side.BUY


@dataclass(slots=True)
class Position:
    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized: Decimal = ZERO

    def apply(self, side: Side, qty: Quantity, price: Price) -> Decimal:
        """Apply one fill; returns the PnL it realized (before fees)."""
        signed = qty if side is _BUY else -qty
        old = self.qty
        realized = ZERO
        long = old > ZERO
        if old == ZERO or long == (signed > ZERO):
            new = old + signed
            self.avg_price = (abs(old) * self.avg_price + qty * price) / abs(new)
            self.qty = new
        else:
            closing = min(abs(old), qty)
            realized = closing * (price - self.avg_price) * (_ONE if long else _MINUS_ONE)
            new = old + signed
            if new == ZERO:
                self.avg_price = ZERO
            elif (new > ZERO) != long:
                self.avg_price = price  # flipped: the remainder opened at this price
            self.qty = new
        self.realized += realized
        return realized


@dataclass
class Account:
    name: str
    cash: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    fees_paid: Decimal = ZERO
    realized: Decimal = ZERO
    #: the last ``history`` OrderFilled, oldest first; their cursors are
    #: consecutive and end at ``next_cursor - 1``, so they are not stored
    #: (a (cursor, fill) pair per fill was one more object for the GC to
    #: track over a long run)
    fills: deque = field(default_factory=deque)
    next_cursor: int = 1

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def record_fill(self, fill: OrderFilled, currency: str, history: int) -> int:
        """Book a fill: position, cash, fees, history. Returns its cursor."""
        side, qty, price, fee = fill.side, fill.qty, fill.price, fill.fee
        pos = self.positions.get(fill.symbol)
        if pos is None:
            pos = self.positions[fill.symbol] = Position()
        self.realized += pos.apply(side, qty, price)
        notional = qty * price
        cash = self.cash
        cash[currency] = cash.get(currency, ZERO) + (-notional if side is _BUY else notional) - fee
        self.fees_paid += fee
        cursor = self.next_cursor
        self.next_cursor = cursor + 1
        fills = self.fills
        fills.append(fill)
        while len(fills) > history:
            fills.popleft()
        return cursor

    def fills_since(self, cursor: int, limit: int) -> tuple[list[OrderFilled], int, bool]:
        """Fills with a cursor above ``cursor``: (fills, next cursor, more left)."""
        out: list[OrderFilled] = []
        last = cursor
        more = False
        for c, fill in enumerate(self.fills, self.next_cursor - len(self.fills)):
            if c <= cursor:
                continue
            if len(out) >= limit:
                more = True
                break
            out.append(fill)
            last = c
        return out, last, more


class Accounts:
    """Every account of the exchange by name; reads ``quote_currency`` and
    ``starting_cash`` from the engine's live settings when one opens."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self.by_name: dict[str, Account] = {}

    def reset(self) -> None:
        """Forget every account (an exchange restart with data loss)."""
        self.by_name = {}

    def get(self, name: str) -> Account:
        """The account called ``name``, opened now if it is new."""
        acct = self.by_name.get(name)
        if acct is None:
            cfg = self._settings
            acct = self.by_name[name] = Account(name, cash={cfg.quote_currency: cfg.starting_cash})
        return acct

    def find(self, name: str) -> Account | None:
        """The account called ``name`` if it is open (never opens one)."""
        return self.by_name.get(name)

    def reducible(self, req: OrderRequest) -> Decimal:
        """How much ``req`` can trade without increasing its position."""
        pos = self.get(req.account).positions.get(req.symbol)
        qty = pos.qty if pos is not None else ZERO
        return max(-qty, ZERO) if req.side is Side.BUY else max(qty, ZERO)

    def position(self, symbol: str, account: str) -> Decimal:
        acct = self.by_name.get(account)
        p = acct.positions.get(symbol) if acct is not None else None
        return p.qty if p is not None else ZERO

    def positions(self, account: str) -> dict[str, Decimal]:
        acct = self.by_name.get(account)
        return {s: p.qty for s, p in sorted(acct.positions.items())} if acct else {}
