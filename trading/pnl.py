"""Profit and loss figures from the position book and market views, kept current
incrementally (tests/test_pnl.py checks them against a full recomputation)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from trading.positions import ZERO, Key, Position, PositionBook

if TYPE_CHECKING:
    from trading.gate import MarketView


class PnlTracker:
    """Daily PnL and per-symbol positions kept current incrementally.

    The kill switch needs realized + unrealized PnL after every quote; summing
    over every position on each quote made the coordinator the whole system's
    bottleneck at a few hundred symbols. A quote now re-marks only the keys of
    its symbol, a fill only its key: O(1) per event whatever the book size.
    ``rebuild`` recomputes everything (startup, broker corrections).
    """

    def __init__(self, book: PositionBook, market: dict[str, MarketView]) -> None:
        self.book = book
        self.market = market
        self._unrealized: dict[Key, Decimal] = {}
        self._realized: dict[Key, Decimal] = {}
        self._keys_by_symbol: dict[str, set[Key]] = {}
        self.unrealized_total = ZERO
        self.realized_total = ZERO
        #: symbol -> net quantity as a string (what introspection shows)
        self.positions: dict[str, str] = {}
        #: symbol -> realized / unrealized PnL over its keys (accounts, venues)
        self.realized_by_symbol: dict[str, Decimal] = {}
        self.unrealized_by_symbol: dict[str, Decimal] = {}

    @property
    def daily(self) -> Decimal:
        return self.realized_total + self.unrealized_total

    def rebuild(self) -> None:
        self._unrealized.clear()
        self._realized.clear()
        self._keys_by_symbol.clear()
        self.unrealized_total = self.realized_total = ZERO
        self.positions.clear()
        self.realized_by_symbol.clear()
        self.unrealized_by_symbol.clear()
        for key in list(self.book.positions):
            self.update_key(key)

    def update_key(self, key: Key) -> None:
        """After ``key``'s position changed (a fill, a correction)."""
        pos = self.book.positions.get(key)
        sym = key[2]
        self._keys_by_symbol.setdefault(sym, set()).add(key)
        realized = pos.realized if pos is not None else ZERO
        delta = realized - self._realized.get(key, ZERO)
        self.realized_total += delta
        self.realized_by_symbol[sym] = self.realized_by_symbol.get(sym, ZERO) + delta
        self._realized[key] = realized
        self._mark(key, pos)
        self.positions[sym] = str(sum((self.book.qty(k) for k in self._keys_by_symbol[sym]), ZERO))

    def mark_symbol(self, symbol: str) -> None:
        """After a quote for ``symbol``: re-mark its keys only."""
        for key in self._keys_by_symbol.get(symbol, ()):
            self._mark(key, self.book.positions.get(key))

    def _mark(self, key: Key, pos: Position | None) -> None:
        mv = self.market.get(key[2])
        value = pos.unrealized(mv.mid if mv is not None else None) if pos is not None else ZERO
        delta = value - self._unrealized.get(key, ZERO)
        self.unrealized_total += delta
        sym = key[2]
        self.unrealized_by_symbol[sym] = self.unrealized_by_symbol.get(sym, ZERO) + delta
        self._unrealized[key] = value
