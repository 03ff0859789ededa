"""Pooled actors on a dispatcher (DESIGN section 2): serialized handling, order
per sender, nothing lost across crashes, fairness, blocking made visible."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from runtime import Actor, ChildSpec, handles
from runtime.dispatcher import Dispatcher, managed_blocking
from runtime.testing import VirtualHarness


@dataclass(frozen=True)
class Msg:
    sender: int
    seq: int
    crash: bool = False


class Probe(Actor):
    """Journals every Msg it handles in a log shared across its incarnations,
    and counts handlers running at once for its name (must never exceed 1)."""

    def __init__(self, ctx, log: dict, inside: dict, overlaps: list) -> None:
        super().__init__(ctx)
        self.shared_log, self.inside, self.overlaps = log, inside, overlaps

    @handles(Msg)
    def on_msg(self, m: Msg) -> None:
        name = self.ctx.name
        self.inside[name] = self.inside.get(name, 0) + 1
        if self.inside[name] != 1:
            self.overlaps.append(name)
        time.sleep(0)  # let other workers run right here, inside the handler
        self.inside[name] -= 1
        if m.crash:
            raise RuntimeError(f"crash asked by {m}")
        self.shared_log.setdefault(name, []).append((m.sender, m.seq))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(threads=st.integers(2, 4), n_actors=st.integers(2, 8), n_senders=st.integers(1, 3),
       plan=st.lists(st.tuples(st.integers(0, 7), st.booleans(), st.integers(0, 2)),
                     min_size=1, max_size=150))
def test_pooled_actors_serialize_keep_order_and_lose_nothing(threads, n_actors, n_senders, plan):
    log: dict = {}
    inside: dict = {}
    overlaps: list = []
    names = [f"p{i}" for i in range(n_actors)]
    children = [ChildSpec(n, Probe, args=(log, inside, overlaps)) for n in names]
    h = VirtualHarness(*children, dispatcher_threads=threads, intensity=10_000,
                       period_s=1.0).start()
    try:
        # each sender thread tells its share of the plan, in order, to random actors
        sent: dict = {}
        per_sender: list[list] = [[] for _ in range(n_senders)]
        for i, (target, crash, sender) in enumerate(plan):
            s = sender % n_senders
            per_sender[s].append((names[target % n_actors], Msg(s, i, crash and i % 5 == 0)))
        for items in per_sender:
            for name, m in items:
                sent.setdefault(name, []).append(m)

        def send(items):
            for name, m in items:
                h.system.tell(name, m)

        ts = [threading.Thread(target=send, args=(items,)) for items in per_sender]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        h.settle()
        h.advance(120)  # restarts wait out their backoff on the virtual clock
        assert overlaps == [], "two handlers of one actor ran at once"
        crashed = {(m.sender, m.seq) for m in h.dead_letters.messages() if isinstance(m, Msg)}
        for name in names:
            expected = [(m.sender, m.seq) for m in sent.get(name, [])]
            handled = log.get(name, [])
            # nothing lost: every message was handled, or crashed its handler
            assert sorted(handled + [k for k in expected if k in crashed]) == sorted(expected)
            # one sender's messages to one receiver keep their order
            for s in range(n_senders):
                mine = [seq for snd, seq in handled if snd == s]
                assert mine == sorted(mine)
        assert crashed == {(m.sender, m.seq) for ms in sent.values() for m in ms if m.crash}
    finally:
        h.system.shutdown()


@dataclass(frozen=True)
class Hold:
    release: threading.Event
    entered: threading.Event


class Journal(Actor):
    def __init__(self, ctx, order: list) -> None:
        super().__init__(ctx)
        self.order = order

    @handles(Hold)
    def on_hold(self, m: Hold) -> None:  # the test holds the one worker here
        m.entered.set()
        m.release.wait(10)

    @handles(int)
    def on_int(self, n: int) -> None:
        self.order.append((self.ctx.name, n))


def test_throughput_quota_lets_a_second_actor_in_before_a_flood_is_done():
    order: list = []
    h = VirtualHarness(ChildSpec("gate", Journal, args=(order,)),
                       ChildSpec("a", Journal, args=(order,)),
                       ChildSpec("b", Journal, args=(order,)),
                       dispatcher_threads=1, throughput=10).start()
    try:
        release, entered = threading.Event(), threading.Event()
        h.system.tell("gate", Hold(release, entered))
        assert entered.wait(5)
        for i in range(100):        # queued while the only worker is held
            h.system.tell("a", i)
        h.system.tell("b", 0)
        release.set()
        h.settle()
        assert order.index(("b", 0)) == 10, "b waited for more than one turn of a"
        assert [n for who, n in order if who == "a"] == list(range(100))
    finally:
        h.system.shutdown()


class Slow(Actor):
    @handles(str)
    def on_str(self, m: str) -> None:
        time.sleep(0.03)  # a handler that blocks (what a pooled actor must not do)


def test_a_blocking_pooled_handler_is_counted_and_named(harness_factory):
    lines: list[str] = []
    sink = logger.add(lambda msg: lines.append(str(msg)), level="WARNING")
    try:
        h = harness_factory(ChildSpec("sloth", Slow), slow_handler_s=0.01)
        h.tell("sloth", "nap")
        h.tell("sloth", "nap")
    finally:
        logger.remove(sink)
    figures = h.snapshot()["actors"]
    sloth = next(a for a in figures if a["name"] == "sloth")
    assert sloth["slow_handlers"] == 2
    assert sloth["slowest_handler"]["message"] == "str"
    assert sloth["slowest_handler"]["ms"] >= 10
    warned = [ln for ln in lines if "pooled actor sloth handled str" in ln]
    assert len(warned) == 2  # the 1st and 2nd (then 4th, 8th...): bounded
    assert h.snapshot()["dispatchers"][0]["slow_handlers"] == 2


@dataclass(frozen=True)
class WaitFor:
    event: threading.Event
    managed: bool
    entered: threading.Event


class Waiter(Actor):
    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.got: bool | None = None

    @handles(WaitFor)
    def on_wait(self, m: WaitFor) -> None:
        m.entered.set()
        if m.managed:
            with managed_blocking():
                self.got = m.event.wait(5)
        else:
            self.got = m.event.wait(0.3)


class Setter(Actor):
    @handles(threading.Event)
    def on_event(self, e: threading.Event) -> None:
        e.set()


@pytest.mark.parametrize("managed", [True, False])
def test_managed_blocking_keeps_the_other_pooled_actors_running(harness_factory, managed):
    """One worker, an actor waiting inside a handler for another actor's help:
    with managed blocking the dispatcher adds a worker and the helper runs;
    without it the helper cannot run until the wait gives up."""
    h = harness_factory(ChildSpec("waiter", Waiter), ChildSpec("setter", Setter))
    event, entered = threading.Event(), threading.Event()
    h.system.tell("waiter", WaitFor(event, managed, entered))
    assert entered.wait(5)  # the waiter holds the only worker from here on
    h.system.tell("setter", event)
    h.settle()
    assert h.actor("waiter").got is managed


def test_introspection_shows_each_actors_execution_and_dispatcher(harness_factory):
    from tests.rt_helpers import Recorder

    h = harness_factory(ChildSpec("pooled", Recorder),
                        ChildSpec("threaded", Recorder, execution="threaded"))
    snap = h.snapshot()
    by_name = {a["name"]: a for a in snap["actors"]}
    assert by_name["pooled"]["execution"] == "pooled"
    assert by_name["pooled"]["dispatcher"] == "default"
    assert by_name["threaded"]["execution"] == "threaded"
    assert by_name["threaded"]["dispatcher"] is None
    assert by_name["root"]["execution"] == "threaded"  # supervisors wait for their children
    (d,) = snap["dispatchers"]
    assert d["name"] == "default" and d["threads"] == 1 and d["turns"] > 0
    threads = {t.name for t in threading.enumerate()}
    assert "tw-threaded" in threads and "tw-pooled" not in threads


def test_child_spec_refuses_an_unknown_execution():
    from tests.rt_helpers import Recorder

    with pytest.raises(ValueError, match="execution must be one of"):
        ChildSpec("x", Recorder, execution="fibers")


def test_dispatcher_validates_its_settings_and_stops_its_workers():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Dispatcher(threads=0)
    with pytest.raises(ValueError, match="throughput must be >= 1"):
        Dispatcher(throughput=0)
    d = Dispatcher("t", threads=3).start()
    names = {t.name for t in threading.enumerate() if t.name.startswith("tw-dispatch-t-")}
    assert len(names) == 3
    d.shutdown()
    assert not any(t.name.startswith("tw-dispatch-t-") for t in threading.enumerate())


@dataclass(frozen=True)
class ReserveIds:
    counter: str
    n: int
    token: str


class Reserver(Actor):
    """Hands out id blocks, like persistence, but pooled: on the same worker."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.next = 0

    @handles(ReserveIds)
    def on_reserve(self, m: ReserveIds) -> None:
        from messages.persistence import Durable

        start, self.next = self.next, self.next + m.n
        self.ctx.tell("spender", Durable(token=m.token, result=(start, self.next)))


class Spender(Actor):
    """Spends ids as the coordinator does: parks what needs one until the reply lands."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        from trading.id_allocator import IdAllocator

        self.ids = IdAllocator(lambda c, n, token: ctx.tell("reserver", ReserveIds(c, n, token)),
                               "coid", block=2, low_water=0)
        self.got: list[str] = []
        self.parked = 0

    @handles(int)
    def on_spend(self, n: int) -> None:
        self.parked += n
        self._spend()

    def _spend(self) -> None:
        while self.parked and self.ids.ready():
            self.parked -= 1
            self.got.append(self.ids.try_next())

    @handles(object)
    def on_reply(self, msg) -> None:
        if self.ids.is_reply(msg):
            self.ids.landed(msg)
            self._spend()


def test_an_actor_out_of_ids_parks_its_work_and_never_stalls_the_dispatcher(harness_factory):
    """Out of ids, a pooled actor does not wait in its handler: it parks the
    work, and with one worker the actor that answers the reservation still
    runs; the reply resumes the work in order."""
    h = harness_factory(ChildSpec("reserver", Reserver), ChildSpec("spender", Spender))
    h.tell("spender", 5)
    assert h.actor("spender").got == ["0", "1", "2", "3", "4"]
    assert h.actor("spender").parked == 0
