"""Distinct types for the values that get swapped.

An argument-order slip between a price and a quantity, or a symbol and a
client order id, type-checks fine when both are a ``Decimal`` or a ``str``
and then trades the wrong thing. These are ``typing.NewType``s: to mypy a
``Price`` is not a ``Quantity`` and a plain ``Decimal`` is neither, so such a
swap is a type error (``tests/test_static_checks.py`` proves it); at run time
each is its base type, with nothing added to a message or a Decimal.

Make one where a value enters the typed world (a config figure, a parsed
frame, the result of arithmetic: ``Quantity(qty - filled)``); arithmetic on
a ``Price`` or ``Quantity`` gives a plain ``Decimal``, because a price times
a quantity is neither. A ``Quantity`` may be signed where it is a position.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NewType

#: a price per unit of an instrument (quote currency)
Price = NewType("Price", Decimal)
#: an amount of an instrument: an order's size, a fill's, a position (signed)
Quantity = NewType("Quantity", Decimal)
#: an instrument's name at the venue, e.g. ``BTCUSDT``
Symbol = NewType("Symbol", str)
#: the runtime's id of an order (``<account>-<store id>-<n>``, rule 15)
ClientOrderId = NewType("ClientOrderId", str)
#: a trading account at the venue
Account = NewType("Account", str)

DEFAULT_ACCOUNT = Account("default")

__all__ = ["DEFAULT_ACCOUNT", "Account", "ClientOrderId", "Price", "Quantity", "Symbol"]


def as_price(value: Decimal | None) -> Price | None:
    """An optional Decimal as an optional Price (an exit plan's levels)."""
    return None if value is None else Price(value)
