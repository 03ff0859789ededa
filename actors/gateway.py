"""The broker gateway: owns the adapter, turns its stream into messages.

The adapter's callbacks run on the adapter's own thread; they only
``tell`` this actor and return (rule 12), so a stream error can never block
or deadlock the feed. The gateway tracks the subscription set and restores
it exactly once after every (re)connect, asks the reconciler to resync, and
reports ``stream_reconciling`` to the coordinator until the resync is done
so no risk-increasing order goes out on stale state. A watchdog treats
``timeout_s`` of silence as a dead stream; it looks at least once a second
(``watchdog_period``), so a silence is noticed within ``timeout_s + 1`` s,
and publishes the stream's age each time (``last_msg_age_s``). A tripped
watchdog drops the transport without waiting for it: the old adapter is
closed on a thread of its own (``close_in_background``), events it still
delivers are discarded at the sink, and a fresh adapter from the factory
serves the next connection.

Only the coordinator sends ``SubmitOrder``/``CancelOrder`` here (rule 1);
the scenario runner checks every order at the exchange against the audit.

The gateway is where exchange events enter, so it is the trust boundary
for them (rule 18, ``trading.trust``): an event whose numbers are out of
the configured sane range is rejected, a fill or snapshot of an account
this runtime does not manage is ignored, and a message of a type no venue
sends is dropped; each is counted, audited (bounded) and never reaches
the coordinator or the reconciler. Foreign accounts also raise an alert.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from messages.connectivity import (ReconnectNow, ResyncDone, ResyncRequest, StreamDown, StreamUp,
                                   WatchdogCheck)
from messages.control import ConnectivityChanged, WatchQuotes
from messages.exchange import (BalanceSnapshot, ExchangeError, FillsSnapshot, OpenOrdersSnapshot,
                               OrderExpired, QueryBalances, QueryFills, QueryOpenOrders,
                               QueryPositions, StreamStatus, Subscribe, SubmitOrder, Unsubscribe)
from messages.market import Bar, Quote
from messages.orders import (CancelConfirmed, CancelOrder, OrderAcked, OrderFilled, OrderRejected,
                             PositionSnapshot)
from exchange.protocol import close_in_background
from messages.alerts import Alert
from messages.bounds import DEFAULT_BOUNDS, Bounds, event_problem
from runtime import Actor, handles
from trading.trust import (FOREIGN_ACCOUNT, IGNORED, OUT_OF_RANGE, REJECTED, WRONG_TYPE,
                           TrustReport, foreign_account)

ORDER_EVENTS = (OrderAcked, OrderRejected, OrderFilled, OrderExpired, CancelConfirmed)
SNAPSHOTS = (PositionSnapshot, OpenOrdersSnapshot, BalanceSnapshot, FillsSnapshot)
#: What a venue may send. The sink lets only these through: a message that
#: decodes but is no venue event (a SubmitOrder, a ResyncDone, a ReconnectNow
#: read off the socket) would otherwise reach the handler meant for the
#: coordinator's or reconciler's message, e.g. bounce an order back out.
STREAM_EVENTS = frozenset((*ORDER_EVENTS, *SNAPSHOTS, Quote, Bar, StreamStatus, ExchangeError))
#: the watchdog looks at least this often (seconds): silence is seen within timeout + this
WATCHDOG_MAX_PERIOD_S = 1.0
#: at shutdown, how long to wait for transports still closing in the background
CLOSE_JOIN_S = 5.0


def watchdog_period(timeout_s: float) -> float:
    """How often the watchdog looks: never less often than once a second."""
    return min(timeout_s / 2, WATCHDOG_MAX_PERIOD_S)


#: ExchangeError codes counted by name; any other is counted as "other", so a
#: venue inventing codes cannot grow the counters without bound (rule 13).
ERROR_CODES = frozenset(("bad_frame", "bad_command", "not_connected", "internal", "bad_fault",
                         "unknown_symbol", "account_mismatch", "out_of_range", "rate_limited", "ip_banned", "clock_skew", "auth",
                         "unknown_outcome", "cancel_failed", "query_failed"))
#: venue trouble the coordinator acts on (circuit breaker, alert); protocol-level
#: codes, whichever adapter reports them (exchange/protocol.py)
COORDINATOR_CODES = frozenset(("rate_limited", "ip_banned", "clock_skew", "auth",
                               "unknown_outcome", "cancel_failed"))


@dataclass(frozen=True, slots=True)
class UnexpectedEvent:
    """A well-formed message of a type no venue sends, caught by the sink."""

    kind: str
    detail: str


class Gateway(Actor):
    def __init__(self, ctx, *, adapter_factory: Callable[[Callable[[Any], None]], Any],
                 coordinator: str = "coordinator", reconnect: str = "reconnect",
                 reconciler: str = "reconciler", quote_listeners: tuple[str, ...] = ("stops",),
                 watchdog_timeout_s: float = 10.0, connect_on_start: bool = True,
                 accounts: tuple[str, ...] | None = None, bounds: Bounds = DEFAULT_BOUNDS,
                 alerts: str = "alerts") -> None:
        super().__init__(ctx)
        #: the accounts this runtime manages (None: no account filter, for a
        #: gateway tested on its own; the launcher always names them)
        self.accounts = frozenset(accounts) if accounts is not None else None
        self.bounds = bounds
        self.alerts = alerts
        self.trust = TrustReport("gateway", self.log)
        if not watchdog_timeout_s > 0:
            raise ValueError(f"watchdog timeout_s must be > 0, got {watchdog_timeout_s}")
        self.adapter_factory = adapter_factory
        self.coordinator, self.reconnect, self.reconciler = coordinator, reconnect, reconciler
        #: listener -> the symbols it asked for (WatchQuotes); None = every quote,
        #: which is where each listener starts (and restarts with this actor)
        self.quote_watch: dict[str, frozenset[str] | None] = {n: None for n in quote_listeners}
        self.timeout_s = watchdog_timeout_s
        # The launcher connects only once the whole tree is up (ReconnectNow),
        # so the first ConnectivityChanged and ResyncRequest find their actors.
        self.connect_on_start = connect_on_start
        self.adapter: Any = None
        self.connected = False
        self.reconciling = True
        self.subscriptions: set[str] = set()
        #: sorted for introspection, recomputed only when the set changes (not
        #: on every publish: at 1,000 symbols that sort cost more than the event)
        self._subscriptions_sorted: list[str] = []
        self.last_msg_at = 0.0
        self.counts: Counter = Counter()
        self._symbol_addr: dict[str, Any] = {}
        #: where every quote goes besides its symbol actor: the coordinator, then
        #: each listener with what it watches (None: all); rebuilt on WatchQuotes
        self._coord_addr = ctx.system.address(coordinator)
        self._quote_fanout: list[tuple[Any, frozenset[str] | None]] = []
        self._rebuild_fanout()
        #: which adapter's events are current; a dropped adapter's sink stops passing them on
        self._adapter_gen = 0
        self._closing: list[Any] = []

    def on_start(self) -> None:
        self.adapter = self._new_adapter()
        self.last_msg_at = self.ctx.clock.monotonic()
        period = watchdog_period(self.timeout_s)
        self.ctx.schedule(period, WatchdogCheck(), interval_s=period)
        if self.connect_on_start:
            self.adapter.connect()
        self._publish()

    def _new_adapter(self) -> Any:
        self._adapter_gen += 1
        tell_self = self.ctx.tell_self
        gen = self._adapter_gen

        def sink(event: Any, _ok: frozenset = STREAM_EVENTS) -> None:
            # Runs on the adapter's thread: enqueue and return, nothing else.
            if self._adapter_gen != gen:
                return  # a dropped transport still talking: not this stream any more
            if type(event) in _ok:
                tell_self(event)
            else:
                tell_self(UnexpectedEvent(type(event).__name__, repr(event)[:200]))

        return self.adapter_factory(sink)

    def _drop_adapter(self) -> None:
        """Abandon the current transport at once; it closes in the background."""
        old = self.adapter
        self.adapter = self._new_adapter()
        self._closing = [t for t in self._closing if t.is_alive()]
        self._closing.append(close_in_background(old, name=f"{self.ctx.name}-close"))

    def on_stop(self) -> None:
        if self.adapter is not None:
            self.adapter.close()
        for thread in self._closing:  # rule 16: no thread left behind
            thread.join(CLOSE_JOIN_S)

    def on_idle(self) -> None:
        self.trust.flush(self.ctx.services.get("audit"))
        self._publish()

    # -- connection lifecycle --------------------------------------------------------

    @handles(StreamStatus)
    def on_status(self, st: StreamStatus) -> None:
        self.last_msg_at = self.ctx.clock.monotonic()
        if st.connected:
            self._on_connected()
        else:
            self._on_disconnected(st.reason)

    def _on_connected(self) -> None:
        if self.connected:
            return
        self.connected, self.reconciling = True, True
        self.counts["connects"] += 1
        if self.subscriptions:
            self.adapter.send(Subscribe(tuple(self._subscriptions_sorted)))
            self.counts["subscription_restores"] += 1
        now = self.ctx.clock.now()
        self.ctx.tell(self.reconnect, StreamUp(now))
        self.ctx.tell(self.coordinator, ConnectivityChanged(True, True, "connected, resyncing", now))
        self.ctx.tell(self.reconciler, ResyncRequest("connected", now))

    def _on_disconnected(self, reason: str) -> None:
        was = self.connected
        self.connected, self.reconciling = False, True
        if was:
            self.counts["disconnects"] += 1
        now = self.ctx.clock.now()
        self.ctx.tell(self.coordinator, ConnectivityChanged(False, True, reason, now))
        self.ctx.tell(self.reconnect, StreamDown(reason, now))

    @handles(ReconnectNow)
    def on_connect(self, msg: ReconnectNow) -> None:
        if not self.connected:
            self.counts["connect_attempts"] += 1
            self.adapter.connect()

    @handles(WatchdogCheck)
    def on_watchdog(self, msg: WatchdogCheck) -> None:
        silent = self.ctx.clock.monotonic() - self.last_msg_at
        if self.connected and silent >= self.timeout_s:
            self.counts["watchdog_trips"] += 1
            self.log.warning("no stream message for {:.1f}s (timeout {}s); reconnecting", silent,
                             self.timeout_s)
            self._drop_adapter()
            self._on_disconnected(f"watchdog: silent for {silent:.1f}s")
        self._publish()  # the stream's age stays current while nothing arrives

    @handles(ResyncRequest)
    def on_resync_request(self, msg: ResyncRequest) -> None:
        """A restarted coordinator asks where things stand: resync before it trades."""
        now = self.ctx.clock.now()
        if not self.connected:
            self.ctx.tell(self.coordinator, ConnectivityChanged(False, True, "not connected", now))
            return
        self.reconciling = True
        self.ctx.tell(self.coordinator, ConnectivityChanged(True, True, f"resync: {msg.reason}", now))
        self.ctx.tell(self.reconciler, ResyncRequest(msg.reason, now))

    @handles(ResyncDone)
    def on_resync_done(self, msg: ResyncDone) -> None:
        if self.connected and self.reconciling:
            self.reconciling = False
            self.ctx.tell(self.coordinator, ConnectivityChanged(True, False, "resynced", msg.ts))

    # -- outbound ---------------------------------------------------------------------

    @handles(SubmitOrder, CancelOrder, QueryPositions, QueryOpenOrders, QueryBalances, QueryFills)
    def on_command(self, cmd: Any) -> None:
        self.counts[type(cmd).__name__] += 1
        self.adapter.send(cmd)

    @handles(Subscribe)
    def on_subscribe(self, msg: Subscribe) -> None:
        new = [s for s in msg.symbols if s not in self.subscriptions]
        self.subscriptions.update(new)
        if new:
            self._subscriptions_sorted = sorted(self.subscriptions)
        if new and self.connected:
            self.adapter.send(Subscribe(tuple(new)))

    @handles(Unsubscribe)
    def on_unsubscribe(self, msg: Unsubscribe) -> None:
        gone = [s for s in msg.symbols if s in self.subscriptions]
        self.subscriptions.difference_update(gone)
        if gone:
            self._subscriptions_sorted = sorted(self.subscriptions)
        if gone and self.connected:
            self.adapter.send(Unsubscribe(tuple(gone)))

    # -- inbound ----------------------------------------------------------------------

    @handles(Quote, Bar)
    def on_market(self, ev: Any) -> None:
        self.last_msg_at = self.ctx.clock.monotonic()
        problem = event_problem(ev, self.bounds)
        if problem is not None:
            self._refuse(REJECTED, OUT_OF_RANGE, ev, problem)
            return
        self.counts["market_events"] += 1
        sym = ev.symbol
        addr = self._symbol_addr.get(sym)
        if addr is None:
            addr = self._symbol_addr[sym] = self.ctx.system.address(f"symbol-{sym}")
        addr.tell(ev)
        if type(ev) is Quote:
            self._coord_addr.tell(ev)
            for listener, watched in self._quote_fanout:
                if watched is None or sym in watched:
                    listener.tell(ev)

    @handles(WatchQuotes)
    def on_watch_quotes(self, msg: WatchQuotes) -> None:
        """A listener narrowed its quotes to the symbols it acts on: at 100
        symbols and no stop, that is a message per quote saved."""
        self.quote_watch[msg.listener] = frozenset(msg.symbols)
        self.counts["watch_changes"] += 1
        self._rebuild_fanout()

    def _rebuild_fanout(self) -> None:
        system = self.ctx.system
        self._quote_fanout = [(system.address(name), watched)
                              for name, watched in self.quote_watch.items()
                              if watched is None or watched]

    @handles(*ORDER_EVENTS)
    def on_order_event(self, ev: Any) -> None:
        self.last_msg_at = self.ctx.clock.monotonic()
        if self._trusted(ev):
            self.counts[type(ev).__name__] += 1
            self.ctx.tell(self.coordinator, ev)

    @handles(*SNAPSHOTS)
    def on_snapshot(self, ev: Any) -> None:
        self.last_msg_at = self.ctx.clock.monotonic()
        if self._trusted(ev):
            self.ctx.tell(self.reconciler, ev)

    # -- the trust boundary (rule 18) ----------------------------------------------------

    def _trusted(self, ev: Any) -> bool:
        """Numbers in range, and an account this runtime manages."""
        problem = event_problem(ev, self.bounds)
        if problem is not None:
            self._refuse(REJECTED, OUT_OF_RANGE, ev, problem)
            return False
        if self.accounts is not None:
            foreign = foreign_account(ev, self.accounts)
            if foreign is not None:
                self._refuse(IGNORED, FOREIGN_ACCOUNT, ev,
                             f"account {foreign[:64]!r} is not managed by this runtime")
                return False
        return True

    def _refuse(self, verdict: str, reason: str, ev: Any, detail: str) -> None:
        """Count; report the first few of each reason and then one in a thousand
        (log line, audit record, and for a foreign account an alert)."""
        kind = type(ev).__name__ if not isinstance(ev, UnexpectedEvent) else ev.kind
        now = self.ctx.clock.now()
        n = self.trust.refuse(self.ctx.services.get("audit"), now, verdict, reason, kind, detail,
                              symbol=str(getattr(ev, "symbol", ""))[:64] or None,
                              client_order_id=str(getattr(ev, "client_order_id", ""))[:128] or None)
        if n is not None and reason == FOREIGN_ACCOUNT:
            self.ctx.tell(self.alerts, Alert(
                "warning", "events of a foreign account ignored",
                f"{kind}: {detail} ({n} so far); another runtime's account shares this "
                f"exchange session, or the exchange mixes accounts", now, self.ctx.name,
                dedup_key="gateway:foreign_account"))

    @handles(ExchangeError)
    def on_exchange_error(self, err: ExchangeError) -> None:
        """Counted by code. ``not_connected`` is the adapter refusing a command
        during an outage (expected; the reconciler's next poll replaces a lost
        query); anything else is a venue or wire problem worth a warning."""
        key = f"error_{err.code if err.code in ERROR_CODES else 'other'}"
        self.counts[key] += 1
        n = self.counts[key]
        # bounded like refused inputs: a flood of errors is counted, not logged line by line
        if err.code != "not_connected" and (n <= 20 or n % 1000 == 0):
            self.log.warning("exchange error {} (#{}): {} (ref {})", err.code[:64], n,
                             err.reason[:300], str(err.ref)[:64])
        if err.code in COORDINATOR_CODES:
            self.ctx.tell(self.coordinator, err)

    @handles(UnexpectedEvent)
    def on_unexpected(self, ev: UnexpectedEvent) -> None:
        self.counts["unexpected_events"] += 1
        self._refuse(REJECTED, WRONG_TYPE, ev, f"a {ev.kind} read off the exchange stream: "
                                               f"{ev.detail}")

    def _publish(self) -> None:
        self.ctx.cell.info = {
            "connected": self.connected, "stream_reconciling": self.reconciling,
            "subscriptions": self._subscriptions_sorted,
            "quote_watch": {n: ("all" if w is None else len(w)) for n, w in self.quote_watch.items()},
            "last_msg_age_s": round(self.ctx.clock.monotonic() - self.last_msg_at, 3),
            "bad_frames": getattr(self.adapter, "bad_frames", 0),
            "unexpected_events": self.counts["unexpected_events"],
            "trust": self.trust.tally.as_dict(),
            "counts": dict(self.counts),
        }
