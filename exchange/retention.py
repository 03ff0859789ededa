"""How much of its closed orders the simulated exchange remembers (bounded memory).

A closed order (filled, canceled, expired) keeps its full state
(``exchange.book.OrderState``: the request, fills, amounts) for the last
``closed_orders`` closed orders (a setting of the exchange): order queries by client order id, cancel
answers and the Binance face's order lookups read it. Past that, only its
final status stays, for the last ``closed_order_ids`` closed orders: a resubmitted
client order id is still refused as a duplicate (naming the status), and a
late cancel is still answered "already filled" or "already canceled". Older
ids are forgotten altogether: such an id is unknown to queries and cancels
and would be accepted again, as at a real venue, which checks a client
order id against its recent orders only. A runtime resubmits only orders it
sent just before a crash (``trading.recovery``), far inside either window.

Both bounds count orders in the order they closed (each closes once), so
the work per close is O(1) and memory is flat once they are reached.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Protocol, TypeVar

#: closed orders whose full state is kept (about 1 KB each)
KEEP_STATES = 10_000
#: closed orders whose final status is kept after their state went (about 0.2 KB each)
KEEP_IDS = 100_000


class _Closed(Protocol):
    status: str


S = TypeVar("S", bound=_Closed)


class ClosedOrders:
    """The closed orders' memory: which states to drop, which ids to retire."""

    def __init__(self) -> None:
        #: client order ids of the closed orders whose state is kept, oldest first
        self._states: deque[str] = deque()
        #: client order id -> final status, of closed orders whose state went (oldest first)
        self.retired: OrderedDict[str, str] = OrderedDict()

    def closed(self, coid: str, orders: dict[str, S], keep_states: int = KEEP_STATES,
               keep_ids: int = KEEP_IDS) -> None:
        """``coid`` just closed (it is in ``orders``): drop the oldest states
        past ``keep_states`` from ``orders``, their ids past ``keep_ids``
        (the exchange's ``closed_orders`` and ``closed_order_ids`` settings)."""
        states, retired = self._states, self.retired
        states.append(coid)
        while len(states) > keep_states:
            old = states.popleft()
            gone = orders.pop(old, None)
            if gone is not None:
                retired[old] = gone.status
        while len(retired) > keep_ids:
            retired.popitem(last=False)
