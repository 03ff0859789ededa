"""Actors and messages for the remote-actor tests: importable by path on the
far side (a host thread or a Ray worker), so they live in a module of their own."""

from __future__ import annotations

from typing import ClassVar

from trading.strategy import SignalIntent, Strategy
from messages.base import Message, message
from runtime import Actor, handles


@message
class Ping(Message):
    n: int
    reply_to: str = "sink"


@message
class Pong(Message):
    n: int
    by: int  # the incarnation that answered


@message
class Later(Message):
    delay_s: float
    n: int


class Doubler(Actor):
    """Answers Ping(n) with Pong(2n); raises on n < 0; schedules on Later."""

    def __init__(self, ctx, offset: int = 0) -> None:
        super().__init__(ctx)
        self.offset = offset
        self.seen = 0
        self.info = ctx.cell.info = {"kind": "doubler", "seen": 0}

    @handles(Ping)
    def on_ping(self, p: Ping) -> None:
        if p.n < 0:
            raise ValueError(f"negative ping {p.n}")
        self.seen += 1
        self.info["seen"] = self.seen
        self.ctx.system.address(p.reply_to).tell(
            Pong(2 * p.n + self.offset, self.ctx.cell.incarnation))

    @handles(Later)
    def on_later(self, m: Later) -> None:
        if m.delay_s > 0:
            self.ctx.schedule(m.delay_s, Later(0.0, m.n))
        else:
            self.ctx.tell("sink", Pong(m.n, self.ctx.cell.incarnation))


class Sink(Actor):
    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.got: list[Pong] = []

    @handles(Pong)
    def on_pong(self, p: Pong) -> None:
        self.got.append(p)


class Flipper(Strategy):
    """A strategy for the remote tests, loaded by its dotted path: every
    ``every``-th quote it signals 1 lot, buying and selling in turn, so a run
    has a steady flow of entries and exits whose count is known."""

    name: ClassVar[str] = "flipper"
    warmup = 1

    def __init__(self, every: int = 3) -> None:
        self.every, self.n, self.buy = every, 0, True

    def on_data(self, market, features):
        self.n += 1
        if self.n % self.every:
            return []
        side, self.buy = ("buy" if self.buy else "sell"), not self.buy
        return [SignalIntent(side, 1)]


#: a far-side handler of Hang waits on this (thread placement only: same process)
HANG = __import__("threading").Event()


@message
class Hang(Message):
    seconds: float


class Hanger(Doubler):
    """A Doubler whose host can hang (on HANG) like a stuck remote process."""

    @handles(Hang)
    def on_hang(self, m: Hang) -> None:
        HANG.wait(m.seconds)
