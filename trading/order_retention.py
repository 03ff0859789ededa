"""Ended orders leave the coordinator's memory after a bounded window (rule 13).

The coordinator's order table (client order id -> status, owner, tag, when
the status last changed) serves events about live orders and the
reconciliation of orders in doubt. An order that has *ended* (filled,
canceled, rejected, expired, or never made durable) and is no longer in
flight needs its entry only for a late report about itself, so it is kept
for ``keep_s`` seconds after it ended and never more than ``keep`` ended
orders at once (the oldest go first); then it is dropped from memory. The
store keeps every order and every status change durably: only memory
forgets, and a restart rebuilds from the store as before.

A late event about a dropped order is an event about an order this runtime
no longer knows: counted and audited as untrusted, never applied. A fill
among them makes the coordinator ask the broker for positions, and the book
moves only on the broker's confirmed answer (rule 18, broker wins): a
duplicate of a fill already booked changes nothing (the broker's position
already holds it), and a genuine late fill reaches the book through
reconciliation, never silently and never as a crash. So the fill ids of a
dropped order leave memory with it (``forget``: ``trading.positions.FillLedger``). A missing
fill the resync finds for a dropped order is left to the positions
reconciliation the same way (``trading.recovery.apply_missing_fills``).

The owners of orders (the hedger) keep their ended orders by the same
rule: the coordinator forwards nothing about an order it has dropped, so an
owner, which saw the order end no earlier than the coordinator did, needs it
no longer; its restart re-reads every order it owns from the store.

An order whose status is not one of ``ENDED`` (an unknown status included),
or which is still in flight, is never dropped. Each status change costs
amortized O(1): an insertion-ordered index of ended orders, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

#: statuses after which nothing more is expected of an order
ENDED = frozenset({"filled", "canceled", "rejected", "expired", "not_durable"})


@dataclass(frozen=True, slots=True)
class Retention:
    """How many ended orders stay in memory (``runtime.retention`` in the config)."""

    #: ended orders kept at most (the oldest are dropped first)
    keep: int = 1000
    #: seconds an ended order is kept after its last status change
    keep_s: float = 120.0

    def __post_init__(self) -> None:
        if self.keep < 0 or not self.keep_s >= 0:  # (NaN fails too)
            raise ValueError(f"retention: keep {self.keep} and keep_s {self.keep_s} "
                             f"must not be negative")


#: an order's record in the table the index watches
R = TypeVar("R")


def status_ended(rec: Any) -> bool:
    """A coordinator's order record (``{"status": ...}``) that has ended."""
    return rec.get("status") in ENDED


class EndedOrders(Generic[R]):
    """The index of ended orders still in a table (client order id ->
    record), oldest first, and the rule that drops them (:meth:`settle`).
    ``ended`` says whether a record has ended (default: the coordinator's
    status); ``forget`` is called with each dropped order's id, for what else
    is kept per order (its fill ids)."""

    def __init__(self, retention: Retention | None = None,
                 forget: Callable[[str], None] | None = None,
                 ended: Callable[[R], bool] = status_ended) -> None:
        self.retention = retention or Retention()
        self._forget = forget
        self._is_ended = ended
        #: client order id -> when it ended (this index's own clock reading)
        self._ended: dict[str, datetime] = {}
        self._adopted = False
        #: ended orders dropped from the table so far
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._ended)

    def settle(self, orders: dict[str, R], coid: str, now: datetime,
               live: Container[str] = ()) -> int:
        """Call after ``coid``'s status changed in ``orders``: index it if it
        ended, then drop ended orders past the window. ``live``: the orders
        still in flight (never dropped). Returns how many were dropped."""
        if not self._adopted:
            self._adopt(orders, now, live)
        rec = orders.get(coid)
        if rec is not None and self._is_ended(rec) and coid not in live:
            self._ended.pop(coid, None)   # ended again (a late report): it ends now
            self._ended[coid] = now
        return self._drop(orders, now, live)

    def _adopt(self, orders: dict[str, R], now: datetime, live: Container[str]) -> None:
        """Index the ended orders already in the table (rebuilt from the store
        after a restart): their window starts now."""
        self._adopted = True
        for coid, rec in orders.items():
            if self._is_ended(rec) and coid not in live:
                self._ended[coid] = now

    def _drop(self, orders: dict[str, R], now: datetime, live: Container[str]) -> int:
        keep, oldest = self.retention.keep, now - timedelta(seconds=self.retention.keep_s)
        ended = self._ended
        dropped = 0
        while ended:
            coid, at = next(iter(ended.items()))
            rec = orders.get(coid)
            if rec is not None and (not self._is_ended(rec) or coid in live):
                del ended[coid]     # alive again: indexed anew when it ends
                continue
            if rec is not None and len(ended) <= keep and at > oldest:
                break               # the oldest is inside the window: so are the rest
            del ended[coid]
            if rec is not None:
                del orders[coid]
                dropped += 1
                if self._forget is not None:
                    self._forget(coid)
        self.dropped += dropped
        return dropped
