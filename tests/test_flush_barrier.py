"""The start-up barrier holds the mail, not a thread (actors/flush_barrier.py)."""

from __future__ import annotations

from typing import Any

from actors.flush_barrier import FLUSH_BARRIER_TOKEN, FlushBarrier
from messages.persistence import Durable, Flush
from runtime import Actor, ChildSpec, handles


class Disk(Actor):
    """Stands in for persistence: keeps the Flush requests, answers when told."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.requests: list[Flush] = []

    @handles(Flush)
    def on_flush(self, msg: Flush) -> None:
        self.requests.append(msg)

    @handles(str)
    def on_answer(self, _: str) -> None:
        for req in self.requests:
            assert req.ack is not None
            self.ctx.tell(req.ack.reply_to, Durable(token=req.ack.token))


class Rebuilder(FlushBarrier, Actor):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.log_: list[Any] = []

    def on_start(self) -> None:
        self.hold_until_flushed(lambda: self.log_.append("rebuilt"))

    @handles(int)
    def on_int(self, n: int) -> None:
        self.log_.append(n)


def _harness(harness_factory: Any) -> Any:
    return harness_factory(ChildSpec("persistence", Disk), ChildSpec("rebuilder", Rebuilder),
                           services={"store": object()})


def test_mail_waits_for_the_flush_and_is_handled_in_order_after_the_rebuild(
        harness_factory: Any) -> None:
    h = _harness(harness_factory)
    for n in (1, 2, 3):
        h.tell("rebuilder", n)
    rebuilder = h.actor("rebuilder")
    (req,) = h.actor("persistence").requests
    assert req.ack is not None and (req.ack.reply_to, req.ack.token) == ("rebuilder",
                                                                         FLUSH_BARRIER_TOKEN)
    assert rebuilder.log_ == [] and rebuilder.held_by_barrier == 3  # quiescent: nobody waits
    h.tell("persistence", "answer")
    assert rebuilder.log_ == ["rebuilt", 1, 2, 3]
    h.tell("rebuilder", 4)
    assert rebuilder.log_[-1] == 4 and rebuilder.held_by_barrier == 0


def test_a_persistence_that_never_answers_releases_the_mail_after_the_timeout(
        harness_factory: Any) -> None:
    h = _harness(harness_factory)
    h.tell("rebuilder", 1)
    h.advance(Rebuilder.flush_timeout_s + 0.1)
    assert h.actor("rebuilder").log_ == ["rebuilt", 1]
    h.tell("persistence", "answer")  # a late answer changes nothing
    assert h.actor("rebuilder").log_ == ["rebuilt", 1]
