"""The emergency hedger (rule 7): hedge the delta, once, without cascading.

The failure this prevents: a leg fills in 50 pieces within 200 ms, each
partial fill asks for "hedge what I just got", the hedges pile on top of
each other and the book ends up over-hedged. Here a request says what the
hedge position *should be* (``HedgeRequest.target_qty``, signed, absolute),
and the hedger only ever sends

    delta = target - hedge position (filled) - hedge in flight

per (account, symbol). The first request goes out at once; requests that
arrive within ``debounce_ms`` after an order went out are coalesced: the
latest target wins and one order for the then-current delta goes out when
the window closes. Because in-flight hedges count, no interleaving of
requests and fills can make the orders add up to more than the delta.

The target is kept per source (``HedgeRequest.source``: a group id,
``recovery``...) and the book's target is their sum: each source states the
hedge *its* exposure needs, so a second order group handing over a residue
in a symbol the hedger already holds for a first one adds to the hedge
instead of being mistaken for "already hedged".

Orders go through the coordinator (rule 1) with purpose HEDGE, owner
"hedger". Hedge lag (request received -> order accepted by the gate) is
measured for each order, from the oldest request it serves.

State (targets, positions, orders and their fills) is persisted after every
message and rebuilt on start from that record plus the coordinator's order
and fill records (``trading.owned_orders``). An order that has ended (closed,
or filled) leaves memory and the record after the coordinator's retention
window (``trading.order_retention``): the coordinator forwards nothing about
it after that, its fills are in the position already, and a restart reads it
back from the coordinator's records.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from actors.rebuild_gate import RebuildGate
from messages.alerts import Alert
from messages.control import HedgeRequest, IntentAccepted, IntentRejected, OrderIntent
from messages.enums import OrderPurpose, OrderType, Side
from messages.exchange import OrderExpired
from messages.orders import CancelConfirmed, OrderFilled, OrderRejected
from messages.persistence import Put, StoreDb
from messages.types import Account, Quantity, Symbol
from runtime import Actor, handles
from runtime.info_rows import InfoRows
from runtime.rolling import RollingSample
from trading.fill_tracking import FillTracking
from trading.order_retention import EndedOrders, Retention
from trading.owned_orders import fills_of, owned_orders, records_with_prefix

ZERO = Decimal(0)
KEY_PREFIX = "hedge|"
SETTLED = "settled"  # pseudo fill id: the total of a closed order's fills
MAX_LAGS = 10_000


@dataclass(frozen=True)
class WindowClosed:
    """Timer: the coalescing window of one hedge book ended."""

    key: str
    window: int


@dataclass
class HedgeOrder(FillTracking):
    side: Side
    qty: Decimal
    fills: dict[str, Decimal] = field(default_factory=dict)
    #: None while it can still fill, else how it closed (never ``already_filled``:
    #: the hedge position moves on fill reports only, and they still count)
    closed: str | None = None

    @property
    def in_flight(self) -> Decimal:
        """Signed quantity that may still fill."""
        return self.side.sign * self.live_qty

    def ended(self) -> bool:
        """Nothing more is expected of it: closed, or its fills cover it."""
        return self.closed is not None or self.filled >= self.qty


@dataclass
class HedgeBook:
    """The hedge of one (account, symbol)."""

    account: str
    symbol: str
    #: source -> the signed hedge that source's exposure needs (latest request wins)
    targets: dict[str, Decimal] = field(default_factory=dict)
    position: Decimal = ZERO          # signed, from hedge fills only
    orders: dict[str, HedgeOrder] = field(default_factory=dict)
    #: intents sent, not yet answered: tag -> (side, qty, oldest request time served)
    pending: dict[str, tuple[Side, Decimal, float]] = field(default_factory=dict)
    seq: int = 0
    window: int = 0                   # id of the open window (0: none open)
    dirty: bool = False               # requests arrived inside the open window
    oldest_request: float | None = None
    refusals: int = 0

    @property
    def key(self) -> str:
        return f"{self.account}|{self.symbol}"

    @property
    def target(self) -> Decimal:
        return sum(self.targets.values(), ZERO)

    @property
    def in_flight(self) -> Decimal:
        return (sum((o.in_flight for o in self.orders.values()), ZERO)
                + sum((s.sign * q for s, q, _ in self.pending.values()), ZERO))

    @property
    def delta(self) -> Decimal:
        return self.target - self.position - self.in_flight

    def record(self) -> dict[str, Any]:
        return {"v": 1, "account": self.account, "symbol": self.symbol, "target": self.target,
                "targets": dict(self.targets), "seq": self.seq,
                # a closed order keeps only its total: the record stays small
                "orders": {c: {"side": o.side.value, "qty": o.qty, "closed": bool(o.closed),
                               "fills": {SETTLED: o.filled} if o.closed else dict(o.fills)}
                           for c, o in self.orders.items()},
                "pending": {t: {"side": s.value, "qty": q} for t, (s, q, _) in self.pending.items()}}


class Hedger(RebuildGate, Actor):
    def __init__(self, ctx, *, debounce_ms: int = 500, coordinator: str = "coordinator",
                 persistence: str = "persistence", alerts: str = "alerts",
                 max_refusals: int = 3, retention: Retention | None = None) -> None:
        super().__init__(ctx)
        if debounce_ms <= 0:
            raise ValueError("hedger debounce_ms must be > 0 (a zero window lets fills cascade)")
        self.window_s = debounce_ms / 1000.0
        self.coordinator, self.persistence, self.alerts = coordinator, persistence, alerts
        self.max_refusals = max_refusals
        self.books: dict[str, HedgeBook] = {}
        self.by_coid: dict[str, str] = {}
        self.retention = retention or Retention()
        #: book key -> its ended orders still in memory, oldest first
        self._ended: dict[str, EndedOrders[HedgeOrder]] = {}
        self.counts: Counter = Counter()
        self.lags_ms = RollingSample(MAX_LAGS)
        self._dirty: set[str] = set()
        self._book_rows = InfoRows(self._book_row)
        self._outbox: list[tuple[str, Any]] = []

    # -- requests and the window ------------------------------------------------------------

    @handles(HedgeRequest)
    def on_request(self, msg: HedgeRequest) -> None:
        key = f"{msg.account}|{msg.symbol}"
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = HedgeBook(msg.account, msg.symbol)
        book.targets[msg.source] = msg.target_qty
        book.refusals = 0
        self.counts["requests"] += 1
        now = self.ctx.clock.monotonic()
        if book.oldest_request is None:
            book.oldest_request = now
        self._dirty.add(key)
        if book.window:
            book.dirty = True
            self.counts["coalesced"] += 1
            return
        self._hedge(book)  # the first request: at once

    @handles(WindowClosed)
    def on_window_closed(self, msg: WindowClosed) -> None:
        book = self.books.get(msg.key)
        if book is None or book.window != msg.window:
            return
        book.window = 0
        if book.dirty:
            self._hedge(book)

    def _hedge(self, book: HedgeBook) -> None:
        """Send the delta now (if any) and open a coalescing window behind it."""
        book.dirty = False
        delta = book.delta
        started = book.oldest_request
        book.oldest_request = None
        self._dirty.add(book.key)
        if delta == 0:
            self.counts["no_delta"] += 1
            return
        side = Side.BUY if delta > 0 else Side.SELL
        qty = abs(delta)
        book.seq += 1
        tag = f"{book.key}|{book.seq}"
        now = self.ctx.clock.monotonic()
        book.pending[tag] = (side, qty, started if started is not None else now)
        intent = OrderIntent(Symbol(book.symbol), side, Quantity(qty), OrderPurpose.HEDGE,
                             self.ctx.clock.now(), order_type=OrderType.MARKET,
                             account=Account(book.account),
                             owner=self.ctx.name, tag=tag)
        self._outbox.append((self.coordinator, intent))
        self.counts["hedges_sent"] += 1
        self._open_window(book)

    # -- answers from the coordinator and the broker ----------------------------------------------

    @handles(IntentAccepted)
    def on_accepted(self, msg: IntentAccepted) -> None:
        book = self._book_of_tag(msg.tag)
        if book is None:
            return
        entry = book.pending.pop(msg.tag or "", None)
        if entry is None:
            return
        side, qty, started = entry
        book.orders[msg.client_order_id] = HedgeOrder(side, qty)
        self.by_coid[msg.client_order_id] = book.key
        self.lags_ms.add((self.ctx.clock.monotonic() - started) * 1000.0)
        self._dirty.add(book.key)

    @handles(IntentRejected)
    def on_intent_rejected(self, msg: IntentRejected) -> None:
        book = self._book_of_tag(msg.tag)
        if book is None or book.pending.pop(msg.tag or "", None) is None:
            return
        self._refused(book, f"the coordinator refused the hedge: {msg.reason}")

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        book, order = self._order(ev.client_order_id)
        if order is None or not order.apply_fill(ev.fill_id, ev.qty, ev.leaves_qty):
            return
        book.position += order.side.sign * ev.qty
        self.counts["fills"] += 1
        self._dirty.add(book.key)
        self._settle(book, ev.client_order_id)

    @handles(OrderRejected, OrderExpired, CancelConfirmed)
    def on_order_closed(self, ev: Any) -> None:
        book, order = self._order(ev.client_order_id)
        if order is None or not order.close(_CLOSED_BY[type(ev)]):
            return
        self._dirty.add(book.key)
        self._settle(book, ev.client_order_id)
        if isinstance(ev, OrderRejected):
            self._refused(book, f"the broker rejected hedge {ev.client_order_id}: {ev.reason}")

    def _refused(self, book: HedgeBook, why: str) -> None:
        """The delta is open again: retry at the next window, a few times, then wait."""
        book.refusals += 1
        self.counts["refused"] += 1
        self._dirty.add(book.key)
        retry = book.refusals <= self.max_refusals
        self.ctx.tell(self.alerts, Alert(
            "warning" if retry else "critical", "hedge refused",
            f"{book.symbol} ({book.account}): {why}; "
            + ("retrying" if retry else "giving up until the next hedge request"),
            self.ctx.clock.now(), self.ctx.name, dedup_key=f"hedger:refused:{book.key}"))
        if not retry:
            return
        book.dirty = True
        if book.oldest_request is None:
            book.oldest_request = self.ctx.clock.monotonic()
        if not book.window:
            book.seq += 1
            self._open_window(book)

    def _settle(self, book: HedgeBook, coid: str) -> None:
        """``coid`` may have ended: index it, and let ended orders past the
        retention window leave the book (their fills stay in its position)."""
        index = self._ended.get(book.key)
        if index is None:
            index = self._ended[book.key] = EndedOrders(
                self.retention, forget=self._forget, ended=HedgeOrder.ended)
        if index.settle(book.orders, coid, self.ctx.clock.now()):
            self._dirty.add(book.key)

    def _forget(self, coid: str) -> None:
        self.by_coid.pop(coid, None)
        self.counts["orders_dropped"] += 1

    def _open_window(self, book: HedgeBook) -> None:
        """Coalesce what arrives in the next ``debounce_ms`` into one hedge (rule 7)."""
        book.window = book.seq
        self.ctx.schedule(self.window_s, WindowClosed(book.key, book.window))

    # -- persistence and recovery -------------------------------------------------------------------

    def persist_changes(self) -> None:
        for key in sorted(self._dirty):
            book = self.books.get(key)
            if book is not None:
                self.ctx.tell(self.persistence, Put(StoreDb.META, KEY_PREFIX + key, book.record()))
        self._book_rows.mark(self._dirty)
        self._dirty.clear()

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:
        for key, rec in records_with_prefix(snapshot, "meta", KEY_PREFIX):
            try:
                # a record from before per-source targets holds one total
                targets = rec.get("targets") or {"unknown": rec["target"]}
                book = HedgeBook(rec["account"], rec["symbol"],
                                 {str(k): Decimal(v) for k, v in targets.items()}, seq=rec["seq"])
                for coid, o in rec["orders"].items():
                    book.orders[coid] = HedgeOrder(Side(o["side"]), Decimal(o["qty"]),
                                                   dict(o["fills"]), "closed" if o["closed"] else None)
                for tag, p in rec["pending"].items():
                    # Its acceptance, if any, is held for us and arrives after the rebuild.
                    book.pending[tag] = (Side(p["side"]), Decimal(p["qty"]),
                                         self.ctx.clock.monotonic())
            except (KeyError, TypeError, ValueError) as exc:
                self.log.error("skipping unreadable hedge record {}: {!r}", KEY_PREFIX + key, exc)
                continue
            self.books[book.key] = book
            self.by_coid.update({c: book.key for c in book.orders})
        for coid, owned in owned_orders(snapshot, self.ctx.name).items():
            req = owned.request
            key = f"{req.account}|{req.symbol}"
            book = self.books.setdefault(key, HedgeBook(req.account, req.symbol))
            if coid not in book.orders:
                book.orders[coid] = HedgeOrder(req.side, req.qty)
                self.by_coid[coid] = key
                # an ended order the record let go of is read back, not adopted
                self.counts["read_back_orders" if owned.closed else "adopted_orders"] += 1
            if owned.closed:
                book.orders[coid].close(owned.closed)
        unsettled = {c for c, k in self.by_coid.items() if SETTLED not in self.books[k].orders[c].fills}
        for coid, fills in fills_of(snapshot, unsettled).items():
            self.books[self.by_coid[coid]].orders[coid].fills.update(fills)
        for book in self.books.values():
            book.position = sum((o.side.sign * o.filled for o in book.orders.values()), ZERO)
            for o in book.orders.values():
                if o.filled >= o.qty:
                    o.close("filled")
            self._dirty.add(book.key)
            self._settle(book, "")  # the ended orders read back start their window now

    # -- helpers ------------------------------------------------------------------------------------

    def _book_of_tag(self, tag: str | None) -> HedgeBook | None:
        return self.books.get(tag.rsplit("|", 1)[0]) if tag else None

    def _order(self, coid: str) -> tuple[Any, HedgeOrder | None]:
        book = self.books.get(self.by_coid.get(coid, ""))
        return (book, book.orders.get(coid)) if book is not None else (None, None)

    def lag_p99_ms(self) -> float | None:
        return self.lags_ms.percentile(99)

    def _book_row(self, key: str) -> dict[str, Any] | None:
        b = self.books.get(key)
        if b is None:
            return None
        return {"target": _q(b.target), "targets": {src: _q(q) for src, q in b.targets.items()},
                "position": _q(b.position), "in_flight": _q(b.in_flight), "delta": _q(b.delta)}

    def _publish(self) -> None:
        p99 = self.lag_p99_ms()
        self.ctx.cell.info = {
            "hedges_sent": self.counts["hedges_sent"],
            "coalesced": self.counts["coalesced"],
            "requests": self.counts["requests"],
            "hedge_lag_p99_ms": None if p99 is None else round(p99, 3),
            "counts": dict(self.counts),
            "books": self._book_rows.snapshot(),
        }


#: how a broker's answer closes a hedge order (a cancel that lost to a fill
#: closes it too: its fills still arrive and move the position)
_CLOSED_BY: dict[type, str] = {OrderRejected: "rejected", OrderExpired: "expired",
                               CancelConfirmed: "canceled"}


def _q(qty: Decimal) -> str:
    """A quantity for people: 35, not 35.0 or 3.5E+1."""
    return f"{qty.normalize():f}"
