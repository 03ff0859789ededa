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

The group is composed of parts that own their state: its decisions
(``trading.group_desk.GroupDesk``: the legs, the rollback, the hand-off,
the exposure check) own the group's state (``trading.group_state``), whose
orders track their fills (``trading.fill_tracking``). This actor runs the
margin gate, turns messages into the desk's steps, and persists: the state
is written to the store after every message, before the orders it decided
leave; a restarted group is rebuilt by ``trading.group_rebuild`` from that
record plus the coordinator's own order and fill records, so it neither
repeats a leg nor forgets one. Every step is one ``group_decision`` audit
record, written by the coordinator (the audit trail has one writer).
"""

from __future__ import annotations


from collections import Counter
from dataclasses import dataclass
from typing import Any

from actors.rebuild_gate import RebuildGate
from messages.control import IntentAccepted, IntentRejected, PortfolioRequest, PortfolioSnapshot
from messages.exchange import OrderExpired
from messages.orders import CancelConfirmed, OrderFilled, OrderRejected
from messages.persistence import Put, StoreDb
from runtime import Actor, TaskDone, handles
from trading.group_desk import (ExposureCheck, GroupDesk, IntentDue, LingerDone, RetryDue,
                                leg_info)
from trading.group_margin import MarginVerdict, PortfolioView, Unpriced, build_legs, evaluate
from trading.group_rebuild import KEY_PREFIX, adopt_orders, rebuild_group
from trading.group_settings import GroupSettings
from trading.group_spec import GroupSpec
from trading.group_state import PENDING, SUBMITTING, Group, GroupOrder, parse_tag
from trading.reasons import Reason

__all__ = ["KEY_PREFIX", "GroupSettings", "OrderGroup"]


@dataclass(frozen=True)
class SnapshotDue:
    """Timer: the coordinator did not answer the margin gate's book request."""

    request_id: str


class OrderGroup(RebuildGate, Actor):
    def __init__(self, ctx, *, group_id: str, spec: GroupSpec | None = None,
                 settings: GroupSettings = GroupSettings(), resume: bool = False,
                 coordinator: str = "coordinator", hedger: str = "hedger",
                 persistence: str = "persistence", alerts: str = "alerts") -> None:
        super().__init__(ctx)
        self.group_id, self.spec, self.cfg = group_id, spec, settings
        self.resume = resume
        self.coordinator, self.persistence = coordinator, persistence
        self.request_id: str | None = None
        self.counts: Counter[str] = Counter()
        self._outbox: list[tuple[str, Any]] = []
        self.desk = GroupDesk(ctx, self._send, group_id=group_id, settings=settings,
                              counts=self.counts, coordinator=coordinator, hedger=hedger,
                              alerts=alerts)

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.group_id

    @property
    def g(self) -> Group | None:
        return self.desk.g

    def _send(self, target: str, msg: Any) -> None:
        """Once this message's changes are written."""
        self._outbox.append((target, msg))

    # -- lifecycle ------------------------------------------------------------------------------

    def on_start(self) -> None:
        if self.resume or self.ctx.cell.incarnation > 1 or self.spec is None:
            self.begin_rebuild()  # a restart: the store knows more than our arguments
        else:
            self._begin(self.spec)
            self.after_message()
        self._publish()

    def on_stop(self) -> None:
        self.desk.stop_timers()
        self._publish()
        # The desk sends through this instance (a cycle): a group lives for one
        # group and many come and go, so let its memory go now, not at the
        # garbage collector's next full collection.
        self.desk.send = _stopped

    def _begin(self, spec: GroupSpec) -> None:
        self.desk.begin(spec)
        self._request_book()

    # -- the margin gate --------------------------------------------------------------------------

    def _request_book(self) -> None:
        g = self.desk.group()
        g.seq += 1
        self.request_id = f"{g.group_id}|book|{g.seq}"
        self._send(self.coordinator, PortfolioRequest(self.ctx.name, self.request_id,
                                                      g.spec.account, self.ctx.clock.now()))
        self.desk.timer(self.cfg.leg_timeout_s, SnapshotDue(self.request_id))
        self.desk.dirty = True

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
            self.desk.fail(str(Reason.NO_MARKET_DATA), why=str(exc))
            return
        self.ctx.submit(evaluate, portfolio, legs, msg.equity, self.cfg.margin_limit,
                        self.cfg.grid, tag=("margin", g.group_id))

    @handles(SnapshotDue)
    def on_snapshot_due(self, msg: SnapshotDue) -> None:
        if self.g is not None and self.g.state == PENDING and msg.request_id == self.request_id:
            self.desk.fail("no_portfolio_snapshot", why=f"no answer in {self.cfg.leg_timeout_s}s")

    @handles(TaskDone)
    def on_task_done(self, msg: TaskDone) -> None:
        g = self.g
        if g is None or g.state != PENDING or msg.tag != ("margin", g.group_id):
            return
        if not msg.ok:
            self.desk.fail("margin_error", why=repr(msg.error))
            return
        verdict: MarginVerdict = msg.result
        g.margin = verdict.inputs()
        if not verdict.ok:
            self.desk.fail(str(Reason.WORST_CASE_MARGIN), **g.margin)
            return
        g.submitted_at = self.ctx.clock.now()
        self.desk.move(SUBMITTING, "approved", approved=True, **g.margin)
        self.desk.start_checks()
        self.desk.drive()

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
        self.desk.dirty = True
        self.desk.drive()

    @handles(IntentRejected)
    def on_intent_rejected(self, msg: IntentRejected) -> None:
        g = self.g
        p = g.pending.pop(msg.tag or "", None) if g is not None else None
        if p is None or g is None:
            return
        self.desk.dirty = True
        why = f"the gate refused {p.kind} {g.leg(p.leg).symbol}: {msg.reason}"
        self.desk.order_failed(p.kind, p.leg, why, "leg_refused")

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        o = self.g.orders.get(ev.client_order_id) if self.g is not None else None
        if o is None or not o.apply_fill(ev.fill_id, ev.qty, ev.leaves_qty):
            return
        self.counts["fills"] += 1
        self.desk.dirty = True
        self.desk.drive()

    @handles(OrderRejected, OrderExpired)
    def on_order_closed(self, ev: Any) -> None:
        o = self.g.orders.get(ev.client_order_id) if self.g is not None else None
        if o is None or o.closed:
            return
        rejected = isinstance(ev, OrderRejected)
        o.close("rejected" if rejected else "expired")
        self.desk.dirty = True
        why = (f"{o.kind} {self.desk.group().leg(o.leg).symbol} ({ev.client_order_id}) "
               f"{'rejected: ' + ev.reason if rejected else 'expired'}")
        self.desk.order_failed(o.kind, o.leg, why, "leg_rejected" if rejected else "leg_expired")

    @handles(CancelConfirmed)
    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        o = self.g.orders.get(ev.client_order_id) if self.g is not None else None
        if o is None:
            return
        o.close(ev.outcome.value)
        self.desk.dirty = True
        self.desk.drive()

    # -- timers ---------------------------------------------------------------------------------

    @handles(ExposureCheck)
    def on_exposure_check(self, _msg: ExposureCheck) -> None:
        self.desk.check_exposure()

    @handles(IntentDue)
    def on_intent_due(self, msg: IntentDue) -> None:
        g = self.g
        if g is None or msg.tag not in g.pending:
            return
        store = self.ctx.services.get("store")
        if store is not None:  # lost on the way, or only slow? adopt what the gate approved
            self._adopted(adopt_orders(g, store.read_all(), self.ctx.name))
        p = g.pending.pop(msg.tag, None)
        if p is None:
            return
        self.desk.dirty = True
        self.desk.order_failed(p.kind, p.leg, f"no answer to {p.kind} intent {msg.tag}",
                               "leg_timeout")

    @handles(RetryDue)
    def on_retry_due(self, msg: RetryDue) -> None:
        self.desk.retry_due(msg.leg)

    @handles(LingerDone)
    def on_linger_done(self, _msg: LingerDone) -> None:
        if self.g is None or (self.g.settled and self.g.quiet()):
            self.ctx.stop_self("group settled")

    # -- persistence and recovery ------------------------------------------------------------------

    def persist_changes(self) -> None:
        if self.desk.dirty and self.g is not None:
            self.ctx.tell(self.persistence, Put(StoreDb.GROUPS, self.key, self.g.record()))
        self.desk.dirty = False

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:
        rebuilt = rebuild_group(snapshot, self.key, self.ctx.name)
        if rebuilt.unreadable is not None:
            self.log.error("unreadable group record {}: {!r}", self.key, rebuilt.unreadable)
        self.desk.g = rebuilt.group
        if rebuilt.group is None:
            if self.spec is None:
                self.log.error("group {}: no record and no spec; nothing to resume", self.group_id)
                self.ctx.stop_self("nothing to resume")
                return
            self._begin(self.spec)
            return
        self.counts["restarts"] += 1
        self._adopted(rebuilt.adopted)
        self._resume()

    def _adopted(self, adopted: list[str]) -> None:
        self.counts["adopted_orders"] += len(adopted)
        self.desk.dirty = self.desk.dirty or bool(adopted)

    def _resume(self) -> None:
        g = self.desk.group()
        self.desk.dirty = True
        if g.state == PENDING:
            self._request_book()
            return
        if not g.terminal:
            self.desk.start_checks()
        for tag in g.pending:
            self.desk.timer(self.cfg.leg_timeout_s, IntentDue(tag))
        if g.settled:
            self.desk.timer(0.0, LingerDone())
            return
        self.desk.drive()

    # -- introspection --------------------------------------------------------------------------

    def _publish(self) -> None:
        g = self.g
        self.ctx.cell.info = {} if g is None else {
            "group_id": g.group_id, "kind": g.spec.kind, "state": g.state, "reason": g.reason,
            "settled": g.settled,
            "legs": [{**leg_info(x), "filled": str(g.filled(x.index)),
                      "held": str(g.held(x.index))} for x in g.legs],
            "unhedged": {s: str(q) for s, q in g.unhedged().items()},
            "max_unhedged": {s: str(q) for s, q in self.desk.max_unhedged.items()},
            "open_orders": len(g.open_orders()), "pending": len(g.pending),
            "margin": g.margin, "counts": dict(self.counts),
        }


def _stopped(target: str, msg: Any) -> None:
    """A stopped group's desk sends nothing (nothing runs after ``on_stop``)."""
