"""The stop-loss manager (rule 8): protect a position, exit it exactly once.

The failure this prevents: a stop-limit gaps through and rests unfilled, the
bot cancels it and fires a market order at once, and the cancel loses the
race against a fill, so the position is sold twice. Here an exit goes:

1. ``ProtectPosition`` (from the coordinator, per entry fill) -> an SL-limit
   at the stop price, limit worsened by ``slippage_bps``, reduce-only.
   Later fills of the same entry add protection for the added quantity.
2. A quote through the stop marks the stop triggered. If the exit is not
   complete ``fallback_after_s`` later, each working SL-limit gets a cancel
   request, and the manager WAITS: for the broker's ``CancelConfirmed``
   (canceled / already filled / unknown) or the fill report that closes it.
   Fills arriving meanwhile count. A confirmation slower than
   ``cancel_wait_alert_s`` raises an alert; the cancel is never resent.
3. Only when no SL-limit can fill any more: one market order, reduce-only,
   for exactly protected - exited. The exit total never exceeds the position.
4. When the exit is complete: ``StoppedOut`` to the coordinator (cool-down).

Every order goes through the coordinator as an ``OrderIntent`` (rule 1).
State is persisted after every message, before the orders it decided leave,
and rebuilt on start from that record plus the coordinator's order and fill
records (``actors.owned_orders``), so a restart neither loses nor doubles
an exit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from actors.owned_orders import RebuildGate
from actors.stop_recovery import KEY_PREFIX, StopRecovery
from messages.alerts import Alert
from messages.control import (CancelIntent, IntentAccepted, IntentRejected, OrderIntent,
                              ProtectPosition, StoppedOut, WatchQuotes)
from messages.enums import OrderPurpose, OrderType
from messages.types import Quantity
from messages.exchange import OrderExpired
from messages.market import Quote
from messages.orders import CancelConfirmed, OrderFilled, OrderRejected
from messages.persistence import Put, StoreDb
from runtime import Actor, handles
from runtime.info_rows import InfoRows
from trading.stop_state import (CANCELLING, DONE, LIMIT, MARKET, PROTECTING, TRIGGERED,
                                ExitOrder, Stop, parse_tag)

# -- timers (to self only) ----------------------------------------------------------------

@dataclass(frozen=True)
class FallbackDue:
    stop_id: str


@dataclass(frozen=True)
class CancelWaitDue:
    stop_id: str


@dataclass(frozen=True)
class RetryDue:
    stop_id: str


@dataclass(frozen=True)
class IntentTimeout:
    stop_id: str
    tag: str


class StopLossManager(StopRecovery, RebuildGate, Actor):
    def __init__(self, ctx, *, slippage_bps: Decimal = Decimal(50), fallback_after_s: float = 2.0,
                 cancel_wait_alert_s: float = 10.0, coordinator: str = "coordinator",
                 persistence: str = "persistence", alerts: str = "alerts",
                 gateway: str = "gateway", retry_s: float = 1.0, max_retry_s: float = 30.0,
                 intent_timeout_s: float = 5.0) -> None:
        super().__init__(ctx)
        self.slippage_bps = Decimal(slippage_bps)
        self.fallback_after_s, self.cancel_wait_alert_s = fallback_after_s, cancel_wait_alert_s
        self.coordinator, self.persistence, self.alerts = coordinator, persistence, alerts
        self.gateway = gateway
        #: symbols whose quotes we asked the gateway for (None: not asked yet, so
        #: it sends every quote)
        self.watching: frozenset[str] | None = None
        self.retry_s, self.max_retry_s, self.intent_timeout_s = retry_s, max_retry_s, intent_timeout_s
        self.stops: dict[str, Stop] = {}
        self.by_coid: dict[str, str] = {}
        self.finished: set[str] = set()      # client order ids of completed stops
        self.entries_done: Counter = Counter()  # entry order id -> completed stops
        self.counts: Counter = Counter()
        self.stop_exits: Counter = Counter({LIMIT: 0, "market_fallback": 0})
        self.exit_qty: Any = Counter()   # symbol -> exited by completed stops
        self._dirty: set[str] = set()
        self._outbox: list[tuple[str, Any]] = []
        self._stop_rows = InfoRows(self._stop_row)
        #: PROTECTING stops by symbol, rebuilt with the watch set after every change
        self._protecting: dict[str, list[Stop]] = {}

    # -- inputs ---------------------------------------------------------------------------------

    @handles(ProtectPosition)
    def on_protect(self, msg: ProtectPosition) -> None:
        entry = msg.entry_order_id
        st = next((s for s in self.stops.values() if s.entry_id == entry), None)
        if st is None:
            # More of an entry can fill after its stop already exited: that is a new stop.
            n = self.entries_done[entry]
            stop_id = entry if n == 0 else f"{entry}#{n + 1}"
            st = self.stops[stop_id] = Stop(stop_id, msg.symbol, msg.account, msg.position_side,
                                            msg.stop_price, entry_id=entry)
        st.protected = Quantity(st.protected + msg.qty)
        self.counts["protected"] += 1
        self._drive(st)

    @handles(Quote)
    def on_quote(self, q: Quote) -> None:
        for st in self._protecting.get(q.symbol, ()):
            if st.phase == PROTECTING and st.crossed(q):
                self._triggered(st, f"quote bid {q.bid} ask {q.ask}")

    @handles(IntentAccepted)
    def on_accepted(self, msg: IntentAccepted) -> None:
        st = self._stop_of_tag(msg.tag)
        if st is None or msg.tag is None:  # a stop is only found by a tag
            return
        pending = st.pending.pop(msg.tag, None)
        kind, qty = pending or parse_tag(msg.tag)
        if msg.client_order_id not in st.orders:
            st.orders[msg.client_order_id] = ExitOrder(kind, qty)
        self.by_coid[msg.client_order_id] = st.stop_id
        self._drive(st)

    @handles(IntentRejected)
    def on_intent_rejected(self, msg: IntentRejected) -> None:
        st = self._stop_of_tag(msg.tag)
        if st is None or msg.tag is None or st.pending.pop(msg.tag, None) is None:
            return
        self._failed(st, f"the coordinator refused the exit order: {msg.reason}")

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        st, order = self._order(ev.client_order_id)
        if order is None or ev.fill_id in order.fills:
            return
        order.fills[ev.fill_id] = ev.qty
        st.failures = 0  # the retry backoff starts over once an exit order trades
        if ev.leaves_qty == 0 or order.filled >= order.qty:
            order.closed = order.closed or "filled"
        if order.kind == LIMIT and st.phase == PROTECTING:
            self._triggered(st, "SL-limit filled")  # it can only fill once triggered
        self._drive(st)

    @handles(CancelConfirmed)
    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        st, order = self._order(ev.client_order_id)
        if order is None:
            return
        self.counts[f"cancel_{ev.outcome.value}"] += 1
        order.closed = order.closed or ev.outcome.value  # canceled / already_filled / unknown
        self._drive(st)

    @handles(OrderRejected, OrderExpired)
    def on_order_closed(self, ev: Any) -> None:
        st, order = self._order(ev.client_order_id)
        if order is None or order.closed:
            return
        order.closed = "rejected" if isinstance(ev, OrderRejected) else "expired"
        if isinstance(ev, OrderRejected):
            self._failed(st, f"the broker rejected {ev.client_order_id}: {ev.reason}")
        else:
            self._drive(st)

    # -- timers ---------------------------------------------------------------------------------

    @handles(FallbackDue)
    def on_fallback_due(self, msg: FallbackDue) -> None:
        st = self.stops.get(msg.stop_id)
        if st is None or st.phase != TRIGGERED or st.triggered_at is None:
            return
        if (self.ctx.clock.now() - st.triggered_at).total_seconds() < self.fallback_after_s - 1e-6:
            return  # a timer from an earlier trigger or incarnation
        st.phase, st.fallback_at = CANCELLING, self.ctx.clock.now()
        self.counts["fallbacks"] += 1
        self.log.info("stop {} {}: not filled {}s after the trigger; cancelling the SL-limit, "
                      "market order only after the confirmation", st.stop_id, st.symbol,
                      self.fallback_after_s)
        self.ctx.schedule(self.cancel_wait_alert_s, CancelWaitDue(st.stop_id))
        self._drive(st)

    @handles(CancelWaitDue)
    def on_cancel_wait_due(self, msg: CancelWaitDue) -> None:
        st = self.stops.get(msg.stop_id)
        if st is None or st.phase != CANCELLING or st.alerted:
            return
        waiting = [c for c, o in st.orders.items() if o.cancel_requested and not o.closed]
        if waiting:
            st.alerted = True
            self._dirty.add(st.stop_id)
            self.counts["cancel_wait_alerts"] += 1
            self._alert("critical", "stop-loss cancel not confirmed",
                        f"{st.symbol}: no confirmation for the cancel of {', '.join(waiting)} after "
                        f"{self.cancel_wait_alert_s}s; the market exit waits (never resent)", st)

    @handles(RetryDue)
    def on_retry_due(self, msg: RetryDue) -> None:
        st = self.stops.get(msg.stop_id)
        if st is not None:
            st.retry_wait = False
            self._drive(st)

    @handles(IntentTimeout)
    def on_intent_timeout(self, msg: IntentTimeout) -> None:
        st = self.stops.get(msg.stop_id)
        if st is None or msg.tag not in st.pending:
            return
        # Lost on the way (the coordinator crashed on it, or a killed process): adopt
        # whatever the coordinator approved for us, then forget the intent.
        store = self.ctx.services.get("store")
        if store is not None:
            self._adopt(store.read_all())
        st.pending.pop(msg.tag, None)
        self.counts["intent_timeouts"] += 1
        self._alert("warning", "stop-loss order unanswered",
                    f"{st.symbol}: no answer to exit intent {msg.tag} in {self.intent_timeout_s}s", st)
        self._drive(st)

    # -- the decision ----------------------------------------------------------------------------

    def _drive(self, st: Stop) -> None:
        """Send whatever the stop's state calls for; complete it when the exit is done."""
        self._dirty.add(st.stop_id)
        if st.phase == DONE:
            return
        open_qty = st.open_qty
        if st.phase in (PROTECTING, TRIGGERED):
            gap = open_qty - st.live(LIMIT) - st.live(MARKET)
            if gap > 0 and not st.retry_wait:
                self._send(st, LIMIT, Quantity(gap))
        else:  # CANCELLING: cancel every SL-limit, then wait until none can fill
            for coid, o in st.orders.items():
                if o.kind == LIMIT and not o.closed and not o.cancel_requested:
                    o.cancel_requested = True
                    self.counts["cancels_requested"] += 1
                    self._outbox.append((self.coordinator, CancelIntent(coid, self.ctx.clock.now())))
            if st.live(LIMIT) > 0:  # confirmation or final fill report not in yet: wait
                return
            gap = open_qty - st.live(MARKET)
            if gap > 0 and not st.retry_wait:
                self._send(st, MARKET, Quantity(gap))
        if open_qty <= 0 and not st.pending and st.live(LIMIT) == 0 and st.live(MARKET) == 0:
            self._complete(st)

    def _send(self, st: Stop, kind: str, qty: Quantity) -> None:
        st.seq += 1
        tag = f"{st.stop_id}|{st.seq}|{kind}|{qty}"
        st.pending[tag] = (kind, qty)
        now = self.ctx.clock.now()
        if kind == LIMIT:
            price = st.limit_price(self.slippage_bps)
            intent = OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                                 order_type=OrderType.STOP_LIMIT, price=price,
                                 trigger_price=st.stop_price, reduce_only=True,
                                 account=st.account, owner=self.ctx.name, tag=tag)
        else:
            self.counts["market_orders"] += 1
            intent = OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                                 order_type=OrderType.MARKET, reduce_only=True,
                                 account=st.account, owner=self.ctx.name, tag=tag)
        self._outbox.append((self.coordinator, intent))
        self.ctx.schedule(self.intent_timeout_s, IntentTimeout(st.stop_id, tag))

    def _triggered(self, st: Stop, why: str) -> None:
        st.phase, st.triggered_at = TRIGGERED, self.ctx.clock.now()
        self._dirty.add(st.stop_id)
        self.counts["triggered"] += 1
        self.log.info("stop {} {} triggered at {} ({})", st.stop_id, st.symbol, st.stop_price, why)
        self.ctx.schedule(self.fallback_after_s, FallbackDue(st.stop_id))

    def _failed(self, st: Stop, why: str) -> None:
        """An exit order refused: retry with backoff; the position must not stay unprotected."""
        st.failures += 1
        self.counts["exit_orders_refused"] += 1
        delay = min(self.max_retry_s, self.retry_s * 2 ** (st.failures - 1))
        st.retry_wait = True
        self.ctx.schedule(delay, RetryDue(st.stop_id))
        self._alert("warning", "stop-loss order refused", f"{st.symbol}: {why}; retry in {delay}s", st)
        self._drive(st)

    def _complete(self, st: Stop) -> None:
        st.phase = DONE
        st.outcome = "market_fallback" if any(o.kind == MARKET and o.filled > 0
                                              for o in st.orders.values()) else LIMIT
        self.stop_exits[st.outcome] += 1
        self.exit_qty[st.symbol] += st.exited
        self.finished.update(st.orders)
        self.entries_done[st.entry_id] += 1
        for coid in st.orders:
            self.by_coid.pop(coid, None)
        self.log.info("stop {} {} exit complete: {} ({})", st.stop_id, st.symbol, st.exited, st.outcome)
        if st.exited > 0:
            self._outbox.append((self.coordinator, StoppedOut(st.symbol, st.account,
                                                              self.ctx.clock.now())))

    # -- persistence and recovery ------------------------------------------------------------------

    def persist_changes(self) -> None:
        for stop_id in sorted(self._dirty):
            st = self.stops.get(stop_id)
            if st is not None:
                self.ctx.tell(self.persistence, Put(StoreDb.META, KEY_PREFIX + stop_id, st.record()))
                if st.phase == DONE:
                    del self.stops[stop_id]
        if self._dirty or self.watching is None:
            self._watch_quotes()
        self._stop_rows.mark(self._dirty)
        self._dirty.clear()

    def _watch_quotes(self) -> None:
        """Ask the gateway for quotes of the symbols with a stop to trigger only.
        Sent (when the set changes) before any order this message decided, so
        a new stop's symbol is watched before its SL-limit can reach the venue."""
        protecting: dict[str, list[Stop]] = {}
        for st in self.stops.values():
            if st.phase == PROTECTING:
                protecting.setdefault(st.symbol, []).append(st)
        self._protecting = protecting  # what on_quote checks, by symbol
        wanted = frozenset(protecting)
        if wanted != self.watching:
            self.watching = wanted
            self.ctx.tell(self.gateway, WatchQuotes(self.ctx.name, tuple(sorted(wanted))))

    def _resume(self, st: Stop) -> None:
        """Re-arm the timers of a rebuilt stop (stale ones from before are harmless)."""
        now = self.ctx.clock.now()
        if st.phase == TRIGGERED and st.triggered_at is not None:
            left = self.fallback_after_s - (now - st.triggered_at).total_seconds()
            self.ctx.schedule(max(0.0, left), FallbackDue(st.stop_id))
        if st.phase == CANCELLING and st.fallback_at is not None and not st.alerted:
            left = self.cancel_wait_alert_s - (now - st.fallback_at).total_seconds()
            self.ctx.schedule(max(0.0, left), CancelWaitDue(st.stop_id))
        for tag in st.pending:
            self.ctx.schedule(self.intent_timeout_s, IntentTimeout(st.stop_id, tag))
        self._drive(st)

    # -- helpers -------------------------------------------------------------------------------

    def _stop_of_tag(self, tag: str | None) -> Stop | None:
        stop_id = tag.split("|", 1)[0] if tag else None
        return self.stops.get(stop_id) if stop_id else None

    def _order(self, coid: str) -> tuple[Any, ExitOrder | None]:
        st = self.stops.get(self.by_coid.get(coid, ""))
        return (st, st.orders.get(coid)) if st is not None else (None, None)

    def _alert(self, severity: str, title: str, text: str, st: Stop) -> None:
        self.ctx.tell(self.alerts, Alert(severity, title, text, self.ctx.clock.now(), self.ctx.name,
                                         dedup_key=f"stops:{title}:{st.stop_id}"))

    def _stop_row(self, stop_id: str) -> dict[str, Any] | None:
        s = self.stops.get(stop_id)
        if s is None:
            return None
        return {"symbol": s.symbol, "phase": s.phase, "stop_price": str(s.stop_price),
                "protected": str(s.protected), "exited": str(s.exited), "orders": len(s.orders),
                "pending": len(s.pending)}

    def _publish(self) -> None:
        exit_qty: Any = Counter(self.exit_qty)  # Decimal counts
        for st in self.stops.values():
            exit_qty[st.symbol] += st.exited
        self.ctx.cell.info = {
            "active": len(self.stops),
            "stop_exits": dict(self.stop_exits),
            "exit_qty": {s: f"{q.normalize():f}" for s, q in sorted(exit_qty.items())},
            "counts": dict(self.counts),
            "stops": self._stop_rows.snapshot(),
        }
