"""Order state and the per-symbol top-of-book of the simulated exchange.

The simulator has no order book of its own participants: the market is the
quote stream (best bid/ask with sizes). A quote's size is liquidity that our
orders consume while that quote stands, so two market orders in a row cannot
both take the full displayed size. A size of 0 means "depth unknown" and is
treated as unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from messages import OrderRequest, OrderType, Side
from messages.types import Price, Quantity, Symbol

ZERO = Decimal("0")
NO_QTY = Quantity(ZERO)
_BUY, _MARKET = Side.BUY, OrderType.MARKET  # (globals: read once per order)
_STOP_MARKET = OrderType.STOP_MARKET

WORKING = "working"
FILLED = "filled"
CANCELED = "canceled"
EXPIRED = "expired"


@dataclass(slots=True)
class Book:
    symbol: Symbol
    bid: Price | None = None
    ask: Price | None = None
    bid_size: Quantity = NO_QTY
    ask_size: Quantity = NO_QTY
    #: Liquidity left at the current quote (None = unlimited).
    avail_bid: Decimal | None = None
    avail_ask: Decimal | None = None
    last: Decimal | None = None
    ts: datetime | None = None

    def set_quote(self, *, bid: Price, ask: Price, bid_size: Quantity, ask_size: Quantity,
                  ts: datetime | None, limit_by_size: bool) -> None:
        self.bid, self.ask = bid, ask
        self.bid_size, self.ask_size = bid_size, ask_size
        self.avail_bid = bid_size if (limit_by_size and bid_size > 0) else None
        self.avail_ask = ask_size if (limit_by_size and ask_size > 0) else None
        self.ts = ts

    @property
    def has_quote(self) -> bool:
        return self.bid is not None and self.ask is not None

    def touch(self, side: Side) -> Price | None:
        """Price a taker on ``side`` trades at (ask for a buy, bid for a sell)."""
        return self.ask if side is Side.BUY else self.bid

    def available(self, side: Side) -> Decimal | None:
        return self.avail_ask if side is Side.BUY else self.avail_bid

    def consume(self, side: Side, qty: Decimal) -> None:
        if side is Side.BUY:
            if self.avail_ask is not None:
                self.avail_ask -= qty
        elif self.avail_bid is not None:
            self.avail_bid -= qty

    @property
    def mid(self) -> Decimal | None:
        bid, ask = self.bid, self.ask
        if bid is None or ask is None:  # no quote
            return self.last
        return (bid + ask) / 2


@dataclass(slots=True)
class OrderState:
    """An accepted order, as the exchange tracks it."""

    request: OrderRequest
    exchange_order_id: str
    created: datetime
    leaves: Quantity
    filled: Quantity = NO_QTY
    status: str = WORKING
    triggered: bool = True
    cancel_pending: bool = False
    notional: Decimal = ZERO
    #: fill ids, oldest first. A tuple, not a list: a tuple of strings drops
    #: out of the cyclic GC's tracking, and every kept order holds one
    fills: tuple[str, ...] = ()

    @property
    def coid(self) -> str:
        return self.request.client_order_id

    @property
    def is_working(self) -> bool:
        return self.status == WORKING

    @property
    def avg_price(self) -> Decimal | None:
        return self.notional / self.filled if self.filled else None

    def marketable_price(self, book: Book) -> Price | None:
        """Price this order would trade at against ``book`` now, else None."""
        req = self.request
        buy = req.side is _BUY
        touch = book.ask if buy else book.bid  # book.touch(req.side), inline
        if touch is None or not self.triggered:
            return None
        if req.order_type is _MARKET or req.order_type is _STOP_MARKET:
            return touch
        limit = req.price
        if limit is None:  # never for a limit order (OrderRequest refuses it)
            return None
        if buy:
            return touch if touch <= limit else None
        return touch if touch >= limit else None

    def crossed_through(self, book: Book) -> bool:
        """A resting limit the market traded through: fill at the limit (maker)."""
        return self.marketable_price(book) is not None

    def trigger_hit(self, book: Book) -> bool:
        """Stop-limit trigger: a buy stop when the ask reaches it, a sell stop
        when the bid falls to it (the side a stop-out would trade against)."""
        req = self.request
        touch, trigger = book.touch(req.side), req.trigger_price
        if touch is None or trigger is None:  # a trigger is never missing on a stop-limit
            return False
        if req.side is Side.BUY:
            return touch >= trigger
        return touch <= trigger


def split_qty(qty: Decimal, parts: int) -> list[Decimal]:
    """Split ``qty`` into at most ``parts`` positive pieces that add up exactly.

    Pieces are multiples of the finest decimal step needed (10 -> 4, 3, 3;
    1 in 4 -> 0.3, 0.3, 0.2, 0.2), so the sum is exact with no float drift.
    """
    if parts <= 1 or qty <= 0:
        return [qty]
    exponent = qty.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"split_qty: {qty} is not a finite quantity")
    exp = min(exponent, 0)
    step = Decimal(1).scaleb(exp)
    # Refine the step until there are at least ``parts`` units, bounded.
    for _ in range(12):
        if qty / step >= parts:
            break
        step = step / 10
    units = int(qty / step)
    if units * step != qty or units < parts:
        return [qty]
    base, rem = divmod(units, parts)
    return [step * (base + 1)] * rem + [step * base] * (parts - rem)
