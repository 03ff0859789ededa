"""The coordinator: the only door to the broker's order API (rule 1).

Every order, whatever its purpose (entry, exit, stop, hedge, rollback),
arrives here as a ``Signal`` or an ``OrderIntent``; broker events about
orders come back here first. What to do about each is decided by the order
ledger (``trading.ledger.OrderLedger``: the book, order statuses, in-flight
orders, the risk state and the kill switch), which returns its decisions as
effects: messages, store writes, audit records. This actor feeds it and
carries them out, in order (``_do``): an order is audited, made durable in
the store (its audit record with it), and only then sent to the gateway.

On start the ledger is rebuilt from the store (``trading.recovery.rebuild``)
and, at every resync, settled against the broker (missed fills applied,
orders that never arrived resubmitted under the same client order id,
orders the broker ended closed), so a restart never loses or doubles an
order.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from messages.bounds import DEFAULT_BOUNDS, Bounds
from messages.control import (BrokerOrders, BrokerPositions, CancelIntent, ConnectivityChanged,
                              ExitPlanAudit, GroupAudit, KillSwitch, OrderIntent,
                              PortfolioRequest, RecoveryDone, StoppedOut)
from messages.connectivity import ResyncRequest
from messages.exchange import ExchangeError, OrderExpired
from messages.market import MarketStats, Quote
from messages.orders import CancelConfirmed, OrderAcked, OrderFilled, OrderRejected, Signal
from messages.persistence import Durable
from actors.flush_barrier import FlushBarrier
from actors.symbol import symbol_of_actor
from runtime import Actor, handles
from runtime.signals import RemoteDown, RemoteUp
from trading.effects import AuditRecord, Effects, Publish, Send, Sent, StoreWrite
from trading.ledger import OrderLedger, Peers
from trading.limits import Limits
from trading.order_retention import Retention
from trading.recovery import rebuild
from trading.relays import exit_plan_audit, group_audit, portfolio_snapshot


class Coordinator(FlushBarrier, Actor):
    """Feeds the order ledger every order, broker, market and control event,
    and carries out what it returns."""

    def __init__(self, ctx: Any, *, limits: Limits, symbols: list[str], venue: str = "sim",
                 gateway: str = "gateway", persistence: str = "persistence",
                 alerts: str = "alerts", stops: str | None = "stops",
                 require_recovery: bool = True, reconciler: str = "reconciler",
                 bounds: Bounds = DEFAULT_BOUNDS, retention: Retention | None = None) -> None:
        super().__init__(ctx)
        self.persistence = persistence
        services = ctx.services
        self.audit = services["audit"]
        self.ids = services["ids"]
        #: intents that came while no client order id was reserved, in order:
        #: given to the ledger once the ids land (never a wait in the handler)
        self.parked: deque[Signal | OrderIntent] = deque()
        self.ledger = OrderLedger(
            limits=limits, symbols=symbols, clock=ctx.clock, next_id=self._next_id,
            log=self.log, venue=venue, store=services.get("store"),
            peers=Peers(me=ctx.name, gateway=gateway, alerts=alerts, stops=stops,
                        reconciler=reconciler),
            require_recovery=require_recovery, bounds=bounds, retention=retention)

    def on_start(self) -> None:
        self.ledger.risk.kill.restore_published(self.ctx.cell.info)
        # What the previous instance queued at persistence (an order intent it
        # just approved) reaches the disk before the store is read, so it is
        # rebuilt and settled at this instance's first resync; read before
        # that, it was unknown here until the next process restart. The mail
        # waits meanwhile (actors.flush_barrier), the thread does not.
        self.hold_until_flushed(self._recover)

    def _recover(self) -> None:
        ledger = self.ledger
        if ledger.store is not None:
            rebuild(ledger, ledger.store)
        ledger.risk.pnl.rebuild()
        # Whether first start or restart: learn the stream's state and resync
        # with the broker before any risk-increasing order (rules 3 and 10).
        self.ctx.tell(ledger.peers.gateway, ResyncRequest("coordinator started",
                                                          self.ctx.clock.now()))
        self._publish()

    def on_idle(self) -> None:
        if self.parked:  # a reservation failed: ask again (the allocator paces it)
            self._unpark()
        self.audit.flush()
        self._publish()

    def on_stop(self) -> None:
        self.audit.flush()
        self._publish()

    def _do(self, fx: Effects) -> None:
        """Carry out the ledger's effects, in order. Audit records are queued
        on the audit log (persistence commits them with the next store write);
        store writes go to the persistence actor."""
        tell = self.ctx.tell
        for e in fx:
            if isinstance(e, Send):
                tell(e.to, e.message)
            elif isinstance(e, StoreWrite):
                tell(self.persistence, e.put)
            elif isinstance(e, AuditRecord):
                self.audit.record(**e.fields)
            elif isinstance(e, Publish):
                self._publish()
            elif isinstance(e, Sent):
                self.ledger.orders.stamp(e.client_order_id, self.ctx.clock.now())
            else:  # CrashPoint
                crash = self.ctx.services.get("crash_points")  # app.crash_points; None in production
                if crash is not None and crash(e.point, e.detail):
                    return  # the runtime is being killed here: nothing after the point

    # -- orders --------------------------------------------------------------------------

    @handles(Signal)
    def on_signal(self, sig: Signal) -> None:
        self._wish(sig)

    @handles(OrderIntent)
    def on_intent(self, it: OrderIntent) -> None:
        self._wish(it)

    def _wish(self, msg: Signal | OrderIntent) -> None:
        if self.parked or not self.ids.ready():  # no id reserved: decided when ids land
            self.parked.append(msg)
            return
        self._admit(msg)

    def _admit(self, msg: Signal | OrderIntent) -> None:
        if isinstance(msg, Signal):
            self._do(self.ledger.on_signal(msg))
        else:
            self._do(self.ledger.on_intent(msg))

    def _unpark(self) -> None:
        while self.parked and self.ids.ready():
            self._admit(self.parked.popleft())

    def _next_id(self) -> str:
        """The ledger's next client order id: one is reserved (``ids.ready``
        was checked before the intent was admitted), so this never waits."""
        coid = self.ids.try_next()
        if coid is None:  # pragma: no cover - admitted only with an id ready
            raise RuntimeError("no client order id reserved")
        return str(coid)

    @handles(Durable)
    def on_durable(self, msg: Durable) -> None:
        if self.ids.is_reply(msg):  # a block of client order ids reserved
            self.ids.landed(msg)
            self._unpark()
            return
        self._do(self.ledger.on_durable(msg))

    @handles(CancelIntent)
    def on_cancel_intent(self, msg: CancelIntent) -> None:
        self._do(self.ledger.on_cancel_intent(msg))

    @handles(OrderAcked)
    def on_acked(self, ev: OrderAcked) -> None:
        self._do(self.ledger.on_acked(ev))

    @handles(OrderRejected)
    def on_rejected(self, ev: OrderRejected) -> None:
        self._do(self.ledger.on_rejected(ev))

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        self._do(self.ledger.on_filled(ev))

    @handles(OrderExpired)
    def on_expired(self, ev: OrderExpired) -> None:
        self._do(self.ledger.on_expired(ev))

    @handles(CancelConfirmed)
    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        self._do(self.ledger.on_cancel_confirmed(ev))

    # -- the broker's view, the stream -------------------------------------------------

    @handles(ConnectivityChanged)
    def on_connectivity(self, msg: ConnectivityChanged) -> None:
        self._do(self.ledger.on_connectivity(msg))

    @handles(BrokerPositions)
    def on_broker_positions(self, msg: BrokerPositions) -> None:
        self._do(self.ledger.on_broker_positions(msg))

    @handles(BrokerOrders)
    def on_broker_orders(self, msg: BrokerOrders) -> None:
        self._do(self.ledger.on_broker_orders(msg))

    @handles(RecoveryDone)
    def on_recovery_done(self, msg: RecoveryDone) -> None:
        self.ledger.on_recovery_done(msg)

    # -- market and control ------------------------------------------------------------

    @handles(Quote)
    def on_quote(self, q: Quote) -> None:
        self._do(self.ledger.on_quote(q))

    @handles(MarketStats)
    def on_stats(self, s: MarketStats) -> None:
        self.ledger.risk.on_stats(s)

    @handles(ExchangeError)
    def on_venue_trouble(self, err: ExchangeError) -> None:
        self._do(self.ledger.risk.on_venue_trouble(err))

    @handles(KillSwitch)
    def on_kill_switch(self, msg: KillSwitch) -> None:
        self._do(self.ledger.risk.on_kill_switch(msg))

    @handles(StoppedOut)
    def on_stopped_out(self, msg: StoppedOut) -> None:
        self.ledger.risk.on_stopped_out(msg)

    @handles(RemoteDown)
    def on_remote_down(self, note: RemoteDown) -> None:
        """A symbol actor's remote host is lost: its symbol fails closed until it is back."""
        symbol = symbol_of_actor(note.name)
        if symbol is not None:
            self._do(self.ledger.risk.symbol_down(symbol, note.name, note.reason))

    @handles(RemoteUp)
    def on_remote_up(self, note: RemoteUp) -> None:
        symbol = symbol_of_actor(note.name)
        if symbol is not None:
            self._do(self.ledger.risk.symbol_up(symbol, note.name))

    # -- order groups and exit plans: the book for the margin gate, their audit records ---

    @handles(PortfolioRequest)
    def on_portfolio_request(self, msg: PortfolioRequest) -> None:
        """The book is the ledger's alone: a group's margin gate gets a copy, by message."""
        self._do(portfolio_snapshot(self.ledger, msg))

    @handles(ExitPlanAudit)
    def on_exit_plan_audit(self, msg: ExitPlanAudit) -> None:
        self._do(exit_plan_audit(self.ledger, msg))

    @handles(GroupAudit)
    def on_group_audit(self, msg: GroupAudit) -> None:
        self._do(group_audit(self.ledger, msg))

    # -- introspection -------------------------------------------------------------------

    def _publish(self) -> None:
        """The ledger's figures, as plain copies (cheap: this runs after every burst)."""
        ledger = self.ledger
        risk, pnl, kill = ledger.risk, ledger.risk.pnl, ledger.risk.kill
        self.ctx.cell.info = {
            "trading_state": kill.state.value,
            "kill_reason": kill.reason,
            "kill_since": kill.since.isoformat() if kill.since is not None else None,
            "recovering": risk.gate.recovering,
            "breaker": risk.gate.breaker.state,
            "breaker_open_total": risk.gate.breaker.open_count,
            "positions": dict(pnl.positions),
            "inflight": len(ledger.book.inflight),
            "parked_intents": len(self.parked),  # waiting for client order ids
            "counts": dict(ledger.counts),
            "trust": ledger.trust.tally.as_dict(),
            "unconfirmed_divergences": len(ledger.sync.unconfirmed),
            "rejected": dict(ledger.rejected),
            "blocked": list(ledger.blocked),
            "daily_pnl": str(pnl.daily),
            "pnl": {"realized": str(pnl.realized_total),
                    "unrealized": str(pnl.unrealized_total)},
            "orders_by_status": ledger.orders.by_status(),
            "max_daily_loss": str(ledger.limits.max_daily_loss),
            "by_symbol": {"submitted": dict(ledger.submitted_by_symbol),
                          "fills": dict(ledger.fills_by_symbol),
                          "realized": dict(pnl.realized_by_symbol),
                          "unrealized": dict(pnl.unrealized_by_symbol)},
        }
