"""An order group's decisions (rule 6), apart from its mailbox.

What the group calls for at each step: the next leg in priority order while
submitting (one leg in the gate at a time), the state moves (``Group``'s
state machine), the legging-exposure and leg-age check, and the rollback:
cancel every open leg, wait until none can fill, unwind what filled tier by
tier (most dangerous leg first), retry a failed unwind, and hand the residue
to the hedger when unwinding gives up. The desk owns the group's state
(``trading.group_state.Group``) and its timers; it decides through its
actor's context (the clock, timers to self) and hands every message to
``send(target, message)``, so the actor writes the group before anything it
decided leaves. The actor (``actors.order_group.OrderGroup``) feeds it
messages, runs the margin gate and persists the group while ``dirty``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from messages.alerts import Alert
from messages.control import CancelIntent, GroupAudit, HedgeRequest, OrderIntent
from messages.enums import OrderPurpose, OrderType, Side
from messages.types import Price, Quantity
from trading.group_settings import GroupSettings
from trading.group_spec import GroupSpec, LegSpec, is_drill
from trading.group_state import (FAILED, FILLED, LEG, PARTIALLY_FILLED, PENDING, ROLLED_BACK,
                                 ROLLING_BACK, SUBMITTING, UNWIND, ZERO, Group, GroupOrder,
                                 PendingIntent, make_tag)

if TYPE_CHECKING:
    from runtime.context import ActorContext

# -- timers the desk sets (to its actor only) ----------------------------------------------------


@dataclass(frozen=True)
class ExposureCheck:
    pass


@dataclass(frozen=True)
class IntentDue:
    tag: str


@dataclass(frozen=True)
class RetryDue:
    leg: int


@dataclass(frozen=True)
class LingerDone:
    pass


class GroupDesk:
    def __init__(self, ctx: ActorContext, send: Callable[[str, Any], None], *, group_id: str,
                 settings: GroupSettings, counts: Counter[str], coordinator: str, hedger: str,
                 alerts: str) -> None:
        self.ctx, self.send, self.group_id, self.cfg = ctx, send, group_id, settings
        self.counts = counts
        self.coordinator, self.hedger, self.alerts = coordinator, hedger, alerts
        self.g: Group | None = None
        #: legs whose failed unwind waits for its retry timer
        self.retry_wait: set[int] = set()
        #: the largest legging exposure seen, per symbol (signed)
        self.max_unhedged: dict[str, Decimal] = {}
        #: the group changed since the actor last wrote it
        self.dirty = False
        self._timers: set[int] = set()
        self._check_timer: int | None = None

    def group(self) -> Group:
        """The group's state, for the steps that run only once it was begun or rebuilt."""
        g = self.g
        if g is None:
            raise RuntimeError(f"order group {self.group_id} has no state yet")
        return g

    def begin(self, spec: GroupSpec) -> Group:
        g = self.g = Group(spec, self.ctx.clock.now())
        g.history.append((PENDING, "submitted", g.created_at))
        self.audit("submitted", None, legs=[leg_info(leg) for leg in g.legs])
        return g

    def start_checks(self) -> None:
        """The exposure and leg-age check, every ``exposure_check_s`` until the group ends."""
        self._check_timer = self.ctx.schedule(self.cfg.exposure_check_s, ExposureCheck(),
                                              interval_s=self.cfg.exposure_check_s)

    def stop_timers(self) -> None:
        for tid in self._timers:
            self.ctx.cancel_timer(tid)
        self.ctx.cancel_timer(self._check_timer)

    def timer(self, delay: float, msg: Any) -> None:
        self._timers.add(self.ctx.schedule(delay, msg))

    # -- answers ----------------------------------------------------------------------------------

    def order_failed(self, kind: str, leg: int, why: str, reason: str) -> None:
        """A leg or unwind refused, rejected, expired or unanswered."""
        g = self.group()
        if g.terminal or g.handoff:
            self.drive()
            return
        if kind == LEG:
            if g.state in (SUBMITTING, PARTIALLY_FILLED):
                self.rollback(reason, why)
            else:
                self.drive()
            return
        self._unwind_failed(leg, why)

    def retry_due(self, leg: int) -> None:
        """The retry delay of ``leg``'s failed unwind passed: it may be sent again."""
        self.retry_wait.discard(leg)
        self.drive()

    def check_exposure(self) -> None:
        """Track the legging exposure; an open leg older than ``leg_timeout_s``
        rolls the group back, an unwind that old is cancelled and counts as failed."""
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
                self.rollback("leg_timeout", f"{symbol} ({coid}) not filled in "
                                             f"{self.cfg.leg_timeout_s}s")
                return
            if o.kind == UNWIND:
                self._cancel(coid, o)
                self._unwind_failed(o.leg, f"unwind {symbol} ({coid}) not filled in "
                                           f"{self.cfg.leg_timeout_s}s")

    # -- the decision ------------------------------------------------------------------------------

    def drive(self) -> None:
        g = self.group()
        self.dirty = True
        if g.state in (SUBMITTING, PARTIALLY_FILLED):
            for leg in g.legs:  # priority order: one leg in the gate at a time
                if not g.sent(leg.index):
                    self._send_intent(LEG, leg.index, Side(leg.side), leg.qty, leg.price)
                    break
                if not g.accepted(leg.index):
                    break
            if g.complete():
                self.move(FILLED, "filled")
            elif g.any_fill() and g.state == SUBMITTING:
                self.move(PARTIALLY_FILLED, "first_fill")
        elif g.state == ROLLING_BACK:
            self._drive_rollback()
        self._settle()

    def _drive_rollback(self) -> None:
        g = self.group()
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
            self.move(ROLLED_BACK, "unwound")

    def rollback(self, reason: str, why: str) -> None:
        self.counts["rollbacks"] += 1
        g = self.group()
        self.move(ROLLING_BACK, reason, why=why, filled={leg.symbol: str(g.filled(leg.index))
                                                          for leg in g.legs})
        self._alert("warning", "order group rolling back", f"{self.group_id}: {why}")
        self.drive()

    def _unwind_failed(self, leg: int, why: str) -> None:
        g = self.group()
        n = g.unwind_failures[leg] = g.unwind_failures.get(leg, 0) + 1
        self.dirty = True
        self.audit("unwind_failed", None, why=why, attempt=n)
        if n < self.cfg.max_unwind_attempts:
            self.retry_wait.add(leg)
            self.timer(self.cfg.retry_s, RetryDue(leg))
        else:
            g.handoff = why  # once nothing can fill any more (_drive_rollback)
        self.drive()

    def _hand_off(self) -> None:
        """Unwinding is not possible: the hedger takes every leg's residue, shorts first.

        ``HedgeRequest.target_qty`` is this group's absolute target per symbol, so a
        short residue of 10 becomes a target of +10 in that symbol (the hedger sends
        only the delta, rule 7). The source is the group, and the hedger adds the
        targets of its sources, so two groups' residues in one symbol add up."""
        g = self.group()
        why = g.handoff
        residue = {}
        for leg in sorted(g.legs, key=lambda x: -x.priority):
            held = g.held(leg.index)
            if held > 0:
                g.handed_off[leg.index] = g.handed_off.get(leg.index, ZERO) + held
                residue[leg.symbol] = str(-leg.sign * held)
                self.send(self.hedger, HedgeRequest(leg.symbol, -leg.sign * held, g.spec.account,
                                                    self.ctx.clock.now(), f"group:{g.group_id}"))
        self.counts["handoffs"] += 1
        self.move(FAILED, "residue_to_hedger", why=why, hedge_targets=residue)
        self._alert("critical", "order group could not unwind",
                    f"{g.group_id}: {why}; residue handed to the hedger: {residue}")

    def fail(self, reason: str, **inputs: Any) -> None:
        self.move(FAILED, reason, approved=False, **inputs)
        self._settle()

    def move(self, state: str, reason: str, approved: bool | None = None, **inputs: Any) -> None:
        g = self.group()
        old = g.transition(state, reason, self.ctx.clock.now())
        self.dirty = True
        self.audit(reason, approved, previous=old, **inputs)
        if g.terminal:
            self.ctx.cancel_timer(self._check_timer)

    def _settle(self) -> None:
        g = self.group()
        if g.terminal and not g.settled and g.quiet():
            g.settled = True
            self.dirty = True
            # Linger: answers to a cancel that lost the race against a fill may still come.
            self.timer(self.cfg.leg_timeout_s, LingerDone())

    # -- sending ---------------------------------------------------------------------------------

    def _send_intent(self, kind: str, leg: int, side: Side, qty: Quantity,
                     price: Price | None) -> None:
        g = self.group()
        g.seq += 1
        p = PendingIntent(kind, leg, side.value, qty, self.ctx.clock.now())
        tag = make_tag(g.group_id, g.seq, p)
        g.pending[tag] = p
        spec = g.leg(leg)
        purpose = OrderPurpose.ENTRY if kind == LEG else OrderPurpose.ROLLBACK
        self.send(self.coordinator, OrderIntent(
            spec.symbol, side, qty, purpose, p.sent_at,
            order_type=OrderType.LIMIT if price is not None else OrderType.MARKET, price=price,
            reduce_only=kind == UNWIND, account=g.spec.account, owner=self.ctx.name, tag=tag,
            group_id=g.group_id, exit_plan=spec.exit_plan if kind == LEG else None))
        if kind == UNWIND:
            self.audit("unwind_sent", None, symbol=spec.symbol, side=side.value, qty=str(qty))
        self.timer(self.cfg.leg_timeout_s, IntentDue(tag))

    def _cancel(self, coid: str, o: GroupOrder) -> None:
        if not o.cancel_requested and not o.closed:
            o.cancel_requested = True
            self.dirty = True
            self.send(self.coordinator, CancelIntent(coid, self.ctx.clock.now()))

    def audit(self, reason: str, approved: bool | None, **inputs: Any) -> None:
        """One ``group_decision`` audit record (the coordinator writes the trail)."""
        g = self.group()
        self.send(self.coordinator, GroupAudit(
            g.group_id, reason, g.state, approved,
            {"group_id": g.group_id, "kind": g.spec.kind, "account": g.spec.account,
             **{k: plain(v) for k, v in inputs.items()}}, self.ctx.clock.now()))

    def _alert(self, severity: str, title: str, text: str) -> None:
        if is_drill(self.group_id):  # a deliberate failure: say so where people read it
            title, text = f"DRILL: {title}", f"{text} (a --drills exercise, not a real failure)"
        self.send(self.alerts, Alert(severity, title, text, self.ctx.clock.now(), self.ctx.name,
                                     dedup_key=f"groups:{title}:{self.group_id}"))


def leg_info(leg: LegSpec) -> dict[str, Any]:
    return {"symbol": leg.symbol, "side": leg.side, "qty": str(leg.qty), "role": leg.role,
            "priority": leg.priority, "price": None if leg.price is None else str(leg.price)}


def plain(value: Any) -> Any:
    """Audit inputs as msgpack- and JSON-safe values (Decimals as strings)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
