"""The stop-loss and exit-plan manager (rule 8): protect a position, exit it exactly once.

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

An entry's exit plan (``messages.orders.ExitPlan``) makes the stop one
contingent group (``trading.stop_state``): beside the SL-limit a reduce-only
take-profit limit rests for the same open quantity; a trailing stop is a
level this manager holds and moves only in the position's favour, at most
once per ``trailing_step_bps`` and ``trailing_interval_s``; a time limit
closes what is left. Every order is sized from what is still open, so a fill
of one shrinks the others (an oversized resting order is cancelled, and
re-posted for the rest only after its cancel is confirmed: never a cancel
and re-post loop). A trailing or time-limit exit takes step 2's path at
once: cancel every resting order, wait for the confirmations, one market
order for the rest. The coordinator tells the manager a protected key's
position after every fill and broker correction (``PositionChanged``):
protection above the position (a strategy's own exit went out, the broker
says flat) is released and its orders cancelled, never sent against a
position that is not there, and an exit refused for that reason is not
retried (one alert per plan). Every change is audited
(``ExitPlanAudit``, written by the coordinator).

Every order goes through the coordinator as an ``OrderIntent`` (rule 1).
The manager is composed of parts that own their state: the decisions over
the plans (``trading.exit_desk.ExitDesk``), which own the book of plans
(``trading.stop_book.StopBook``: which plan owns which order, what
completed and how) and the retry policy for refused exits
(``trading.exit_retry.ExitRetries``); each plan's orders track their fills
(``trading.fill_tracking``). This actor turns messages into the desk's
steps, asks the gateway for the quotes its plans watch, and persists: the
plans are written after every message, before the orders it decided leave,
and rebuilt on start by ``trading.stop_rebuild`` from that record plus the
coordinator's order and fill records, so a restart neither loses nor
doubles an exit.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

from actors.rebuild_gate import RebuildGate
from messages.control import (IntentAccepted, IntentRejected, PositionChanged,
                              ProtectPosition, WatchQuotes)
from messages.exchange import OrderExpired
from messages.market import Quote
from messages.orders import CancelConfirmed, OrderFilled, OrderRejected
from messages.persistence import Put, StoreDb
from runtime import Actor, handles
from runtime.info_rows import InfoRows
from trading.exit_desk import (CancelWaitDue, ExitDesk, FallbackDue, IntentTimeout, RetryDue,
                               TimeLimitDue)
from trading.exit_plan import ExitSettings, ExitSettingsBook
from trading.exit_retry import ExitRetries
from trading.stop_book import StopBook
from trading.stop_rebuild import KEY_PREFIX, Adopted, adopt_orders, rebuild_stops
from trading.stop_state import (CANCELLING, DONE, PROTECTING, TRIGGERED,
                                ExitOrder, Stop, parse_tag)


class StopLossManager(RebuildGate, Actor):
    def __init__(self, ctx, *, slippage_bps: Decimal = Decimal(50), fallback_after_s: float = 2.0,
                 cancel_wait_alert_s: float = 10.0, coordinator: str = "coordinator",
                 persistence: str = "persistence", alerts: str = "alerts",
                 gateway: str = "gateway", retry_s: float = 1.0, max_retry_s: float = 30.0,
                 intent_timeout_s: float = 5.0,
                 settings: ExitSettingsBook | dict[str, Any] | None = None) -> None:
        super().__init__(ctx)
        #: per-symbol settings (rule 8's bound and delay, trailing steps, plan defaults)
        if isinstance(settings, dict):  # StopsConfig.exit_settings()
            settings = ExitSettingsBook.from_plain(settings)
        settings = settings or ExitSettingsBook(ExitSettings(
            slippage_bps=Decimal(slippage_bps), fallback_after_s=fallback_after_s))
        self.coordinator, self.persistence, self.gateway = coordinator, persistence, gateway
        self.counts: Counter[str] = Counter()
        self.desk = ExitDesk(ctx, self.log, self._send, settings=settings,
                             retries=ExitRetries(retry_s, max_retry_s), counts=self.counts,
                             cancel_wait_alert_s=cancel_wait_alert_s,
                             intent_timeout_s=intent_timeout_s, alerts=alerts)
        #: symbols whose quotes we asked the gateway for (None: not asked yet, so
        #: it sends every quote)
        self.watching: frozenset[str] | None = None
        self._outbox: list[tuple[str, Any]] = []
        self._stop_rows = InfoRows(self._stop_row)
        #: PROTECTING plans by symbol, rebuilt with the watch set after every change
        self._protecting: dict[str, list[Stop]] = {}

    @property
    def book(self) -> StopBook:
        return self.desk.book

    def _send(self, msg: Any) -> None:
        """To the coordinator, once this message's changes are written."""
        self._outbox.append((self.coordinator, msg))

    # -- inputs ---------------------------------------------------------------------------------

    @handles(ProtectPosition)
    def on_protect(self, msg: ProtectPosition) -> None:
        st = self.desk.protect(msg)
        self.counts["protected"] += 1
        self.desk.drive(st)

    @handles(Quote)
    def on_quote(self, q: Quote) -> None:
        for st in self._protecting.get(q.symbol, ()):
            if st.phase != PROTECTING:
                continue
            if st.crossed(q):
                self.desk.triggered(st, f"quote bid {q.bid} ask {q.ask}")
            elif st.trailing:
                self.desk.trail(st, q)

    @handles(PositionChanged)
    def on_position(self, msg: PositionChanged) -> None:
        self.desk.position_changed(msg.symbol, msg.account, msg.qty, msg.cause)

    @handles(IntentAccepted)
    def on_accepted(self, msg: IntentAccepted) -> None:
        st = self.book.of_tag(msg.tag)
        if st is None or msg.tag is None:  # a stop is only found by a tag
            return
        pending = st.pending.pop(msg.tag, None)
        kind, qty = pending or parse_tag(msg.tag)
        self.book.add_order(st, msg.client_order_id, ExitOrder(kind, qty))
        self.desk.drive(st)

    @handles(IntentRejected)
    def on_intent_rejected(self, msg: IntentRejected) -> None:
        st = self.book.of_tag(msg.tag)
        if st is None or msg.tag is None or st.pending.pop(msg.tag, None) is None:
            return
        if msg.position is not None:  # learn from the position before deciding to retry
            self.desk.learn_position(st.symbol, st.account, msg.position, "refused")
        if st.open_qty <= 0:
            self.desk.drive(st)  # nothing left to exit: the refusal is the answer
            return
        self.desk.failed(st, f"the coordinator refused the exit order: {msg.reason}")

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        st, order = self.book.order(ev.client_order_id)
        if st is not None and order is not None and order.apply_fill(ev.fill_id, ev.qty,
                                                                     ev.leaves_qty):
            self.desk.filled(st, order, ev)

    @handles(CancelConfirmed)
    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        st, order = self.book.order(ev.client_order_id)
        if st is None or order is None:
            return
        self.counts[f"cancel_{ev.outcome.value}"] += 1
        order.close(ev.outcome.value)  # canceled / already_filled / unknown
        self.desk.drive(st)

    @handles(OrderRejected, OrderExpired)
    def on_order_closed(self, ev: Any) -> None:
        st, order = self.book.order(ev.client_order_id)
        if st is None or order is None or order.closed:
            return
        order.close("rejected" if isinstance(ev, OrderRejected) else "expired")
        if isinstance(ev, OrderRejected) and st.open_qty > 0:
            # A reduce-only refusal waits for the position (ExitRetries).
            doubt = "reduce" in ev.reason.lower()
            self.desk.failed(st, f"the broker rejected {ev.client_order_id}: {ev.reason}",
                             await_position=doubt)
        else:
            self.desk.drive(st)

    # -- timers ---------------------------------------------------------------------------------

    @handles(FallbackDue)
    def on_fallback_due(self, msg: FallbackDue) -> None:
        st = self.book.stops.get(msg.stop_id)
        if st is not None and st.phase == TRIGGERED:
            self.desk.fallback(st)

    @handles(TimeLimitDue)
    def on_time_limit(self, msg: TimeLimitDue) -> None:
        st = self.book.stops.get(msg.stop_id)
        if st is None or st.deadline is None or st.phase not in (PROTECTING, TRIGGERED):
            return
        if self.ctx.clock.now() < st.deadline - timedelta(microseconds=1):
            return  # a timer from an earlier incarnation
        self.desk.forced_exit(st, "time_limit", f"time limit reached at {st.deadline.isoformat()}")

    @handles(CancelWaitDue)
    def on_cancel_wait_due(self, msg: CancelWaitDue) -> None:
        st = self.book.stops.get(msg.stop_id)
        if st is not None and st.phase == CANCELLING and not st.alerted:
            self.desk.cancel_wait(st)

    @handles(RetryDue)
    def on_retry_due(self, msg: RetryDue) -> None:
        st = self.book.stops.get(msg.stop_id)
        if st is not None:
            self.desk.retry_due(st)

    @handles(IntentTimeout)
    def on_intent_timeout(self, msg: IntentTimeout) -> None:
        st = self.book.stops.get(msg.stop_id)
        if st is None or msg.tag not in st.pending:
            return
        # Lost on the way (the coordinator crashed on it, or a killed process): adopt
        # whatever the coordinator approved for us, then forget the intent.
        store = self.ctx.services.get("store")
        if store is not None:
            self._adopted(adopt_orders(self.book, store.read_all(), self.ctx.name))
        st.pending.pop(msg.tag, None)
        self.counts["intent_timeouts"] += 1
        self.desk.alert("warning", "stop-loss order unanswered",
                        f"{st.symbol}: no answer to exit intent {msg.tag} in "
                        f"{self.desk.intent_timeout_s}s", st)
        self.desk.drive(st)

    # -- persistence and recovery ------------------------------------------------------------------

    def persist_changes(self) -> None:
        dirty = self.desk.dirty
        for stop_id in sorted(dirty):
            st = self.book.stops.get(stop_id)
            if st is not None:
                self.ctx.tell(self.persistence, Put(StoreDb.META, KEY_PREFIX + stop_id, st.record()))
                if st.phase == DONE:
                    del self.book.stops[stop_id]
        if dirty or self.watching is None:
            self._watch_quotes()
        self._stop_rows.mark(dirty)
        dirty.clear()

    def _watch_quotes(self) -> None:
        """Ask the gateway for quotes of the symbols with a stop to trigger only.
        Sent (when the set changes) before any order this message decided, so
        a new stop's symbol is watched before its SL-limit can reach the venue."""
        self._protecting = self.book.protecting()  # what on_quote checks, by symbol
        wanted = frozenset(self._protecting)
        if wanted != self.watching:
            self.watching = wanted
            self.ctx.tell(self.gateway, WatchQuotes(self.ctx.name, tuple(sorted(wanted))))

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:
        rebuilt = rebuild_stops(snapshot, self.ctx.name)
        self.desk.book = rebuilt.book
        for key, exc in rebuilt.unreadable:
            self.log.error("skipping unreadable stop record {}: {!r}", key, exc)
        self._adopted(rebuilt.adopted)
        for st in list(self.book.stops.values()):
            self.desk.resume(st)
        if self.book.stops:
            self.log.info("rebuilt {} active stops from the store", len(self.book.stops))

    def _adopted(self, adopted: list[Adopted]) -> None:
        for a in adopted:
            self.counts["adopted_orders"] += 1
            self.log.warning("adopted exit order {} ({} {}) from the coordinator's records",
                             a.client_order_id, a.kind, a.qty)
            self.desk.dirty.add(a.stop_id)

    # -- introspection ----------------------------------------------------------------------------

    def _stop_row(self, stop_id: str) -> dict[str, Any] | None:
        s = self.book.stops.get(stop_id)
        return None if s is None else s.row()

    def _publish(self) -> None:
        self.ctx.cell.info = {
            "active": len(self.book.stops),
            "stop_exits": dict(self.book.stop_exits),
            "exits": dict(self.book.exits),
            "exit_qty": {s: f"{q.normalize():f}" for s, q in sorted(self.book.exit_qty_now().items())},
            "counts": dict(self.counts),
            "stops": self._stop_rows.snapshot(),
        }
