"""The coordinator: the only door to the broker's order API (rule 1).

Every order, whatever its purpose (entry, exit, stop, hedge, rollback),
arrives here as a ``Signal`` or an ``OrderIntent``, is decided by the risk
gate (``trading.gate.decide``), audited, made durable in the store, and only
then sent to the gateway. Broker events come back here first: positions move
fill by fill, each fill id once (rule 9), and the order's owner (a stop
manager, a hedger, an order group) is told afterwards.

State is the position book, in-flight orders, market views, the kill switch,
the circuit breaker and the rate limiter. It is rebuilt on start from the
store and settled against the broker at every resync (``trading.recovery``:
missed fills applied, orders that never arrived resubmitted under the same
client order id, orders the broker ended closed), so a restart never loses
or doubles an order.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import replace
from decimal import Decimal
from typing import Any

from messages.bounds import DEFAULT_BOUNDS, Bounds
from messages.control import (BrokerOrders, BrokerPositions, CancelIntent, ConfirmPositions,
                              ConnectivityChanged, ExitPlanAudit, GroupAudit, IntentAccepted,
                              IntentRejected, OrderIntent, PortfolioRequest, PortfolioSnapshot,
                              PositionChanged, ProtectPosition, RecoveryDone, StoppedOut)
from messages.connectivity import ResyncRequest
from messages.enums import OrderPurpose, OrderType
from messages.exchange import ExchangeError, OrderExpired, SubmitOrder
from messages.market import MarketStats, Quote
from messages.orders import (CancelConfirmed, CancelOrder, ExitPlan, OrderAcked, OrderFilled,
                             OrderRejected, OrderRequest, Signal, merge_plan)
from messages.persistence import Ack, Durable, Flush, Put, StoreDb
from messages.types import ClientOrderId, Price, Symbol, as_price as _price
from actors.kill_switch import KillSwitchKeeper
from actors.symbol import symbol_of_actor
from runtime import Actor, handles
from runtime.dispatcher import managed_blocking
from runtime.signals import RemoteDown, RemoteUp
from trading.book import InFlight, PositionBook
from trading.gate import GateState, Intent, MarketView, decide
from trading.limits import CircuitBreaker, Limits, RateLimiter
from trading.order_retention import EndedOrders, Retention
from trading.pnl import PnlTracker
from trading.reasons import Reason
from trading.recovery import order_status_key, position_put, price_unpriced
from trading.trust import IGNORED, UNKNOWN_ORDER, TrustReport
from trading.venue_rules import conform


class Coordinator(KillSwitchKeeper, Actor):
    #: how long a (re)starting coordinator waits for persistence's start-up flush
    flush_timeout_s = 5.0

    def __init__(self, ctx, *, limits: Limits, symbols: list[str], venue: str = "sim",
                 gateway: str = "gateway", persistence: str = "persistence",
                 alerts: str = "alerts", stops: str | None = "stops",
                 require_recovery: bool = True, reconciler: str = "reconciler",
                 bounds: Bounds = DEFAULT_BOUNDS, retention: Retention | None = None) -> None:
        super().__init__(ctx)
        self.limits = limits
        self.venue = venue
        self.gateway, self.persistence, self.alerts, self.stops = gateway, persistence, alerts, stops
        services = ctx.services
        self.audit = services["audit"]
        self.ids = services["ids"]
        self.book = PositionBook()
        self.state = GateState(
            limits=limits, book=self.book, market={}, symbols=frozenset(symbols),
            limiter=RateLimiter(limits.orders_per_s, limits.order_burst),
            breaker=CircuitBreaker(limits.breaker_failures, limits.breaker_cooloff_s),
            recovering=require_recovery, bounds=bounds)
        self.reconciler = reconciler
        #: rule 18: events the broker sent about orders this runtime never sent
        self.trust = TrustReport("coordinator", self.log)
        #: position key -> (broker qty, the answer's source): a divergence
        #: seen once, waiting for a second answer to confirm it before the book moves
        self.unconfirmed: dict[tuple, tuple[Decimal, str]] = {}
        #: a confirmation query is out (one at a time, whatever the number of triggers)
        self.confirm_asked = False
        #: confirming answers in a row that still found a new divergence
        self.confirm_streak = 0
        #: keys taken over from the broker with no price known yet: the first
        #: mark (or fill) prices them (trading.recovery.price_unpriced)
        self.unpriced: set[tuple] = set()
        self.pnl = PnlTracker(self.book, self.state.market)
        self.synced_at: float | None = None
        # Fail closed until the gateway says the stream is up and resynced (rule 3).
        self.stream_reconciling = True
        #: the gateway's stream is up (a cancel sent while it is down is lost
        #: with a ``not_connected`` error, so it waits here for the connection)
        self.connected = False
        self.held_cancels: set[str] = set()
        self.awaiting_durable: dict[str, OrderRequest] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        #: ended orders leave ``orders`` after a bounded window (rule 13)
        self.ended = EndedOrders(retention)
        self.counts: Counter = Counter()
        self.status_counts: Counter = Counter()
        #: per position key, when an order last left or a fill last landed
        #: (a broker snapshot older than that is not trusted for the key)
        self.last_activity: dict[tuple, Any] = {}
        self.rejected: Counter = Counter()
        #: symbol -> orders sent / fills booked (the metrics' per-symbol series)
        self.submitted_by_symbol: Counter = Counter()
        self.fills_by_symbol: Counter = Counter()
        self.blocked: deque = deque(maxlen=20)  # the latest, as introspection shows them
        self.kill_reason: str | None = None
        #: when this process saw the kill switch engage (None: not engaged, or engaged
        #: before a process restart, which the store does not date)
        self.kill_since: Any = None
        #: resubmitted after a resync (client order id -> when); a duplicate-id
        #: refusal of one of these means the broker had it and ended it
        self.resubmitted: dict[str, Any] = {}
        #: resync rounds asked before this instance started cannot settle its
        #: orders (trading.recovery.reconcile_orders)
        self.started_at = ctx.clock.now()
        #: keys with exit-plan protection: the stop manager hears their position
        #: after every fill and broker correction (PositionChanged)
        self.protected_keys: set[tuple] = set()

    def on_start(self) -> None:
        self._restore_kill_switch()
        store = self.ctx.services.get("store")
        if store is not None:
            from trading.recovery import rebuild_coordinator_state

            self._flush_persistence()
            rebuild_coordinator_state(self, store)
            self.status_counts = Counter(o["status"] for o in self.orders.values())
            self.protected_keys.update(o.key for o in self.book.inflight.values()
                                       if o.protective or o.exit_plan is not None)
        self.pnl.rebuild()
        # Whether first start or restart: learn the stream's state and resync
        # with the broker before any risk-increasing order (rules 3 and 10).
        self.ctx.tell(self.gateway, ResyncRequest("coordinator started", self.ctx.clock.now()))
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

    # -- intents -------------------------------------------------------------------

    @handles(Signal)
    def on_signal(self, sig: Signal) -> None:
        self.counts["signals"] += 1
        plan = sig.exit_plan
        self._gate(Intent(sig.symbol, sig.side, sig.qty, account=sig.account, venue=self.venue,
                          purpose=OrderPurpose.ENTRY, reduce_only=sig.reduce_only,
                          stop_loss=_price(plan.stop_loss if plan else None),
                          order_type=OrderType.MARKET),
                   OrderType.MARKET, price=None, trigger=None, tag=None, source="signal",
                   exit_plan=plan)

    @handles(OrderIntent)
    def on_intent(self, it: OrderIntent) -> None:
        plan = merge_plan(it.stop_loss, it.exit_plan)
        self._gate(Intent(it.symbol, it.side, it.qty, account=it.account, venue=self.venue,
                          purpose=it.purpose, reduce_only=it.reduce_only,
                          stop_loss=_price(plan.stop_loss if plan else None),
                          limit_price=it.price, owner=it.owner, order_type=it.order_type,
                          trigger_price=it.trigger_price),
                   it.order_type, price=it.price, trigger=it.trigger_price, tag=it.tag,
                   group_id=it.group_id, exit_plan=plan)

    def _gate(self, intent: Intent, order_type: OrderType, *, price: Price | None,
              trigger: Price | None, tag: str | None, group_id: str | None = None,
              source: str = "intent", exit_plan: ExitPlan | None = None) -> None:
        now = self.ctx.clock.monotonic()
        self.state.positions_fresh = self._positions_fresh(now)
        notes: dict[str, str] = {}
        rules = self.limits.instrument_rules.get(intent.symbol)
        if rules is not None and isinstance(intent.qty, Decimal):
            # the venue's lot step and tick (trading.venue_rules): quantity rounded
            # down, prices on the tick in the passive direction, before the decision
            c = conform(rules, intent.side, intent.qty, price=price, trigger=trigger,
                        market=order_type in (OrderType.MARKET, OrderType.STOP_MARKET))
            notes = c.notes
            price, trigger = c.price, c.trigger
            intent = replace(intent, qty=c.qty if c.qty > 0 else intent.qty,
                             limit_price=c.price if intent.limit_price is not None else None,
                             trigger_price=c.trigger)
        decision = decide(intent, self.state, now)
        if notes:
            decision.inputs.update(notes)
        coid = self.ids.next() if decision.approved else None
        self.audit.record(kind="risk_decision", reason=str(decision.reason),
                          approved=decision.approved, ts=self.ctx.clock.now(),
                          inputs=decision.inputs, client_order_id=coid, tag=tag,
                          source=source, order_type=str(order_type),
                          risk_reducing=decision.risk_reducing)
        if not decision.approved:
            self.rejected[str(decision.reason)] += 1
            if decision.reason is Reason.NETTING_CONFLICT:
                self.counts["blocked_by_invariant"] += 1
                self.blocked.append({"symbol": intent.symbol, "side": str(intent.side),
                                     "qty": str(intent.qty), "at": self.ctx.clock.now().isoformat()})
            if intent.owner:
                self.ctx.tell(intent.owner, IntentRejected(tag, intent.symbol, str(decision.reason),
                                                           self.ctx.clock.now(),
                                                           position=self.book.qty(intent.key)))
            return
        self.counts["approved"] += 1
        assert coid is not None  # allocated above for every approved decision
        # The approval reaches the OS before the intent can become durable: a
        # killed process must not leave an order that will be (re)sent with no
        # audit record of its decision (rules 1 and 10).
        self.audit.flush()
        order = OrderRequest(coid, intent.symbol, intent.side, order_type, intent.qty,
                             self.ctx.clock.now(), price=price, trigger_price=trigger,
                             reduce_only=intent.reduce_only or decision.risk_reducing,
                             account=intent.account, purpose=intent.purpose, group_id=group_id)
        self.book.add_inflight(InFlight(coid, intent.key, intent.side, intent.qty, intent.purpose,
                                        order.reduce_only, owner=intent.owner,
                                        stop_loss=intent.stop_loss, exit_plan=exit_plan))
        self.orders[coid] = {"status": "intent", "owner": intent.owner, "tag": tag,
                             "purpose": str(intent.purpose), "symbol": intent.symbol,
                             "at": self.ctx.clock.now()}
        self.status_counts["intent"] += 1
        self.awaiting_durable[coid] = order
        # Write-ahead intent: the order leaves only once this write is durable.
        record = self._order_record(order, "intent", intent)
        if exit_plan is not None:
            record["exit_plan"] = exit_plan
        self.ctx.tell(self.persistence, Put(StoreDb.ORDERS, coid, record,
                                            ack=Ack(self.ctx.name, coid)))
        if intent.owner:
            self.ctx.tell(intent.owner, IntentAccepted(tag, coid, intent.symbol, self.ctx.clock.now()))

    @handles(Durable)
    def on_durable(self, msg: Durable) -> None:
        order = self.awaiting_durable.pop(str(msg.token), None)
        if order is None:
            return
        if not msg.ok:
            self.log.error("order intent {} not durable ({}); not sent", order.client_order_id, msg.error)
            self.book.close_inflight(order.client_order_id)
            self._set_status(order.client_order_id, "not_durable")
            self.audit.record(kind="persist_failed", reason="not_durable", approved=False,
                              ts=self.ctx.clock.now(), inputs={"error": msg.error},
                              client_order_id=order.client_order_id)
            return
        # Scenario crash points (app.crash_points); absent in production.
        crash = self.ctx.services.get("crash_points")
        if crash is not None and crash("after_intent", order.client_order_id):
            return
        self.counts["submitted"] += 1
        self.submitted_by_symbol[order.symbol] += 1
        self.last_activity[(order.account, self.venue, order.symbol)] = self.ctx.clock.now()
        self.ctx.tell(self.gateway, SubmitOrder(order))
        if crash is not None and crash("after_submit", order.client_order_id):
            return
        # Stamped after it left: a resync asked later reaches the broker after it.
        self._set_status(order.client_order_id, "submitted")
        inflight = self.book.inflight.get(order.client_order_id)
        if inflight is not None and inflight.cancel_requested:  # asked while not yet durable
            self.ctx.tell(self.gateway, CancelOrder(order.client_order_id, order.symbol,
                                                    self.ctx.clock.now()))

    @handles(CancelIntent)
    def on_cancel_intent(self, msg: CancelIntent) -> None:
        order = self.book.inflight.get(msg.client_order_id)
        if order is None:
            return
        order.cancel_requested = True
        if msg.client_order_id in self.awaiting_durable:
            return  # not sent yet: the cancel follows the order (on_durable), never overtakes it
        if not self.connected:
            self.held_cancels.add(msg.client_order_id)  # sent once the stream is up
            return
        self.ctx.tell(self.gateway, CancelOrder(ClientOrderId(msg.client_order_id),
                                                Symbol(order.key[2]),
                                                self.ctx.clock.now()))

    # -- broker events -------------------------------------------------------------

    def _unknown(self, ev: Any) -> bool:
        """An event about an order this runtime never sent (another client on
        the account, or a forged frame): counted, audited, never applied
        (rule 18). Its fills reach the book through reconciliation only."""
        coid = ev.client_order_id
        if coid in self.orders or coid in self.book.inflight:
            return False
        self.counts["unknown_order_events"] += 1
        self.trust.refuse(self.audit, self.ctx.clock.now(), IGNORED, UNKNOWN_ORDER,
                          type(ev).__name__, f"order {coid[:128]} was never sent by this runtime",
                          symbol=str(getattr(ev, "symbol", ""))[:64], client_order_id=coid[:128])
        if type(ev) is OrderFilled:
            self.counts["unknown_order_fills"] += 1
            self._alert("warning", "fill of an order this runtime never sent",
                        f"{ev.symbol} {ev.side} {ev.qty} ({coid[:128]}): not booked; the "
                        f"account's positions are reconciled with the broker instead",
                        dedup_key="coordinator:unknown_order_fill")
            self.ask_confirmation(ev.account, f"fill of unknown order {coid[:64]}")
        return True

    def ask_confirmation(self, account: str, reason: str) -> None:
        """One positions query at a time (trading.recovery.apply_broker_positions)."""
        if not self.confirm_asked:
            self.confirm_asked = True
            self.ctx.tell(self.reconciler, ConfirmPositions(account, reason, self.ctx.clock.now()))

    @handles(OrderAcked)
    def on_acked(self, ev: OrderAcked) -> None:
        if self._unknown(ev):
            return
        order = self.book.inflight.get(ev.client_order_id)
        if order is not None:
            order.acked = True
        self.state.breaker.success()
        self._set_status(ev.client_order_id, "acked")
        # Not forwarded: owners (stops, hedger, groups) act on fills and on an
        # order's end, never on its acknowledgement; telling them cost each
        # owned order a thread hand-off, a state write check and a publish.

    @handles(OrderRejected)
    def on_rejected(self, ev: OrderRejected) -> None:
        if self._unknown(ev):
            return
        if ev.reason.startswith("duplicate_client_order_id"):
            if ev.client_order_id in self.resubmitted:
                from trading.recovery import close_dead_resubmission

                close_dead_resubmission(self, ev)
                return
            # About the resubmitted request only: the original order with this
            # id stands at the exchange (exchange/protocol.py). Closing it here
            # would drop a live order from the netting count (rule 2).
            self.counts["duplicate_submissions"] += 1
            self.log.warning("resubmission of {} refused as a duplicate; the original stands",
                             ev.client_order_id)
            return
        if self.state.breaker.failure(self.ctx.clock.monotonic()):
            self.counts["breaker_open"] += 1
            self._alert("warning", "circuit breaker open",
                        f"{self.state.breaker.consecutive} consecutive broker rejects; last: {ev.reason}")
        self._ended_by_broker(ev, "rejected")

    @handles(ExchangeError)
    def on_venue_trouble(self, err: ExchangeError) -> None:
        """The venue said stop or something is off (forwarded by the gateway):
        a rate limit or ban opens the circuit breaker for the venue's
        Retry-After at least, and every such report is alerted once per kind
        of trouble while it lasts (the alerts actor deduplicates)."""
        self.counts[f"venue_{err.code}"] += 1
        now = self.ctx.clock.monotonic()
        if err.code in ("rate_limited", "ip_banned", "auth"):
            if self.state.breaker.trip(now, err.retry_after_s or 0.0):
                self.counts["breaker_open"] += 1
            self._alert("critical" if err.code != "rate_limited" else "warning",
                        f"venue {err.code.replace('_', ' ')}: circuit breaker open",
                        f"{err.reason} (ref {err.ref})")
        elif err.code == "clock_skew":
            self._alert("warning", "venue clock skew", f"{err.reason}; time resynced")
        elif err.code == "unknown_outcome":
            self._alert("warning", "order outcome unknown",
                        f"{err.reason}; kept in flight, looked up by client order id")
        elif err.code == "cancel_failed":
            self._alert("warning", "cancel not confirmed", f"{err.reason} (ref {err.ref})")

    @handles(OrderFilled)
    def on_filled(self, ev: OrderFilled) -> None:
        if self._unknown(ev):
            return
        order = self.book.inflight.get(ev.client_order_id)
        key = order.key if order is not None else (ev.account, self.venue, ev.symbol)
        if key in self.unpriced:
            price_unpriced(self, key, ev.price, "fill")
        realized = self.book.apply_fill(ev.client_order_id, ev.fill_id, ev.side, ev.qty, ev.price,
                                        ev.fee, key)
        if realized is None:
            self.counts["duplicate_fills"] += 1
            return
        self.counts["fills"] += 1
        self.fills_by_symbol[ev.symbol] += 1
        self.last_activity[key] = self.ctx.clock.now()
        self.counts["filled" if ev.leaves_qty == 0 else "partially_filled"] += 1
        self._set_status(ev.client_order_id, "filled" if ev.leaves_qty == 0 else "partially_filled")
        self.ctx.tell(self.persistence, Put(StoreDb.FILLS, ev.fill_id, ev))
        self.ctx.tell(self.persistence, position_put(key, self.book.position(key)))
        crash = self.ctx.services.get("crash_points")  # app.crash_points; None in production
        if crash is not None and crash("after_fill", ev.fill_id):
            return
        plan = order.exit_plan if order is not None else None
        if self.stops and plan is not None and order is not None \
                and order.purpose is OrderPurpose.ENTRY:
            self.protected_keys.add(key)
            self.ctx.tell(self.stops, ProtectPosition(ev.symbol, ev.side, ev.qty,
                                                      _price(plan.stop_loss),
                                                      ev.account, ev.client_order_id, ev.ts,
                                                      plan=plan, entry_price=ev.price))
        self._forward(ev.client_order_id, ev, owner=order.owner if order else None)
        if key in self.protected_keys:  # after the owner's fill: the plans see both in order
            self._tell_position(key, f"fill:{order.purpose if order else 'unknown'}")
        self.pnl.update_key(key)
        self._check_daily_loss()

    @handles(OrderExpired)
    def on_expired(self, ev: OrderExpired) -> None:
        """The exchange ended the order itself: nothing of it can fill any more."""
        if not self._unknown(ev):
            self._ended_by_broker(ev, "expired")

    @handles(CancelConfirmed)
    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        if self._unknown(ev):
            return
        if ev.outcome.value == "canceled":
            self._ended_by_broker(ev, "canceled")
        else:  # filled or unknown: the fill reports (or the next resync) settle it
            self._forward(ev.client_order_id, ev)

    def _ended_by_broker(self, ev: Any, status: str) -> None:
        """The broker ended the order (rejected, canceled, expired): out of the
        netting count, counted, its status stored, its owner told."""
        self.book.close_inflight(ev.client_order_id)
        self.counts[status] += 1
        self._set_status(ev.client_order_id, status)
        self._forward(ev.client_order_id, ev)

    # -- market, control, reconciliation ----------------------------------------

    @handles(Quote)
    def on_quote(self, q: Quote) -> None:
        mv = self.state.market.setdefault(q.symbol, MarketView())
        prev = mv.bid, mv.ask
        mv.bid, mv.ask = q.bid, q.ask
        if self.book.positions:
            try:
                if self.unpriced:
                    for key in [k for k in self.unpriced if k[2] == q.symbol]:
                        price_unpriced(self, key, mv.mid, "first mark after takeover")
                self.pnl.mark_symbol(q.symbol)
            except ArithmeticError as exc:
                # The gateway bounds every quote; should one still not compute,
                # it is dropped rather than crash-looping this actor (rule 18).
                mv.bid, mv.ask = prev
                self.counts["quotes_not_computable"] += 1
                self.log.error("quote for {} dropped: {!r}", q.symbol, exc)
                self.pnl.rebuild()
                return
            self._check_daily_loss()

    @handles(RemoteDown)
    def on_remote_down(self, note: RemoteDown) -> None:
        """A symbol actor's remote host is lost: no risk-increasing order for its
        symbol until it is back (its market figures and strategy are gone)."""
        symbol = symbol_of_actor(note.name)
        if symbol is None:
            return
        self.state.symbols_down.add(symbol)
        self.log.warning("symbol actor {} is down ({}): {} fails closed until it is back",
                         note.name, note.reason, symbol)
        self.audit.record(kind="symbol_actor_down", reason=note.reason,
                          ts=self.ctx.clock.now(), inputs={"symbol": symbol, "actor": note.name})
        self._publish()

    @handles(RemoteUp)
    def on_remote_up(self, note: RemoteUp) -> None:
        symbol = symbol_of_actor(note.name)
        if symbol is None or symbol not in self.state.symbols_down:
            return
        self.state.symbols_down.discard(symbol)
        self.log.info("symbol actor {} is back: {} trades again", note.name, symbol)
        self.audit.record(kind="symbol_actor_up", reason="restarted",
                          ts=self.ctx.clock.now(), inputs={"symbol": symbol, "actor": note.name})
        self._publish()

    @handles(MarketStats)
    def on_stats(self, s: MarketStats) -> None:
        mv = self.state.market.setdefault(s.symbol, MarketView())
        mv.volatility, mv.adv = s.volatility, s.adv

    @handles(ConnectivityChanged)
    def on_connectivity(self, msg: ConnectivityChanged) -> None:
        self.stream_reconciling = msg.stream_reconciling or not msg.connected
        self.connected = msg.connected
        if msg.connected and self.held_cancels:
            held, self.held_cancels = sorted(self.held_cancels), set()
            for coid in held:
                order = self.book.inflight.get(coid)
                if order is not None:
                    self.counts["held_cancels_sent"] += 1
                    self.ctx.tell(self.gateway, CancelOrder(ClientOrderId(coid), Symbol(order.key[2]),
                                                            self.ctx.clock.now()))

    @handles(BrokerPositions)
    def on_broker_positions(self, msg: BrokerPositions) -> None:
        from trading.recovery import apply_broker_positions

        self.confirm_asked = False
        if apply_broker_positions(self, msg):
            self.pnl.rebuild()
            for key in sorted(k for k in self.protected_keys if k[0] == msg.account):
                self._tell_position(key, "broker")
        self.synced_at = self.ctx.clock.monotonic()

    @handles(BrokerOrders)
    def on_broker_orders(self, msg: BrokerOrders) -> None:
        from trading.recovery import reconcile_orders

        reconcile_orders(self, msg)

    @handles(RecoveryDone)
    def on_recovery_done(self, msg: RecoveryDone) -> None:
        if msg.requested_at is not None and msg.requested_at < self.started_at:
            return  # a round from before this instance: its own resync decides
        self.state.recovering = False
        self.log.info("recovery done: {}", msg.summary)

    @handles(StoppedOut)
    def on_stopped_out(self, msg: StoppedOut) -> None:
        self.state.cooldown_until[msg.symbol] = self.ctx.clock.monotonic() + self.limits.stop_out_cooldown_s

    # -- order groups (rule 6): the book for the margin gate, and their audit records ----

    @handles(PortfolioRequest)
    def on_portfolio_request(self, msg: PortfolioRequest) -> None:
        """The book is ours alone: a group's margin gate gets a copy, by message."""
        mine = [(key, pos) for key, pos in self.book.positions.items() if key[0] == msg.account]
        pending = {key for key in (o.key for o in self.book.inflight.values()) if key[0] == msg.account}
        self.ctx.tell(msg.reply_to, PortfolioSnapshot(
            msg.request_id, msg.account,
            tuple((key[2], pos.qty) for key, pos in mine if pos.qty != 0),
            tuple((key[2], *self.book.pending(key)) for key in sorted(pending)),
            tuple((sym, mv.bid, mv.ask) for sym, mv in sorted(self.state.market.items())
                  if mv.bid is not None and mv.ask is not None),
            self.limits.account_equity + self.pnl.daily,
            self.ctx.clock.now()))

    @handles(ExitPlanAudit)
    def on_exit_plan_audit(self, msg: ExitPlanAudit) -> None:
        self.counts["exit_plan_changes"] += 1
        self.audit.record(kind="exit_plan", reason=msg.reason, approved=None, ts=msg.ts,
                          inputs=dict(msg.inputs), plan_id=msg.plan_id, symbol=msg.symbol)

    @handles(GroupAudit)
    def on_group_audit(self, msg: GroupAudit) -> None:
        self.counts["group_decisions"] += 1
        self.audit.record(kind="group_decision", reason=msg.reason, approved=msg.approved,
                          ts=msg.ts, inputs=dict(msg.inputs), group_id=msg.group_id,
                          state=msg.state)

    # -- helpers ---------------------------------------------------------------------

    def _positions_fresh(self, now: float) -> bool:
        # A divergence waiting for its confirming answer: the book is in doubt.
        return (self.synced_at is not None and not self.stream_reconciling
                and not self.unconfirmed
                and now - self.synced_at <= self.limits.positions_stale_after_s)

    def _tell_position(self, key: tuple, cause: str) -> None:
        if self.stops:
            self.ctx.tell(self.stops, PositionChanged(key[2], key[0], self.book.qty(key), cause,
                                                      self.ctx.clock.now()))

    def _forward(self, coid: str, event: Any, owner: str | None = None) -> None:
        if owner is None:
            order = self.book.inflight.get(coid)
            owner = order.owner if order else (self.orders.get(coid) or {}).get("owner")
        if owner:
            self.ctx.tell(owner, event)

    def _set_status(self, coid: str, status: str) -> None:
        rec = self.orders.get(coid)
        if rec is not None:
            self.status_counts[rec["status"]] -= 1
            self.status_counts[status] += 1
            rec["status"], rec["at"] = status, self.ctx.clock.now()
            self.ended.settle(self.orders, coid, rec["at"], self.book.inflight)
        self.ctx.tell(self.persistence, Put(StoreDb.META, order_status_key(coid), status))

    def _order_record(self, order: OrderRequest, status: str, intent: Intent) -> dict[str, Any]:
        return {"order": order, "status": status, "owner": intent.owner,
                "stop_loss": intent.stop_loss, "venue": self.venue}

    def _publish(self) -> None:
        self.ctx.cell.info = {
            "trading_state": self.state.trading_state,
            "kill_reason": self.kill_reason,
            "kill_since": self.kill_since.isoformat() if self.kill_since is not None else None,
            "recovering": self.state.recovering,
            "breaker": self.state.breaker.state,
            "breaker_open_total": self.state.breaker.open_count,
            "positions": dict(self.pnl.positions),
            "inflight": len(self.book.inflight),
            "counts": dict(self.counts),
            "trust": self.trust.tally.as_dict(),
            "unconfirmed_divergences": len(self.unconfirmed),
            "rejected": dict(self.rejected),
            "blocked": list(self.blocked),
            "daily_pnl": str(self.pnl.daily),
            "pnl": {"realized": str(self.pnl.realized_total),
                    "unrealized": str(self.pnl.unrealized_total)},
            "orders_by_status": {k: v for k, v in self.status_counts.items() if v},
            "max_daily_loss": str(self.limits.max_daily_loss),
            # per symbol, as plain dict copies (cheap: this runs after every burst)
            "by_symbol": {"submitted": dict(self.submitted_by_symbol),
                          "fills": dict(self.fills_by_symbol),
                          "realized": dict(self.pnl.realized_by_symbol),
                          "unrealized": dict(self.pnl.unrealized_by_symbol)},
        }

