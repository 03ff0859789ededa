"""Fault injection for the simulated exchange.

A scenario ``exchange:`` entry, an ``ExchangeFault`` message or a test calls
``SimulatedExchange.apply(spec)``, which validates the whole dict first and
raises a ValueError naming an unknown key or bad value before changing
anything; settings and ``restart`` are the engine's to carry out, every
other fault is :class:`FaultInjector`'s.

Two kinds of fault: one-shot faults armed for later orders (``reject_next``,
``duplicate_fill``), held in :class:`ArmedFaults` that the order path
consumes, and actions done at once (``fill_resting``, ``gap_price``,
``set_position``, the stream faults). Stream faults (drop, stall) are carried
out by the transport: the injector returns a
:class:`~exchange.emit.StreamAction` for it and records the fact in
``events.jsonl``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from exchange.accounts import Accounts
from exchange.book import OrderState
from exchange.emit import TRANSPORT, Emit, StreamAction
from exchange.events_log import EventsLog
from exchange.order_table import OrderTable
from exchange.outbox import Outbox
from messages import OrderRequest, OrderType, Quote
from messages.bounds import Bounds, event_problem, price_problem, qty_problem

if TYPE_CHECKING:
    from exchange.matching import Matcher


class ArmedFaults:
    """One-shot faults waiting for the orders and fills they will hit."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        #: reject the next N orders, whoever sent them
        self.reject_next = 0
        #: targeted rejects: each ``{count, symbol?, side?, group_id?}`` rejects its
        #: next ``count`` matching orders
        self.reject_rules: list[dict[str, Any]] = []
        #: send the next N fill reports twice
        self.duplicate_next = 0

    def arm_rejects(self, value: int | list[dict[str, Any]]) -> None:
        if isinstance(value, int):
            self.reject_next = value
        else:
            self.reject_rules.extend(dict(rule) for rule in value)

    def take_reject(self, order: OrderRequest) -> str | None:
        """The injected rejection ``order`` meets (consuming it), or None."""
        if self.reject_next > 0:
            self.reject_next -= 1
            return "injected_reject: rejected by the exchange (fault injection)"
        for rule in self.reject_rules:
            if (rule.get("symbol", order.symbol) == order.symbol
                    and rule.get("side", order.side.value) == order.side.value
                    and rule.get("group_id", order.group_id) == order.group_id):
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self.reject_rules.remove(rule)
                return "injected_reject: rejected by the exchange (targeted fault injection)"
        return None


class FaultInjector:
    """Carries out the faults that are not settings or a restart. Works on the
    parts it is given (matcher, orders, accounts), never on the engine."""

    def __init__(self, armed: ArmedFaults, matcher: Matcher, table: OrderTable,
                 accounts: Accounts, outbox: Outbox, log: EventsLog, stats: Counter[str]) -> None:
        self.armed = armed
        self._matcher = matcher
        self._table = table
        self._accounts = accounts
        self._outbox = outbox
        self._log = log
        self._stats = stats

    def inject(self, key: str, value: Any, now: datetime, bounds: Bounds) -> list[Emit]:
        """Carry out one validated fault (``config.sim_exchange.parse_spec`` output)."""
        if key == "reject_next":
            self.armed.arm_rejects(value)
            return []
        if key == "duplicate_fill":
            return self._duplicate_fill(value, now)
        if key == "fill_resting":
            return self._fill_resting(value, now)
        if key == "gap_price":
            return self._gap_price(value, now, bounds)
        if key == "set_position":
            return self._set_position(value, now, bounds)
        if key == "drop_stream":
            return self._drop_stream(value, now)
        if key == "stall_stream":
            return self._stall_stream(value, now)
        if key == "resume_stream":
            return self._resume_stream(value, now)
        raise ValueError(f"exchange {key}: not a fault the injector carries out")

    def _duplicate_fill(self, value: int | str, now: datetime) -> list[Emit]:
        if value == "last":
            last = self._matcher.last_fill
            return [] if last is None else [self._matcher.duplicate(last, now)]
        self.armed.duplicate_next = int(value)
        return []

    def _fill_resting(self, spec: dict[str, Any], now: datetime) -> list[Emit]:
        """Fill working orders now, regardless of the quote (a counterparty
        appeared). By symbol: triggered orders only; by client_order_id: that
        order even if its stop has not triggered."""
        coid = spec.get("client_order_id")
        out: list[Emit] = []
        targets: list[OrderState] = []
        for st in self._table.open_orders(spec.get("account")):
            req = st.request
            if coid is not None:
                if req.client_order_id == coid:
                    targets.append(st)
            elif st.triggered and spec.get("symbol") in (None, req.symbol):
                targets.append(st)
        matcher = self._matcher
        for st in targets:
            req = st.request
            price = spec.get("price")
            if price is None:
                if req.order_type in (OrderType.MARKET, OrderType.STOP_MARKET):
                    book = matcher.books.get(req.symbol)
                    price = book.touch(req.side) if book is not None else None
                else:
                    price = req.price
            if price is None:
                continue
            if not st.triggered:
                matcher.trigger(st, now)
            matcher.fill(st, matcher.fillable(st, None, spec.get("qty")), price, "maker", now, out)
        self._stats["forced_fills"] += len(targets)
        return out

    def _gap_price(self, spec: dict[str, Any], now: datetime, bounds: Bounds) -> list[Emit]:
        """Jump the market to a new quote in one step (no prices in between)."""
        symbol = spec["symbol"]
        book = self._matcher.books.get(symbol)
        bid_size = spec.get("bid_size", book.bid_size if book else Decimal("0"))
        ask_size = spec.get("ask_size", book.ask_size if book else Decimal("0"))
        if "bid" in spec:
            bid, ask = spec["bid"], spec["ask"]
        else:
            if book is None or book.bid is None or book.ask is None:  # no quote yet
                if "pct" in spec:
                    self._stats["bad_faults"] += 1
                    return [self._outbox.error("bad_fault",
                                               f"gap_price pct: no quote for {symbol} yet", now)]
                bid = ask = spec["price"]
            elif "price" in spec:
                spread = book.ask - book.bid
                bid, ask = spec["price"], spec["price"] + spread
            else:
                factor = 1 + spec["pct"] / 100
                bid, ask = book.bid * factor, book.ask * factor
        quote = Quote(symbol, bid, ask, now, bid_size=bid_size, ask_size=ask_size)
        problem = event_problem(quote, bounds)
        if problem is not None:  # a gap to an absurd price would poison the book (rule 18)
            self._stats["bad_faults"] += 1
            return [self._outbox.error("bad_fault", f"gap_price: {problem}", now)]
        self._log.append("price_gapped", now, symbol=symbol, bid=bid, ask=ask)
        return self._matcher.on_quote(quote, now)

    def _set_position(self, entries: list[dict[str, Any]], now: datetime,
                      bounds: Bounds) -> list[Emit]:
        """Change a position behind the client's back (no event is sent)."""
        for entry in entries:
            b = bounds.for_symbol(entry["symbol"])
            problem = (qty_problem(entry["qty"], "set_position.qty", b, signed=True, zero=True)
                       or price_problem(entry.get("avg_price"), "set_position.avg_price", b,
                                        optional=True))
            if problem is not None:
                self._stats["bad_faults"] += 1
                return [self._outbox.error("bad_fault", problem, now)]
        for entry in entries:
            pos = self._accounts.get(entry["account"]).position(entry["symbol"])
            pos.qty = entry["qty"]
            if "avg_price" in entry:
                pos.avg_price = entry["avg_price"]
            elif pos.qty == 0:
                pos.avg_price = Decimal("0")
            elif pos.avg_price == 0:
                book = self._matcher.books.get(entry["symbol"])
                mid = book.mid if book is not None else None
                pos.avg_price = mid if mid is not None else Decimal("0")
            self._log.append("position_set", now, symbol=entry["symbol"], qty=entry["qty"],
                             account=entry["account"], avg_price=pos.avg_price)
        return []

    def _drop_stream(self, on: bool, now: datetime) -> list[Emit]:
        if not on:
            return []
        reason = "stream dropped by the exchange (fault injection)"
        self._log.append("stream_dropped", now, reason=reason)
        return [Emit(0.0, StreamAction("drop", reason), TRANSPORT)]

    def _stall_stream(self, value: float | bool, now: datetime) -> list[Emit]:
        if value is False:
            return self._resume_stream(True, now)
        duration = None if value is True else float(value)
        self._log.append("stream_stalled", now, duration_s=duration)
        return [Emit(0.0, StreamAction("stall", "stream stalled (fault injection)", duration),
                     TRANSPORT)]

    def _resume_stream(self, on: bool, now: datetime) -> list[Emit]:
        if not on:
            return []
        self._log.append("stream_resumed", now)
        return [Emit(0.0, StreamAction("resume", "stream resumed"), TRANSPORT)]
