"""Profit and loss figures from the position book and market views."""

from __future__ import annotations

from decimal import Decimal

from trading.book import ZERO, PositionBook


def unrealized(book: PositionBook, market: dict) -> Decimal:
    total = ZERO
    for (_, _, sym), pos in book.positions.items():
        mv = market.get(sym)
        total += pos.unrealized(mv.mid if mv is not None else None)
    return total


def realized(book: PositionBook) -> Decimal:
    return sum((p.realized for p in book.positions.values()), ZERO)


def daily_pnl(book: PositionBook, market: dict) -> Decimal:
    """Realized (net of fees) plus unrealized at mid, for the kill switch."""
    return realized(book) + unrealized(book, market)
