"""SimVenue under virtual time: latency on the virtual clock, stream faults,
the in-process adapter."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from actors.sim_venue import SimVenue
from exchange import SimulatedExchange, read_events
from exchange.inprocess import InProcessAdapter
from exchange.protocol import BrokerAdapter
from messages import (
    CancelOrder,
    CancelOutcome,
    ExchangeFault,
    OrderAcked,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    PositionSnapshot,
    QueryPositions,
    Quote,
    Side,
    StreamStatus,
    Subscribe,
    SubmitOrder,
)
from runtime import ChildSpec
from runtime.actor import Actor
from runtime.clock import EPOCH_DEFAULT

D = Decimal
SYM = "BTCUSDT"
T0 = EPOCH_DEFAULT


class Recorder(Actor):
    """Stands in for the gateway: keeps (virtual time, message) of everything."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.got: list[tuple[float, Any]] = []

    def on_receive(self, message: Any) -> None:
        self.got.append((round(self.ctx.clock.monotonic(), 6), message))

    def types(self) -> list[str]:
        return [type(m).__name__ for _, m in self.got]


def order(coid: str, side: str = "buy", otype: str = "market", qty: str = "10",
          price: str | None = None) -> SubmitOrder:
    return SubmitOrder(OrderRequest(coid, SYM, Side(side), OrderType(otype), D(qty), T0,
                                    price=D(price) if price else None))


def quote(bid: str, ask: str) -> Quote:
    return Quote(SYM, D(bid), D(ask), T0)


@pytest.fixture
def venue(harness_factory, tmp_path):
    def build(**config):
        path = tmp_path / "events.jsonl"
        config = {"latency_ms": 0, **config}  # events at once unless a test sets a latency
        h = harness_factory(
            ChildSpec("venue", SimVenue, kwargs={"config": config, "events_path": path,
                                                 "strict": True}),
            ChildSpec("gateway", Recorder))
        return h, h.actor("gateway"), path

    return build


def test_latency_rides_the_virtual_clock(venue):
    h, gw, _ = venue(latency_ms=50)
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", Subscribe((SYM,)))
    h.tell("venue", order("b1"))
    assert gw.got == []
    h.advance(0.049)
    assert gw.got == []
    h.advance(0.002)
    assert gw.types() == ["Quote", "OrderAcked", "OrderFilled"]
    assert {t for t, _ in gw.got} == {0.05}
    fill = gw.got[-1][1]
    assert (fill.price, fill.qty, fill.ts) == (D("100.1"), D("10"), T0)
    h.advance(1.0)
    h.tell("venue", quote("101", "101.1"))  # subscribed: forwarded with latency
    h.advance(0.05)
    assert gw.got[-1] == (1.101, quote("101", "101.1"))


def test_slow_cancel_ack_and_fill_meanwhile(venue):
    h, gw, path = venue(latency_ms=5, cancel_ack_delay_ms=3000)
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", order("sl", "sell", "limit", price="101"))
    h.advance(1.0)
    h.tell("venue", CancelOrder("sl", SYM, T0))
    h.advance(1.0)
    h.tell("venue", ExchangeFault({"fill_resting": {"symbol": SYM}}))
    h.advance(3.0)
    kinds = [(t, type(m).__name__) for t, m in gw.got]
    assert kinds == [(0.005, "OrderAcked"), (2.005, "OrderFilled"), (4.005, "CancelConfirmed")]
    assert gw.got[-1][1].outcome is CancelOutcome.ALREADY_FILLED
    h.system.shutdown()
    logged = [r["kind"] for r in read_events(path)]
    assert logged.index("cancel_requested") < logged.index("order_filled") < \
        logged.index("cancel_rejected")


def test_drop_stream_loses_events_until_reconnect(venue):
    h, gw, _ = venue()
    adapter = InProcessAdapter(h.system, "venue", client="gateway")
    assert isinstance(adapter, BrokerAdapter) and adapter.connected
    h.tell("venue", quote("100", "100.1"))
    adapter.send(Subscribe((SYM,)))
    h.settle()
    h.tell("venue", ExchangeFault({"drop_stream": True}))
    assert isinstance(gw.got[-1][1], StreamStatus) and not gw.got[-1][1].connected
    assert not adapter.connected
    seen = len(gw.got)
    h.tell("venue", quote("100.5", "100.6"))
    assert len(gw.got) == seen  # nothing flows while disconnected
    adapter.send(order("x"))
    h.settle()
    rej = gw.got[-1][1]
    assert isinstance(rej, OrderRejected) and rej.reason.startswith("not_connected:")
    adapter.connect()
    h.settle()
    assert gw.got[-1][1] == StreamStatus(True, "connected", T0) and adapter.connected
    h.tell("venue", quote("100.7", "100.8"))
    assert not isinstance(gw.got[-1][1], Quote)  # a new session has no subscriptions
    adapter.send(Subscribe((SYM,)))
    adapter.send(order("y", qty="1"))
    h.settle()
    assert gw.types()[-3:] == ["Quote", "OrderAcked", "OrderFilled"]
    assert h.actor("venue").engine.stats["duplicate_subscriptions"] == 0


def test_stall_holds_events_then_releases_them_in_order(venue):
    h, gw, _ = venue(latency_ms=10)
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", ExchangeFault({"stall_stream": 2}))
    h.tell("venue", order("a", qty="1"))
    h.tell("venue", order("b", qty="1"))
    h.advance(1.9)
    assert gw.got == []  # the socket is "open" but silent
    h.advance(0.2)
    assert [type(m).__name__ + ":" + m.client_order_id for _, m in gw.got] == [
        "OrderAcked:a", "OrderFilled:a", "OrderAcked:b", "OrderFilled:b"]
    assert all(t >= 2.0 for t, _ in gw.got)


def test_duplicate_fill_reaches_the_client_twice(venue):
    h, gw, _ = venue()
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", ExchangeFault({"duplicate_fill": True, "partial_fills": 2}))
    h.tell("venue", order("d", qty="4"))
    fills = [m for _, m in gw.got if isinstance(m, OrderFilled)]
    assert [f.fill_id for f in fills] == ["SIM1-F1", "SIM1-F1", "SIM1-F2"]


def test_bad_fault_and_garbage_do_not_kill_the_venue(venue):
    h, gw, _ = venue()
    h.tell("venue", ExchangeFault({"bogus_key": 1}))
    h.tell("venue", "garbage")
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", order("ok", qty="1"))
    assert gw.types() == ["OrderAcked", "OrderFilled"]
    assert h.cell("venue").incarnation == 1  # never restarted
    assert "garbage" in h.dead_letters.messages()  # unhandled: recorded, not fatal


def test_restart_fault_keeps_state_and_drops_the_session(venue):
    h, gw, _ = venue()
    adapter = InProcessAdapter(h.system)
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", order("b", qty="3"))
    h.tell("venue", ExchangeFault({"restart": True}))
    assert gw.got[-1][1].connected is False
    adapter.connect()
    adapter.send(QueryPositions("q"))
    adapter.send(order("b", qty="3"))  # resubmitted after the crash: recognised
    h.settle()
    snap = [m for _, m in gw.got if isinstance(m, PositionSnapshot)][0]
    assert snap.as_dict() == {SYM: D("3")}
    assert gw.got[-1][1].reason.startswith("duplicate_client_order_id:")


def test_shared_engine_survives_the_venue_actor(harness_factory):
    engine = SimulatedExchange({"latency_ms": 0})
    h = harness_factory(ChildSpec("venue", SimVenue, args=(engine,)),
                        ChildSpec("gateway", Recorder))
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", order("b", qty="2"))
    h.system.shutdown()
    assert engine.position(SYM) == D("2")  # the state lives in the engine object


def test_adapter_refuses_when_there_is_no_venue(harness_factory):
    h = harness_factory(ChildSpec("gateway", Recorder))
    got = []
    adapter = InProcessAdapter(h.system, "venue", sink=got.append)
    adapter.send(order("x"))
    adapter.send(QueryPositions("q"))
    assert not adapter.connected
    assert isinstance(got[0], OrderRejected) and got[0].reason.startswith("not_connected")
    assert got[1].code == "not_connected" and got[1].ref == "q"


def test_runs_are_deterministic(harness_factory):
    def run() -> list:
        h = harness_factory(
            ChildSpec("venue", SimVenue, kwargs={"config": {"latency_ms": 3,
                                                            "latency_jitter_ms": 7,
                                                            "seed": 5, "partial_fills": 3}}),
            ChildSpec("gateway", Recorder), seed=5)
        h.tell("venue", Subscribe((SYM,)))
        for i in range(10):
            h.tell("venue", quote(str(100 + i), str(100.5 + i)))
            h.tell("venue", order(f"o{i}", "buy" if i % 2 else "sell", qty="3"))
            h.advance(0.004)
        h.advance(1)
        got = list(h.actor("gateway").got)
        h.system.shutdown()
        return got

    first = run()
    assert first == run() and len(first) == 10 * (1 + 1 + 3)
    assert [type(m) for _, m in first][:2] == [Quote, OrderAcked]


def test_scenario_exchange_block_with_settings_and_faults(venue):
    h, gw, path = venue(latency_ms=5, reject_next=1)
    h.tell("venue", quote("100", "100.1"))
    h.tell("venue", order("r1", qty="1"))
    h.tell("venue", order("r2", qty="1"))
    h.advance(0.01)
    assert gw.types() == ["OrderRejected", "OrderAcked", "OrderFilled"]
    h.system.shutdown()
    kinds = [r["kind"] for r in read_events(path)]
    assert kinds[:2] == ["fault_injected", "client_connected"]
