"""A start-up barrier without a wait: hold the mail until persistence has flushed.

An actor that rebuilds its state from the store on (re)start must first let
what its previous instance queued at persistence reach the disk (an order
intent just approved), or it rebuilds without it. It asks by message
(``Flush`` with an ``Ack``: request/reply, no future in the message) and
*parks* everything that arrives meanwhile (Akka's stash) instead of blocking
its thread: a pooled actor never holds a dispatcher worker to wait.

When ``Durable(token=FLUSH_BARRIER_TOKEN)`` arrives, or ``flush_timeout_s``
passes first (a persistence that does not answer: rebuild from what is on
disk), the actor's ``after_flush`` runs and the held messages are handled in
the order they came. A barrier only for actors without a store or without a
persistence actor passes at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from messages.persistence import Ack, Durable, Flush
from runtime.actor import handles

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext

FLUSH_BARRIER_TOKEN = "start-up flush"


@dataclass(frozen=True)
class FlushBarrierDue:
    """Timer: persistence did not confirm the start-up flush in time."""


class FlushBarrier:
    """Mixin for an actor (listed before ``Actor`` in its bases). While the
    barrier stands, the instance's ``on_receive`` is the barrier's; once it
    passes, the class's again (no cost per message afterwards)."""

    persistence: str = "persistence"
    #: how long the (re)starting actor holds its mail for persistence's answer
    flush_timeout_s = 5.0
    #: messages held while the barrier stands (None: no barrier)
    _held: list[Any] | None = None
    _after_flush: Callable[[], None] | None = None
    _barrier_timer: int | None = None

    if TYPE_CHECKING:  # what the actor provides
        ctx: ActorContext
        log: Logger

        def on_receive(self, message: Any) -> Any: ...

    def hold_until_flushed(self, after_flush: Callable[[], None]) -> None:
        """Run ``after_flush`` once persistence confirms that everything sent to
        it before now is durable; until then every message is held."""
        system = self.ctx.system
        if (self.ctx.services.get("store") is None
                or system.directory.get(self.persistence) is None
                or not self.ctx.tell(self.persistence,
                                     Flush(ack=Ack(self.ctx.name, FLUSH_BARRIER_TOKEN)))):
            after_flush()  # nothing can be queued there: nothing to wait for
            return
        self._held, self._after_flush = [], after_flush
        self.on_receive = self._receive_behind_barrier  # type: ignore[method-assign]  # the stash, until the barrier passes
        self._barrier_timer = self.ctx.schedule(self.flush_timeout_s, FlushBarrierDue())

    @property
    def held_by_barrier(self) -> int:
        return 0 if self._held is None else len(self._held)

    def _receive_behind_barrier(self, message: Any) -> Any:
        kind = type(message)
        if kind is FlushBarrierDue or kind is Durable and message.token == FLUSH_BARRIER_TOKEN:
            if kind is FlushBarrierDue:
                self.log.warning("persistence did not confirm the start-up flush in {}s; "
                                 "rebuilding from what is on disk", self.flush_timeout_s)
            elif not message.ok:
                self.log.warning("persistence could not confirm the start-up flush ({}); "
                                 "rebuilding from what is on disk", message.error)
            self._pass_barrier()
            return None
        assert self._held is not None  # installed with the barrier
        self._held.append(message)
        return None

    @handles(FlushBarrierDue)
    def _late_barrier_timer(self, _: FlushBarrierDue) -> None:
        """The timer fired as the barrier passed: nothing to do."""

    def _pass_barrier(self) -> None:
        held, after = self._held or [], self._after_flush
        self._held, self._after_flush = None, None
        del self.on_receive  # the class's handler again
        self.ctx.cancel_timer(self._barrier_timer)
        if after is not None:
            after()
        for message in held:
            self.on_receive(message)
