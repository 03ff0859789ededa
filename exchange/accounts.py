"""Positions, cash, realized PnL and the fill history of one account.

The fill history is what ``QueryFills(since_cursor)`` reads: a client that
lost stream events while disconnected asks for everything after the last
cursor it saw. It is bounded (``fill_history``) so memory stays flat over a
long run; a cursor older than the window just returns what is still kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from messages import OrderFilled, Side

ZERO = Decimal("0")


@dataclass(slots=True)
class Position:
    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized: Decimal = ZERO

    def apply(self, side: Side, qty: Decimal, price: Decimal) -> Decimal:
        """Apply one fill; returns the PnL it realized (before fees)."""
        signed = qty if side is Side.BUY else -qty
        old = self.qty
        realized = ZERO
        if old == 0 or (old > 0) == (signed > 0):
            new = old + signed
            self.avg_price = (abs(old) * self.avg_price + qty * price) / abs(new)
            self.qty = new
        else:
            closing = min(abs(old), qty)
            direction = 1 if old > 0 else -1
            realized = closing * (price - self.avg_price) * direction
            new = old + signed
            if new == 0:
                self.avg_price = ZERO
            elif (new > 0) != (old > 0):
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
    fills: deque = field(default_factory=deque)  # (cursor, OrderFilled)
    next_cursor: int = 1

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def record_fill(self, fill: OrderFilled, currency: str, history: int) -> int:
        """Book a fill: position, cash, fees, history. Returns its cursor."""
        pos = self.position(fill.symbol)
        self.realized += pos.apply(fill.side, fill.qty, fill.price)
        notional = fill.qty * fill.price
        delta = -notional if fill.side is Side.BUY else notional
        self.cash[currency] = self.cash.get(currency, ZERO) + delta - fill.fee
        self.fees_paid += fill.fee
        cursor = self.next_cursor
        self.next_cursor += 1
        self.fills.append((cursor, fill))
        while len(self.fills) > history:
            self.fills.popleft()
        return cursor

    def fills_since(self, cursor: int, limit: int) -> tuple[list[OrderFilled], int, bool]:
        """Fills with a cursor above ``cursor``: (fills, next cursor, more left)."""
        out: list[OrderFilled] = []
        last = cursor
        more = False
        for c, fill in self.fills:
            if c <= cursor:
                continue
            if len(out) >= limit:
                more = True
                break
            out.append(fill)
            last = c
        return out, last, more
