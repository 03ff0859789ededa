"""The order ledger: every order's life from intent to its end, as decisions (rules 1-5, 9, 15).

One object owns what the coordinator knows about orders: the position
book, each order's status, orders in flight, intents waiting for their
durable write, resubmissions, cancels held for the connection, and the
risk state the gate judges with (``trading.risk_state``: limits, market,
kill switch, breaker, limiter). Each ``on_*`` method takes one event and
returns the :class:`~trading.effects.Effects` to carry out, in order:
messages to send, store writes, audit records. It sends nothing itself,
so the rules it enforces run and are tested without an actor
(tests/test_ledger.py); ``actors.coordinator`` feeds it and sends what it
returns. Start-up rebuilding and reconciliation with the broker are
functions over it (``trading.recovery``).

Time comes from the injected clock, client order ids from ``next_id``
(``trading.id_allocator``), the stored request of a resubmission from
``store`` (a reader; writes go out as effects).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from messages.bounds import DEFAULT_BOUNDS, Bounds
from messages.control import (BrokerOrders, BrokerPositions, CancelIntent, ConnectivityChanged,
                              OrderIntent, PositionChanged, ProtectPosition, RecoveryDone)
from messages.enums import OrderPurpose, OrderType
from messages.exchange import OrderExpired, SubmitOrder
from messages.market import Quote
from messages.orders import (CancelConfirmed, CancelOrder, OrderAcked, OrderFilled,
                             OrderRejected, OrderRequest, Signal)
from messages.persistence import Durable, Put, StoreDb
from messages.types import ClientOrderId, Symbol, as_price
from trading.admission import admit, order_intent, signal_intent
from trading.positions import Key, PositionBook
from trading.effects import Effects
from trading.limits import Limits
from trading.order_records import OrderRecords
from trading.position_sync import PositionSync
from trading.order_retention import EndedOrders, Retention
from trading.recovery import close_dead_resubmission, reconcile_orders
from trading.risk_state import SOURCE, RiskState
from trading.store_keys import position_put
from trading.trust import IGNORED, UNKNOWN_ORDER, TrustReport


class Clock(Protocol):
    def now(self) -> Any: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class Peers:
    """The actors the ledger's messages go to; ``me`` receives the durable-write acks."""

    me: str = "coordinator"
    gateway: str = "gateway"
    alerts: str = "alerts"
    stops: str | None = "stops"
    reconciler: str = "reconciler"


class OrderLedger:
    """Orders in, decisions out: the coordinator's state without the actor.

    Where each rule's state lives:

    * ``book`` (``trading.positions.PositionBook``): positions fill by fill, each
      fill id once (rule 9), orders in flight for netting (rule 2);
    * ``orders`` (``trading.order_records``): every approved order's status,
      stored at each change (rules 10, 15);
    * ``risk`` (``trading.risk_state``): limits, market views, PnL, the kill
      switch and trading state, breaker, rate limiter, cool-downs, recovery
      (rules 3, 4, 5, 10);
    * ``sync`` (``trading.position_sync``): the broker's positions, what is in
      doubt, when they were last answered (rules 3, 11, 18);
    * here: intents awaiting their durable write, resubmissions, cancels held
      for the connection, the stream's state, protected keys, counters.
    """

    def __init__(self, *, limits: Limits, symbols: list[str] | frozenset[str], clock: Clock,
                 next_id: Callable[[], str], log: Any, venue: str = "sim",
                 peers: Peers = Peers(), store: Any = None, require_recovery: bool = True,
                 bounds: Bounds = DEFAULT_BOUNDS, retention: Retention | None = None) -> None:
        self.limits, self.venue, self.clock, self.next_id = limits, venue, clock, next_id
        self.peers, self.store, self.log = peers, store, log
        self.book = PositionBook()
        self.counts: Counter[str] = Counter()
        self.risk = RiskState(limits=limits, symbols=frozenset(symbols), bounds=bounds,
                              require_recovery=require_recovery, book=self.book,
                              counts=self.counts, alerts=peers.alerts, clock=clock, log=log)
        #: ended orders leave it after a bounded window (rule 13, trading.order_retention)
        #: (and their fill ids with them: a report about a dropped order is unknown)
        self.orders = OrderRecords(EndedOrders(retention, forget=self.book.fills.forget),
                                   live=self.book.inflight)
        #: per position key, when an order last left or a fill last landed
        #: (a broker snapshot older than that is not trusted for the key)
        self.last_activity: dict[Key, Any] = {}
        self.sync = PositionSync(book=self.book, market=self.risk.market, venue=venue,
                                 reconciler=peers.reconciler, counts=self.counts,
                                 last_activity=self.last_activity, log=log)
        #: rule 18: events the broker sent about orders this runtime never sent
        self.trust = TrustReport(SOURCE, log)
        # Fail closed until the gateway says the stream is up and resynced (rule 3).
        self.stream_reconciling = True
        #: the stream is up (a cancel sent while it is down is lost, so it waits here)
        self.connected = False
        self.held_cancels: set[str] = set()
        self.awaiting_durable: dict[str, OrderRequest] = {}
        #: resubmitted after a resync (client order id -> when); a duplicate-id
        #: refusal of one of these means the broker had it and ended it
        self.resubmitted: dict[str, Any] = {}
        #: resync rounds asked before this ledger existed cannot settle its orders
        self.started_at = clock.now()
        #: keys with exit-plan protection: the stop manager hears their position
        #: after every fill and broker correction (PositionChanged)
        self.protected_keys: set[Key] = set()
        self.rejected: Counter[str] = Counter()
        self.blocked: deque[dict[str, str]] = deque(maxlen=20)  # the latest netting blocks
        #: symbol -> orders sent / fills booked (the metrics' per-symbol series)
        self.submitted_by_symbol: Counter[str] = Counter()
        self.fills_by_symbol: Counter[str] = Counter()

    # -- intents (rules 1-5) ---------------------------------------------------------------

    def on_signal(self, sig: Signal) -> Effects:
        """A strategy's signal: an entry at market, judged by the gate."""
        self.counts["signals"] += 1
        intent, plan = signal_intent(sig, self.venue)
        return admit(self, intent, OrderType.MARKET, source="signal", exit_plan=plan)

    def on_intent(self, it: OrderIntent) -> Effects:
        """Any other order (exit, stop, hedge, group leg), judged by the gate."""
        intent, plan = order_intent(it, self.venue)
        return admit(self, intent, it.order_type, price=it.price, trigger=it.trigger_price,
                     tag=it.tag, group_id=it.group_id, exit_plan=plan)

    def on_durable(self, msg: Durable) -> Effects:
        """The intent is on disk: the order leaves (or, not durable, never does)."""
        fx = Effects()
        order = self.awaiting_durable.pop(str(msg.token), None)
        if order is None:
            return fx
        coid, now = order.client_order_id, self.clock.now()
        if not msg.ok:
            self.log.error("order intent {} not durable ({}); not sent", coid, msg.error)
            self.book.close_inflight(coid)
            self.orders.set_status(coid, "not_durable", now, fx)
            fx.record(kind="persist_failed", reason="not_durable", approved=False, ts=now,
                      inputs={"error": msg.error}, client_order_id=coid)
            return fx
        fx.crash_point("after_intent", coid)
        self.counts["submitted"] += 1
        self.submitted_by_symbol[order.symbol] += 1
        self.last_activity[(order.account, self.venue, order.symbol)] = now
        fx.send(self.peers.gateway, SubmitOrder(order))
        fx.crash_point("after_submit", coid)
        # Stamped after it left: a resync asked later reaches the broker after it.
        self.orders.set_status(coid, "submitted", now, fx)
        fx.sent_stamp(coid)
        inflight = self.book.inflight.get(coid)
        if inflight is not None and inflight.cancel_requested:  # asked while not yet durable
            fx.send(self.peers.gateway, CancelOrder(coid, order.symbol, now))
        return fx

    def on_cancel_intent(self, msg: CancelIntent) -> Effects:
        fx = Effects()
        order = self.book.inflight.get(msg.client_order_id)
        if order is None:
            return fx
        order.cancel_requested = True
        if msg.client_order_id in self.awaiting_durable:
            return fx  # not sent yet: the cancel follows the order (on_durable), never overtakes it
        if not self.connected:
            self.held_cancels.add(msg.client_order_id)  # sent once the stream is up
            return fx
        fx.send(self.peers.gateway, CancelOrder(ClientOrderId(msg.client_order_id),
                                                Symbol(order.key[2]), self.clock.now()))
        return fx

    # -- broker events (rule 9) -----------------------------------------------------------

    def _unknown(self, ev: Any, fx: Effects) -> bool:
        """An event about an order this runtime never sent (another client on
        the account, or a forged frame): counted, audited, never applied
        (rule 18). Its fills reach the book through reconciliation only."""
        coid = ev.client_order_id
        if coid in self.orders or coid in self.book.inflight:
            return False
        now = self.clock.now()
        self.counts["unknown_order_events"] += 1
        self.trust.refuse(fx, now, IGNORED, UNKNOWN_ORDER, type(ev).__name__,
                          f"order {coid[:128]} was never sent by this runtime",
                          symbol=str(getattr(ev, "symbol", ""))[:64], client_order_id=coid[:128])
        if type(ev) is OrderFilled:
            self.counts["unknown_order_fills"] += 1
            self.risk.alert(fx, "warning", "fill of an order this runtime never sent",
                            f"{ev.symbol} {ev.side} {ev.qty} ({coid[:128]}): not booked; the "
                            f"account's positions are reconciled with the broker instead", now,
                            dedup_key="coordinator:unknown_order_fill")
            self.sync.ask_confirmation(ev.account, f"fill of unknown order {coid[:64]}", now, fx)
        return True

    def on_acked(self, ev: OrderAcked, fx: Effects | None = None) -> Effects:
        fx = Effects() if fx is None else fx
        if self._unknown(ev, fx):
            return fx
        order = self.book.inflight.get(ev.client_order_id)
        if order is not None:
            order.acked = True
        self.risk.gate.breaker.success()
        self.orders.set_status(ev.client_order_id, "acked", self.clock.now(), fx)
        # Not forwarded: owners (stops, hedger, groups) act on fills and on an
        # order's end, never on its acknowledgement.
        return fx

    def on_rejected(self, ev: OrderRejected) -> Effects:
        fx = Effects()
        if self._unknown(ev, fx):
            return fx
        if ev.reason.startswith("duplicate_client_order_id"):
            if ev.client_order_id in self.resubmitted:
                close_dead_resubmission(self, ev, fx)
                return fx
            # About the resubmitted request only: the original order with this
            # id stands at the exchange (exchange/protocol.py). Closing it here
            # would drop a live order from the netting count (rule 2).
            self.counts["duplicate_submissions"] += 1
            self.log.warning("resubmission of {} refused as a duplicate; the original stands",
                             ev.client_order_id)
            return fx
        self.risk.broker_rejected(ev.reason, self.clock.monotonic(), self.clock.now(), fx)
        self._ended_by_broker(ev, "rejected", fx)
        return fx

    def on_filled(self, ev: OrderFilled, fx: Effects | None = None) -> Effects:
        """Position moves by this fill, once per fill id; the owner hears after."""
        fx = Effects() if fx is None else fx
        if self._unknown(ev, fx):
            return fx
        now = self.clock.now()
        order = self.book.inflight.get(ev.client_order_id)
        key = order.key if order is not None else (ev.account, self.venue, ev.symbol)
        if key in self.sync.unpriced and self.sync.price_unpriced(key, ev.price, "fill", now, fx):
            self.risk.pnl.update_key(key)
        realized = self.book.apply_fill(ev.client_order_id, ev.fill_id, ev.side, ev.qty, ev.price,
                                        ev.fee, key)
        if realized is None:
            self.counts["duplicate_fills"] += 1
            return fx
        status = "filled" if ev.leaves_qty == 0 else "partially_filled"
        self.counts["fills"] += 1
        self.fills_by_symbol[ev.symbol] += 1
        self.last_activity[key] = now
        self.counts[status] += 1
        self.orders.set_status(ev.client_order_id, status, now, fx)
        fx.store(Put(StoreDb.FILLS, ev.fill_id, ev))
        fx.store(position_put(key, self.book.position(key)))
        fx.crash_point("after_fill", ev.fill_id)
        plan = order.exit_plan if order is not None else None
        if self.peers.stops and plan is not None and order is not None \
                and order.purpose is OrderPurpose.ENTRY:
            self.protected_keys.add(key)
            fx.send(self.peers.stops, ProtectPosition(ev.symbol, ev.side, ev.qty,
                                                      as_price(plan.stop_loss), ev.account,
                                                      ev.client_order_id, ev.ts, plan=plan,
                                                      entry_price=ev.price))
        self._forward(ev.client_order_id, ev, fx, owner=order.owner if order else None)
        if key in self.protected_keys:  # after the owner's fill: the plans see both in order
            self._tell_position(key, f"fill:{order.purpose if order else 'unknown'}", fx)
        self.risk.pnl.update_key(key)
        self.risk.check_daily_loss(now, fx)
        return fx

    def on_expired(self, ev: OrderExpired) -> Effects:
        """The exchange ended the order itself: nothing of it can fill any more."""
        fx = Effects()
        if not self._unknown(ev, fx):
            self._ended_by_broker(ev, "expired", fx)
        return fx

    def on_cancel_confirmed(self, ev: CancelConfirmed) -> Effects:
        fx = Effects()
        if self._unknown(ev, fx):
            return fx
        if ev.outcome.value == "canceled":
            self._ended_by_broker(ev, "canceled", fx)
        else:  # filled or unknown: the fill reports (or the next resync) settle it
            self._forward(ev.client_order_id, ev, fx)
        return fx

    def _ended_by_broker(self, ev: Any, status: str, fx: Effects) -> None:
        """The broker ended the order (rejected, canceled, expired): out of the
        netting count, counted, its status stored, its owner told."""
        self.book.close_inflight(ev.client_order_id)
        self.counts[status] += 1
        self.orders.set_status(ev.client_order_id, status, self.clock.now(), fx)
        self._forward(ev.client_order_id, ev, fx)

    def _forward(self, coid: str, event: Any, fx: Effects, owner: str | None = None) -> None:
        if owner is None:
            order = self.book.inflight.get(coid)
            owner = order.owner if order else self.orders.owner(coid)
        if owner:
            fx.send(owner, event)

    def _tell_position(self, key: Key, cause: str, fx: Effects) -> None:
        if self.peers.stops:
            fx.send(self.peers.stops, PositionChanged(key[2], key[0], self.book.qty(key), cause,
                                                      self.clock.now()))

    # -- the stream and the broker's view (rules 3, 10, 11) -------------------------------

    def on_connectivity(self, msg: ConnectivityChanged) -> Effects:
        """The stream's state; cancels held while it was down go out once it is up."""
        fx = Effects()
        self.stream_reconciling = msg.stream_reconciling or not msg.connected
        self.connected = msg.connected
        if msg.connected and self.held_cancels:
            held, self.held_cancels = sorted(self.held_cancels), set()
            for coid in held:
                order = self.book.inflight.get(coid)
                if order is not None:
                    self.counts["held_cancels_sent"] += 1
                    fx.send(self.peers.gateway, CancelOrder(ClientOrderId(coid),
                                                            Symbol(order.key[2]),
                                                            self.clock.now()))
        return fx

    def on_broker_positions(self, msg: BrokerPositions) -> Effects:
        fx = Effects()
        if self.sync.apply(msg, self.clock.now(), fx):
            self.risk.pnl.rebuild()
            for key in sorted(k for k in self.protected_keys if k[0] == msg.account):
                self._tell_position(key, "broker", fx)
        self.sync.synced_at = self.clock.monotonic()
        return fx

    def on_broker_orders(self, msg: BrokerOrders) -> Effects:
        """Settle the open orders against the broker's (``trading.recovery``)."""
        fx = Effects()
        reconcile_orders(self, msg, fx)
        return fx

    def on_recovery_done(self, msg: RecoveryDone) -> None:
        self.risk.on_recovery_done(msg, self.started_at)

    def on_quote(self, q: Quote) -> Effects:
        return self.risk.on_quote(q, self.sync)
