"""Every order the coordinator approved, with its latest status (rules 10, 15).

The status of an order is what recovery trusts after a crash: it is written
to the store's meta database (``trading.store_keys.order_status_key``) at every change,
beside the order's write-ahead intent, and read back on start. Only the
coordinator writes these keys; the stop manager, hedger and order groups
read them (``actors.owned_orders``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container
from datetime import datetime
from typing import Any

from messages.persistence import Put, StoreDb
from trading.effects import Effects
from trading.order_retention import EndedOrders
from trading.store_keys import order_status_key
#: statuses at which the broker may still work (part of) the order
OPEN_STATUSES = frozenset({"intent", "submitted", "acked", "partially_filled"})
#: statuses at which the order may never have reached the broker
UNSENT_OR_UNSEEN = frozenset({"intent", "submitted"})


class OrderRecords:
    """Client order id -> ``{"status", "owner", "tag", "purpose", "symbol", "at"}``,
    and how many orders are at each status (published as ``orders_by_status``).

    ``at`` is when the status last changed in this process (absent for an
    order rebuilt from the store: it predates this process)."""

    def __init__(self, ended: EndedOrders[dict[str, Any]] | None = None,
                 live: Container[str] = ()) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.status_counts: Counter[str] = Counter()
        #: drops ended orders not in ``live`` (in flight) after a bounded window
        self.ended, self.live = ended, live

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self.by_id

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, client_order_id: str) -> dict[str, Any] | None:
        return self.by_id.get(client_order_id)

    def status(self, client_order_id: str) -> str | None:
        rec = self.by_id.get(client_order_id)
        return rec["status"] if rec is not None else None

    def owner(self, client_order_id: str) -> str | None:
        rec = self.by_id.get(client_order_id)
        return rec.get("owner") if rec is not None else None

    def add(self, client_order_id: str, record: dict[str, Any]) -> None:
        """A new order (approved now, or rebuilt from the store)."""
        self.by_id[client_order_id] = record
        self.status_counts[record["status"]] += 1

    def set_status(self, client_order_id: str, status: str, now: datetime, fx: Effects) -> None:
        """The order's new status, here and (as a store write) on disk. An id
        with no record still gets its status stored: the disk is the truth
        recovery reads."""
        rec = self.by_id.get(client_order_id)
        if rec is not None:
            self.status_counts[rec["status"]] -= 1
            self.status_counts[status] += 1
            rec["status"], rec["at"] = status, now
            if self.ended is not None:
                self.ended.settle(self.by_id, client_order_id, now, self.live)
        fx.store(Put(StoreDb.META, order_status_key(client_order_id), status))

    def stamp(self, client_order_id: str, now: datetime) -> None:
        """When the order's status last changed, now (after it was sent:
        ``trading.effects.Sent``)."""
        rec = self.by_id.get(client_order_id)
        if rec is not None:
            rec["at"] = now

    def by_status(self) -> dict[str, int]:
        return {k: v for k, v in self.status_counts.items() if v}
