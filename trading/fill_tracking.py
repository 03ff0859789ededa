"""What an order-owning actor (stops, order groups, the hedger) knows about one of its orders.

Every owner must decide "can this order still fill, and for how much?" from
the same evidence: the fill reports seen so far (by fill id, so a duplicate
report counts once) and how the broker closed the order. One definition
keeps them from drifting apart: ``ExitOrder`` (``trading.stop_state``),
``GroupOrder`` (``trading.group_state``) and ``HedgeOrder``
(``actors.hedger``) are all :class:`FillTracking` orders.
"""

from __future__ import annotations

from decimal import Decimal

ZERO = Decimal(0)
#: the close label that means "the broker says it filled completely"
ALREADY_FILLED = "already_filled"


class FillTracking:
    """Base of a dataclass with ``qty``, ``fills`` {fill id: qty} and ``closed``.

    ``closed`` is None while the order can still fill, else how it closed
    (filled / canceled / already_filled / rejected / expired / unknown ...).
    """

    qty: Decimal
    fills: dict[str, Decimal]
    closed: str | None

    @property
    def filled(self) -> Decimal:
        # The broker said it filled completely: trust that before every report is in.
        return self.qty if self.closed == ALREADY_FILLED else sum(self.fills.values(), ZERO)

    @property
    def live_qty(self) -> Decimal:
        """What can still fill: nothing once closed, else the unfilled rest."""
        return ZERO if self.closed else max(ZERO, self.qty - self.filled)

    def apply_fill(self, fill_id: str, qty: Decimal, leaves_qty: Decimal) -> bool:
        """Count one fill report once: False for a fill id already counted.

        The order closes ``filled`` when the broker reports nothing left
        (``leaves_qty`` 0) or the fills cover its quantity; a fill arriving
        after the order closed otherwise (a cancel that lost the race) still
        counts."""
        if fill_id in self.fills:
            return False
        self.fills[fill_id] = qty
        if leaves_qty == 0 or self.filled >= self.qty:
            self.close("filled")
        return True

    def close(self, how: str) -> bool:
        """Record how the order closed; the first answer stands. False if it was closed."""
        if self.closed:
            return False
        self.closed = how
        return True
