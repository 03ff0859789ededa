"""Fault injection for the simulated exchange.

Two doors to the same behaviour: Python methods (``reject_orders(2)``,
``fill_resting(symbol=...)``...) for tests, and :meth:`FaultsMixin.apply`
taking the dict of a scenario ``exchange:`` entry. ``apply`` validates the
whole dict first (``exchange.config.parse_spec``) and raises a ValueError
naming an unknown key or bad value before changing anything.

Stream faults (drop, stall) are carried out by the transport: the engine
returns a :class:`~exchange.emit.StreamAction` for it and records the fact in
``events.jsonl``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from exchange.book import OrderState
from exchange.config import CONFIG_KEYS, parse_spec
from exchange.emit import TRANSPORT, Emit, StreamAction
from messages import OrderType, Quote
from messages.bounds import event_problem, price_problem, qty_problem

if TYPE_CHECKING:
    from exchange.engine_host import EngineHost
else:
    EngineHost = object


class FaultsMixin(EngineHost):
    def apply(self, spec: Mapping[str, Any],
              now: datetime | None = None) -> list[Emit]:
        """Apply a scenario ``exchange:`` dict; ValueError on any bad key/value."""
        now = now or self._clock()
        parsed = parse_spec(spec)
        self.log.append("fault_injected", now, spec=dict(spec))
        out: list[Emit] = []
        for key, value in parsed:
            if key in CONFIG_KEYS:
                self.configure(key, value)
            else:
                out.extend(getattr(self, f"_fault_{key}")(value, now))
        return out

    # -- settings ---------------------------------------------------------------

    def configure(self, key: str, value: Any) -> None:
        """Change one (validated) setting, e.g. ``latency_ms`` or ``partial_fills``."""
        self.config.set(key, value)
        if key == "seed":
            self._rng.seed(value)

    def set_partial_fills(self, n: int) -> None:
        self.apply({"partial_fills": n})

    def set_cancel_ack_delay(self, ms: float) -> None:
        self.apply({"cancel_ack_delay_ms": ms})

    # -- one-shot faults (Python API) -----------------------------------------------

    def reject_orders(self, n: int) -> None:
        self.apply({"reject_next": n})

    def duplicate_next_fill(self, n: int = 1) -> None:
        self.apply({"duplicate_fill": n})

    def fill_resting(self, now: datetime | None = None,
                     **spec: Any) -> list[Emit]:
        return self.apply({"fill_resting": spec or True}, now)

    def gap_price(self, now: datetime | None = None, **spec: Any) -> list[Emit]:
        return self.apply({"gap_price": spec}, now)

    def set_position(self, symbol: str, qty: Any, account: str = "default",
                     now: datetime | None = None, **extra: Any) -> list[Emit]:
        return self.apply({"set_position": {"symbol": symbol, "qty": str(qty),
                                            "account": account, **extra}}, now)

    def drop_stream(self, now: datetime | None = None) -> list[Emit]:
        return self.apply({"drop_stream": True}, now)

    def stall_stream(self, seconds: float | bool = True,
                     now: datetime | None = None) -> list[Emit]:
        return self.apply({"stall_stream": seconds}, now)

    def restart(self, wipe: bool = False,
                now: datetime | None = None) -> list[Emit]:
        return self.apply({"restart": {"wipe": wipe}}, now)

    def _take_reject_rule(self, order: Any) -> bool:
        """Consume one count of the first targeted reject rule ``order`` matches."""
        for rule in self.reject_rules:
            if (rule.get("symbol", order.symbol) == order.symbol
                    and rule.get("side", order.side.value) == order.side.value
                    and rule.get("group_id", order.group_id) == order.group_id):
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self.reject_rules.remove(rule)
                return True
        return False

    # -- implementations (value already validated) ----------------------------------

    def _fault_reject_next(self, value: int | list[dict[str, Any]],
                           now: datetime) -> list[Emit]:
        if isinstance(value, int):
            self.reject_next = value
        else:  # targeted rules: each rejects its next ``count`` matching orders
            self.reject_rules.extend(dict(rule) for rule in value)
        return []

    def _fault_duplicate_fill(self, value: int | str,
                              now: datetime) -> list[Emit]:
        if value == "last":
            if self._last_fill is None:
                return []
            return [self._emit_duplicate(self._last_fill, now)]
        self.duplicate_next = int(value)
        return []

    def _fault_fill_resting(self, spec: dict[str, Any],
                            now: datetime) -> list[Emit]:
        """Fill working orders now, regardless of the quote (a counterparty
        appeared). By symbol: triggered orders only; by client_order_id: that
        order even if its stop has not triggered."""
        coid = spec.get("client_order_id")
        out: list[Emit] = []
        targets: list[OrderState] = []
        for st in self.open_orders(spec.get("account")):
            req = st.request
            if coid is not None:
                if req.client_order_id == coid:
                    targets.append(st)
            elif st.triggered and spec.get("symbol") in (None, req.symbol):
                targets.append(st)
        for st in targets:
            req = st.request
            price = spec.get("price")
            if price is None:
                if req.order_type in (OrderType.MARKET, OrderType.STOP_MARKET):
                    book = self.books.get(req.symbol)
                    price = book.touch(req.side) if book is not None else None
                else:
                    price = req.price
            if price is None:
                continue
            if not st.triggered:
                self._trigger(st, now)
            self._fill(st, self._fillable(st, None, spec.get("qty")), price, "maker", now, out)
        self.stats["forced_fills"] += len(targets)
        return out

    def _fault_gap_price(self, spec: dict[str, Any],
                         now: datetime) -> list[Emit]:
        """Jump the market to a new quote in one step (no prices in between)."""
        symbol = spec["symbol"]
        book = self.books.get(symbol)
        bid_size = spec.get("bid_size", book.bid_size if book else Decimal("0"))
        ask_size = spec.get("ask_size", book.ask_size if book else Decimal("0"))
        if "bid" in spec:
            bid, ask = spec["bid"], spec["ask"]
        else:
            if book is None or book.bid is None or book.ask is None:  # no quote yet
                if "pct" in spec:
                    self.stats["bad_faults"] += 1
                    return [self._error("bad_fault", f"gap_price pct: no quote for {symbol} yet",
                                        now)]
                bid = ask = spec["price"]
            elif "price" in spec:
                spread = book.ask - book.bid
                bid, ask = spec["price"], spec["price"] + spread
            else:
                factor = 1 + spec["pct"] / 100
                bid, ask = book.bid * factor, book.ask * factor
        quote = Quote(symbol, bid, ask, now, bid_size=bid_size, ask_size=ask_size)
        problem = event_problem(quote, self.bounds)
        if problem is not None:  # a gap to an absurd price would poison the book (rule 18)
            self.stats["bad_faults"] += 1
            return [self._error("bad_fault", f"gap_price: {problem}", now)]
        self.log.append("price_gapped", now, symbol=symbol, bid=bid, ask=ask)
        return self.on_quote(quote, now)

    def _fault_set_position(self, entries: list[dict[str, Any]],
                            now: datetime) -> list[Emit]:
        """Change a position behind the client's back (no event is sent)."""
        for entry in entries:
            b = self.bounds.for_symbol(entry["symbol"])
            problem = (qty_problem(entry["qty"], "set_position.qty", b, signed=True, zero=True)
                       or price_problem(entry.get("avg_price"), "set_position.avg_price", b,
                                        optional=True))
            if problem is not None:
                self.stats["bad_faults"] += 1
                return [self._error("bad_fault", problem, now)]
        for entry in entries:
            pos = self.account(entry["account"]).position(entry["symbol"])
            pos.qty = entry["qty"]
            if "avg_price" in entry:
                pos.avg_price = entry["avg_price"]
            elif pos.qty == 0:
                pos.avg_price = Decimal("0")
            elif pos.avg_price == 0:
                book = self.books.get(entry["symbol"])
                mid = book.mid if book is not None else None
                pos.avg_price = mid if mid is not None else Decimal("0")
            self.log.append("position_set", now, symbol=entry["symbol"], qty=entry["qty"],
                            account=entry["account"], avg_price=pos.avg_price)
        return []

    def _fault_drop_stream(self, on: bool, now: datetime) -> list[Emit]:
        if not on:
            return []
        reason = "stream dropped by the exchange (fault injection)"
        self.log.append("stream_dropped", now, reason=reason)
        return [Emit(0.0, StreamAction("drop", reason), TRANSPORT)]

    def _fault_stall_stream(self, value: float | bool,
                            now: datetime) -> list[Emit]:
        if value is False:
            return self._fault_resume_stream(True, now)
        duration = None if value is True else float(value)
        self.log.append("stream_stalled", now, duration_s=duration)
        return [Emit(0.0, StreamAction("stall", "stream stalled (fault injection)", duration),
                     TRANSPORT)]

    def _fault_resume_stream(self, on: bool, now: datetime) -> list[Emit]:
        if not on:
            return []
        self.log.append("stream_resumed", now)
        return [Emit(0.0, StreamAction("resume", "stream resumed"), TRANSPORT)]

    def _fault_restart(self, spec: dict[str, bool], now: datetime) -> list[Emit]:
        """The exchange restarts: every session drops; ``wipe`` also loses all
        orders, positions and balances (ids stay unique via the epoch)."""
        wipe = spec["wipe"]
        self.log.append("exchange_restarted", now, wipe=wipe, epoch=self.epoch + (1 if wipe else 0))
        if wipe:
            self.epoch += 1
            self._reset_state()
            self.reject_next = 0
            self.reject_rules = []
            self.duplicate_next = 0
        self.stats["restarts"] += 1
        return [Emit(0.0, StreamAction("drop", f"exchange restarted (wipe={wipe})"), TRANSPORT)]
