"""The orders the simulated exchange has accepted, live and closed.

Each accepted order is an :class:`~exchange.book.OrderState`, found by client
order id; the working ones are also indexed by symbol, in arrival order,
which is the order a new quote checks them in. A closed order stays
queryable; past ``MAX_CLOSED_ORDERS`` the oldest closed ones are forgotten
except for their final status, so a late cancel or a reused client order id
is still answered correctly while memory stays bounded over a long run.
"""

from __future__ import annotations

from collections import deque

from exchange.book import WORKING, OrderState

MAX_CLOSED_ORDERS = 100_000


class OrderTable:
    """Accepted orders by client order id, working orders by symbol."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every order (an exchange restart with data loss)."""
        #: client order id -> order, for every order not yet retired
        self.live: dict[str, OrderState] = {}
        #: symbol -> client order id -> working order, in arrival order
        self.working: dict[str, dict[str, OrderState]] = {}
        #: client order ids in the order they closed (each closes once), so
        #: the oldest are forgotten first past MAX_CLOSED_ORDERS
        self._closed: deque[str] = deque()
        #: final status of each forgotten order
        self._retired: dict[str, str] = {}

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
        closed = self._closed
        closed.append(req.client_order_id)
        while len(closed) > MAX_CLOSED_ORDERS:
            old = closed.popleft()
            gone = self.live.pop(old, None)
            if gone is not None:
                self._retired[old] = gone.status

    def open_orders(self, account: str | None = None) -> list[OrderState]:
        return [st for orders in self.working.values() for st in orders.values()
                if st.status == WORKING and (account is None or st.request.account == account)]
