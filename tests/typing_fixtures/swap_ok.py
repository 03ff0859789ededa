"""``swap.py`` the right way round: must type-check clean."""

from __future__ import annotations

from datetime import datetime

from messages.enums import Side
from messages.orders import OrderAcked
from messages.types import ClientOrderId, Price, Quantity, Symbol
from trading.positions import Position
from trading.pricing import bs_price


def book_fill(pos: Position, qty: Quantity, price: Price) -> None:
    pos.apply(Side.BUY, qty, price)


def ack(coid: ClientOrderId, symbol: Symbol, now: datetime) -> OrderAcked:
    return OrderAcked(coid, "ex-1", symbol, now)


def premium(spot: float, strike: float) -> object:
    return bs_price(True, spot=spot, strike=strike, expiry_years=1.0, vol=0.2)
