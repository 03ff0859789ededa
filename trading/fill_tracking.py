"""What an order-owning actor (stops, order groups) knows about one of its orders.

Both the stop-loss manager and the order groups must decide "can this order
still fill, and for how much?" from the same evidence: the fill reports seen
so far (by fill id, so a duplicate report counts once) and how the broker
closed the order. One definition keeps the two from drifting apart.
"""

from __future__ import annotations

from decimal import Decimal

ZERO = Decimal(0)


class FillTracking:
    """Mixin for a dataclass with ``qty``, ``fills`` {fill id: qty} and ``closed``."""

    qty: Decimal
    fills: dict[str, Decimal]
    closed: str | None

    @property
    def filled(self) -> Decimal:
        # The broker said it filled completely: trust that before every report is in.
        return self.qty if self.closed == "already_filled" else sum(self.fills.values(), ZERO)

    @property
    def live_qty(self) -> Decimal:
        """What can still fill: nothing once closed, else the unfilled rest."""
        return ZERO if self.closed else max(ZERO, self.qty - self.filled)
