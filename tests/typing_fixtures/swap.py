"""Argument swaps the type check must refuse (tests/test_static_checks.py).

Not imported by anything and left out of the normal mypy run (pyproject's
``exclude``): every marked line is a deliberate error, the kind of
argument-order slip that type-checks fine when prices, quantities and
symbols are all plain ``Decimal`` and ``str``. ``swap_ok.py`` is the same
code the right way round and must stay clean.
"""

from __future__ import annotations

from datetime import datetime

from messages.enums import Side
from messages.orders import OrderAcked
from messages.types import ClientOrderId, Price, Quantity, Symbol
from trading.positions import Position
from trading.pricing import bs_price


def book_fill(pos: Position, qty: Quantity, price: Price) -> None:
    pos.apply(Side.BUY, price, qty)  # SWAP: price and quantity


def ack(coid: ClientOrderId, symbol: Symbol, now: datetime) -> OrderAcked:
    return OrderAcked(symbol, "ex-1", coid, now)  # SWAP: symbol and client order id


def premium(spot: float, strike: float) -> object:
    return bs_price(True, strike, spot, 1.0, 0.2)  # SWAP: positional spot and strike
