"""The orders the simulated exchange has accepted, live and closed.

Each accepted order is an :class:`~exchange.book.OrderState`, found by client
order id; the working ones are also indexed by symbol, in arrival order,
which is the order a new quote checks them in. A closed order stays
queryable for the last ``closed_orders`` closed orders, then only by its
final status for the last ``closed_order_ids`` (settings; ``exchange.retention``),
so a late cancel or a reused client order id is still answered correctly
while memory stays bounded over a long run.
"""

from __future__ import annotations

from typing import Any

from exchange.book import WORKING, OrderState
from exchange.retention import ClosedOrders


class OrderTable:
    """Accepted orders by client order id, working orders by symbol."""

    def __init__(self, settings: Any = None) -> None:
        #: the engine's live settings (``closed_orders``, ``closed_order_ids``)
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        """Forget every order (an exchange restart with data loss)."""
        #: client order id -> order, for every order not yet retired
        self.live: dict[str, OrderState] = {}
        #: symbol -> client order id -> working order, in arrival order
        self.working: dict[str, dict[str, OrderState]] = {}
        #: closed orders: states dropped, then ids forgotten, oldest first (bounded)
        self._closed = ClosedOrders()
        #: final status of each order whose state was dropped
        self._retired: dict[str, str] = self._closed.retired

    def get(self, client_order_id: str) -> OrderState | None:
        return self.live.get(client_order_id)

    def status_of(self, client_order_id: str) -> str | None:
        """The order's status, a retired one's final status, or None (never seen)."""
        st = self.live.get(client_order_id)
        return st.status if st is not None else self._retired.get(client_order_id)

    def add(self, st: OrderState) -> None:
        coid, symbol = st.request.client_order_id, st.request.symbol
        self.live[coid] = st
        working = self.working.get(symbol)
        if working is None:
            working = self.working[symbol] = {}
        working[coid] = st

    def working_in(self, symbol: str) -> dict[str, OrderState] | None:
        return self.working.get(symbol)

    def close(self, st: OrderState, status: str) -> None:
        """``st`` reached a final status: off the working index, into the closed queue."""
        st.status = status
        st.cancel_pending = False
        req = st.request
        working = self.working.get(req.symbol)
        if working is not None:
            working.pop(req.client_order_id, None)
        cfg = self.settings
        if cfg is None:
            self._closed.closed(req.client_order_id, self.live)
        else:
            self._closed.closed(req.client_order_id, self.live, cfg.closed_orders,
                                cfg.closed_order_ids)

    def open_orders(self, account: str | None = None) -> list[OrderState]:
        return [st for orders in self.working.values() for st in orders.values()
                if st.status == WORKING and (account is None or st.request.account == account)]
