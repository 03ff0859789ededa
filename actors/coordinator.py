"""The coordinator: the only door to the broker's order API (rule 1).

Every order, whatever its purpose (entry, exit, stop, hedge, rollback),
arrives here as a ``Signal`` or an ``OrderIntent``; broker events about
orders come back here first. What to do about each is decided by the order
ledger (``trading.ledger.OrderLedger``: the book, order statuses, in-flight
orders, the risk state and the kill switch), which returns its decisions as
effects: messages, store writes, audit records. This actor feeds it and
carries them out, in order (``_do``): an order is audited, made durable in
the store, and only then sent to the gateway.

On start the ledger is rebuilt from the store (``trading.recovery.rebuild``)
and, at every resync, settled against the broker (missed fills applied,
orders that never arrived resubmitted under the same client order id,
orders the broker ended closed), so a restart never loses or doubles an
order.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from messages.bounds import DEFAULT_BOUNDS, Bounds
from messages.control import (BrokerOrders, BrokerPositions, CancelIntent, ConnectivityChanged,
                              ExitPlanAudit, GroupAudit, KillSwitch, OrderIntent,
                              PortfolioRequest, RecoveryDone, StoppedOut)
from messages.connectivity import ResyncRequest
from messages.exchange import ExchangeError, OrderExpired
from messages.market import MarketStats, Quote
from messages.orders import CancelConfirmed, OrderAcked, OrderFilled, OrderRejected, Signal
from messages.persistence import Durable, Flush
from actors.symbol import symbol_of_actor
from runtime import Actor, handles
from runtime.dispatcher import managed_blocking
from runtime.signals import RemoteDown, RemoteUp
from trading.effects import (AuditRecord, Effects, FlushAudit, Publish, Send, Sent,
                             StoreWrite)
from trading.ledger import OrderLedger, Peers
from trading.limits import Limits
from trading.order_retention import Retention
from trading.recovery import rebuild
from trading.relays import exit_plan_audit, group_audit, portfolio_snapshot


class Coordinator(Actor):
    """Feeds the order ledger every order, broker, market and control event,
    and carries out what it returns."""

    #: how long a (re)starting coordinator waits for persistence's start-up flush
    flush_timeout_s = 5.0

    def __init__(self, ctx: Any, *, limits: Limits, symbols: list[str], venue: str = "sim",
                 gateway: str = "gateway", persistence: str = "persistence",
                 alerts: str = "alerts", stops: str | None = "stops",
                 require_recovery: bool = True, reconciler: str = "reconciler",
                 bounds: Bounds = DEFAULT_BOUNDS, retention: Retention | None = None) -> None:
        super().__init__(ctx)
        self.persistence = persistence
        services = ctx.services
        self.audit = services["audit"]
        self.ledger = OrderLedger(
            limits=limits, symbols=symbols, clock=ctx.clock, next_id=services["ids"].next,
            log=self.log, venue=venue, store=services.get("store"),
            peers=Peers(me=ctx.name, gateway=gateway, alerts=alerts, stops=stops,
                        reconciler=reconciler),
            require_recovery=require_recovery, bounds=bounds, retention=retention)

    def on_start(self) -> None:
        ledger = self.ledger
        ledger.risk.kill.restore_published(self.ctx.cell.info)
        if ledger.store is not None:
            self._flush_persistence()
            rebuild(ledger, ledger.store)
        ledger.risk.pnl.rebuild()
        # Whether first start or restart: learn the stream's state and resync
        # with the broker before any risk-increasing order (rules 3 and 10).
        self.ctx.tell(ledger.peers.gateway, ResyncRequest("coordinator started",
                                                          self.ctx.clock.now()))
        self._publish()

    def _flush_persistence(self) -> None:
        """Before reading the store: what the previous instance queued at
        persistence (an order intent it just approved) reaches the disk first,
        so it is rebuilt and settled at this instance's first resync. Read
        before that, the intent was unknown here and only resubmitted at the
        next process restart, however late. A start-up barrier, bounded: a
        persistence that does not answer leaves us rebuilding from the disk."""
        if self.ctx.system.directory.get(self.persistence) is None:
            return
        done: Future = Future()
        if not self.ctx.tell(self.persistence, Flush(ack=done)):
            return  # nobody to ask (persistence stopped): nothing can be queued there
        try:
            with managed_blocking():  # the other pooled actors run on meanwhile
                done.result(timeout=self.flush_timeout_s)
        except Exception as exc:  # noqa: BLE001 - timeout or a failed commit: rebuild anyway
            self.log.warning("persistence did not confirm the start-up flush ({!r}); "
                             "rebuilding from what is on disk", exc)

    def on_idle(self) -> None:
        self.audit.flush()
        self._publish()

    def on_stop(self) -> None:
        self.audit.flush()
        self._publish()

    def _do(self, fx: Effects) -> None:
        """Carry out the ledger's effects, in order. Audit records are written
        and flushed here; store writes go to the persistence actor."""
        tell = self.ctx.tell
        for e in fx:
            if isinstance(e, Send):
                tell(e.to, e.message)
            elif isinstance(e, StoreWrite):
                tell(self.persistence, e.put)
            elif isinstance(e, AuditRecord):
                self.audit.record(**e.fields)
            elif isinstance(e, FlushAudit):
                self.audit.flush()
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
        self._do(self.ledger.on_signal(sig))

    @handles(OrderIntent)
    def on_intent(self, it: OrderIntent) -> None:
        self._do(self.ledger.on_intent(it))

    @handles(Durable)
    def on_durable(self, msg: Durable) -> None:
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
