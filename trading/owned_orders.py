"""What a restarted order owner (stop manager, order group, hedger) reads from the store.

An actor that places orders through the coordinator keeps its own record in
the store, but that record can be one message behind the truth: the message
that crashed it (a poison fill or acceptance) is gone for good. The
coordinator's own records are the ground truth for what left: every approved
order is durable in ``orders`` (with its owner) before it is sent, every fill
is in ``fills`` by fill id, and ``meta`` holds each order's last status. So a
restarted owner rebuilds from its record *plus* these, deduplicating by
client order id and fill id, and neither forgets nor repeats an exit.

Everything here is a function of ``Store.read_all()`` (one consistent view,
``{db name: {key: record}}``); nothing here talks to an actor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from messages.orders import OrderFilled, OrderRequest
from trading.fill_tracking import FillTracking
from trading.recovery import order_status_key

Snapshot = Mapping[str, Mapping[str, Any]]
#: the coordinator's order status -> how an owner's order closed
CLOSED_STATUSES = {"filled": "filled", "canceled": "canceled", "rejected": "rejected",
                   "not_durable": "rejected", "expired": "expired"}


def records_with_prefix(snapshot: Snapshot, db: str, prefix: str) -> Iterator[tuple[str, Any]]:
    """(key without the prefix, record) of every record of ``db`` whose key starts with ``prefix``."""
    for key, rec in snapshot.get(db, {}).items():
        if key.startswith(prefix):
            yield key[len(prefix):], rec


@dataclass
class OwnedOrder:
    request: OrderRequest
    status: str | None
    fills: dict[str, Decimal] = field(default_factory=dict)

    @property
    def closed(self) -> str | None:
        """How the coordinator closed it (None: it may still fill)."""
        return CLOSED_STATUSES.get(self.status or "")


def owned_orders(snapshot: Snapshot, owner: str) -> dict[str, OwnedOrder]:
    """Orders the coordinator approved for ``owner``, with their fills and status."""
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


def fills_of(snapshot: Snapshot, coids: set[str]) -> dict[str, dict[str, Decimal]]:
    """Fill ids and quantities of the given orders, from the coordinator's fills."""
    out: dict[str, dict[str, Decimal]] = {}
    for fill_id, fill in snapshot.get("fills", {}).items():
        if isinstance(fill, OrderFilled) and fill.client_order_id in coids:
            out.setdefault(fill.client_order_id, {})[fill_id] = fill.qty
    return out


def catch_up(snapshot: Snapshot, orders: Mapping[str, FillTracking]) -> None:
    """Bring an owner's rebuilt orders (by client order id) up to the
    coordinator's records: every fill it applied, by fill id, and the status
    it closed each order with. An order its fills cover is closed ``filled``,
    as the owner's fill handler would have."""
    for coid, fills in fills_of(snapshot, set(orders)).items():
        orders[coid].fills.update(fills)
    meta = snapshot.get("meta", {})
    for coid, o in orders.items():
        status = CLOSED_STATUSES.get(meta.get(order_status_key(coid)) or "")
        if o.filled >= o.qty:
            o.closed = o.closed or "filled"
        elif status and not o.closed:
            o.closed = status
