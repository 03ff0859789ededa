"""Gateway + reconnect controller over a real loopback WebSocket (rule 12).

The actors run in virtual time (VirtualHarness): backoff delays, attempt
times and the watchdog are exact and seeded. The socket is real, so its
events arrive on the adapter's thread whenever the kernel delivers them; the
tests wait for those with a deadline (``Rig.wait``: settle, check, wait for
the next sink call), never with a fixed sleep.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from decimal import Decimal
from typing import Any
from collections.abc import Callable

import msgpack
import pytest
from websockets.sync.server import serve as sync_serve

from actors.gateway import Gateway
from actors.reconciler import Reconciler
from actors.reconnect import ReconnectController
from exchange import SimulatedExchange, read_events
from exchange.ws_client import WsClientAdapter
from exchange.ws_server import ExchangeServer
from messages import (ExchangeError, OrderAcked, OrderFilled, OrderRejected, OrderRequest,
                      OrderType, Quote, Side, StreamStatus, Subscribe, SubmitOrder, Unsubscribe)
from messages.alerts import Alert
from messages.codec import EXT_DECIMAL, _default, decode, encode, to_wire
from messages.connectivity import ReconnectNow, ResyncDone, StreamDown
from messages.control import BrokerPositions, ConnectivityChanged
from runtime import Actor, Backoff, ChildSpec, handles
from runtime.clock import EPOCH_DEFAULT
from tests.rt_helpers import Inbox

pytestmark = pytest.mark.timeout(10)

D = Decimal
T0 = EPOCH_DEFAULT
WAIT = 5.0
SEED = 7
SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT")
BACKOFF = Backoff(base_s=1.0, max_s=60.0, jitter="full")


class TimedSink:
    """Wraps the gateway's sink (its ``tell_self``) and times every call the
    adapter makes: the stream error handler path of rule 12."""

    def __init__(self, inner: Callable[[Any], None]) -> None:
        self.inner = inner
        self.calls: list[tuple[float, Any]] = []
        self.activity = threading.Event()

    def __call__(self, event: Any) -> None:
        t0 = time.perf_counter()
        self.inner(event)
        self.calls.append((time.perf_counter() - t0, event))
        self.activity.set()

    def statuses(self, connected: bool) -> int:
        return sum(1 for _, e in self.calls if isinstance(e, StreamStatus)
                   and e.connected is connected)


class Rig:
    """A gateway, reconnect controller and reconciler in virtual time, with
    stand-ins for the coordinator, alerts and symbol actors."""

    def __init__(self, harness_factory: Any, url: str, *, budget: int = 300,
                 window_s: float = 300.0, watchdog_s: float = 30.0, poll_s: float = 12.0) -> None:
        def factory(sink: Callable[[Any], None]) -> WsClientAdapter:
            self.sink = TimedSink(sink)
            self.adapter = WsClientAdapter(url, self.sink, open_timeout=2.0, name="ws-gw-test")
            return self.adapter

        names = ("coord", "alerts", *(f"symbol-{s}" for s in SYMS))
        stand_ins = [ChildSpec(n, Inbox) for n in names]
        self.h = harness_factory(
            *stand_ins,
            ChildSpec("reconnect", ReconnectController, kwargs={
                "backoff": BACKOFF, "budget": budget, "window_s": window_s}),
            ChildSpec("reconciler", Reconciler, kwargs={"coordinator": "coord", "poll_s": poll_s}),
            ChildSpec("gateway", Gateway, kwargs={
                "adapter_factory": factory, "coordinator": "coord", "quote_listeners": (),
                "watchdog_timeout_s": watchdog_s}),
            seed=SEED)

    def gw(self) -> Gateway:
        return self.h.actor("gateway")

    def rc(self) -> ReconnectController:
        return self.h.actor("reconnect")

    def inbox(self, name: str) -> Inbox:
        return self.h.actor(name)

    def quotes(self, sym: str) -> list[Quote]:
        return self.inbox(f"symbol-{sym}").of(Quote)

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Until ``cond()`` holds at quiescence; socket events wake us up."""
        deadline = time.monotonic() + timeout
        while True:
            self.sink.activity.clear()
            self.h.settle()
            if cond():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"gateway {self.gw().counts}")
            self.sink.activity.wait(min(left, 0.01))

    def ready(self) -> None:
        self.wait(lambda: self.gw().connected and not self.gw().reconciling, "connected+resynced")

    def next_attempt(self) -> None:
        """Advance virtual time exactly to the controller's next attempt."""
        self.h.advance(self.rc().delays[-1])


def start_server(tmp_path: Any, engine: SimulatedExchange | None = None, port: int = 0,
                 **kw: Any) -> ExchangeServer:
    srv = ExchangeServer(engine, port=port, out_dir=tmp_path, **kw)
    srv.start()
    if engine is None:
        for i, sym in enumerate(SYMS):
            srv.push(Quote(sym, D(100 + i), D(100 + i) + D("0.1"), T0))
    return srv


def order(coid: str, sym: str = "BTCUSDT", qty: str = "1") -> SubmitOrder:
    return SubmitOrder(OrderRequest(coid, sym, Side.BUY, OrderType.MARKET, D(qty), T0))


def session_subscriptions(srv: ExchangeServer) -> list[set[str]]:
    return srv.call(lambda: [set(s.subscriptions) for s in srv.sessions]).result(WAIT)


@pytest.fixture
def servers():
    made: list[ExchangeServer] = []
    yield made
    for srv in made:
        srv.stop()


def test_restart_reconnects_with_jittered_backoff_restores_subscriptions_once_and_resyncs(
        tmp_path, harness_factory, servers):
    srv = start_server(tmp_path)
    servers.append(srv)
    rig = Rig(harness_factory, srv.url)
    rig.ready()
    rig.h.tell("gateway", Subscribe(SYMS[:3]))
    rig.wait(lambda: all(len(rig.quotes(s)) == 1 for s in SYMS[:3]), "the subscribed quotes")
    port, engine = srv.port, srv.engine

    srv.stop()  # the exchange dies
    rig.wait(lambda: not rig.gw().connected, "the drop")
    t_down = rig.h.now
    assert rig.rc().state == "reconnecting"
    rig.h.tell("gateway", Unsubscribe(("SOLUSDT",)))  # tracked changes while down
    rig.h.tell("gateway", Subscribe(("ADAUSDT",)))
    for k in range(5):  # exchange still down: every attempt fails, once
        failed = rig.sink.statuses(False)
        rig.next_attempt()
        rig.wait(lambda failed=failed: rig.sink.statuses(False) == failed + 1, f"attempt {k + 1} to fail")

    servers.append(start_server(tmp_path, engine, port=port))  # back on the same port
    rig.next_attempt()
    rig.ready()
    again = servers[-1]

    rc, gw = rig.rc(), rig.gw()
    assert rc.state == "connected" and rc.total_attempts == 6 == gw.counts["connect_attempts"]
    # Growing, jittered delays, reproducible from the injected seed.
    rng = random.Random(f"{SEED}:reconnect")
    assert rc.delays == [BACKOFF.delay(k, rng) for k in range(1, len(rc.delays) + 1)]
    waits = rc.delays[:6]
    ceilings = [BACKOFF.ceiling(k) for k in range(1, 7)]
    assert ceilings == [1, 2, 4, 8, 16, 32]
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len({round(w / c, 6) for w, c in zip(waits, ceilings, strict=True)}) == 6  # jittered, not fixed
    assert sum(waits[3:]) > sum(waits[:3])
    times = [t_down, *rc.attempts]  # virtual times of each attempt
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx(waits)

    # Exactly the tracked set, restored once, on the new session.
    assert gw.subscriptions == {"BTCUSDT", "ETHUSDT", "ADAUSDT"}
    assert gw.counts["subscription_restores"] == 1  # one Subscribe per reconnect
    assert session_subscriptions(again) == [{"BTCUSDT", "ETHUSDT", "ADAUSDT"}]
    recs = read_events(tmp_path / "events.jsonl")
    last_session = [r for r in recs if r["kind"] == "client_connected"][-1]["session"]
    subs = [r for r in recs if r["kind"] == "subscribed" and r["session"] == last_session]
    assert len(subs) == 1 and sorted(subs[0]["symbols"]) == ["ADAUSDT", "BTCUSDT", "ETHUSDT"]
    assert engine.stats["duplicate_subscriptions"] == 0
    assert [len(rig.quotes(s)) for s in SYMS] == [2, 2, 1, 1]  # no leak, no duplicate
    # The reconnect asked for a resync; trading was fenced until it finished.
    assert rig.h.actor("reconciler").resyncs == 2
    changes = rig.inbox("coord").of(ConnectivityChanged)
    states = [(c.connected, c.stream_reconciling) for c in changes]
    assert states[:2] == [(True, True), (True, False)]
    assert states[-2:] == [(True, True), (True, False)]
    assert all(not c or r for c, r in states[2:-1])  # down or resyncing in between
    assert [p.source for p in rig.inbox("coord").of(BrokerPositions)] == ["resync:connected"] * 2


def test_error_handler_returns_at_once_while_reconnecting(tmp_path, harness_factory, servers):
    srv = start_server(tmp_path)
    servers.append(srv)
    rig = Rig(harness_factory, srv.url)
    rig.ready()
    srv.inject({"drop_stream": True})
    rig.wait(lambda: not rig.gw().connected, "the drop")
    srv.stop()
    before = len(rig.sink.calls)
    for k in range(4):
        failed = rig.sink.statuses(False)
        rig.next_attempt()
        # Orders keep coming while the reconnect is under way: each is
        # refused on the spot through the same sink, never queued or lost.
        for i in range(50):
            rig.h.system.tell("gateway", order(f"o{k}-{i}"))
        rig.wait(lambda failed=failed: rig.sink.statuses(False) == failed + 1, f"attempt {k + 1} to fail")
    calls = rig.sink.calls[before:]
    statuses = [dt for dt, e in calls if isinstance(e, StreamStatus)]
    refusals = [dt for dt, e in calls if isinstance(e, OrderRejected)]
    assert len(statuses) == 4 and len(refusals) == 200
    assert statistics.median(statuses) < 1e-3
    assert statistics.median(refusals) < 1e-3
    assert sorted(dt for dt, _ in calls)[int(len(calls) * 0.9)] < 1e-3
    rejected = rig.inbox("coord").of(OrderRejected)
    assert len(rejected) == 200 and all(r.reason.startswith("not_connected:") for r in rejected)
    kinds = [r["kind"] for r in read_events(tmp_path / "events.jsonl")]
    assert "order_submitted" not in kinds  # none of them reached the exchange


def test_stalled_stream_trips_the_watchdog_and_a_fresh_session_is_served(
        tmp_path, harness_factory, servers):
    srv = start_server(tmp_path)
    servers.append(srv)
    rig = Rig(harness_factory, srv.url, watchdog_s=5.0, poll_s=1000.0)
    rig.h.tell("gateway", Subscribe(("BTCUSDT",)))
    rig.ready()
    for i in range(1, 5):  # a live stream keeps the watchdog quiet for 12 s
        rig.h.advance(3.0)
        srv.push(Quote("BTCUSDT", D("100") + i, D("100.1") + i, T0))
        rig.wait(lambda i=i: len(rig.quotes("BTCUSDT")) == i + 1, f"quote {i}")
    assert rig.gw().counts["watchdog_trips"] == 0 and rig.gw().connected

    srv.inject({"stall_stream": True})  # socket open, nothing sent
    srv.push(Quote("BTCUSDT", D("110"), D("110.1"), T0))
    assert rig.h.now == 12.0  # the last quote came in now; checks run every second
    rig.h.run_until(16.9)  # silent, but not yet for timeout_s
    assert rig.gw().connected and rig.adapter.connected and rig.gw().counts["watchdog_trips"] == 0
    rig.h.run_until(17.0)  # the check at the timeout
    gw = rig.gw()
    assert gw.counts["watchdog_trips"] == 1 and not gw.connected
    assert rig.rc().state == "reconnecting"
    assert "watchdog" in rig.inbox("coord").of(ConnectivityChanged)[-1].reason
    rig.next_attempt()  # a new connection is not stalled
    rig.ready()
    assert rig.quotes("BTCUSDT")[-1].bid == D("110")  # the current quote, on resubscribe
    rig.wait(lambda: session_subscriptions(srv) == [{"BTCUSDT"}], "the stalled session to go")
    assert srv.stats["connections"] == 2


def test_attempt_budget_stops_attempts_and_alerts(tmp_path, harness_factory, servers):
    srv = start_server(tmp_path)
    servers.append(srv)
    port, engine = srv.port, srv.engine
    srv.stop()  # the exchange is down before the gateway starts
    rig = Rig(harness_factory, srv.url, budget=3, window_s=300.0)
    rig.wait(lambda: rig.sink.statuses(False) == 1, "the first connect to fail")
    for k in range(3):
        rig.next_attempt()
        rig.wait(lambda k=k: rig.sink.statuses(False) == k + 2, f"attempt {k + 1} to fail")
    rig.next_attempt()  # the fourth would exceed the budget
    rc = rig.rc()
    assert rc.state == "budget_exhausted" and rc.total_attempts == 3
    alerts = rig.inbox("alerts").of(Alert)
    assert len(alerts) == 1 and alerts[0].severity == "critical"
    assert "budget" in alerts[0].title
    rig.h.advance(200.0)  # well inside the window: no attempt at all
    assert rig.gw().counts["connect_attempts"] == 3 and rig.sink.statuses(False) == 4
    assert rig.rc().total_attempts == 3 and len(rig.inbox("alerts").of(Alert)) == 1

    servers.append(start_server(tmp_path, engine, port=port))
    rig.h.run_until(rc.attempts[0] + 300.0)  # the oldest attempt leaves the window
    rig.ready()
    assert rig.rc().state == "connected" and rig.rc().total_attempts == 4
    assert rig.rc().exhausted_alerts == 1 and len(rig.inbox("alerts").of(Alert)) == 1


class DeadVenueGateway(Actor):
    """Stands in for the gateway with the venue down: every ReconnectNow
    fails at once, as a refused connection does."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.asks: list[float] = []

    @handles(ReconnectNow)
    def on_now(self, msg: ReconnectNow) -> None:
        self.asks.append(self.ctx.clock.monotonic())
        self.ctx.tell("reconnect", StreamDown("connect failed", self.ctx.clock.now()))


def test_backoff_is_capped_at_60s_with_full_jitter(harness_factory):
    h = harness_factory(ChildSpec("gateway", DeadVenueGateway), ChildSpec("alerts", Inbox),
                        ChildSpec("reconnect", ReconnectController), seed=SEED)
    h.tell("reconnect", StreamDown("test", T0))
    h.advance(25 * 60.0)
    rc = h.actor("reconnect")
    assert len(h.actor("gateway").asks) == rc.total_attempts >= 25
    assert max(rc.delays) <= 60.0
    assert 20.0 < statistics.mean(rc.delays[10:]) < 40.0  # uniform on [0, 60] once capped
    assert h.actor("alerts").got == []  # about 50 attempts: well inside 300 per 5 minutes


def test_an_attempt_in_flight_is_not_cut_short_by_the_next_delay(harness_factory):
    h = harness_factory(ChildSpec("gateway", Inbox), ChildSpec("alerts", Inbox),
                        ChildSpec("reconnect", ReconnectController,
                                  kwargs={"backoff": BACKOFF, "attempt_timeout_s": 15.0}),
                        seed=SEED)
    h.tell("reconnect", StreamDown("test", T0))
    rc = h.actor("reconnect")
    h.advance(rc.delays[0])
    assert rc.total_attempts == 1 and rc.state == "connecting"
    h.advance(14.9)  # a slow handshake: no outcome yet, and no second connect() over it
    assert rc.total_attempts == 1 and len(h.actor("gateway").of(ReconnectNow)) == 1
    h.advance(0.2)  # no outcome within attempt_timeout_s: try again
    assert rc.total_attempts == 2


def _bad_value_frame(msg: Any, field: str, raw: bytes) -> bytes:
    """``msg`` on the wire with ``field`` replaced by an invalid Decimal."""
    wire = to_wire(msg)
    wire["f"][field] = msgpack.ExtType(EXT_DECIMAL, raw)
    return msgpack.packb(wire, default=_default, use_bin_type=True)


def test_bad_frames_are_counted_and_the_gateway_keeps_running(harness_factory):
    received: list[Any] = []
    quote = Quote("BTCUSDT", D("100"), D("100.1"), T0)
    fill = OrderFilled("c1", "F1", "BTCUSDT", Side.BUY, D("1"), D("100"), D("0"), T0)

    def venue(ws: Any) -> None:
        """A broken venue: garbage first, then a good quote."""
        ws.send(b"\xc1\x00garbage")
        ws.send("a text frame")
        ws.send(msgpack.packb({"v": 1, "t": "NoSuchMessage", "f": {}}))
        ws.send(_bad_value_frame(quote, "bid", b"NaN"))
        ws.send(_bad_value_frame(fill, "price", b"-5"))
        ws.send(_bad_value_frame(fill, "qty", b"-1"))
        ws.send(encode(order("reflected")))  # decodes, but no venue sends orders
        ws.send(encode(ResyncDone(T0)))  # nor the reconciler's all-clear
        ws.send(encode(ExchangeError(code="made-up", reason="an invented code", ts=T0)))
        ws.send(encode(quote))
        for frame in ws:
            received.append(frame)

    with sync_serve(venue, "127.0.0.1", 0) as fake:
        thread = threading.Thread(target=fake.serve_forever, daemon=True)
        thread.start()
        rig = Rig(harness_factory, f"ws://127.0.0.1:{fake.socket.getsockname()[1]}")
        rig.h.tell("gateway", Subscribe(("BTCUSDT",)))
        rig.wait(lambda: len(rig.quotes("BTCUSDT")) == 1, "the good quote after the garbage")
        gw = rig.gw()
        assert rig.adapter.bad_frames == 6
        assert gw.counts["unexpected_events"] == 2
        assert gw.counts["error_bad_frame"] == 6 and gw.counts["error_other"] == 1
        info = rig.h.cell("gateway").info
        assert info["bad_frames"] == 6 and info["unexpected_events"] == 2
        assert gw.connected and gw.reconciling  # a ResyncDone off the socket changes nothing
        assert rig.h.cell("gateway").incarnation == 1
        assert rig.h.system.failure_counts["gateway"] == 0
        rig.h.tell("gateway", order("real"))

        def orders_at_venue() -> list[str]:
            sent = [decode(f) for f in list(received)]
            return [m.order.client_order_id for m in sent if isinstance(m, SubmitOrder)]

        rig.wait(lambda: "real" in orders_at_venue(), "the real order at the venue")
        assert orders_at_venue() == ["real"]  # the reflected order never went back out
        rig.h.system.shutdown()
        fake.shutdown()
    thread.join(WAIT)


def test_events_log_holds_every_order_and_fill_once(tmp_path, harness_factory, servers):
    srv = start_server(tmp_path, config={"partial_fills": 3, "duplicate_fill": 2})
    servers.append(srv)
    rig = Rig(harness_factory, srv.url)
    rig.ready()
    sent = [f"e{i}" for i in range(20)]
    for coid in sent[:10]:
        rig.h.system.tell("gateway", order(coid, SYMS[int(coid[1:]) % 4], qty="3"))
    rig.wait(lambda: len(rig.inbox("coord").of(OrderFilled)) == 10 * 3 + 2, "the first fills")
    srv.inject({"drop_stream": True})
    rig.wait(lambda: not rig.gw().connected, "the drop")
    rig.h.system.tell("gateway", order("lost"))  # refused: never reaches the exchange
    rig.next_attempt()
    rig.ready()
    for coid in sent[10:]:
        rig.h.system.tell("gateway", order(coid, qty="3"))
    rig.h.system.tell("gateway", order("e0"))  # a resubmission: rejected, logged once more
    rig.wait(lambda: len(rig.inbox("coord").of(OrderAcked)) == 20
             and len(rig.inbox("coord").of(OrderRejected)) == 2, "every answer")
    rig.wait(lambda: len(rig.inbox("coord").of(OrderFilled)) == 20 * 3 + 2, "every fill report")
    recs = read_events(tmp_path / "events.jsonl")
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    logged = [r["client_order_id"] for r in recs if r["kind"] == "order_submitted"]
    assert sorted(logged) == sorted([*sent, "e0"])  # every order received, once per receipt
    fills = rig.inbox("coord").of(OrderFilled)
    fill_ids = [r["fill_id"] for r in recs if r["kind"] == "order_filled"]
    assert len(fill_ids) == len(set(fill_ids)) == 60  # every fill made, once
    assert set(fill_ids) == {f.fill_id for f in fills}  # the duplicates repeat an id
    assert len([r for r in recs if r["kind"] == "fill_duplicated"]) == 2
