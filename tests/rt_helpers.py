"""Small actors used by the runtime tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from runtime import Actor, handles


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Boom:
    why: str = "boom"


@dataclass(frozen=True)
class Finish:
    pass


class Recorder(Actor):
    """Records every Note; raises on Boom; stops normally on Finish.

    ``journal`` (a list shared with the test) records lifecycle events so
    tests can check start and stop order across actors.
    """

    def __init__(self, ctx, journal=None, fail_on_start=False):
        super().__init__(ctx)
        self.notes: list[str] = []
        self.journal = journal if journal is not None else []
        self.fail_on_start = fail_on_start

    def on_start(self):
        self.journal.append(("start", self.ctx.name))
        if self.fail_on_start:
            raise RuntimeError(f"{self.ctx.name} cannot start")

    def on_stop(self):
        self.journal.append(("stop", self.ctx.name))

    @handles(Note)
    def on_note(self, msg: Note):
        self.notes.append(msg.text)
        return len(self.notes)

    @handles(Boom)
    def on_boom(self, msg: Boom):
        raise RuntimeError(msg.why)

    @handles(Finish)
    def on_finish(self, msg: Finish):
        self.ctx.stop_self("finished")


@dataclass(frozen=True)
class Block:
    gate: threading.Event
    entered: threading.Event


class Gate(Actor):
    """Blocks inside a handler until the test opens the gate (to fill a mailbox)."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.seen: list = []

    @handles(Block)
    def on_block(self, msg: Block):
        msg.entered.set()
        msg.gate.wait(10)

    @handles(object)
    def on_any(self, msg):
        self.seen.append(msg)


class Inbox(Actor):
    """Stands in for the coordinator, alerts and symbol actors: records
    (virtual time, message) of everything it is told."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.got: list[tuple[float, Any]] = []

    def on_receive(self, message: Any) -> None:
        self.got.append((self.ctx.clock.monotonic(), message))

    def of(self, cls: type) -> list[Any]:
        return [m for _, m in self.got if isinstance(m, cls)]
