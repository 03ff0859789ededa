"""The simulated exchange: a pure, synchronous, deterministic matching engine.

``SimulatedExchange`` takes commands and market data with the time they
happen (``now``, aware UTC) and returns what it produced as a list of
:class:`~exchange.emit.Emit` (event, delay, audience). It does no I/O except
appending to its ``events.jsonl``, never sleeps and never raises on bad
input: a malformed or invalid command becomes an ``OrderRejected`` or an
``ExchangeError`` with a clear reason. The only randomness (latency jitter)
comes from a ``random.Random`` seeded by the config.

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
  touch like a market order (no limit to gap through);
* a cancel takes effect ``cancel_ack_delay_ms`` after it arrives, so the
  order can still fill meanwhile (the real-world race the stop manager must
  survive); the reply says canceled, already_filled or unknown.

Cancels live in :mod:`exchange.cancels`, quote handling in
:mod:`exchange.market`, fault injection in :mod:`exchange.faults`, queries in
:mod:`exchange.queries` (mixins of one class; this module keeps the order
path: validation, acceptance, fills, accounts).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from collections.abc import Callable

from loguru import logger

from exchange._fast import maker
from exchange.accounts import Account
from exchange.book import EXPIRED, FILLED, WORKING, Book, OrderState, split_qty
from exchange.cancels import CancelsMixin
from exchange.config import ExchangeConfig, parse_spec, split_spec
from exchange.emit import ACCOUNT, ENGINE, REQUESTER, Emit
from exchange.events_log import EventsLog
from exchange.faults import FaultsMixin
from exchange.market import MarketMixin
from exchange.queries import QueriesMixin
from exchange.retention import ClosedOrders
from messages import (
    Bar,
    CancelOrder,
    ExchangeError,
    ExchangeFault,
    ExchangeTimer,
    OrderAcked,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    QueryBalances,
    QueryFills,
    QueryOpenOrders,
    QueryPositions,
    Quote,
    Side,
    SubmitOrder,
    TimeInForce,
    utc_now,
)
from messages.bounds import DEFAULT_BOUNDS, Bounds, event_problem, order_problem
from messages.sim_events import QueryEvents
from messages.types import Price, Quantity, Symbol

ZERO = Decimal("0")
FEE_QUANTUM = Decimal("0.00000001")
BPS = Decimal("10000")
MAX_FIFO_HOLD_S = 60.0

# Order path constants: enum members as globals (not class attribute lookups),
# Emit without its frozen __init__ (exchange._fast), events.jsonl extra keys.
_MARKET, _STOP_LIMIT, _BUY, _IOC = OrderType.MARKET, OrderType.STOP_LIMIT, Side.BUY, TimeInForce.IOC
_STOP_MARKET = OrderType.STOP_MARKET
#: types that take the touch once live (no limit price) / that wait for a trigger
_PRICELESS = (_MARKET, _STOP_MARKET)
_TRIGGERED = (_STOP_LIMIT, _STOP_MARKET)
_new_emit = maker(Emit)
_SUBMITTED_KEYS = ("order_type", "trigger_price", "reduce_only", "tif", "account", "group_id")
_ACKED_KEYS = ("exchange_order_id",)
_FILLED_KEYS = ("leaves_qty", "fee", "liquidity", "account", "cursor")


def _bad_decimal(value: Any) -> bool:  # (None included)
    return not (isinstance(value, Decimal) and value.is_finite() and value > 0)


class SimulatedExchange(CancelsMixin, MarketMixin, FaultsMixin, QueriesMixin):
    """Matching engine, accounts and fault injection of the simulated venue."""

    def __init__(self, config: ExchangeConfig | dict | None = None, *,
                 events_log: EventsLog | None = None,
                 clock: Callable[[], datetime] | None = None, strict: bool = False) -> None:
        #: Faults given with the initial settings (a scenario's ``exchange:``
        #: block may hold both); applied by :meth:`start`, after the log opens.
        self.pending_faults: dict[str, Any] = {}
        if isinstance(config, ExchangeConfig):
            self.config = config
        else:
            settings, self.pending_faults = split_spec(config or {})
            parse_spec(self.pending_faults)  # fail now, not at start
            self.config = ExchangeConfig.from_dict(settings)
        self.log = events_log if events_log is not None else EventsLog()
        self._clock = clock or utc_now
        self._rng = random.Random(self.config.seed)
        self.stats: Counter = Counter()
        self.epoch = 1
        self.books: dict[str, Book] = {}
        self.reject_next = 0
        #: targeted one-shot rejects (``reject_next: {count, symbol, side, group_id}``)
        self.reject_rules: list[dict[str, Any]] = []
        self.duplicate_next = 0
        #: sane ranges of incoming orders and market data (DESIGN rule 18)
        self.bounds: Bounds = DEFAULT_BOUNDS
        # Hot-path event constructors (see exchange._fast; strict validates).
        self._acked = maker(OrderAcked, strict=strict)
        self._filled = maker(OrderFilled, strict=strict)
        # ``now.timestamp()`` of the last ``now`` seen: one order's ack and
        # fills share the same ``now``, so it is computed once per command.
        self._ts_of: datetime | None = None
        self._ts = 0.0
        self._reset_state()

    def _reset_state(self) -> None:
        """Everything an exchange crash with data loss forgets (books survive:
        they mirror the outside market)."""
        self.orders: dict[str, OrderState] = {}
        #: closed orders: states dropped, then ids forgotten, oldest first (bounded)
        self._closed = ClosedOrders()
        self._retired: dict[str, str] = self._closed.retired
        self.working: dict[str, dict[str, OrderState]] = {}
        self.accounts: dict[str, Account] = {}
        self.pending_cancels: dict[str, CancelOrder] = {}
        #: the requesting session's account of each pending cancel (its answer's audience)
        self.cancel_accounts: dict[str, str] = {}
        self._order_seq = itertools.count(1)
        self._fill_seq = itertools.count(1)
        self._cancel_seq = itertools.count(1)
        self._last_due = float("-inf")
        self._last_fill: OrderFilled | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, events_path: Any = None) -> SimulatedExchange:
        """Open ``events.jsonl`` (the only file the engine touches) if a path
        is known, then apply the faults given with the initial settings."""
        if events_path is not None or self.log.path is not None:
            self.log.open(events_path)
            if self.log.seq > 0 and self.epoch == 1 and not self.orders:
                # A fresh engine continuing an existing log (the exchange
                # process was restarted): start a new id epoch so fill and
                # order ids never repeat ones a client may already hold.
                self.epoch = self.log.seq + 1
                self.log.append("exchange_started", self._clock(), epoch=self.epoch)
        if self.pending_faults:
            faults, self.pending_faults = self.pending_faults, {}
            self.apply(faults)
        return self

    def stop(self) -> None:
        self.log.close()

    def handle_unattended(self, command: Any, now: datetime | None = None,
                          ) -> list[tuple[float, Any]]:
        """``handle`` with no client connected (a scenario's runtime is down): what
        clients would be told goes nowhere (``events.jsonl`` records it), the
        engine's own timers come back as (delay seconds, timer) for the caller to
        run at their time, and a fault the engine refuses is a ValueError."""
        timers: list[tuple[float, Any]] = []
        for e in self.handle(command, now):
            if e.audience == ENGINE:
                timers.append((e.delay_s, e.event))
            elif isinstance(e.event, ExchangeError) and e.event.code == "bad_fault":
                raise ValueError(e.event.reason)
        return timers

    def now(self) -> datetime:
        return self._clock()

    # -- dispatch ------------------------------------------------------------------

    def handle(self, command: Any, now: datetime | None = None, *,
               account: str | None = None) -> list[Emit]:
        """Process any command or market data message. Never raises.

        ``account`` is the requesting session's account (None: a host that
        serves one trusted client, or no session): an order or query for
        another account is refused, and a cancel only reaches that
        account's orders (DESIGN rule 18)."""
        now = now or self._clock()
        held = self.log.hold()  # this command's events.jsonl lines: one write, on return
        try:
            kind = type(command)
            if kind is SubmitOrder:
                return self.submit(command.order, now, account=account)
            if kind is CancelOrder:
                return self.cancel(command, now, account=account)
            if kind is Quote or kind is Bar:
                problem = event_problem(command, self.bounds)
                if problem is not None:
                    return self._bad_market_data(command, problem, now)
                return self.on_quote(command, now) if kind is Quote else self.on_bar(command, now)
            if kind is ExchangeTimer:
                return self.on_timer(command, now)
            if kind is ExchangeFault:
                try:
                    return self.apply(command.spec, now)
                except ValueError as exc:
                    return [self._error("bad_fault", str(exc), now)]
            if kind in (QueryPositions, QueryOpenOrders, QueryBalances, QueryFills):
                if account is not None and command.account != account:
                    return [self._foreign_account(command.account, account, now,
                                                  command.request_id)]
                return self.query(command, now)
            if kind is QueryEvents:
                return self.query_events(command, now)
            self.stats["bad_commands"] += 1
            self.log.append("bad_command", now, reason=f"unexpected {kind.__name__}")
            return [self._error("bad_command", f"the exchange does not accept {kind.__name__}", now)]
        except Exception as exc:  # noqa: BLE001 - the exchange must outlive any bug
            self.stats["internal_errors"] += 1
            logger.opt(exception=exc).error("simulated exchange failed on {}", type(command).__name__)
            return [self._error("internal", f"{type(exc).__name__}: {exc}", now)]
        finally:
            if held:
                self.log.release()

    # -- timing -------------------------------------------------------------------

    def stream_delay(self, now: datetime, extra_s: float = 0.0) -> float:
        """Latency of the next stream event; never earlier than the previous
        one, so jitter cannot reorder the stream (it is FIFO like a socket)."""
        cfg = self.config
        lat = cfg.latency_ms / 1000.0 + extra_s
        if cfg.latency_jitter_ms:
            lat += self._rng.uniform(0.0, cfg.latency_jitter_ms) / 1000.0
        if now is self._ts_of:
            t = self._ts
        else:
            t = self._ts = now.timestamp()
            self._ts_of = now
        due = t + lat
        last = self._last_due
        if due < last < due + MAX_FIFO_HOLD_S:  # (a clock set back is not held)
            due = last
        self._last_due = due
        delay = due - t
        return delay if delay > 0.0 else 0.0  # max(0.0, delay) without the call

    def _emit(self, event: Any, now: datetime, audience: str = ACCOUNT, extra_s: float = 0.0,
              account: str | None = None) -> Emit:
        return _new_emit(self.stream_delay(now, extra_s), event, audience, account)

    def _foreign_account(self, asked: str, own: str, now: datetime, ref: str | None) -> Emit:
        self.stats["foreign_account_refused"] += 1
        self.log.append("account_mismatch", now, account=asked, session_account=own, ref=ref)
        return self._error("account_mismatch", f"this session trades account {own!r}, "
                           f"not {asked[:64]!r}", now, ref=ref)

    def _bad_market_data(self, event: Any, problem: str, now: datetime) -> list[Emit]:
        """Market data with an unbelievable number never reaches a book (one
        bad quote would otherwise poison the symbol for every client)."""
        self.stats["market_data_refused"] += 1
        self.log.append("market_data_refused", now, symbol=getattr(event, "symbol", None),
                        reason=problem)
        return [self._error("out_of_range", f"{type(event).__name__} refused: {problem}", now,
                            ref=getattr(event, "symbol", None))]

    def _error(self, code: str, reason: str, now: datetime, ref: str | None = None) -> Emit:
        return self._emit(ExchangeError(code=code, reason=reason, ts=now, ref=ref), now, REQUESTER)

    # -- accounts -----------------------------------------------------------------

    def account(self, name: str) -> Account:
        acct = self.accounts.get(name)
        if acct is None:
            acct = self.accounts[name] = Account(name, cash={self.config.quote_currency:
                                                             self.config.starting_cash})
        return acct

    def _reducible(self, req: OrderRequest) -> Decimal:
        """How much ``req`` can trade without increasing its position."""
        pos = self.account(req.account).positions.get(req.symbol)
        qty = pos.qty if pos is not None else ZERO
        return max(-qty, ZERO) if req.side is Side.BUY else max(qty, ZERO)

    # -- orders ---------------------------------------------------------------------

    def submit(self, order: Any, now: datetime | None = None, *,
               account: str | None = None) -> list[Emit]:
        now = now or self._clock()
        if not isinstance(order, OrderRequest):
            self.stats["bad_commands"] += 1
            self.log.append("bad_command", now, reason="SubmitOrder without an OrderRequest")
            return [self._error("bad_command", f"SubmitOrder.order must be an OrderRequest, "
                                f"got {type(order).__name__}", now)]
        self.stats["orders_received"] += 1
        log = self.log
        if log.is_open:
            log.write("order_submitted", now, (order.client_order_id, order.symbol, order.side,
                                               order.qty, order.price, None),
                      _SUBMITTED_KEYS, (order.order_type, order.trigger_price, order.reduce_only,
                                        order.tif, order.account, order.group_id))
        reason = self._check_order(order)
        if reason is None and account is not None and order.account != account:
            self.stats["foreign_account_refused"] += 1
            reason = (f"account_mismatch: this session trades account {account!r}, "
                      f"not {order.account[:64]!r}")
        if reason is None and self.reject_next > 0:
            self.reject_next -= 1
            reason = "injected_reject: rejected by the exchange (fault injection)"
        elif reason is None and self.reject_rules and self._take_reject_rule(order):
            reason = "injected_reject: rejected by the exchange (targeted fault injection)"
        if reason is not None:
            return [self._reject(order, reason, now)]
        return self._accept(order, now)

    def _check_order(self, order: OrderRequest) -> str | None:
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
        problem = order_problem(order, self.bounds, book.mid if book is not None else None)
        if problem is not None:
            return f"out_of_range: {problem}"
        symbols = self.config.symbols
        if symbols is not None and order.symbol not in symbols:
            return f"unknown_symbol: {order.symbol!r} is not traded here"
        coid = order.client_order_id
        if coid in self.orders or coid in self._retired:
            status = self.orders[coid].status if coid in self.orders else self._retired[coid]
            return f"duplicate_client_order_id: {coid!r} was already accepted (that order is {status})"
        if otype is _MARKET:
            book = self.books.get(order.symbol)
            if book is None or not book.has_quote:
                return f"no_market: no quote for {order.symbol}, a market order cannot be priced"
        if order.reduce_only:
            reducible = self._reducible(order)
            if reducible <= 0:
                return "reduce_only: the order would increase the position"
            if order.qty > reducible:
                return f"reduce_only: qty {order.qty} exceeds the position ({reducible})"
        return None

    def _reject(self, order: OrderRequest, reason: str, now: datetime) -> Emit:
        self.stats["orders_rejected"] += 1
        self.log.append("order_rejected", now, client_order_id=order.client_order_id,
                        symbol=order.symbol, side=order.side, qty=order.qty, price=order.price,
                        reason=reason)
        return self._emit(OrderRejected(order.client_order_id, order.symbol or Symbol("?"), reason, now),
                          now, account=order.account)

    def _accept(self, order: OrderRequest, now: datetime) -> list[Emit]:
        coid, symbol = order.client_order_id, order.symbol
        eid = f"{self.config.id_prefix}{self.epoch}-O{next(self._order_seq)}"
        st = OrderState(order, eid, now, order.qty, triggered=order.order_type not in _TRIGGERED)
        self.orders[coid] = st
        working = self.working.get(symbol)
        if working is None:
            working = self.working[symbol] = {}
        working[coid] = st
        self.stats["orders_acked"] += 1
        log = self.log
        if log.is_open:
            log.write("order_acked", now, (coid, symbol, order.side, order.qty, order.price, None),
                      _ACKED_KEYS, (eid,))
        out = [self._emit(self._acked(coid, eid, symbol, now), now, account=order.account)]
        book = self.books.get(symbol)
        if book is not None and book.has_quote:
            if not st.triggered and st.trigger_hit(book):
                self._trigger(st, now)
            if st.triggered:
                self._take(st, book, now, out)
        if st.status == WORKING and order.tif is _IOC and st.triggered:
            self._expire(st, "IOC remainder", now, out)
        return out

    def _trigger(self, st: OrderState, now: datetime) -> None:
        st.triggered = True
        req = st.request
        self.log.append("order_triggered", now, client_order_id=req.client_order_id,
                        symbol=req.symbol, side=req.side, qty=st.leaves, price=req.price,
                        trigger_price=req.trigger_price)

    def _take(self, st: OrderState, book: Book, now: datetime, out: list[Emit]) -> None:
        """Fill ``st`` as a taker at the touch, within the quote's size."""
        price = st.marketable_price(book)
        if price is not None:
            self._fill(st, self._fillable(st, book, None), price, "taker", now, out)

    def _fillable(self, st: OrderState, book: Book | None, qty: Quantity | None) -> Quantity:
        req = st.request
        want: Decimal = st.leaves if qty is None else min(qty, st.leaves)
        if book is not None:
            avail = book.avail_ask if req.side is _BUY else book.avail_bid  # (book.available)
            if avail is not None:
                want = min(want, max(avail, ZERO))
        return Quantity(min(want, self._reducible(req))) if req.reduce_only else Quantity(want)

    def _fill(self, st: OrderState, qty: Quantity, price: Price, liquidity: str,
              now: datetime, out: list[Emit]) -> None:
        """Book ``qty`` at ``price`` as one or more fill reports."""
        req = st.request
        if qty > ZERO:
            cfg = self.config
            coid, symbol, side, account = req.client_order_id, req.symbol, req.side, req.account
            bps = cfg.maker_fee_bps if liquidity == "maker" else cfg.taker_fee_bps
            acct = self.accounts.get(account) or self.account(account)
            interval = cfg.partial_fill_interval_ms / 1000.0
            parts = (qty,) if cfg.partial_fills <= 1 else split_qty(qty, cfg.partial_fills)
            log = self.log if self.log.is_open else None
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
                self._last_fill = fill
                self.stats["fills"] += 1
                if log is not None:
                    log.write("order_filled", now, (coid, symbol, side, part, price, fill_id),
                              _FILLED_KEYS, (leaves, fee, liquidity, account, cursor))
                out.append(self._emit(fill, now, ACCOUNT, interval * i, account))
                if self.duplicate_next > 0:
                    self.duplicate_next -= 1
                    out.append(self._emit_duplicate(fill, now))
            book = self.books.get(symbol)
            if book is not None:
                book.consume(side, qty)
        if st.leaves == ZERO:
            self._close(st, FILLED)
        elif req.reduce_only and self._reducible(req) <= 0:
            self._expire(st, "reduce_only: nothing left to reduce", now, out)

    def _emit_duplicate(self, fill: OrderFilled, now: datetime) -> Emit:
        self.stats["duplicate_fills_sent"] += 1
        self.log.append("fill_duplicated", now, client_order_id=fill.client_order_id,
                        symbol=fill.symbol, side=fill.side, qty=fill.qty, price=fill.price,
                        fill_id=fill.fill_id)
        return self._emit(fill, now, account=fill.account)

    def _close(self, st: OrderState, status: str) -> None:
        st.status = status
        st.cancel_pending = False
        req = st.request
        working = self.working.get(req.symbol)
        if working is not None:
            working.pop(req.client_order_id, None)
        cfg = self.config
        self._closed.closed(req.client_order_id, self.orders, cfg.closed_orders,
                            cfg.closed_order_ids)

    def _expire(self, st: OrderState, reason: str, now: datetime, out: list[Emit]) -> None:
        qty = st.leaves
        self._close(st, EXPIRED)
        req = st.request
        self.stats["orders_expired"] += 1
        self.log.append("order_expired", now, client_order_id=req.client_order_id,
                        symbol=req.symbol, side=req.side, qty=qty, price=req.price, reason=reason)
        out.append(self._emit(OrderExpired(req.client_order_id, req.symbol, qty, reason, now), now,
                              account=req.account))
