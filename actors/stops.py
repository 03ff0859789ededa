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
State is persisted after every message, before the orders it decided leave,
and rebuilt on start from that record plus the coordinator's order and fill
records (``actors.rebuild_gate``), so a restart neither loses nor doubles
an exit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from actors.rebuild_gate import RebuildGate
from actors.stop_recovery import EXIT_KINDS, KEY_PREFIX, StopRecovery
from messages.alerts import Alert
from messages.control import (CancelIntent, ExitPlanAudit, IntentAccepted, IntentRejected,
                              OrderIntent, PositionChanged, ProtectPosition, StoppedOut, WatchQuotes)
from messages.enums import OrderPurpose, OrderType, Side
from messages.types import Quantity, as_price
from messages.exchange import OrderExpired
from messages.market import Quote
from messages.orders import CancelConfirmed, ExitPlan, OrderFilled, OrderRejected
from messages.persistence import Put, StoreDb
from runtime import Actor, handles
from runtime.info_rows import InfoRows
from trading.exit_plan import ExitSettings, ExitSettingsBook, ratchet_due, trail_level
from trading.stop_state import (CANCELLING, DONE, LIMIT, MARKET, PROTECTING, RESTING, TAKE_PROFIT,
                                TRIGGERED, ZERO, ExitOrder, Stop, parse_tag)
#: outcomes that are stop-outs (the coordinator's cool-down starts)
STOP_OUTS = (LIMIT, "market_fallback", "trailing")

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
class TimeLimitDue:
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
                 intent_timeout_s: float = 5.0,
                 settings: ExitSettingsBook | dict[str, Any] | None = None) -> None:
        super().__init__(ctx)
        self.slippage_bps = Decimal(slippage_bps)
        self.fallback_after_s, self.cancel_wait_alert_s = fallback_after_s, cancel_wait_alert_s
        #: per-symbol settings (rule 8's bound and delay, trailing steps, plan defaults)
        if isinstance(settings, dict):  # StopsConfig.exit_settings()
            settings = ExitSettingsBook.from_plain(settings)
        self.settings = settings or ExitSettingsBook(ExitSettings(
            slippage_bps=self.slippage_bps, fallback_after_s=fallback_after_s))
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
        #: completed plans by kind (summary.json ``exits``)
        self.exits: Counter[str] = Counter({k: 0 for k in EXIT_KINDS.values()})
        self.exit_qty: Any = Counter()   # symbol -> exited by completed stops
        self._dirty: set[str] = set()
        self._outbox: list[tuple[str, Any]] = []
        self._stop_rows = InfoRows(self._stop_row)
        #: PROTECTING stops by symbol, rebuilt with the watch set after every change
        self._protecting: dict[str, list[Stop]] = {}
        #: plans whose exit the venue refused as not reducing: they retry when
        #: the position next changes (or after max_retry_s), not on a backoff
        self._awaiting_position: set[str] = set()

    # -- inputs ---------------------------------------------------------------------------------

    @handles(ProtectPosition)
    def on_protect(self, msg: ProtectPosition) -> None:
        entry = msg.entry_order_id
        st = next((s for s in self.stops.values() if s.entry_id == entry), None)
        if st is None:
            # More of an entry can fill after its stop already exited: that is a new stop.
            n = self.entries_done[entry]
            stop_id = entry if n == 0 else f"{entry}#{n + 1}"
            st = self.stops[stop_id] = self._new_plan(stop_id, msg)
            self._audit(st, "plan_created", qty=msg.qty, entry_price=msg.entry_price,
                        stop_loss=st.stop_price, take_profit=st.take_profit,
                        trailing_distance=st.trail_distance, trailing_percent=st.trail_percent,
                        trail_level=st.trail_level, deadline=st.deadline)
        else:
            self._audit(st, "protection_added", qty=msg.qty, protected=st.protected + msg.qty)
        st.protected = Quantity(st.protected + msg.qty)
        self.counts["protected"] += 1
        self._drive(st)

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

    @handles(Quote)
    def on_quote(self, q: Quote) -> None:
        for st in self._protecting.get(q.symbol, ()):
            if st.phase != PROTECTING:
                continue
            if st.crossed(q):
                self._triggered(st, f"quote bid {q.bid} ask {q.ask}")
            elif st.trailing:
                self._trail(st, q)

    def _trail(self, st: Stop, q: Quote) -> None:
        """Exit when the quote crosses the trailing level; else move the level
        after the best price, in the position's favour only, at most once per
        step and interval (no churn: the level is ours, never re-posted)."""
        long = st.position_side is Side.BUY
        ref = q.bid if long else q.ask  # the price an exit would trade at
        level = st.trail_level
        if level is not None and (ref <= level if long else ref >= level):
            self._forced_exit(st, "trailing", f"quote {ref} crossed the trailing stop {level}")
            return
        anchor = st.trail_anchor
        if anchor is None or (ref > anchor if long else ref < anchor):
            st.trail_anchor = anchor = ref
        new = trail_level(anchor, st.position_side, st.trail_distance, st.trail_percent)
        cfg = self.settings.for_symbol(st.symbol)
        now = self.ctx.clock.now()
        if level is None:
            st.trail_level, st.trail_moved_at = new, now
            self._dirty.add(st.stop_id)
            self._audit(st, "trail_armed", trail_level=new, anchor=anchor)
            return
        if not ratchet_due(level, new, st.position_side, cfg.trailing_step_bps):
            return
        if st.trail_moved_at is not None and (
                (now - st.trail_moved_at).total_seconds() < cfg.trailing_interval_s - 1e-9):
            return
        st.trail_level, st.trail_moved_at = new, now
        self._dirty.add(st.stop_id)
        self.counts["trail_ratchets"] += 1
        self._audit(st, "trail_ratcheted", old=level, trail_level=new, anchor=anchor)

    @handles(PositionChanged)
    def on_position(self, msg: PositionChanged) -> None:
        self._learn_position(msg.symbol, msg.account, msg.qty, msg.cause)
        for stop_id in sorted(self._awaiting_position):  # the position spoke: retry now
            st = self.stops.get(stop_id)
            if st is None or (st.symbol, st.account) == (msg.symbol, msg.account):
                self._awaiting_position.discard(stop_id)
                if st is not None and st.retry_wait:
                    st.retry_wait = False
                    self._drive(st)

    def _learn_position(self, symbol: str, account: str, qty: Decimal, cause: str) -> None:
        """Protection above the position is released (oldest plans first): the
        position went by other means (a strategy's exit, the broker says so),
        and an exit of it could only be refused or, re-entered, sell too much."""
        for side in (Side.BUY, Side.SELL):
            plans = [s for s in self.stops.values() if s.symbol == symbol and s.account == account
                     and s.position_side is side and s.phase != DONE]
            if not plans:
                continue
            avail = max(ZERO, qty if side is Side.BUY else -qty)
            excess = sum((s.open_qty for s in plans), ZERO) - avail
            for st in plans:
                if excess <= 0:
                    break
                take = min(excess, max(ZERO, st.open_qty))
                if take <= 0:
                    continue
                excess -= take
                st.released += take
                st.release_cause = "strategy" if cause == "fill:entry" else "external"
                self.counts["released"] += 1
                self.log.info("plan {} {}: {} of its protection released ({}: position {})",
                              st.stop_id, symbol, take, cause, qty)
                self._audit(st, "released", qty=take, position=qty, cause=cause,
                            open_qty=st.open_qty)
                self._drive(st)

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
        if msg.position is not None:  # learn from the position before deciding to retry
            self._learn_position(st.symbol, st.account, msg.position, "refused")
        if st.open_qty <= 0:
            self._drive(st)  # nothing left to exit: the refusal is the answer
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
        if order.kind == TAKE_PROFIT:
            self._audit(st, "take_profit_filled", qty=ev.qty, price=ev.price,
                        open_qty=st.open_qty)
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
        if isinstance(ev, OrderRejected) and st.open_qty > 0:
            # A reduce-only refusal means the venue sees less to reduce than we
            # do: retrying on a timer would only repeat it. Wait for the
            # position to tell (PositionChanged: the broker-wins correction or
            # a fill), retrying at most once per max_retry_s meanwhile.
            doubt = "reduce" in ev.reason.lower()
            self._failed(st, f"the broker rejected {ev.client_order_id}: {ev.reason}",
                         await_position=doubt)
        else:
            self._drive(st)

    # -- timers ---------------------------------------------------------------------------------

    @handles(FallbackDue)
    def on_fallback_due(self, msg: FallbackDue) -> None:
        st = self.stops.get(msg.stop_id)
        if st is None or st.phase != TRIGGERED or st.triggered_at is None:
            return
        after = self.settings.for_symbol(st.symbol).fallback_after_s
        if (self.ctx.clock.now() - st.triggered_at).total_seconds() < after - 1e-6:
            return  # a timer from an earlier trigger or incarnation
        st.phase, st.fallback_at = CANCELLING, self.ctx.clock.now()
        self.counts["fallbacks"] += 1
        self.log.info("stop {} {}: not filled {}s after the trigger; cancelling the SL-limit, "
                      "market order only after the confirmation", st.stop_id, st.symbol, after)
        self.ctx.schedule(self.cancel_wait_alert_s, CancelWaitDue(st.stop_id))
        self._audit(st, "fallback", open_qty=st.open_qty)
        self._drive(st)

    @handles(TimeLimitDue)
    def on_time_limit(self, msg: TimeLimitDue) -> None:
        st = self.stops.get(msg.stop_id)
        if st is None or st.deadline is None or st.phase not in (PROTECTING, TRIGGERED):
            return
        if self.ctx.clock.now() < st.deadline - timedelta(microseconds=1):
            return  # a timer from an earlier incarnation
        self._forced_exit(st, "time_limit", f"time limit reached at {st.deadline.isoformat()}")

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
            self._awaiting_position.discard(st.stop_id)
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
        if open_qty <= 0 and st.phase != CANCELLING and st.resting_live() > 0:
            # One-cancels-other: nothing left to protect, so no resting order may stay.
            st.phase = CANCELLING
            self._audit(st, "oco_cancel", exited=st.exited, released=st.released)
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
                    self._cancel(st, (kind,), "resize")
                elif live < open_qty and not st.retry_wait:
                    self._send(st, kind, Quantity(open_qty - live))
        if st.phase == TRIGGERED:
            # the triggered SL-limit is working: never cancelled before the
            # fallback, only topped up for protection added since
            gap = open_qty - st.live(LIMIT) - st.live(MARKET)
            if gap > 0 and not st.retry_wait and st.stop_price is not None:
                self._send(st, LIMIT, Quantity(gap))
        elif st.phase == CANCELLING:  # CANCELLING: cancel every resting order, then wait until none can fill
            self._cancel(st, RESTING, "cancelling")
            if st.resting_live() > 0:  # confirmation or final fill report not in yet: wait
                return
            gap = open_qty - st.live(MARKET)
            if gap > 0 and not st.retry_wait:
                self._send(st, MARKET, Quantity(gap))
        if (open_qty <= 0 and not st.pending and st.resting_live() == 0
                and st.live(MARKET) == 0):
            self._complete(st)

    def _cancel(self, st: Stop, kinds: tuple[str, ...], why: str) -> None:
        """Ask once for the cancel of every working order of ``kinds`` (never resent)."""
        for coid, o in st.orders.items():
            if o.kind in kinds and not o.closed and not o.cancel_requested:
                o.cancel_requested = True
                self.counts["cancels_requested"] += 1
                if why == "resize":
                    self.counts["resizes"] += 1
                    self._audit(st, "resize", client_order_id=coid, kind=o.kind,
                                qty=o.live_qty, open_qty=st.open_qty)
                self._outbox.append((self.coordinator, CancelIntent(coid, self.ctx.clock.now())))

    def _forced_exit(self, st: Stop, kind: str, why: str) -> None:
        """A trailing stop or time limit: cancel every resting order, wait for the
        confirmations, then one market order for what is still open (rule 8's path)."""
        st.exit_kind = kind
        st.phase, st.fallback_at = CANCELLING, self.ctx.clock.now()
        self.counts[f"{kind}_exits_started"] += 1
        self.log.info("plan {} {}: {} exit ({})", st.stop_id, st.symbol, kind, why)
        self._audit(st, f"{kind}_triggered", why=why, open_qty=st.open_qty)
        self.ctx.schedule(self.cancel_wait_alert_s, CancelWaitDue(st.stop_id))
        self._drive(st)

    def _send(self, st: Stop, kind: str, qty: Quantity) -> None:
        st.seq += 1
        tag = f"{st.stop_id}|{st.seq}|{kind}|{qty}"
        st.pending[tag] = (kind, qty)
        now = self.ctx.clock.now()
        if kind == LIMIT:
            price = st.limit_price(self.settings.for_symbol(st.symbol).slippage_bps)
            intent = OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                                 order_type=OrderType.STOP_LIMIT, price=price,
                                 trigger_price=st.stop_price, reduce_only=True,
                                 account=st.account, owner=self.ctx.name, tag=tag)
        elif kind == TAKE_PROFIT:
            intent = OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                                 order_type=OrderType.LIMIT, price=as_price(st.take_profit),
                                 reduce_only=True, account=st.account, owner=self.ctx.name,
                                 tag=tag)
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
        self.ctx.schedule(self.settings.for_symbol(st.symbol).fallback_after_s,
                          FallbackDue(st.stop_id))
        self._audit(st, "triggered", why=why, stop_price=st.stop_price)

    def _failed(self, st: Stop, why: str, await_position: bool = False) -> None:
        """An exit order refused: retry with backoff; the position must not stay
        unprotected. One alert per plan: a refusal that repeats is counted, and
        the position (``PositionChanged``) ends the retries if it is gone."""
        st.failures += 1
        self.counts["exit_orders_refused"] += 1
        delay = min(self.max_retry_s, self.retry_s * 2 ** (st.failures - 1))
        if await_position:
            delay = self.max_retry_s
            self._awaiting_position.add(st.stop_id)
        st.retry_wait = True
        self.ctx.schedule(delay, RetryDue(st.stop_id))
        self._audit(st, "exit_refused", why=why, retry_in_s=delay, failures=st.failures)
        if not st.refusal_alerted:
            st.refusal_alerted = True
            self.counts["refusal_alerts"] += 1
            self._alert("warning", "stop-loss order refused",
                        f"{st.symbol}: {why}; retrying with backoff (alerted once per plan)", st)
        self._drive(st)

    def _outcome(self, st: Stop) -> str:
        if st.exit_kind is not None and st.exited > 0:
            return st.exit_kind
        market, tp, sl = (st.filled_by(MARKET), st.filled_by(TAKE_PROFIT), st.filled_by(LIMIT))
        if market > 0:
            return "market_fallback"
        if tp > 0 and tp >= sl:
            return TAKE_PROFIT
        if sl > 0:
            return LIMIT
        return st.release_cause or "external"

    def _complete(self, st: Stop) -> None:
        st.phase = DONE
        st.outcome = self._outcome(st)
        if st.outcome in (LIMIT, "market_fallback"):
            self.stop_exits[st.outcome] += 1
        self.exits[EXIT_KINDS.get(st.outcome, "external")] += 1
        self._audit(st, "completed", outcome=st.outcome, exited=st.exited, released=st.released,
                    protected=st.protected)
        self.exit_qty[st.symbol] += st.exited
        self.finished.update(st.orders)
        self.entries_done[st.entry_id] += 1
        for coid in st.orders:
            self.by_coid.pop(coid, None)
        self.log.info("stop {} {} exit complete: {} ({})", st.stop_id, st.symbol, st.exited, st.outcome)
        if st.exited > 0 and st.outcome in STOP_OUTS:
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
            if st.watches_quotes:
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
                self._outbox.append((self.coordinator, CancelIntent(coid, now)))
        self._drive(st)

    # -- helpers -------------------------------------------------------------------------------

    def _stop_of_tag(self, tag: str | None) -> Stop | None:
        stop_id = tag.split("|", 1)[0] if tag else None
        return self.stops.get(stop_id) if stop_id else None

    def _order(self, coid: str) -> tuple[Any, ExitOrder | None]:
        st = self.stops.get(self.by_coid.get(coid, ""))
        return (st, st.orders.get(coid)) if st is not None else (None, None)

    def _audit(self, st: Stop, reason: str, **inputs: Any) -> None:
        """One ``exit_plan`` audit record (the coordinator writes the trail)."""
        shown = {k: (f"{v.normalize():f}" if isinstance(v, Decimal) else
                     v.isoformat() if isinstance(v, datetime) else v)
                 for k, v in inputs.items() if v is not None}
        self._outbox.append((self.coordinator, ExitPlanAudit(st.stop_id, st.symbol, reason, shown,
                                                             self.ctx.clock.now())))

    def _alert(self, severity: str, title: str, text: str, st: Stop) -> None:
        self.ctx.tell(self.alerts, Alert(severity, title, text, self.ctx.clock.now(), self.ctx.name,
                                         dedup_key=f"stops:{title}:{st.stop_id}"))

    def _stop_row(self, stop_id: str) -> dict[str, Any] | None:
        s = self.stops.get(stop_id)
        if s is None:
            return None
        return {"symbol": s.symbol, "phase": s.phase, "stop_price": _s(s.stop_price),
                "protected": str(s.protected), "exited": str(s.exited), "orders": len(s.orders),
                "pending": len(s.pending), "take_profit": _s(s.take_profit),
                "trail_level": _s(s.trail_level), "released": str(s.released),
                "deadline": s.deadline.isoformat() if s.deadline else None}

    def _publish(self) -> None:
        exit_qty: Any = Counter(self.exit_qty)  # Decimal counts
        for st in self.stops.values():
            exit_qty[st.symbol] += st.exited
        self.ctx.cell.info = {
            "active": len(self.stops),
            "stop_exits": dict(self.stop_exits),
            "exits": dict(self.exits),
            "exit_qty": {s: f"{q.normalize():f}" for s, q in sorted(exit_qty.items())},
            "counts": dict(self.counts),
            "stops": self._stop_rows.snapshot(),
        }


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
