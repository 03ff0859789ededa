"""The rebuild gate of a restart-safe order owner (stop manager, order groups, hedger).

On start the owner asks persistence to flush (everything the previous
instance wrote is then on disk) and holds every other message until its
rebuild ran over the store's snapshot (``trading.owned_orders``: its own
record plus the coordinator's order, status and fill records), then replays
them in order. Messages addressed to the actor while it restarted are held
by the runtime, so they arrive after the rebuild and are applied exactly
once. After every handled message the owner writes what changed, then sends
what it decided (write, then send).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from messages.persistence import Ack, Durable, Flush

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext

REBUILD_TOKEN = "rebuild"


@dataclass(frozen=True)
class RebuildDue:
    """Timer: persistence did not answer the start-up flush; rebuild anyway."""


class RebuildGate:
    """Mixin for an :class:`runtime.Actor`: hold messages until :meth:`rebuild` ran.

    The subclass implements ``rebuild(snapshot)`` and ``_publish()``; the
    default ``on_start`` begins the rebuild (override it to start otherwise,
    and call ``self.begin_rebuild()`` there). It must list this mixin before
    ``Actor`` in its bases so ``on_receive`` goes through the gate.
    """

    persistence = "persistence"
    rebuild_timeout_s = 5.0
    _rebuilding = False
    _held: list[Any] = []

    if TYPE_CHECKING:  # what the actor provides
        ctx: ActorContext
        log: Logger
        _outbox: list[tuple[str, Any]]

        def _publish(self) -> None: ...

    def on_start(self) -> None:
        self.begin_rebuild()
        self._publish()

    def on_idle(self) -> None:
        self._publish()

    def begin_rebuild(self) -> None:
        self._held: list[Any] = []
        self._rebuilding = True
        store = self.ctx.services.get("store")
        if store is None or self.ctx.system.directory.get(self.persistence) is None:
            self._finish_rebuild()
            return
        self.ctx.tell(self.persistence, Flush(ack=Ack(self.ctx.name, REBUILD_TOKEN)))
        self.ctx.schedule(self.rebuild_timeout_s, RebuildDue())

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Durable and message.token == REBUILD_TOKEN or kind is RebuildDue:
            if self._rebuilding:
                if kind is RebuildDue:
                    self.log.warning("persistence did not confirm the flush in {}s; "
                                     "rebuilding from what is on disk", self.rebuild_timeout_s)
                self._finish_rebuild()
            return None
        if self._rebuilding:
            self._held.append(message)
            return None
        result = super().on_receive(message)  # type: ignore[misc]  # Actor.on_receive, after this mixin in the MRO
        self.after_message()
        return result

    def _finish_rebuild(self) -> None:
        self._rebuilding = False
        store = self.ctx.services.get("store")
        snapshot = store.read_all() if store is not None else {}
        self.rebuild(snapshot)
        self.after_message()
        held, self._held = self._held, []
        for message in held:
            self.on_receive(message)

    # -- for the subclass ---------------------------------------------------------------

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:  # pragma: no cover
        raise NotImplementedError

    def after_message(self) -> None:
        """Called after every handled message: write what changed, then let the
        messages it decided leave (``_outbox``: (target, message) pairs). Write
        before send: a crash in between must find the decision on disk."""
        self.persist_changes()
        outbox, self._outbox = self._outbox, []
        for target, msg in outbox:
            self.ctx.tell(target, msg)

    def persist_changes(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError
