"""Positions per (account, venue, symbol), in-flight orders, and netting.

Positions move fill by fill; a fill id is applied exactly once (rule 9).
The netting check (rule 2) counts in-flight orders pessimistically: an
order may only go to the other side of the book if it is guaranteed to
reduce, i.e. even if every in-flight order on that side fills, the new
order cannot cross zero. So two rapid opposite signals cannot both pass.

One kind of in-flight order is left out of that sum: an exit plan's resting
protection (``InFlight.protective``: the stop manager's reduce-only orders).
They are alternatives to any other exit of the same position, not additions
to it: each is reduce-only at the venue, and so is every order this gate
approves as reducing, so at the venue their fills are capped at what is left
of the position, and together they can never cross zero. Counting them
would refuse a strategy's own exit (and a take-profit beside its stop) of
every protected position. Every other in-flight order still counts, so two
rapid opposite signals still cannot both pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from collections.abc import Iterable

from messages.enums import OrderPurpose, Side
from messages.orders import ExitPlan
from messages.types import ClientOrderId, Price, Quantity

ZERO = Decimal(0)
NO_QTY = Quantity(ZERO)
NO_PRICE = Price(ZERO)
Key = tuple[str, str, str]  # (account, venue, symbol)


@dataclass
class Position:
    qty: Quantity = NO_QTY  # signed: short below zero
    avg_price: Price = NO_PRICE
    realized: Decimal = ZERO
    fees: Decimal = ZERO

    def apply(self, side: Side, qty: Quantity, price: Price, fee: Decimal = ZERO) -> Decimal:
        """Apply one fill; returns the realized PnL of this fill."""
        signed = qty if side is Side.BUY else -qty
        realized = ZERO
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = self.qty + signed
            self.avg_price = Price((self.avg_price * abs(self.qty) + price * qty) / abs(total))
            self.qty = Quantity(total)
        else:
            closing = min(qty, abs(self.qty))
            direction = 1 if self.qty > 0 else -1
            realized = (price - self.avg_price) * closing * direction
            self.qty = Quantity(self.qty + signed)
            if self.qty == 0:
                self.avg_price = NO_PRICE
            elif (self.qty > 0) != (direction > 0):
                self.avg_price = price  # flipped through zero: the rest opened at this price
        self.realized += realized - fee
        self.fees += fee
        return realized - fee

    def unrealized(self, mark: Price | None) -> Decimal:
        if mark is None or self.qty == 0:
            return ZERO
        return (mark - self.avg_price) * self.qty


@dataclass
class InFlight:
    client_order_id: ClientOrderId
    key: Key
    side: Side
    qty: Quantity
    purpose: OrderPurpose
    reduce_only: bool
    owner: str | None = None
    filled: Quantity = NO_QTY
    cancel_requested: bool = False
    acked: bool = False
    stop_loss: Price | None = None
    fills: list[str] = field(default_factory=list)
    exit_plan: ExitPlan | None = None

    @property
    def remaining(self) -> Quantity:
        return Quantity(max(ZERO, self.qty - self.filled))

    @property
    def protective(self) -> bool:
        """An exit plan's own order (stop, take-profit, market remainder):
        reduce-only at the venue, so it cannot add to another exit."""
        return self.reduce_only and self.purpose is OrderPurpose.STOP


class FillLedger:
    """Fill ids already applied (rule 9), kept per order and forgotten with it.

    The coordinator books a fill only for an order it still knows: a report
    about an order it has dropped from memory (``trading.order_retention``)
    takes the unknown-order way before this ledger is asked. So once an order
    is dropped, its fill ids can never be asked about again, and
    :meth:`forget` lets them go with it: the ledger holds the fills of the
    orders in memory, not every fill since the start. ``keep`` bounds it
    even so (the oldest ids go first); the store keeps the full history.
    """

    def __init__(self, keep: int = 200_000) -> None:
        #: fill id -> client order id ("" when the caller named none)
        self._seen: dict[str, str] = {}
        #: client order id -> its fill ids, for :meth:`forget`
        self._by_order: dict[str, list[str]] = {}
        self._keep = keep

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, fill_id: str, client_order_id: str = "") -> bool:
        if fill_id in self._seen:
            return False
        self._seen[fill_id] = client_order_id
        self._by_order.setdefault(client_order_id, []).append(fill_id)
        if len(self._seen) > self._keep:
            oldest, coid = next(iter(self._seen.items()))
            del self._seen[oldest]
            ids = self._by_order[coid]
            ids.remove(oldest)
            if not ids:
                del self._by_order[coid]
        return True

    def __contains__(self, fill_id: str) -> bool:
        return fill_id in self._seen

    def load(self, fills: Iterable[tuple[str, str]]) -> None:
        """``(fill id, client order id)`` pairs already applied (read back from the store)."""
        for fill_id, client_order_id in fills:
            self.first_time(fill_id, client_order_id)

    def forget(self, client_order_id: str) -> None:
        """The order left memory: its fill ids go with it."""
        for fill_id in self._by_order.pop(client_order_id, ()):
            del self._seen[fill_id]


class PositionBook:
    def __init__(self) -> None:
        self.positions: dict[Key, Position] = {}
        self.inflight: dict[str, InFlight] = {}
        #: the same orders indexed by key: every gate check reads one key's
        #: pending totals, several times per decision, so it must not scan
        #: every order in flight (add/close below keep the two in step)
        self._inflight_by_key: dict[Key, dict[str, InFlight]] = {}
        self.fills = FillLedger()

    def position(self, key: Key) -> Position:
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position()
        return pos

    def qty(self, key: Key) -> Quantity:
        pos = self.positions.get(key)
        return pos.qty if pos else NO_QTY

    def pending(self, key: Key) -> tuple[Quantity, Quantity]:
        """Remaining in-flight (buys, sells) for ``key``."""
        buys = sells = ZERO
        for o in self._inflight_by_key.get(key, {}).values():
            if o.side is Side.BUY:
                buys += o.remaining
            else:
                sells += o.remaining
        return Quantity(buys), Quantity(sells)

    def unprotective_pending(self, key: Key) -> tuple[Decimal, Decimal]:
        """In-flight (buys, sells) for ``key`` without exit plans' protection."""
        buys = sells = ZERO
        for o in self._inflight_by_key.get(key, {}).values():
            if o.protective:
                continue
            if o.side is Side.BUY:
                buys += o.remaining
            else:
                sells += o.remaining
        return buys, sells

    def guaranteed_reduce(self, key: Key, side: Side, qty: Quantity) -> bool:
        """True if ``qty`` on ``side`` can only shrink the position, whatever
        the in-flight orders do (protection left out: see the module's
        docstring; the order goes out reduce-only)."""
        pos = self.qty(key)
        buys, sells = self.unprotective_pending(key)
        if side is Side.SELL:
            return pos > 0 and qty <= pos - sells
        return pos < 0 and qty <= -pos - buys

    def netting_conflict(self, key: Key, side: Side, qty: Quantity) -> bool:
        """Rule 2: would this order put the key on both sides at once?"""
        if self.guaranteed_reduce(key, side, qty):
            return False
        return self.crosses(self.qty(key), self.pending(key), side)

    @staticmethod
    def crosses(pos: Decimal, pending: tuple[Quantity, Quantity], side: Side) -> bool:
        """Rule 2 for an order not guaranteed to reduce, from the key's position
        and in-flight ``(buys, sells)``: conflict when the key may hold the
        other side by the time this order fills: the most long it can be
        (every pending buy filled) for a sell, the most short (every pending
        sell filled) for a buy. A resting protective stop on the same
        position is not the other side."""
        buys, sells = pending
        if side is Side.SELL:
            return pos + buys > 0
        return pos - sells < 0

    def worst_case_qty(self, key: Key, side: Side, qty: Quantity) -> Quantity:
        """Largest |position| reachable if this and every in-flight order fill."""
        return self.worst_case(self.qty(key), self.pending(key), side, qty)

    @staticmethod
    def worst_case(pos: Decimal, pending: tuple[Quantity, Quantity], side: Side,
                   qty: Quantity) -> Quantity:
        """``worst_case_qty`` from the key's position and in-flight ``(buys, sells)``."""
        buys, sells = pending
        long_max = pos + buys + (qty if side is Side.BUY else ZERO)
        short_max = pos - sells - (qty if side is Side.SELL else ZERO)
        return Quantity(max(abs(long_max), abs(short_max)))

    def add_inflight(self, order: InFlight) -> None:
        self.close_inflight(order.client_order_id)  # a replacement may carry another key
        self.inflight[order.client_order_id] = order
        self._inflight_by_key.setdefault(order.key, {})[order.client_order_id] = order

    def apply_fill(self, client_order_id: ClientOrderId, fill_id: str, side: Side, qty: Quantity,
                   price: Price, fee: Decimal, key: Key) -> Decimal | None:
        """Apply a fill once. Returns realized PnL, or None for a duplicate."""
        if not self.fills.first_time(fill_id, client_order_id):
            return None
        order = self.inflight.get(client_order_id)
        if order is not None:
            order.filled = Quantity(order.filled + qty)
            order.fills.append(fill_id)
            if order.remaining == 0:
                self.close_inflight(client_order_id)
        return self.position(key).apply(side, qty, price, fee)

    def close_inflight(self, client_order_id: str) -> InFlight | None:
        order = self.inflight.pop(client_order_id, None)
        if order is not None:
            same_key = self._inflight_by_key[order.key]
            del same_key[client_order_id]
            if not same_key:
                del self._inflight_by_key[order.key]
        return order
