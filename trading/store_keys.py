"""Where the order ledger's state lives in the store, written and read back (rules 5, 10).

The coordinator is the only writer of these keys; recovery reads them on
start (``trading.recovery.rebuild``), and other actors read order statuses
(``actors.owned_orders``) and the kill switch (``app.halt``).
"""

from __future__ import annotations

from messages.persistence import Put, StoreDb
from trading.positions import Key, Position

#: meta key of the kill switch: the reason while engaged, None once released
KILL_SWITCH_KEY = "kill_switch"
#: meta keys of each order's latest status
ORDER_STATUS_PREFIX = "order_status|"


def order_status_key(client_order_id: str) -> str:
    return f"{ORDER_STATUS_PREFIX}{client_order_id}"


def position_put(key: Key, pos: Position) -> Put:
    """The store write of one position (read back by ``trading.recovery.rebuild``)."""
    return Put(StoreDb.POSITIONS, "|".join(key), {
        "qty": pos.qty, "avg_price": pos.avg_price, "realized": pos.realized})
