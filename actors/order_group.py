"""One order group (rule 6): legs out in priority order, all or nothing.

The failure this prevents: a credit spread's short leg fills, its long leg
is rejected, and the bot is left with a naked short it never meant to hold.
Here a group (``group-<id>``, a transient child of ``groups``) goes:

1. pending: ask the coordinator for the book (``PortfolioRequest``), value
   book + group on the shock grid on the shared executor
   (``trading.group_margin``), reject with ``worst_case_margin`` if the worst
   scenario needs more than ``margin_limit`` of the equity.
2. submitting: legs leave one at a time in priority order (protective and
   long first, covered shorts next, naked shorts last); the next leg goes
   when the gate accepted the previous one, so the protective leg always
   reaches the exchange first and a protective leg the gate refuses stops
   the shorts from ever being sent. Every leg is an ``OrderIntent`` to the
   coordinator (rule 1), owner this actor.
3. partially_filled -> filled. Meanwhile an interval timer checks the
   unhedged (legging) exposure every ``exposure_check_ms`` and the age of
   each open leg: a leg rejected, refused, expired or older than
   ``leg_timeout_s`` rolls the group back.
4. rolling_back: cancel every open leg and wait until none can fill, then
   unwind what filled with reduce-only ROLLBACK orders, most dangerous leg
   first (a short is bought back before its protection is sold). An unwind
   that fails ``max_unwind_attempts`` times hands every leg's residue to the
   hedger (``HedgeRequest``) and the group ends ``failed``.

State (``trading.group_state``) is written to the store after every message,
before the orders it decided leave; a restarted group rebuilds from that
record plus the coordinator's own order and fill records, so it neither
repeats a leg nor forgets one. Every step is one ``group_decision`` audit
record, written by the coordinator (the audit trail has one writer).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from actors.group_recovery import (KEY_PREFIX, ExposureCheck, GroupRecovery, GroupSettings,
                                   IntentDue, LingerDone, RetryDue, SnapshotDue, leg_info, plain)
from actors.rebuild_gate import RebuildGate
from messages.alerts import Alert
from messages.control import (CancelIntent, GroupAudit, HedgeRequest, IntentAccepted,
                              IntentRejected, OrderIntent, PortfolioRequest, PortfolioSnapshot)
from messages.enums import OrderPurpose, OrderType, Side
from messages.exchange import OrderExpired
from messages.orders import CancelConfirmed, OrderFilled, OrderRejected
from messages.types import Price, Quantity
from runtime import Actor, TaskDone, handles
from trading.group_margin import MarginVerdict, PortfolioView, Unpriced, build_legs, evaluate
from trading.group_spec import GroupSpec, is_drill
from trading.group_state import (FAILED, FILLED, LEG, PARTIALLY_FILLED, PENDING, ROLLED_BACK,
                                 ROLLING_BACK, SUBMITTING, UNWIND, ZERO, Group, GroupOrder,
                                 PendingIntent, make_tag, parse_tag)
from trading.reasons import Reason

__all__ = ["KEY_PREFIX", "GroupSettings", "OrderGroup"]


class OrderGroup(GroupRecovery, RebuildGate, Actor):
    def __init__(self, ctx, *, group_id: str, spec: GroupSpec | None = None,
                 settings: GroupSettings = GroupSettings(), resume: bool = False,
                 coordinator: str = "coordinator", hedger: str = "hedger",
                 persistence: str = "persistence", alerts: str = "alerts") -> None:
        super().__init__(ctx)
        self.group_id, self.spec, self.cfg = group_id, spec, settings
        self.resume = resume
        self.coordinator, self.hedger = coordinator, hedger
        self.persistence, self.alerts = persistence, alerts
        self.g: Group | None = None
        self.request_id: str | None = None
        self.retry_wait: set[int] = set()
        self.counts: Counter = Counter()
        self.max_unhedged: dict[str, Decimal] = {}
        self._timers: set[int] = set()
        self._check_timer: int | None = None
        self._dirty = False
        self._outbox: list[tuple[str, Any]] = []

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.group_id

    # -- lifecycle ------------------------------------------------------------------------------

    def on_start(self) -> None:
        if self.resume or self.ctx.cell.incarnation > 1 or self.spec is None:
            self.begin_rebuild()  # a restart: the store knows more than our arguments
        else:
            self._begin(self.spec)
            self.after_message()
        self._publish()

    def on_stop(self) -> None:
        for tid in self._timers:
            self.ctx.cancel_timer(tid)
        self.ctx.cancel_timer(self._check_timer)
        self._publish()

    def _begin(self, spec: GroupSpec) -> None:
        g = self.g = Group(spec, self.ctx.clock.now())
        g.history.append((PENDING, "submitted", g.created_at))
        self._audit("submitted", None, legs=[leg_info(leg) for leg in g.legs])
        self._request_book()

    # -- the margin gate --------------------------------------------------------------------------

    def _request_book(self) -> None:
        g = self._group()
        g.seq += 1
        self.request_id = f"{g.group_id}|book|{g.seq}"
        self._send(self.coordinator, PortfolioRequest(self.ctx.name, self.request_id,
                                                      g.spec.account, self.ctx.clock.now()))
        self._timer(self.cfg.leg_timeout_s, SnapshotDue(self.request_id))
        self._dirty = True

    @handles(PortfolioSnapshot)
    def on_snapshot(self, msg: PortfolioSnapshot) -> None:
        g = self.g
        if g is None or g.state != PENDING or msg.request_id != self.request_id:
            return
        self.request_id = None
        book = PortfolioView(dict(msg.positions), {s: (b, s_) for s, b, s_ in msg.pending},
                             {s: (b, a) for s, b, a in msg.quotes}, msg.equity,
                             self.ctx.clock.now())
        try:
            portfolio, legs = build_legs(g.spec, book)
        except Unpriced as exc:
            self._fail(str(Reason.NO_MARKET_DATA), why=str(exc))
            return
        self.ctx.submit(evaluate, portfolio, legs, msg.equity, self.cfg.margin_limit,
                        self.cfg.grid, tag=("margin", g.group_id))

    @handles(SnapshotDue)
    def on_snapshot_due(self, msg: SnapshotDue) -> None:
        if self.g is not None and self.g.state == PENDING and msg.request_id == self.request_id:
            self._fail("no_portfolio_snapshot", why=f"no answer in {self.cfg.leg_timeout_s}s")

    @handles(TaskDone)
    def on_task_done(self, msg: TaskDone) -> None:
        g = self.g
        if g is None or g.state != PENDING or msg.tag != ("margin", g.group_id):
            return
        if not msg.ok:
            self._fail("margin_error", why=repr(msg.error))
            return
        verdict: MarginVerdict = msg.result
        g.margin = verdict.inputs()
        if not verdict.ok:
            self._fail(str(Reason.WORST_CASE_MARGIN), **g.margin)
            return
        g.submitted_at = self.ctx.clock.now()
        self._move(SUBMITTING, "approved", approved=True, **g.margin)
        self._check_timer = self.ctx.schedule(self.cfg.exposure_check_s, ExposureCheck(),
                                              interval_s=self.cfg.exposure_check_s)
        self._drive()

    # -- answers from the coordinator and the broker -------------------------------------------

    @handles(IntentAccepted)
    def on_accepted(self, msg: IntentAccepted) -> None:
        g = self.g
        if g is None or msg.client_order_id in g.orders:
            return
        p = g.pending.pop(msg.tag or "", None) or parse_tag(msg.tag or "", self.ctx.clock.now())
        if p is None:
            return
        g.orders[msg.client_order_id] = GroupOrder(p.kind, p.leg, p.side, p.qty, p.sent_at)
        self._dirty = True
        self._drive()

    @handles(IntentRejected)
    def on_intent_rejected(self, msg: IntentRejected) -> None:
        g = self.g
        p = g.pending.pop(msg.tag or "", None) if g is not None else None
        if p is None or g is None:
            return
        self._dirty = True
        why = f"the gate refused {p.kind} {g.leg(p.leg).symbol}: {msg.reason}"
        self._order_failed(p.kind, p.leg, why, "leg_refused")

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        o = self.g.orders.get(ev.client_order_id) if self.g is not None else None
        if o is None or ev.fill_id in o.fills:
            return
        o.fills[ev.fill_id] = ev.qty
        if ev.leaves_qty == 0 or o.filled >= o.qty:
            o.closed = o.closed or "filled"
        self.counts["fills"] += 1
        self._dirty = True
        self._drive()

    @handles(OrderRejected, OrderExpired)
    def on_order_closed(self, ev: Any) -> None:
        o = self.g.orders.get(ev.client_order_id) if self.g is not None else None
        if o is None or o.closed:
            return
        rejected = isinstance(ev, OrderRejected)
        o.closed = "rejected" if rejected else "expired"
        self._dirty = True
        why = (f"{o.kind} {self._group().leg(o.leg).symbol} ({ev.client_order_id}) "
               f"{'rejected: ' + ev.reason if rejected else 'expired'}")
        self._order_failed(o.kind, o.leg, why, "leg_rejected" if rejected else "leg_expired")

    @handles(CancelConfirmed)
    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        o = self.g.orders.get(ev.client_order_id) if self.g is not None else None
        if o is None:
            return
        o.closed = o.closed or ev.outcome.value
        self._dirty = True
        self._drive()

    def _order_failed(self, kind: str, leg: int, why: str, reason: str) -> None:
        g = self._group()
        if g.terminal or g.handoff:
            self._drive()
            return
        if kind == LEG:
            if g.state in (SUBMITTING, PARTIALLY_FILLED):
                self._rollback(reason, why)
            else:
                self._drive()
            return
        self._unwind_failed(leg, why)

    # -- timers ---------------------------------------------------------------------------------

    @handles(ExposureCheck)
    def on_exposure_check(self, _msg: ExposureCheck) -> None:
        g = self.g
        if g is None or g.terminal:
            self.ctx.cancel_timer(self._check_timer)
            return
        self.counts["exposure_checks"] += 1
        for sym, qty in g.unhedged().items():
            if abs(qty) > abs(self.max_unhedged.get(sym, ZERO)):
                self.max_unhedged[sym] = qty
        now = self.ctx.clock.now()
        for coid, o in g.open_orders():
            if o.cancel_requested or (now - o.sent_at).total_seconds() < self.cfg.leg_timeout_s:
                continue
            symbol = g.leg(o.leg).symbol
            if o.kind == LEG and g.state in (SUBMITTING, PARTIALLY_FILLED):
                self._rollback("leg_timeout", f"{symbol} ({coid}) not filled in "
                                              f"{self.cfg.leg_timeout_s}s")
                return
            if o.kind == UNWIND:
                self._cancel(coid, o)
                self._unwind_failed(o.leg, f"unwind {symbol} ({coid}) not filled in "
                                           f"{self.cfg.leg_timeout_s}s")

    @handles(IntentDue)
    def on_intent_due(self, msg: IntentDue) -> None:
        g = self.g
        if g is None or msg.tag not in g.pending:
            return
        store = self.ctx.services.get("store")
        if store is not None:  # lost on the way, or only slow? adopt what the gate approved
            self._adopt(store.read_all())
        p = g.pending.pop(msg.tag, None)
        if p is None:
            return
        self._dirty = True
        self._order_failed(p.kind, p.leg, f"no answer to {p.kind} intent {msg.tag}", "leg_timeout")

    @handles(RetryDue)
    def on_retry_due(self, msg: RetryDue) -> None:
        self.retry_wait.discard(msg.leg)
        self._drive()

    @handles(LingerDone)
    def on_linger_done(self, _msg: LingerDone) -> None:
        if self.g is None or (self.g.settled and self.g.quiet()):
            self.ctx.stop_self("group settled")

    # -- the decision ------------------------------------------------------------------------------

    def _drive(self) -> None:
        g = self._group()
        self._dirty = True
        if g.state in (SUBMITTING, PARTIALLY_FILLED):
            for leg in g.legs:  # priority order: one leg in the gate at a time
                if not g.sent(leg.index):
                    self._send_intent(LEG, leg.index, Side(leg.side), leg.qty, leg.price)
                    break
                if not g.accepted(leg.index):
                    break
            if g.complete():
                self._move(FILLED, "filled")
            elif g.any_fill() and g.state == SUBMITTING:
                self._move(PARTIALLY_FILLED, "first_fill")
        elif g.state == ROLLING_BACK:
            self._drive_rollback()
        self._settle()

    def _drive_rollback(self) -> None:
        g = self._group()
        waiting = bool([p for p in g.pending.values() if p.kind == LEG or g.handoff])
        for coid, o in g.open_orders():
            if o.kind == LEG or g.handoff:
                self._cancel(coid, o)
                waiting = True
        if waiting:
            return  # an order that can still fill would change what must be unwound
        if g.handoff:
            self._hand_off()
            return
        for priority in sorted({leg.priority for leg in g.legs}, reverse=True):
            tier_clear = True
            for leg in (x for x in g.legs if x.priority == priority):
                held = g.held(leg.index)
                todo = held - g.live(UNWIND, leg.index)
                if todo > 0 and leg.index not in self.retry_wait:
                    self._send_intent(UNWIND, leg.index, Side(leg.side).opposite(), Quantity(todo), None)
                if held > 0:
                    tier_clear = False
            if not tier_clear:
                return  # the protection stays until what it protects is closed
        if g.quiet():
            self._move(ROLLED_BACK, "unwound")

    def _rollback(self, reason: str, why: str) -> None:
        self.counts["rollbacks"] += 1
        g = self._group()
        self._move(ROLLING_BACK, reason, why=why, filled={leg.symbol: str(g.filled(leg.index))
                                                           for leg in g.legs})
        self._alert("warning", "order group rolling back", f"{self.group_id}: {why}")
        self._drive()

    def _unwind_failed(self, leg: int, why: str) -> None:
        g = self._group()
        n = g.unwind_failures[leg] = g.unwind_failures.get(leg, 0) + 1
        self._dirty = True
        self._audit("unwind_failed", None, why=why, attempt=n)
        if n < self.cfg.max_unwind_attempts:
            self.retry_wait.add(leg)
            self._timer(self.cfg.retry_s, RetryDue(leg))
        else:
            g.handoff = why  # once nothing can fill any more (_drive_rollback)
        self._drive()

    def _hand_off(self) -> None:
        """Unwinding is not possible: the hedger takes every leg's residue, shorts first.

        ``HedgeRequest.target_qty`` is this group's absolute target per symbol, so a
        short residue of 10 becomes a target of +10 in that symbol (the hedger sends
        only the delta, rule 7). The source is the group, and the hedger adds the
        targets of its sources, so two groups' residues in one symbol add up."""
        g = self._group()
        why = g.handoff
        residue = {}
        for leg in sorted(g.legs, key=lambda x: -x.priority):
            held = g.held(leg.index)
            if held > 0:
                g.handed_off[leg.index] = g.handed_off.get(leg.index, ZERO) + held
                residue[leg.symbol] = str(-leg.sign * held)
                self._send(self.hedger, HedgeRequest(leg.symbol, -leg.sign * held, g.spec.account,
                                                     self.ctx.clock.now(), f"group:{g.group_id}"))
        self.counts["handoffs"] += 1
        self._move(FAILED, "residue_to_hedger", why=why, hedge_targets=residue)
        self._alert("critical", "order group could not unwind",
                    f"{g.group_id}: {why}; residue handed to the hedger: {residue}")

    def _fail(self, reason: str, **inputs: Any) -> None:
        self._move(FAILED, reason, approved=False, **inputs)
        self._settle()

    def _move(self, state: str, reason: str, approved: bool | None = None, **inputs: Any) -> None:
        g = self._group()
        old = g.transition(state, reason, self.ctx.clock.now())
        self._dirty = True
        self._audit(reason, approved, previous=old, **inputs)
        if g.terminal:
            self.ctx.cancel_timer(self._check_timer)

    def _settle(self) -> None:
        g = self._group()
        if g.terminal and not g.settled and g.quiet():
            g.settled = True
            self._dirty = True
            # Linger: answers to a cancel that lost the race against a fill may still come.
            self._timer(self.cfg.leg_timeout_s, LingerDone())

    # -- sending ---------------------------------------------------------------------------------

    def _send_intent(self, kind: str, leg: int, side: Side, qty: Quantity,
                     price: Price | None) -> None:
        g = self._group()
        g.seq += 1
        p = PendingIntent(kind, leg, side.value, qty, self.ctx.clock.now())
        tag = make_tag(g.group_id, g.seq, p)
        g.pending[tag] = p
        spec = g.leg(leg)
        purpose = OrderPurpose.ENTRY if kind == LEG else OrderPurpose.ROLLBACK
        self._send(self.coordinator, OrderIntent(
            spec.symbol, side, qty, purpose, p.sent_at,
            order_type=OrderType.LIMIT if price is not None else OrderType.MARKET, price=price,
            reduce_only=kind == UNWIND, account=g.spec.account, owner=self.ctx.name, tag=tag,
            group_id=g.group_id, exit_plan=spec.exit_plan if kind == LEG else None))
        if kind == UNWIND:
            self._audit("unwind_sent", None, symbol=spec.symbol, side=side.value, qty=str(qty))
        self._timer(self.cfg.leg_timeout_s, IntentDue(tag))

    def _cancel(self, coid: str, o: GroupOrder) -> None:
        if not o.cancel_requested and not o.closed:
            o.cancel_requested = True
            self._dirty = True
            self._send(self.coordinator, CancelIntent(coid, self.ctx.clock.now()))

    def _send(self, target: str, msg: Any) -> None:
        self._outbox.append((target, msg))

    def _timer(self, delay: float, msg: Any) -> None:
        self._timers.add(self.ctx.schedule(delay, msg))

    def _audit(self, reason: str, approved: bool | None, **inputs: Any) -> None:
        g = self._group()
        self._send(self.coordinator, GroupAudit(
            g.group_id, reason, g.state, approved,
            {"group_id": g.group_id, "kind": g.spec.kind, "account": g.spec.account,
             **{k: plain(v) for k, v in inputs.items()}}, self.ctx.clock.now()))

    def _alert(self, severity: str, title: str, text: str) -> None:
        if is_drill(self.group_id):  # a deliberate failure: say so where people read it
            title, text = f"DRILL: {title}", f"{text} (a --drills exercise, not a real failure)"
        self._send(self.alerts, Alert(severity, title, text, self.ctx.clock.now(), self.ctx.name,
                                      dedup_key=f"groups:{title}:{self.group_id}"))
