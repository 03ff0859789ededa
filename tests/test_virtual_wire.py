"""The wire ledger and the virtual timing of a scenario through a venue on
loopback (exchange.virtual_wire), and the kernel's hook that fires a venue's
timers with the actor system's own (``ActorSystem.timer_sources``)."""

from __future__ import annotations

import asyncio

import pytest

from exchange.virtual_wire import VirtualTiming, WireLedger
from runtime.clock import VirtualClock
from runtime.system import ActorSystem


def test_run_until_fires_timer_sources_in_due_order_with_its_own() -> None:
    """Without it a venue's delay is never reached: virtual time jumps past it."""
    clock = VirtualClock()
    system = ActorSystem(clock=clock)
    fired: list[tuple[float, float]] = []

    class Source:
        dues = [0.5, 2.0]

        def next_due(self) -> float | None:
            return self.dues[0] if self.dues else None

        def fire_due(self, now: float) -> int:
            n = 0
            while self.dues and self.dues[0] <= now:
                fired.append((self.dues.pop(0), clock.monotonic()))
                n += 1
            return n

    system.timer_sources.append(Source())
    system.run_until(1.0)
    assert fired == [(0.5, 0.5)] and clock.monotonic() == 1.0
    system.run_until(3.0)
    assert fired[-1] == (2.0, 2.0)


def test_ledger_tokens_balance_in_either_order() -> None:
    seen: list[int] = []
    ledger = WireLedger()
    ledger.bind(seen.append)
    t = ledger.hold()
    assert ledger.count == 1
    assert ledger.lend(t) and ledger.count == 0   # parked at the face: time may move
    ledger.reclaim(t)                              # woken before its task ends
    ledger.release(t)
    assert ledger.count == 0
    t = ledger.hold()
    ledger.lend(t)
    ledger.release(t)                              # the client gave up while parked
    ledger.reclaim(t)                              # the face wakes it later: nothing counted
    assert ledger.count == 0 and sum(seen) == 0 and ledger.underflows == 0


def test_ledger_counts_of_a_dead_runtime_never_reach_the_next() -> None:
    first: list[int] = []
    second: list[int] = []
    ledger = WireLedger()
    ledger.bind(first.append)
    gen = ledger.add(2)
    token = ledger.hold()
    ledger.unbind()                 # the runtime crashed with work on the wire
    ledger.bind(second.append)
    ledger.done(2, gen)             # its frames end...
    ledger.release(token)           # ...and its task
    assert second == [] and ledger.count == 0
    ledger.expect_down()
    ledger.down_reported()
    ledger.down_reported()          # a second report without a drop changes nothing
    assert sum(second) == 0 and ledger.underflows == 0


def test_virtual_timing_parks_a_request_until_its_timer_fires() -> None:
    clock = [0.0]
    ledger = WireLedger()
    counts: list[int] = []
    ledger.bind(counts.append)
    timing = VirtualTiming(lambda: clock[0], ledger)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        timing.bind_loop(loop)
        token = ledger.hold()       # the adapter's request
        woke: list[float] = []

        async def request() -> None:
            await timing.sleep(0.05, token=token)
            woke.append(clock[0])
            ledger.release(token)

        task = asyncio.ensure_future(request())
        await asyncio.sleep(0)
        assert ledger.count == 0, "parked: lent back, so virtual time can advance"
        assert timing.next_due() == pytest.approx(0.05)
        clock[0] = 0.05
        assert timing.fire_due(0.05) == 1
        await task
        return woke[0]

    assert asyncio.run(scenario()) == pytest.approx(0.05)
    assert ledger.count == 0 and sum(counts) == 0 and ledger.underflows == 0
