"""What the face remembers beside the engine, all derived and bounded.

* ``order_ids``: Binance ``orderId`` -> client order id, filled as orders are
  acked (and rebuilt from the engine on a miss, after a face restart);
* ``tallies``: filled quantity and notional per order as the stream reports
  each fill, so every ``ORDER_TRADE_UPDATE`` carries the cumulative figures
  of that moment (the engine holds only the latest);
* ``fill_events``: the update sent for each fill id, so a duplicate fill
  report repeats the very same event (same trade id), as a venue's replay
  would.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal
from typing import Any

from exchange.binance_face.ids import numeric_id

MAX_REMEMBERED = 100_000
ZERO = Decimal("0")


class _Bounded(OrderedDict[Any, Any]):
    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


class Registry:
    def __init__(self) -> None:
        self.order_ids: _Bounded = _Bounded()
        self.tallies: _Bounded = _Bounded()
        self.fill_events: _Bounded = _Bounded()

    def note_order(self, eid: str, coid: str) -> int:
        oid = numeric_id(eid)
        self.order_ids[oid] = coid
        return oid

    def coid_of(self, order_id: int, engine: Any) -> str | None:
        coid = self.order_ids.get(order_id)
        if coid is None:
            for st in engine.orders.values():
                if numeric_id(st.exchange_order_id) == order_id:
                    coid = st.request.client_order_id
                    self.order_ids[order_id] = coid
                    break
        return coid

    def tally(self, coid: str, qty: Decimal, price: Decimal, filled_after: Decimal,
              avg_before: Decimal | None) -> tuple[Decimal, Decimal]:
        """Add one fill; returns (filled, notional) of the order so far.

        ``filled_after`` (order qty - the fill's leaves) is exact; a tally that
        disagrees with it (the face restarted mid-order, or forgot the order)
        is reseeded from the engine's average price before this fill."""
        filled, notional = self.tallies.get(coid, (ZERO, ZERO))
        before = filled_after - qty
        if filled != before:
            filled, notional = before, before * (avg_before if avg_before is not None else price)
        filled, notional = filled + qty, notional + qty * price
        self.tallies[coid] = (filled, notional)
        return filled, notional
