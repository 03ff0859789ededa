"""Mailboxes, addressing, dead letters, conflation, executor, introspection."""

from __future__ import annotations

import threading
from datetime import datetime, UTC
from decimal import Decimal

import pytest

from messages import OrderFilled, Quote, Side
from runtime import Actor, ActorSystem, AskInsideHandler, ChildSpec, SupervisorSpec, TaskDone, VirtualClock, handles
from runtime.mailbox import Mailbox
from tests.rt_helpers import Block, Gate, Note, Recorder

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def quote(sym, bid):
    return Quote(sym, Decimal(bid), Decimal(bid) + 1, T0)


def fill(i):
    return OrderFilled(f"c{i}", f"f{i}", "BTC", Side.BUY, Decimal(1), Decimal(100), Decimal(0), T0)


def test_conflation_keeps_latest_per_key_and_never_touches_orders():
    mb = Mailbox("sym", conflate=True)
    mb.put(quote("BTC", "100"))
    mb.put(fill(1))
    mb.put(quote("ETH", "10"))
    mb.put(quote("BTC", "101"))
    mb.put(fill(2))
    mb.put(quote("BTC", "102"))
    got = []
    while mb.depth:
        got.append(mb.get())
        mb.done()
    assert [type(m).__name__ for m in got] == ["Quote", "OrderFilled", "Quote", "OrderFilled"]
    assert got[0].symbol == "BTC" and got[0].bid == Decimal("102")
    assert got[2].symbol == "ETH"
    assert [m.fill_id for m in got if isinstance(m, OrderFilled)] == ["f1", "f2"]
    assert mb.conflated == 2


def test_a_malformed_quote_is_queued_for_the_receiver_not_raised_at_the_sender():
    """A corrupted quote (a list where the symbol belongs: unhashable key) must reach
    the receiving actor's handler, which rejects it; it must not raise inside the
    sender's tell (the gateway would crash on a bad tick)."""
    bad = object.__new__(Quote)
    for name, value in {"symbol": ["BTC"], "bid": Decimal(1), "ask": Decimal(2), "ts": T0,
                        "bid_size": Decimal(0), "ask_size": Decimal(0)}.items():
        object.__setattr__(bad, name, value)
    mb = Mailbox("sym", conflate=True)
    mb.put(quote("BTC", "100"))
    mb.put(bad)
    mb.put(bad)
    assert mb.depth == 3 and mb.conflated == 0
    assert mb.get().symbol == "BTC"
    mb.done()
    assert mb.get() is bad


def test_mailbox_without_conflation_keeps_every_quote():
    mb = Mailbox("orders", conflate=False)
    for bid in ("100", "101", "102"):
        mb.put(quote("BTC", bid))
    assert mb.depth == 3


def test_conflated_actor_sees_latest_quote(harness_factory):
    h = harness_factory(ChildSpec("g", Gate, conflate=True))
    gate, entered = threading.Event(), threading.Event()
    h.system.tell("g", Block(gate, entered))
    assert entered.wait(5)
    for bid in range(100, 200):
        h.system.tell("g", quote("BTC", str(bid)))
    h.system.tell("g", fill(7))
    assert h.cell("g").mailbox.depth == 2
    gate.set()
    h.settle()
    seen = h.actor("g").seen
    assert seen[0].bid == Decimal(199) and seen[1].fill_id == "f7"


def test_unknown_name_is_a_dead_letter(harness_factory):
    h = harness_factory(ChildSpec("a", Recorder))
    assert h.system.tell("nobody", Note("x")) is False
    snap = h.snapshot()["dead_letters"]
    assert snap["total"] == 1 and snap["recent"][0]["target"] == "nobody"
    assert h.dead_letters.messages() == [Note("x")]


def test_unhandled_message_type_is_kept_as_dead_letter(harness_factory):
    h = harness_factory(ChildSpec("a", Recorder))
    h.tell("a", 12345)
    assert h.dead_letters.snapshot()["by_reason"] == {"unhandled": 1}
    assert h.cell("a").state == "running"


def test_shutdown_handles_what_was_queued_then_refuses_later_mail(harness_factory):
    h = harness_factory(ChildSpec("g", Gate))
    gate, entered = threading.Event(), threading.Event()
    h.system.tell("g", Block(gate, entered))
    assert entered.wait(5)
    h.system.tell("g", Note("queued before shutdown"))
    threading.Timer(0.05, gate.set).start()
    h.system.shutdown()
    # The graceful stop is queued behind the note, so the note is handled.
    assert h.cell("g").actor.seen == [Note("queued before shutdown")]
    assert h.system.tell("g", Note("after")) is False
    assert h.dead_letters.snapshot()["by_reason"] == {"no such actor": 1}


def test_introspection_shows_depth_of_a_blocked_actor_and_peeks(harness_factory):
    h = harness_factory(ChildSpec("g", Gate))
    gate, entered = threading.Event(), threading.Event()
    h.system.tell("g", Block(gate, entered))
    assert entered.wait(5)
    for i in range(5):
        h.system.tell("g", Note(f"n{i} api_key=SECRET123"))
    snap = h.snapshot(peek=2)
    g = next(a for a in snap["actors"] if a["name"] == "g")
    assert g["depth"] == 5 and g["state"] == "running" and g["kind"] == "Gate"
    assert [w["type"] for w in g["waiting"]] == ["Note", "Note"]
    assert "SECRET123" not in str(snap)
    assert g["oldest_age_s"] >= 0.0
    gate.set()
    h.settle()
    g = next(a for a in h.snapshot()["actors"] if a["name"] == "g")
    assert g["depth"] == 0 and g["processed"] == 6 and g["high_water"] >= 5
    root = next(s for s in snap["supervisors"] if s["name"] == "root")
    assert root["strategy"] == "one_for_one" and root["children"] == ["g"]


class Asker(Actor):
    @handles(Note)
    def on_note(self, msg):
        return self.ctx.system.ask("other", msg)


def test_ask_inside_a_handler_is_refused(harness_factory):
    h = harness_factory(ChildSpec("asker", Asker), ChildSpec("other", Recorder))
    with pytest.raises(AskInsideHandler):
        h.ask("asker", Note("x"))


class Cruncher(Actor):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.results: list[TaskDone] = []

    @handles(int)
    def on_int(self, n):
        self.ctx.submit(lambda: 1 // n, tag=n)

    @handles(TaskDone)
    def on_done(self, done):
        self.results.append(done)


def test_executor_results_and_errors_come_back_as_messages(harness_factory):
    h = harness_factory(ChildSpec("c", Cruncher))
    h.tell("c", 1)
    h.tell("c", 0)
    res = {d.tag: d for d in h.actor("c").results}
    assert res[1].ok and res[1].result == 1
    assert isinstance(res[0].error, ZeroDivisionError)
    ex = h.snapshot()["executor"]
    assert ex["failed"] == 1 and "ZeroDivisionError" in ex["recent_errors"][0]


def test_two_systems_in_one_process_are_independent():
    a = ActorSystem(clock=VirtualClock(), name="a")
    b = ActorSystem(clock=VirtualClock(), name="b")
    try:
        a.start(SupervisorSpec("root", [ChildSpec("x", Recorder)]))
        b.start(SupervisorSpec("root", [ChildSpec("x", Recorder)]))
        a.tell("x", Note("for a"))
        a.wait_quiescent()
        b.wait_quiescent()
        assert a.directory.get("x").actor.notes == ["for a"]
        assert b.directory.get("x").actor.notes == []
    finally:
        a.shutdown()
        b.shutdown()


def test_market_lane_puts_order_messages_ahead_of_waiting_market_data():
    """On the order path, a signal, fill or control message never waits behind
    a burst of quotes; quotes keep their own order (and still conflate)."""
    mb = Mailbox("coordinator", conflate=True, market_lane=True)
    for i in range(50):
        mb.put(quote(f"S{i}", 100 + i))
    mb.put(quote("S0", 999))           # conflates in place, stays in the market lane
    mb.put(fill(1))
    mb.put("signal-2")
    assert mb.depth == 52
    assert mb.peek(2) == [fill(1), "signal-2"]
    taken = [mb.get() for _ in range(52)]
    assert taken[:2] == [fill(1), "signal-2"]
    quotes = taken[2:]
    assert [x.symbol for x in quotes] == [f"S{i}" for i in range(50)]
    assert quotes[0].bid == Decimal(999) and mb.conflated == 1
    assert mb.depth == 0 and mb.oldest_age_s() == 0.0


def test_without_a_market_lane_order_is_plain_fifo():
    mb = Mailbox("symbol-X")
    mb.put(quote("X", "1"))
    mb.put(fill(1))
    assert [mb.get(), mb.get()] == [quote("X", "1"), fill(1)]


def test_the_launcher_gives_the_order_path_a_market_lane(tmp_path):
    from config import config_hash, load_config
    from runtime.clock import EPOCH_DEFAULT
    from app.launcher import LaunchSpec, Runtime

    cfg = load_config(overrides={"strategy": {"name": "none"}})
    rt = Runtime(LaunchSpec(cfg, tmp_path / "run", ("BTCUSDT",), VirtualClock(EPOCH_DEFAULT),
                            run_id="lanes", config_hash=config_hash(cfg))).start()
    try:
        lanes = {c.name for c in rt.system.directory.cells() if c.mailbox.market_lane}
        assert {"coordinator", "stops", "gateway"} <= lanes
        assert "symbol-BTCUSDT" not in lanes
    finally:
        rt.stop()
