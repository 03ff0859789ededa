"""Virtual time: deterministic, fast, advanced only at quiescence."""

from __future__ import annotations

import time
from dataclasses import dataclass

from runtime import Actor, ChildSpec, handles
from runtime.testing import VirtualHarness


@dataclass(frozen=True)
class Tick:
    n: int


@dataclass(frozen=True)
class Ping:
    hops: int


class Chain(Actor):
    """Each tick schedules the next one a second later and pings a peer,
    which pings back a few times: timers interleaved with message traffic."""

    def __init__(self, ctx, peer=None, log=None):
        super().__init__(ctx)
        self.peer = peer
        self.log_lines = log if log is not None else []

    @handles(Tick)
    def on_tick(self, msg: Tick):
        self.log_lines.append((self.ctx.clock.monotonic(), self.ctx.name, "tick", msg.n))
        if msg.n < 600:
            self.ctx.schedule(1.0, Tick(msg.n + 1))
        if self.peer:
            self.ctx.tell(self.peer, Ping(3))

    @handles(Ping)
    def on_ping(self, msg: Ping):
        self.log_lines.append((self.ctx.clock.monotonic(), self.ctx.name, "ping", msg.hops))
        if msg.hops:
            self.ctx.tell("a" if self.ctx.name == "b" else "b", Ping(msg.hops - 1))


def run_chain():
    log = []
    with VirtualHarness(ChildSpec("a", Chain, kwargs={"peer": "b", "log": log}),
                        ChildSpec("b", Chain, kwargs={"log": log})) as h:
        h.tell("a", Tick(0))
        h.run_until(600.5)
        assert h.clock.now().isoformat() == "2026-01-05T14:40:00.500000+00:00"
    return log


def test_ten_virtual_minutes_of_timers_run_fast_and_identically():
    wall = time.perf_counter()
    first = run_chain()
    elapsed = time.perf_counter() - wall
    second = run_chain()
    assert first == second
    assert len([e for e in first if e[2] == "tick"]) == 601
    assert first[-1][0] == 600.0
    # The issue asks for well under a second of wall time for 10 virtual minutes.
    assert elapsed < 1.0, f"10 virtual minutes took {elapsed:.2f}s"


def test_time_does_not_move_while_work_is_pending(harness_factory):
    h = harness_factory(ChildSpec("a", Chain, kwargs={"peer": "b"}), ChildSpec("b", Chain))
    h.system.tell("a", Tick(599))
    h.advance(0.5)
    # The tick at t=0 and its whole ping exchange ran at t=0, before any timer.
    times = {e[0] for e in h.actor("a").log_lines if e[2] == "ping"}
    assert times == {0.0}
    h.advance(1.0)
    assert [e[3] for e in h.actor("a").log_lines if e[2] == "tick"] == [599, 600]


def test_canceled_timer_never_fires(harness_factory):
    h = harness_factory(ChildSpec("a", Chain))
    tid = h.system.timers.schedule(5.0, "a", Tick(600))
    assert h.system.timers.cancel(tid)
    h.advance(10)
    assert h.actor("a").log_lines == []


def test_live_timer_thread_fires_an_earlier_timer_scheduled_after_a_later_one():
    """The live thread is woken only by a new earliest timer; one scheduled behind
    the head must still fire, and a new head must not wait out the old one."""
    import threading

    from runtime.clock import LiveClock
    from runtime.timers import TimerService

    fired: list[str] = []
    done = threading.Event()

    def deliver(target: str, message: str) -> None:
        fired.append(message)
        if len(fired) == 3:
            done.set()

    timers = TimerService(LiveClock(), deliver)
    timers.start()
    try:
        timers.schedule(30.0, "a", "late")   # the thread sleeps towards this one
        timers.schedule(0.02, "a", "early")   # a new head: must wake the thread
        timers.schedule(0.04, "a", "behind")  # behind the head: no wake needed
        timers.schedule(0.01, "a", "first")   # a new head again
        assert done.wait(timeout=10), f"timers did not fire in time: {fired}"
        assert fired == ["first", "early", "behind"]
    finally:
        timers.stop()
