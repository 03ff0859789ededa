"""Binance USDⓈ-M reports -> protocol events, once each.

Parses the venue's *raw* shapes (strings, as Binance sends them; never
ccxt's float-based unified structures, so quantities stay exact Decimals):

* ``ORDER_TRADE_UPDATE`` (user-data stream, the ``o`` object): execution type
  ``x`` NEW -> ``OrderAcked``; TRADE (and CALCULATED, a liquidation) ->
  ``OrderFilled`` with ``fill_id`` = ``<symbol>-<trade id>`` (Binance trade ids
  are per symbol), so a repeated report repeats the id and the coordinator
  counts it once; CANCELED -> ``CancelConfirmed(canceled)`` for what was
  left; EXPIRED -> ``OrderExpired`` (an IOC remainder, a reduce-only order
  with nothing to reduce); REJECTED -> ``OrderRejected``;
* ``ALGO_UPDATE`` (conditional orders live in Binance's algo service): NEW ->
  acked; CANCELED / EXPIRED / REJECTED end it; TRIGGERED tells which
  matching-engine order (``ai``) now carries it, whose reports are then ours;
* the REST order structure (create/cancel/query answers) for acks and ends;
* ``bookTicker`` -> ``Quote``.

:class:`OrderTracker` makes every order's ack and end reach the sink once,
whichever of the REST answer and the stream report comes first (a second
``CancelConfirmed`` would count a cancel twice; an ack after a fill would move
the order back to "acked"), and remembers venue order ids -> our ids.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange.ccxt_venue.ids import our_client_id
from messages import (CancelConfirmed, ExchangeError, Message, OrderAcked, OrderFilled,
                      OrderRejected, Side)
from messages.enums import CancelOutcome
from messages.exchange import OrderExpired
from messages.market import Quote
from messages.types import Account, ClientOrderId, Price, Quantity, Symbol

ZERO = Decimal(0)


class ParseError(ValueError):
    """A venue report that does not have the documented shape."""


def ms_to_dt(value: Any) -> datetime:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        raise ParseError(f"bad timestamp {value!r}") from None
    if not 0 < ms < 10**14:
        raise ParseError(f"timestamp out of range: {value!r}")
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dec(value: Any, what: str) -> Decimal:
    if value is None or isinstance(value, bool):
        raise ParseError(f"{what}: missing")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ParseError(f"{what}: not a number: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ParseError(f"{what}: out of range: {value!r}")
    return d


def side_of(value: Any) -> Side:
    text = str(value).upper()
    if text == "BUY":
        return Side.BUY
    if text == "SELL":
        return Side.SELL
    raise ParseError(f"bad side {value!r}")


@dataclass
class Tracked:
    """What the adapter knows of one order it sent (or learned of)."""

    client_order_id: str
    symbol: str
    algo: bool = False
    acked: bool = False
    ended: bool = False
    venue_order_id: str | None = None


class OrderTracker:
    """Ack-once / end-once per order, and venue order id -> client order id.

    Bounded (rule 13): ended orders are forgotten oldest first past
    ``max_orders``; a late duplicate for a forgotten order is still harmless
    downstream (acks are idempotent, fills are deduplicated by fill id).
    """

    def __init__(self, max_orders: int = 100_000) -> None:
        self.max_orders = max_orders
        self.orders: OrderedDict[str, Tracked] = OrderedDict()
        self.by_venue_id: dict[str, str] = {}
        self.suppressed = 0

    def track(self, coid: str, symbol: str, algo: bool = False) -> Tracked:
        t = self.orders.get(coid)
        if t is None:
            t = self.orders[coid] = Tracked(coid, symbol, algo)
            self._trim()
        return t

    def get(self, coid: str) -> Tracked | None:
        return self.orders.get(coid)

    def learn_venue_id(self, coid: str, venue_order_id: Any) -> None:
        if venue_order_id in (None, "", 0, "0"):
            return
        vid = str(venue_order_id)
        self.by_venue_id[vid] = coid
        t = self.orders.get(coid)
        if t is not None and t.venue_order_id is None:
            t.venue_order_id = vid

    def coid_for(self, venue_order_id: Any) -> str | None:
        return self.by_venue_id.get(str(venue_order_id))

    def ack(self, coid: str, symbol: str, venue_order_id: str, ts: datetime) -> OrderAcked | None:
        t = self.track(coid, symbol)
        self.learn_venue_id(coid, venue_order_id)
        if t.acked or t.ended:
            self.suppressed += 1
            return None
        t.acked = True
        return OrderAcked(ClientOrderId(coid), venue_order_id, Symbol(symbol), ts)

    def end(self, coid: str, symbol: str) -> bool:
        """True the first time ``coid`` ends (its end event may go out)."""
        t = self.track(coid, symbol)
        if t.ended:
            self.suppressed += 1
            return False
        t.ended = True
        self.orders.move_to_end(coid)
        return True

    def _trim(self) -> None:
        while len(self.orders) > self.max_orders:
            old_coid, old = next(iter(self.orders.items()))
            if not old.ended and len(self.orders) < 2 * self.max_orders:
                break  # never forget a live order unless the table doubled
            self.orders.popitem(last=False)
            if old.venue_order_id is not None:
                self.by_venue_id.pop(old.venue_order_id, None)


def fill_id(symbol: str, trade_id: Any) -> str:
    """The venue's trade id, made unique across symbols (Binance's are per symbol)."""
    if trade_id in (None, "", 0, "0"):
        raise ParseError("trade report without a trade id")
    return f"{symbol}-{trade_id}"


def order_update(o: Any, tracker: OrderTracker, account: str,
                 ts_ms: Any = None) -> list[Message]:
    """Events for one ``ORDER_TRADE_UPDATE`` ``o`` object (in order, possibly none)."""
    if not isinstance(o, dict):
        raise ParseError("ORDER_TRADE_UPDATE without an 'o' object")
    symbol = str(o.get("s") or "")
    if not symbol:
        raise ParseError("order update without a symbol")
    order_id = str(o.get("i", ""))
    coid = tracker.coid_for(order_id) if order_id else None
    if coid is None:  # not a triggered algo order we know: the id is our client id
        coid = our_client_id(str(o.get("c") or ""))
    if not coid:
        raise ParseError(f"order update for {symbol} without a client order id")
    ts = ms_to_dt(o.get("T") or ts_ms)
    x = str(o.get("x", "")).upper()
    status = str(o.get("X", "")).upper()
    qty = dec(o.get("q"), "q")
    cum = dec(o.get("z", "0"), "z")
    leaves = max(qty - cum, ZERO)
    out: list[Message] = []

    def ack() -> None:
        ev = tracker.ack(coid, symbol, order_id, ts)
        if ev is not None:
            out.append(ev)

    if x == "NEW":
        ack()
    elif x in ("TRADE", "CALCULATED"):
        last = dec(o.get("l"), "l")
        if last > 0:
            ack()  # a fill proves the order was accepted: the ack goes first
            fee = dec(o.get("n", "0") or "0", "n")
            out.append(OrderFilled(ClientOrderId(coid), fill_id(symbol, o.get("t")), Symbol(symbol),
                                   side_of(o.get("S")), Quantity(last), Price(dec(o.get("L"), "L")),
                                   Quantity(leaves), ts, fee=fee, account=Account(account)))
        if status == "FILLED":
            tracker.end(coid, symbol)
    elif x == "CANCELED":
        if tracker.end(coid, symbol):
            out.append(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.CANCELED, Quantity(leaves), ts))
    elif x == "EXPIRED":
        if tracker.end(coid, symbol):
            tif = str(o.get("f", "")).upper()
            out.append(OrderExpired(coid, symbol, leaves, f"expired_by_venue: {tif or '?'} "
                                                          f"order ended with {leaves} open", ts))
    elif x == "REJECTED" or status == "REJECTED":
        if tracker.end(coid, symbol):
            out.append(OrderRejected(ClientOrderId(coid), Symbol(symbol), "venue_rejected: rejected by the venue", ts))
    # AMENDMENT and anything newer: no protocol event (the next poll settles)
    return out


_ALGO_END = {"CANCELED", "EXPIRED", "REJECTED"}


def algo_update(o: Any, tracker: OrderTracker, ts_ms: Any = None) -> list[Message]:
    """Events for one ``ALGO_UPDATE`` ``o`` object (a conditional order)."""
    if not isinstance(o, dict):
        raise ParseError("ALGO_UPDATE without an 'o' object")
    symbol = str(o.get("s") or "")
    coid = our_client_id(str(o.get("caid") or ""))
    if not symbol or not coid:
        raise ParseError("algo update without a symbol or client algo id")
    tracker.track(coid, symbol, algo=True)
    ts = ms_to_dt(ts_ms or o.get("T") or o.get("ut"))
    status = str(o.get("X", "")).upper()
    actual = o.get("ai")
    if actual not in (None, ""):
        tracker.learn_venue_id(coid, actual)  # the triggered order's reports are ours
    qty = dec(o.get("q"), "q")
    done = dec(o.get("aq") or "0", "aq")
    leaves = max(qty - done, ZERO)
    out: list[Message] = []
    if status == "NEW":
        ev = tracker.ack(coid, symbol, f"algo-{o.get('aid')}", ts)
        if ev is not None:
            out.append(ev)
    elif status in _ALGO_END and tracker.end(coid, symbol):
        if status == "CANCELED":
            out.append(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.CANCELED, Quantity(leaves), ts))
        elif status == "EXPIRED":
            out.append(OrderExpired(coid, symbol, leaves, "expired_by_venue: conditional order "
                                                          "ended by the venue", ts))
        else:
            out.append(OrderRejected(ClientOrderId(coid), Symbol(symbol), "venue_rejected: conditional order rejected "
                                                   "at trigger", ts))
    return out


def book_ticker(msg: dict[str, Any], now: datetime) -> Quote:
    """A ``bookTicker`` message -> ``Quote`` (the symbol is the venue's id)."""
    symbol = str(msg.get("s") or "")
    if not symbol:
        raise ParseError("bookTicker without a symbol")
    ts = ms_to_dt(msg["T"]) if msg.get("T") else (ms_to_dt(msg["E"]) if msg.get("E") else now)
    bid, ask = dec(msg.get("b"), "b"), dec(msg.get("a"), "a")
    if bid <= 0 or ask <= 0 or ask < bid:
        raise ParseError(f"bookTicker {symbol}: bid {bid} / ask {ask} not a market")
    return Quote(Symbol(symbol), Price(bid), Price(ask), ts,
                 bid_size=Quantity(dec(msg.get("B", "0"), "B")),
                 ask_size=Quantity(dec(msg.get("A", "0"), "A")))


# -- REST order structures ---------------------------------------------------------

_LIVE = {"NEW", "PARTIALLY_FILLED"}


def rest_order_events(info: dict[str, Any], tracker: OrderTracker, coid: str,
                      symbol: str, now: datetime, *, algo: bool = False) -> list[Message]:
    """Ack (and end, if the answer already says it ended) from a REST order answer.

    Fills are never taken from REST order answers: they carry no trade id, so
    they could not be told apart from the stream's report of the same trade.
    The stream (or the reconciler's fills query) reports them.
    """
    status = str(info.get("status") or info.get("algoStatus") or "").upper()
    venue_id = str(info.get("orderId") or (f"algo-{info.get('algoId')}" if algo else "") or "")
    ts = ms_to_dt(info["updateTime"]) if info.get("updateTime") else now
    out: list[Message] = []
    if status in ("REJECTED",):
        if tracker.end(coid, symbol):
            out.append(OrderRejected(ClientOrderId(coid), Symbol(symbol), "venue_rejected: rejected by the venue", ts))
        return out
    ev = tracker.ack(coid, symbol, venue_id or "?", ts)
    if ev is not None:
        out.append(ev)
    qty = dec(info.get("origQty") or info.get("quantity") or "0", "origQty")
    executed = dec(info.get("executedQty") or "0", "executedQty")
    leaves = max(qty - executed, ZERO)
    if status == "CANCELED" and tracker.end(coid, symbol):
        out.append(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.CANCELED, Quantity(leaves), ts))
    elif status == "EXPIRED" and tracker.end(coid, symbol):
        out.append(OrderExpired(coid, symbol, leaves, "expired_by_venue: ended with "
                                                      f"{leaves} open", ts))
    return out


def order_status(info: dict[str, Any]) -> str:
    return str(info.get("status") or info.get("algoStatus") or "").upper()


def is_live(info: dict[str, Any]) -> bool:
    return order_status(info) in _LIVE or order_status(info) in ("TRIGGERING", "TRIGGERED")


def bad_report(kind: str, exc: Exception, now: datetime) -> ExchangeError:
    return ExchangeError(code="bad_frame", reason=f"{kind}: {exc}"[:300], ts=now)
