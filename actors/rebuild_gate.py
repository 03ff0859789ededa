"""What a restarted order owner (stop manager, hedger) needs from the store.

An actor that places orders through the coordinator keeps its own state in
the store, but that record can be one message behind the truth: the message
that crashed it (a poison fill or acceptance) is gone for good. The
coordinator's own records are the ground truth for what left: every approved
order is durable in ``orders`` (with its owner) before it is sent, every fill
is in ``fills`` by fill id, and ``meta`` holds each order's last status. So a
restarted owner rebuilds from its record *plus* these, deduplicating by
client order id and fill id, and neither forgets nor repeats an exit.

Two pieces:

* :class:`RebuildGate`: a mixin that, on start, asks persistence to flush
  (everything the previous instance wrote is then on disk) and holds every
  other message until the rebuild ran, then replays them in order. Messages
  addressed to the actor while it restarted are held by the runtime, so
  they arrive after the rebuild and are applied exactly once.
* :func:`owned_orders`: the coordinator's view of one owner's orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from messages.orders import OrderFilled, OrderRequest
from messages.persistence import Ack, Durable, Flush
from trading.recovery import order_status_key

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext

REBUILD_TOKEN = "rebuild"
CLOSED_STATUSES = {"filled": "filled", "canceled": "canceled", "rejected": "rejected",
                   "not_durable": "rejected", "expired": "expired"}


@dataclass(frozen=True)
class RebuildDue:
    """Timer: persistence did not answer the start-up flush; rebuild anyway."""


@dataclass
class OwnedOrder:
    request: OrderRequest
    status: str | None
    fills: dict[str, Decimal] = field(default_factory=dict)


def owned_orders(snapshot: dict[str, dict[str, Any]], owner: str) -> dict[str, OwnedOrder]:
    """Orders the coordinator approved for ``owner``, with their fills and status.

    ``snapshot`` is ``Store.read_all()`` (one consistent view)."""
    meta = snapshot.get("meta", {})
    found: dict[str, OwnedOrder] = {}
    for coid, rec in snapshot.get("orders", {}).items():
        if not isinstance(rec, dict) or rec.get("owner") != owner:
            continue
        req = rec.get("order")
        if isinstance(req, OrderRequest):
            found[coid] = OwnedOrder(req, meta.get(order_status_key(coid), rec.get("status")))
    for fill_id, fill in snapshot.get("fills", {}).items():
        if isinstance(fill, OrderFilled) and fill.client_order_id in found:
            found[fill.client_order_id].fills[fill_id] = fill.qty
    return found


def fills_of(snapshot: dict[str, dict[str, Any]], coids: set[str]) -> dict[str, dict[str, Decimal]]:
    """Fill ids and quantities of the given orders, from the coordinator's fills."""
    out: dict[str, dict[str, Decimal]] = {}
    for fill_id, fill in snapshot.get("fills", {}).items():
        if isinstance(fill, OrderFilled) and fill.client_order_id in coids:
            out.setdefault(fill.client_order_id, {})[fill_id] = fill.qty
    return out


def catch_up(snapshot: dict[str, dict[str, Any]], orders: dict[str, Any]) -> None:
    """Bring an owner's rebuilt orders (``trading.fill_tracking.FillTracking``, by
    client order id) up to the coordinator's records: every fill it applied,
    by fill id, and the status it closed each order with. An order its fills
    cover is closed ``filled``, as the owner's fill handler would have."""
    for coid, fills in fills_of(snapshot, set(orders)).items():
        orders[coid].fills.update(fills)
    meta = snapshot.get("meta", {})
    for coid, o in orders.items():
        status = CLOSED_STATUSES.get(meta.get(order_status_key(coid)) or "")
        if o.filled >= o.qty:
            o.closed = o.closed or "filled"
        elif status and not o.closed:
            o.closed = status

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
