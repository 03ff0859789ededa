"""The stop manager's decisions over its exit plans (rule 8), apart from its mailbox.

What a plan calls for at each step: the SL-limit and take-profit sized from
what is still open (``drive``), the trigger and the fallback to one market
order only once no resting order can fill, the trailing stop and the time
limit (``forced_exit``), refusals (``failed``, with ``trading.exit_retry``)
and completion. The desk owns the book of plans (``trading.stop_book``) and
the retry policy; it decides through its actor's context (the clock, timers
to self, alerts) and hands every message for the coordinator to ``send``, so
the actor writes the plans before anything it decided leaves. The actor
(``actors.stops.StopLossManager``) feeds it messages and persists the plans
it marks ``dirty``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from messages.alerts import Alert
from messages.control import CancelIntent, ExitPlanAudit, ProtectPosition, StoppedOut
from messages.enums import Side
from messages.market import Quote
from messages.orders import ExitPlan, OrderFilled
from messages.persistence import StoreDb
from messages.types import Quantity, as_price
from trading.exit_plan import ExitSettingsBook, ratchet_due, trail_level
from trading.exit_retry import ExitRetries
from trading.stop_book import STOP_OUTS, StopBook
from trading.stop_rebuild import KEY_PREFIX
from trading.stop_state import (CANCELLING, DONE, LIMIT, MARKET, PROTECTING, RESTING, TAKE_PROFIT,
                                TRIGGERED, ZERO, ExitOrder, Stop, exit_intent)

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext

# -- timers the desk sets (to its actor only) ------------------------------------------------


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
class TimeLimitDue:
    stop_id: str


@dataclass(frozen=True)
class IntentTimeout:
    stop_id: str
    tag: str


class ExitDesk:
    def __init__(self, ctx: ActorContext, log: Logger, send: Callable[[Any], None], *,
                 settings: ExitSettingsBook, retries: ExitRetries, counts: Counter[str],
                 cancel_wait_alert_s: float, intent_timeout_s: float, alerts: str) -> None:
        self.ctx, self.log, self.send = ctx, log, send
        self.settings, self.retries, self.counts = settings, retries, counts
        self.cancel_wait_alert_s, self.intent_timeout_s = cancel_wait_alert_s, intent_timeout_s
        self.alerts = alerts
        self.book = StopBook()
        #: stop ids whose plan changed since the actor last wrote them
        self.dirty: set[str] = set()

    # -- new plans and the market --------------------------------------------------------------

    def protect(self, msg: ProtectPosition) -> Stop:
        """A plan for the entry's fill, or more protection for its open plan."""
        st = self.book.for_entry(msg.entry_order_id)
        if st is None:
            # More of an entry can fill after its stop already exited: that is a new stop.
            stop_id = self.book.next_stop_id(msg.entry_order_id, self._on_record)
            st = self.book.stops[stop_id] = self._new_plan(stop_id, msg)
            self.audit(st, "plan_created", qty=msg.qty, entry_price=msg.entry_price,
                       stop_loss=st.stop_price, take_profit=st.take_profit,
                       trailing_distance=st.trail_distance, trailing_percent=st.trail_percent,
                       trail_level=st.trail_level, deadline=st.deadline)
        else:
            self.audit(st, "protection_added", qty=msg.qty, protected=st.protected + msg.qty)
        st.protected = Quantity(st.protected + msg.qty)
        return st

    def _on_record(self, stop_id: str) -> bool:
        """A plan of this id is in the store (the actor's service, if it has one)."""
        store = self.ctx.services.get("store")
        return store is not None and store.get(StoreDb.META, KEY_PREFIX + stop_id) is not None

    def _new_plan(self, stop_id: str, msg: ProtectPosition) -> Stop:
        cfg = self.settings.for_symbol(msg.symbol)
        plan = msg.plan or ExitPlan(stop_loss=msg.stop_price)
        plan = cfg.complete(plan, msg.position_side, msg.entry_price)
        now = self.ctx.clock.now()
        st = Stop(stop_id, msg.symbol, msg.account, msg.position_side, as_price(plan.stop_loss),
                  entry_id=msg.entry_order_id, take_profit=plan.take_profit,
                  trail_distance=plan.trailing_distance, trail_percent=plan.trailing_percent)
        if st.trailing and msg.entry_price is not None:
            st.trail_anchor = msg.entry_price
            st.trail_level = trail_level(msg.entry_price, st.position_side, st.trail_distance,
                                         st.trail_percent)
            st.trail_moved_at = now
        if plan.time_limit_s is not None:
            st.deadline = now + timedelta(seconds=plan.time_limit_s)
            self.ctx.schedule(plan.time_limit_s, TimeLimitDue(stop_id))
        return st

    def trail(self, st: Stop, q: Quote) -> None:
        """Exit when the quote crosses the trailing level; else move the level
        after the best price, in the position's favour only, at most once per
        step and interval (no churn: the level is ours, never re-posted)."""
        long = st.position_side is Side.BUY
        ref = q.bid if long else q.ask  # the price an exit would trade at
        level = st.trail_level
        if level is not None and (ref <= level if long else ref >= level):
            self.forced_exit(st, "trailing", f"quote {ref} crossed the trailing stop {level}")
            return
        anchor = st.trail_anchor
        if anchor is None or (ref > anchor if long else ref < anchor):
            st.trail_anchor = anchor = ref
        new = trail_level(anchor, st.position_side, st.trail_distance, st.trail_percent)
        cfg = self.settings.for_symbol(st.symbol)
        now = self.ctx.clock.now()
        if level is None:
            st.trail_level, st.trail_moved_at = new, now
            self.dirty.add(st.stop_id)
            self.audit(st, "trail_armed", trail_level=new, anchor=anchor)
            return
        if not ratchet_due(level, new, st.position_side, cfg.trailing_step_bps):
            return
        if st.trail_moved_at is not None and (
                (now - st.trail_moved_at).total_seconds() < cfg.trailing_interval_s - 1e-9):
            return
        st.trail_level, st.trail_moved_at = new, now
        self.dirty.add(st.stop_id)
        self.counts["trail_ratchets"] += 1
        self.audit(st, "trail_ratcheted", old=level, trail_level=new, anchor=anchor)

    def learn_position(self, symbol: str, account: str, qty: Decimal, cause: str) -> None:
        """Protection above the position is released (``StopBook.releases``) and
        what is left of each plan driven."""
        for st, take in self.book.releases(symbol, account, qty, cause):
            self.counts["released"] += 1
            self.log.info("plan {} {}: {} of its protection released ({}: position {})",
                          st.stop_id, symbol, take, cause, qty)
            self.audit(st, "released", qty=take, position=qty, cause=cause, open_qty=st.open_qty)
            self.drive(st)

    def position_changed(self, symbol: str, account: str, qty: Decimal, cause: str) -> None:
        """The coordinator's position after a fill or a broker correction: release
        protection above it, and retry now the exits that waited for it."""
        self.learn_position(symbol, account, qty, cause)
        for st in self.retries.position_spoke(self.book.stops, symbol, account):
            self.drive(st)

    def filled(self, st: Stop, order: ExitOrder, ev: OrderFilled) -> None:
        """A new fill of one of ``st``'s orders (already counted on the order)."""
        self.retries.traded(st)
        if order.kind == LIMIT and st.phase == PROTECTING:
            self.triggered(st, "SL-limit filled")  # it can only fill once triggered
        if order.kind == TAKE_PROFIT:
            self.audit(st, "take_profit_filled", qty=ev.qty, price=ev.price,
                       open_qty=st.open_qty)
        self.drive(st)

    def retry_due(self, st: Stop) -> None:
        self.retries.due(st)
        self.drive(st)

    def resume(self, st: Stop) -> None:
        """After a restart: re-arm the timers of a rebuilt plan (stale ones from before
        are harmless), ask again for its unconfirmed cancels, and drive it."""
        now = self.ctx.clock.now()
        if st.phase == TRIGGERED and st.triggered_at is not None:
            after = self.settings.for_symbol(st.symbol).fallback_after_s
            left = after - (now - st.triggered_at).total_seconds()
            self.ctx.schedule(max(0.0, left), FallbackDue(st.stop_id))
        if st.deadline is not None and st.phase in (PROTECTING, TRIGGERED):
            self.ctx.schedule(max(0.0, (st.deadline - now).total_seconds()),
                              TimeLimitDue(st.stop_id))
        if st.phase == CANCELLING and st.fallback_at is not None and not st.alerted:
            left = self.cancel_wait_alert_s - (now - st.fallback_at).total_seconds()
            self.ctx.schedule(max(0.0, left), CancelWaitDue(st.stop_id))
        for tag in st.pending:
            self.ctx.schedule(self.intent_timeout_s, IntentTimeout(st.stop_id, tag))
        # A cancel the previous incarnation asked for may have died with it (or
        # with the connection) before the venue acted on it: asked once more per
        # incarnation, never in a loop. A cancel the venue already carried out
        # is answered as such, which closes the order all the same.
        for coid, o in st.orders.items():
            if o.cancel_requested and not o.closed:
                self.counts["cancels_reasserted"] += 1
                self.send(CancelIntent(coid, now))
        self.drive(st)

    # -- the decision ----------------------------------------------------------------------------

    def drive(self, st: Stop) -> None:
        """Send whatever the stop's state calls for; complete it when the exit is done."""
        self.dirty.add(st.stop_id)
        if st.phase == DONE:
            return
        open_qty = st.open_qty
        if open_qty <= 0 and st.phase != CANCELLING and st.resting_live() > 0:
            # One-cancels-other: nothing left to protect, so no resting order may stay.
            st.phase = CANCELLING
            self.audit(st, "oco_cancel", exited=st.exited, released=st.released)
        if st.phase in (PROTECTING, TRIGGERED):
            sized = ((LIMIT, st.stop_price), (TAKE_PROFIT, st.take_profit))
            for kind, price in sized if st.phase == PROTECTING else sized[1:]:
                if price is None:
                    continue
                live = st.live(kind) + (st.live(MARKET) if kind == LIMIT else ZERO)
                if live > open_qty:
                    # One-updates-other: a fill of another order (or a release)
                    # left this one too big; cancel it, and re-post the rest
                    # only once the cancel is confirmed (then live == open).
                    self.cancel(st, (kind,), "resize")
                elif live < open_qty and not st.retry_wait:
                    self._order(st, kind, Quantity(open_qty - live))
        if st.phase == TRIGGERED:
            # the triggered SL-limit is working: never cancelled before the
            # fallback, only topped up for protection added since
            gap = open_qty - st.live(LIMIT) - st.live(MARKET)
            if gap > 0 and not st.retry_wait and st.stop_price is not None:
                self._order(st, LIMIT, Quantity(gap))
        elif st.phase == CANCELLING:  # cancel every resting order, then wait until none can fill
            self.cancel(st, RESTING, "cancelling")
            if st.resting_live() > 0:  # confirmation or final fill report not in yet: wait
                return
            gap = open_qty - st.live(MARKET)
            if gap > 0 and not st.retry_wait:
                self._order(st, MARKET, Quantity(gap))
        if (open_qty <= 0 and not st.pending and st.resting_live() == 0
                and st.live(MARKET) == 0):
            self._complete(st)

    def cancel(self, st: Stop, kinds: tuple[str, ...], why: str) -> None:
        """Ask once for the cancel of every working order of ``kinds`` (never resent)."""
        for coid, o in st.orders.items():
            if o.kind in kinds and not o.closed and not o.cancel_requested:
                o.cancel_requested = True
                self.counts["cancels_requested"] += 1
                if why == "resize":
                    self.counts["resizes"] += 1
                    self.audit(st, "resize", client_order_id=coid, kind=o.kind,
                               qty=o.live_qty, open_qty=st.open_qty)
                self.send(CancelIntent(coid, self.ctx.clock.now()))

    def triggered(self, st: Stop, why: str) -> None:
        st.phase, st.triggered_at = TRIGGERED, self.ctx.clock.now()
        self.dirty.add(st.stop_id)
        self.counts["triggered"] += 1
        self.log.info("stop {} {} triggered at {} ({})", st.stop_id, st.symbol, st.stop_price, why)
        self.ctx.schedule(self.settings.for_symbol(st.symbol).fallback_after_s,
                          FallbackDue(st.stop_id))
        self.audit(st, "triggered", why=why, stop_price=st.stop_price)

    def fallback(self, st: Stop) -> None:
        """Triggered ``fallback_after_s`` ago and not exited: cancel the SL-limit,
        market order only after the confirmation."""
        after = self.settings.for_symbol(st.symbol).fallback_after_s
        if st.triggered_at is None or (
                (self.ctx.clock.now() - st.triggered_at).total_seconds() < after - 1e-6):
            return  # a timer from an earlier trigger or incarnation
        st.phase, st.fallback_at = CANCELLING, self.ctx.clock.now()
        self.counts["fallbacks"] += 1
        self.log.info("stop {} {}: not filled {}s after the trigger; cancelling the SL-limit, "
                      "market order only after the confirmation", st.stop_id, st.symbol, after)
        self.ctx.schedule(self.cancel_wait_alert_s, CancelWaitDue(st.stop_id))
        self.audit(st, "fallback", open_qty=st.open_qty)
        self.drive(st)

    def forced_exit(self, st: Stop, kind: str, why: str) -> None:
        """A trailing stop or time limit: cancel every resting order, wait for the
        confirmations, then one market order for what is still open (rule 8's path)."""
        st.exit_kind = kind
        st.phase, st.fallback_at = CANCELLING, self.ctx.clock.now()
        self.counts[f"{kind}_exits_started"] += 1
        self.log.info("plan {} {}: {} exit ({})", st.stop_id, st.symbol, kind, why)
        self.audit(st, f"{kind}_triggered", why=why, open_qty=st.open_qty)
        self.ctx.schedule(self.cancel_wait_alert_s, CancelWaitDue(st.stop_id))
        self.drive(st)

    def cancel_wait(self, st: Stop) -> None:
        """The cancels are slow to confirm: alert once (the cancel is never resent)."""
        waiting = [c for c, o in st.orders.items() if o.cancel_requested and not o.closed]
        if waiting:
            st.alerted = True
            self.dirty.add(st.stop_id)
            self.counts["cancel_wait_alerts"] += 1
            self.alert("critical", "stop-loss cancel not confirmed",
                       f"{st.symbol}: no confirmation for the cancel of {', '.join(waiting)} after "
                       f"{self.cancel_wait_alert_s}s; the market exit waits (never resent)", st)

    def failed(self, st: Stop, why: str, await_position: bool = False) -> None:
        """An exit order refused: retry (``ExitRetries``); the position must not
        stay unprotected. One alert per plan."""
        delay = self.retries.refused(st, await_position=await_position)
        self.counts["exit_orders_refused"] += 1
        self.ctx.schedule(delay, RetryDue(st.stop_id))
        self.audit(st, "exit_refused", why=why, retry_in_s=delay, failures=st.failures)
        if self.retries.first_refusal(st):
            self.counts["refusal_alerts"] += 1
            self.alert("warning", "stop-loss order refused",
                       f"{st.symbol}: {why}; retrying with backoff (alerted once per plan)", st)
        self.drive(st)

    def _order(self, st: Stop, kind: str, qty: Quantity) -> None:
        st.seq += 1
        tag = f"{st.stop_id}|{st.seq}|{kind}|{qty}"
        st.pending[tag] = (kind, qty)
        if kind == MARKET:
            self.counts["market_orders"] += 1
        self.send(exit_intent(st, kind, qty, tag,
                              slippage_bps=self.settings.for_symbol(st.symbol).slippage_bps,
                              owner=self.ctx.name, now=self.ctx.clock.now()))
        self.ctx.schedule(self.intent_timeout_s, IntentTimeout(st.stop_id, tag))

    def _complete(self, st: Stop) -> None:
        outcome = self.book.complete(st)
        self.audit(st, "completed", outcome=outcome, exited=st.exited, released=st.released,
                   protected=st.protected)
        self.log.info("stop {} {} exit complete: {} ({})", st.stop_id, st.symbol, st.exited, outcome)
        if st.exited > 0 and outcome in STOP_OUTS:
            self.send(StoppedOut(st.symbol, st.account, self.ctx.clock.now()))

    # -- audit and alerts -------------------------------------------------------------------------

    def audit(self, st: Stop, reason: str, **inputs: Any) -> None:
        """One ``exit_plan`` audit record (the coordinator writes the trail)."""
        shown = {k: (f"{v.normalize():f}" if isinstance(v, Decimal) else
                     v.isoformat() if isinstance(v, datetime) else v)
                 for k, v in inputs.items() if v is not None}
        self.send(ExitPlanAudit(st.stop_id, st.symbol, reason, shown, self.ctx.clock.now()))

    def alert(self, severity: str, title: str, text: str, st: Stop) -> None:
        self.ctx.tell(self.alerts, Alert(severity, title, text, self.ctx.clock.now(), self.ctx.name,
                                         dedup_key=f"stops:{title}:{st.stop_id}"))
