"""The gateway's watchdog works on time (rule 12): a silence of ``timeout_s``
is noticed within ``timeout_s + 1`` s, the stream's age is published while
nothing arrives, and dropping a dead transport never blocks the gateway.

Virtual time, the real gateway and the in-process simulated exchange (zero
latency, so the boundaries are exact); stand-ins record what the gateway
tells the coordinator, reconnect controller and reconciler."""

from __future__ import annotations

import threading
import time
from decimal import Decimal as D
from typing import Any

import pytest

from actors.gateway import Gateway
from actors.sim_venue import SimVenue
from exchange.inprocess import InProcessAdapter
from messages.control import ConnectivityChanged
from messages.exchange import Subscribe
from messages.market import Quote
from runtime import ChildSpec
from runtime.introspection import info_of
from runtime.testing import VirtualHarness
from tests.rt_helpers import Inbox

TIMEOUT_S = 15.0


class SlowClose(InProcessAdapter):
    """A transport whose close waits (as a socket's closing handshake with a
    stalled peer does) until the test releases it."""

    def __init__(self, *args: Any, release: threading.Event, entered: threading.Event,
                 **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.release, self.entered = release, entered

    def close(self) -> None:
        self.entered.set()
        self.release.wait(3.0)
        super().close()


@pytest.fixture
def harnesses() -> Any:
    """Harnesses built here (the adapter factory needs the system before it
    starts), shut down after the test."""
    made: list[Any] = []
    yield made
    for h in made:
        h.system.shutdown()


def _rig(harnesses: Any, factory: Any = None) -> Any:
    system: list[Any] = []  # the harness's, once built (the gateway makes its adapter on start)

    def in_process(sink: Any) -> Any:
        return InProcessAdapter(system[0], "venue", "gateway", sink)

    h = VirtualHarness(
        ChildSpec("venue", SimVenue, kwargs={"config": {"latency_ms": 0}, "auto_connect": False}),
        *(ChildSpec(n, Inbox) for n in ("coordinator", "reconnect", "reconciler")),
        ChildSpec("gateway", Gateway, kwargs={
            "adapter_factory": (in_process if factory is None
                                else lambda sink: factory(system[0], sink)),
            "quote_listeners": (),
            "watchdog_timeout_s": TIMEOUT_S}))
    system.append(h.system)
    harnesses.append(h.start())
    h.tell("gateway", Subscribe(("BTCUSDT",)))
    assert h.actor("gateway").connected and h.now == 0.0
    return h


def trips(h: Any) -> int:
    return h.actor("gateway").counts["watchdog_trips"]


def test_a_silence_of_exactly_the_timeout_trips_at_the_timeout(harnesses) -> None:
    """Nothing after the connection at t=0: not tripped just below the
    timeout, tripped at it; the published age moves while nothing arrives."""
    h = _rig(harnesses)
    h.system.run_until(14.5)
    assert trips(h) == 0
    assert info_of(h.system, "gateway")["last_msg_age_s"] == 14.0  # from the check at 14 s
    h.system.run_until(TIMEOUT_S - 0.01)
    assert trips(h) == 0 and h.actor("gateway").connected
    h.system.run_until(TIMEOUT_S)
    assert trips(h) == 1 and not h.actor("gateway").connected
    down = h.actor("coordinator").of(ConnectivityChanged)[-1]
    assert not down.connected and "watchdog: silent for 15.0s" in down.reason


@pytest.mark.parametrize("last", [7.6, 14.9])
def test_a_silence_is_noticed_within_timeout_plus_one_second(harnesses, last: float) -> None:
    """A quote at ``last``, then silence: no trip while the silence is below
    the timeout, a trip no later than timeout + 1 s after the quote (the old
    check every timeout/2 let 7.6 s + 15 s pass to the check at 30 s)."""
    h = _rig(harnesses)
    h.system.run_until(last)
    h.tell("venue", Quote("BTCUSDT", D("100"), D("100.1"), h.system.clock.now()))
    assert h.actor("gateway").last_msg_at == last
    h.system.run_until(last + TIMEOUT_S - 0.01)  # just below
    assert trips(h) == 0
    h.system.run_until(last + TIMEOUT_S + 1.0)  # just above, by at most the check period
    assert trips(h) == 1
    tripped_at = h.actor("coordinator").of(ConnectivityChanged)[-1]
    silent = float(tripped_at.reason.split("silent for ")[1].rstrip("s"))
    assert TIMEOUT_S <= silent <= TIMEOUT_S + 1.0


def test_a_tripped_watchdog_never_waits_for_the_transport_to_close(harnesses) -> None:
    """The dead transport is closed on a thread of its own: the gateway goes
    on handling messages while the close still waits, and a fresh adapter
    serves the next connection; the closing thread ends with the close."""
    release, entered = threading.Event(), threading.Event()
    made: list[SlowClose] = []

    def slow(system: Any, sink: Any) -> Any:
        made.append(SlowClose(system, "venue", "gateway", sink, release=release,
                              entered=entered))
        return made[-1]

    h = _rig(harnesses, slow)
    wall = time.monotonic()
    h.system.run_until(TIMEOUT_S)
    assert trips(h) == 1
    assert entered.wait(5.0) and not release.is_set()  # the close is still waiting ...
    h.tell("gateway", Subscribe(("ETHUSDT",)))            # ... and the gateway is not
    assert time.monotonic() - wall < 2.0
    assert "ETHUSDT" in h.actor("gateway").subscriptions
    assert len(made) == 2 and h.actor("gateway").adapter is made[1]
    closing = [t for t in threading.enumerate() if t.name == "gateway-close"]
    assert closing
    release.set()
    for t in closing:
        t.join(5.0)
    assert not any(t.is_alive() for t in closing)
