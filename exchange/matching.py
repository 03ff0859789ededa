"""Matching of the simulated exchange: the order path from a valid order to its fills.

Matching rules (top of book from the quote stream):

* a marketable order on arrival (or a stop-limit at the quote that triggers
  it) takes the quote: it fills at the bid/ask, taker fee;
* a resting limit that a later quote trades through fills at its limit
  price, maker fee;
* fills are capped by the quote's size (0 = unlimited) and split into
  ``partial_fills`` reports; a market order's remainder waits for the next
  quote (an IOC remainder expires);
* a stop-limit triggers when the ask (buy) rises to / the bid (sell) falls to
  its trigger, then behaves as a limit: if the price gapped through the
  limit it rests unfilled; a stop-market triggers alike and then takes the
  touch like a market order (no limit to gap through).

A quote replaces the top of book, is published to subscribers, then every
working order of the symbol is checked against it in arrival order. Bars are
published and mark the last price only.

``Matcher`` owns the books, the order and fill id sequences and the last
fill; it works on the order table and the accounts it is given, arms no
faults itself (it only consumes armed duplicates) and never reaches into the
engine that owns it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from exchange._fast import maker
from exchange.accounts import Accounts
from exchange.book import EXPIRED, FILLED, WORKING, Book, OrderState, split_qty
from exchange.emit import ACCOUNT, MARKET, Emit
from exchange.events_log import EventsLog
from exchange.faults import ArmedFaults
from exchange.order_table import OrderTable
from exchange.outbox import Outbox
from messages import (Bar, OrderAcked, OrderExpired, OrderFilled, OrderRequest, OrderType, Quote,
                      Side, TimeInForce)
from messages.bounds import Bounds, order_problem
from messages.types import Price, Quantity

ZERO = Decimal("0")
FEE_QUANTUM = Decimal("0.00000001")
BPS = Decimal("10000")

# Order path constants: enum members as globals (not class attribute lookups),
# events.jsonl extra keys.
_MARKET, _STOP_LIMIT, _BUY, _IOC = OrderType.MARKET, OrderType.STOP_LIMIT, Side.BUY, TimeInForce.IOC
_STOP_MARKET = OrderType.STOP_MARKET
#: types that take the touch once live (no limit price) / that wait for a trigger
_PRICELESS = (_MARKET, _STOP_MARKET)
_TRIGGERED = (_STOP_LIMIT, _STOP_MARKET)
_ACKED_KEYS = ("exchange_order_id",)
_FILLED_KEYS = ("leaves_qty", "fee", "liquidity", "account", "cursor")


def _bad_decimal(value: Any) -> bool:  # (None included)
    return not (isinstance(value, Decimal) and value.is_finite() and value > 0)


class Matcher:
    """Books, acceptance and fills. ``settings`` is the engine's live settings
    object (fees, partial fills, id prefix, symbols, quote size limits)."""

    def __init__(self, settings: Any, table: OrderTable, accounts: Accounts, armed: ArmedFaults,
                 outbox: Outbox, log: EventsLog, stats: Counter[str], *,
                 strict: bool = False) -> None:
        self.settings = settings
        self.table = table
        self.accounts = accounts
        self.armed = armed
        self.outbox = outbox
        self.log = log
        self.stats = stats
        #: top of book per symbol; survives a restart (it mirrors the outside market)
        self.books: dict[str, Book] = {}
        #: order and fill ids are ``{id_prefix}{epoch}-O{n}`` / ``-F{n}``: a new
        #: epoch (a restarted exchange) never repeats an id a client may hold
        self.epoch = 1
        self.last_fill: OrderFilled | None = None
        self._order_seq = itertools.count(1)
        self._fill_seq = itertools.count(1)
        # Hot-path event constructors (see exchange._fast; strict validates).
        self._acked = maker(OrderAcked, strict=strict)
        self._filled = maker(OrderFilled, strict=strict)

    def reset(self, epoch: int) -> None:
        """Start id epoch ``epoch`` with fresh sequences (books are kept)."""
        self.epoch = epoch
        self._order_seq = itertools.count(1)
        self._fill_seq = itertools.count(1)
        self.last_fill = None

    # -- validation ------------------------------------------------------------------

    def refusal(self, order: OrderRequest, bounds: Bounds) -> str | None:
        """Why ``order`` cannot be accepted (a stable code first), or None."""
        qty, price, trigger, otype = order.qty, order.price, order.trigger_price, order.order_type
        if _bad_decimal(qty):
            return f"invalid_qty: {qty!r} is not a finite positive decimal"
        if price is not None and _bad_decimal(price):
            return f"invalid_price: {price!r} is not a finite positive decimal"
        if trigger is not None and _bad_decimal(trigger):
            return f"invalid_trigger_price: {trigger!r} is not a finite positive decimal"
        if otype not in _PRICELESS and price is None:
            return f"invalid_price: a {otype} order needs a price"
        if otype in _TRIGGERED and trigger is None:
            return f"invalid_trigger_price: a {otype} order needs a trigger_price"
        book = self.books.get(order.symbol)
        problem = order_problem(order, bounds, book.mid if book is not None else None)
        if problem is not None:
            return f"out_of_range: {problem}"
        symbols = self.settings.symbols
        if symbols is not None and order.symbol not in symbols:
            return f"unknown_symbol: {order.symbol!r} is not traded here"
        coid = order.client_order_id
        status = self.table.status_of(coid)
        if status is not None:
            return f"duplicate_client_order_id: {coid!r} was already accepted (that order is {status})"
        if otype is _MARKET and (book is None or not book.has_quote):
            return f"no_market: no quote for {order.symbol}, a market order cannot be priced"
        if order.reduce_only:
            reducible = self.accounts.reducible(order)
            if reducible <= 0:
                return "reduce_only: the order would increase the position"
            if order.qty > reducible:
                return f"reduce_only: qty {order.qty} exceeds the position ({reducible})"
        return None

    # -- orders ------------------------------------------------------------------------

    def accept(self, order: OrderRequest, now: datetime) -> list[Emit]:
        """Ack a valid order, then trade it against the book if it can."""
        coid, symbol = order.client_order_id, order.symbol
        eid = f"{self.settings.id_prefix}{self.epoch}-O{next(self._order_seq)}"
        st = OrderState(order, eid, now, order.qty, triggered=order.order_type not in _TRIGGERED)
        self.table.add(st)
        self.stats["orders_acked"] += 1
        log = self.log
        if log.is_open:
            log.write("order_acked", now, (coid, symbol, order.side, order.qty, order.price, None),
                      _ACKED_KEYS, (eid,))
        out = [self.outbox.emit(self._acked(coid, eid, symbol, now), now, account=order.account)]
        book = self.books.get(symbol)
        if book is not None and book.has_quote:
            if not st.triggered and st.trigger_hit(book):
                self.trigger(st, now)
            if st.triggered:
                self._take(st, book, now, out)
        if st.status == WORKING and order.tif is _IOC and st.triggered:
            self._expire(st, "IOC remainder", now, out)
        return out

    def trigger(self, st: OrderState, now: datetime) -> None:
        st.triggered = True
        req = st.request
        self.log.append("order_triggered", now, client_order_id=req.client_order_id,
                        symbol=req.symbol, side=req.side, qty=st.leaves, price=req.price,
                        trigger_price=req.trigger_price)

    def _take(self, st: OrderState, book: Book, now: datetime, out: list[Emit]) -> None:
        """Fill ``st`` as a taker at the touch, within the quote's size."""
        price = st.marketable_price(book)
        if price is not None:
            self.fill(st, self.fillable(st, book, None), price, "taker", now, out)

    def fillable(self, st: OrderState, book: Book | None, qty: Quantity | None) -> Quantity:
        """How much of ``st`` may fill now: ``qty`` (None: all it leaves) within
        the book's liquidity and, for reduce-only, the position."""
        req = st.request
        want: Decimal = st.leaves if qty is None else min(qty, st.leaves)
        if book is not None:
            avail = book.avail_ask if req.side is _BUY else book.avail_bid  # (book.available)
            if avail is not None:
                want = min(want, max(avail, ZERO))
        return (Quantity(min(want, self.accounts.reducible(req))) if req.reduce_only
                else Quantity(want))

    def fill(self, st: OrderState, qty: Quantity, price: Price, liquidity: str,
             now: datetime, out: list[Emit]) -> None:
        """Book ``qty`` at ``price`` as one or more fill reports."""
        req = st.request
        if qty > ZERO:
            cfg = self.settings
            coid, symbol, side, account = req.client_order_id, req.symbol, req.side, req.account
            bps = cfg.maker_fee_bps if liquidity == "maker" else cfg.taker_fee_bps
            acct = self.accounts.get(account)
            interval = cfg.partial_fill_interval_ms / 1000.0
            parts = (qty,) if cfg.partial_fills <= 1 else split_qty(qty, cfg.partial_fills)
            log = self.log if self.log.is_open else None
            emit, armed = self.outbox.emit, self.armed
            for i, part in enumerate(parts):
                fill_id = f"{cfg.id_prefix}{self.epoch}-F{next(self._fill_seq)}"
                notional = part * price
                fee = ((notional * bps / BPS).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)
                       if bps else ZERO)
                leaves = st.leaves = Quantity(st.leaves - part)
                st.filled = Quantity(st.filled + part)
                st.notional += notional
                fill = self._filled(coid, fill_id, symbol, side, part, price, leaves, now, fee,
                                    account)
                cursor = acct.record_fill(fill, cfg.quote_currency, cfg.fill_history)
                st.fills += (fill_id,)
                self.last_fill = fill
                self.stats["fills"] += 1
                if log is not None:
                    log.write("order_filled", now, (coid, symbol, side, part, price, fill_id),
                              _FILLED_KEYS, (leaves, fee, liquidity, account, cursor))
                out.append(emit(fill, now, ACCOUNT, interval * i, account))
                if armed.duplicate_next > 0:
                    armed.duplicate_next -= 1
                    out.append(self.duplicate(fill, now))
            book = self.books.get(symbol)
            if book is not None:
                book.consume(side, qty)
        if st.leaves == ZERO:
            self.table.close(st, FILLED)
        elif req.reduce_only and self.accounts.reducible(req) <= 0:
            self._expire(st, "reduce_only: nothing left to reduce", now, out)

    def duplicate(self, fill: OrderFilled, now: datetime) -> Emit:
        """The same fill report once more (the client must count it once)."""
        self.stats["duplicate_fills_sent"] += 1
        self.log.append("fill_duplicated", now, client_order_id=fill.client_order_id,
                        symbol=fill.symbol, side=fill.side, qty=fill.qty, price=fill.price,
                        fill_id=fill.fill_id)
        return self.outbox.emit(fill, now, account=fill.account)

    def _expire(self, st: OrderState, reason: str, now: datetime, out: list[Emit]) -> None:
        qty = st.leaves
        self.table.close(st, EXPIRED)
        req = st.request
        self.stats["orders_expired"] += 1
        self.log.append("order_expired", now, client_order_id=req.client_order_id,
                        symbol=req.symbol, side=req.side, qty=qty, price=req.price, reason=reason)
        out.append(self.outbox.emit(OrderExpired(req.client_order_id, req.symbol, qty, reason, now),
                                    now, account=req.account))

    # -- market data -------------------------------------------------------------------

    def on_quote(self, quote: Quote, now: datetime) -> list[Emit]:
        """New top of book: publish it, trigger stops, fill what it crosses."""
        cfg = self.settings
        symbols = cfg.symbols
        if symbols is not None and quote.symbol not in symbols:
            self.stats["ignored_quotes"] += 1
            return []
        book = self.books.get(quote.symbol)
        if book is None:
            book = self.books[quote.symbol] = Book(quote.symbol)
        book.set_quote(bid=quote.bid, ask=quote.ask, bid_size=quote.bid_size,
                       ask_size=quote.ask_size, ts=quote.ts,
                       limit_by_size=cfg.limit_by_quote_size)
        self.stats["quotes"] += 1
        if cfg.log_quotes:
            self.log.append("quote", now, symbol=quote.symbol, bid=quote.bid, ask=quote.ask)
        out = [self.outbox.emit(quote, now, MARKET)]
        self._match_book(book, now, out)
        return out

    def on_bar(self, bar: Bar, now: datetime) -> list[Emit]:
        """Bars are published and mark the last price; matching uses quotes."""
        symbols = self.settings.symbols
        if symbols is not None and bar.symbol not in symbols:
            self.stats["ignored_bars"] += 1
            return []
        book = self.books.get(bar.symbol)
        if book is None:
            book = self.books[bar.symbol] = Book(bar.symbol)
        book.last = bar.close
        return [self.outbox.emit(bar, now, MARKET)]

    def _match_book(self, book: Book, now: datetime, out: list[Emit]) -> None:
        orders = self.table.working_in(book.symbol)
        if not orders:
            return
        for st in list(orders.values()):
            if not st.is_working:
                continue
            if not st.triggered:
                if st.trigger_hit(book):
                    self.trigger(st, now)
                    self._take(st, book, now, out)
                    if st.is_working and st.request.tif is TimeInForce.IOC:
                        self._expire(st, "IOC remainder", now, out)
                continue
            if st.marketable_price(book) is None:
                continue
            if st.request.order_type in _PRICELESS:
                self._take(st, book, now, out)
            else:
                price = st.request.price
                if price is not None:  # a resting limit always has one (OrderRequest checks)
                    self.fill(st, self.fillable(st, book, None), price, "maker", now, out)
