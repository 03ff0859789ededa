"""MarketFeed: plays the seeded synthetic market into the in-process venue.

The default ``run`` has no real market, so this actor stands in for one: it
walks :class:`~exchange.synthetic.SyntheticMarket` on the runtime's clock and
tells each quote or bar to the simulated exchange (``venue``), which moves its
book, fills what the quote crosses and streams the event to its subscribers
(the gateway), exactly as market data from a real venue would arrive.

Why an actor on a timer rather than a thread: one interval timer (the tick
interval) drives it, so the feed rides the virtual clock in tests and the
live clock in ``run`` with the same code, adds no thread (rule 13), and stops
in order with the rest of the tree. Each tick sends every event whose market
time has come; if the process falls behind, the next tick catches up, so the
event sequence is the same whatever the machine's speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Iterator

from exchange.synthetic import SyntheticMarket
from messages.market import Bar, Quote
from runtime import Actor, handles


@dataclass(frozen=True, slots=True)
class FeedTick:
    """The feed's own interval timer."""


@dataclass(frozen=True, slots=True)
class StopFeed:
    """End the feed early (the run is stopping); the actor stays up, idle."""

    reason: str = "stop requested"


class MarketFeed(Actor):
    def __init__(self, ctx: Any, market: SyntheticMarket, *, target: str = "venue",
                 duration_s: float | None = None) -> None:
        super().__init__(ctx)
        self.market = market
        self.target = target
        self.duration_s = duration_s
        self.sent = 0
        self.quotes = 0
        self.bars = 0
        self.done = False
        self._events: Iterator[tuple[float, Quote | Bar]] = iter(())  # the walk begins in on_start
        self._next: tuple[float, Quote | Bar] | None = None
        self._t0 = 0.0

    def on_start(self) -> None:
        # A restarted feed begins a fresh walk from its seed: market data is
        # not state worth persisting, and the venue dedups nothing by time.
        self._events = iter(self.market.events(self.duration_s))
        self._next = next(self._events, None)
        self._t0 = self.ctx.clock.monotonic()
        interval = self.market.tick_us / 1_000_000
        self.ctx.schedule(0.0, FeedTick())
        self.ctx.schedule(interval, FeedTick(), interval_s=interval)
        self._publish()

    @handles(FeedTick)
    def on_tick(self, _tick: FeedTick) -> None:
        if self.done:
            return
        elapsed = self.ctx.clock.monotonic() - self._t0
        tell = self.ctx.tell
        while self._next is not None and self._next[0] <= elapsed + 1e-9:
            event = self._next[1]
            tell(self.target, event)
            self.sent += 1
            if type(event) is Quote:
                self.quotes += 1
            else:
                self.bars += 1
            self._next = next(self._events, None)
        if self._next is None:
            self.done = True
            self.log.info("market feed finished: {} events", self.sent)
        self._publish()

    @handles(StopFeed)
    def on_stop_feed(self, msg: StopFeed) -> None:
        if not self.done:
            self.done = True
            self.log.info("market feed stopped after {} events: {}", self.sent, msg.reason)
            self._publish()

    def _publish(self) -> None:
        self.ctx.cell.info = {"sent": self.sent, "quotes": self.quotes, "bars": self.bars,
                              "done": self.done, "symbols": len(self.market.symbols)}
