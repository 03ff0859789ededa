"""Market data into the simulated exchange: the quote stream is the book.

A quote replaces the top of book, is published to subscribers, then every
working order of the symbol is checked against it in arrival order: stops
trigger (and take the quote if marketable), resting limits the market
traded through fill at their limit (maker), waiting market orders take the
new quote. Bars are published and mark the last price only.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from exchange.book import Book
from exchange.emit import MARKET, Emit
from messages import Bar, OrderType, Quote, TimeInForce

if TYPE_CHECKING:
    from exchange.engine_host import EngineHost
else:
    EngineHost = object


class MarketMixin(EngineHost):
    def on_quote(self, quote: Quote, now: datetime | None = None) -> list[Emit]:
        """New top of book: publish it, trigger stops, fill what it crosses."""
        now = now or self._clock()
        symbols = self.config.symbols
        if symbols is not None and quote.symbol not in symbols:
            self.stats["ignored_quotes"] += 1
            return []
        book = self.books.get(quote.symbol)
        if book is None:
            book = self.books[quote.symbol] = Book(quote.symbol)
        book.set_quote(bid=quote.bid, ask=quote.ask, bid_size=quote.bid_size,
                       ask_size=quote.ask_size, ts=quote.ts,
                       limit_by_size=self.config.limit_by_quote_size)
        self.stats["quotes"] += 1
        if self.config.log_quotes:
            self.log.append("quote", now, symbol=quote.symbol, bid=quote.bid, ask=quote.ask)
        out = [self._emit(quote, now, MARKET)]
        self._match_book(book, now, out)
        return out

    def on_bar(self, bar: Bar, now: datetime | None = None) -> list[Emit]:
        """Bars are published and mark the last price; matching uses quotes."""
        now = now or self._clock()
        if self.config.symbols is not None and bar.symbol not in self.config.symbols:
            self.stats["ignored_bars"] += 1
            return []
        book = self.books.get(bar.symbol)
        if book is None:
            book = self.books[bar.symbol] = Book(bar.symbol)
        book.last = bar.close
        return [self._emit(bar, now, MARKET)]

    def _match_book(self, book: Book, now: datetime, out: list[Emit]) -> None:
        orders = self.working.get(book.symbol)
        if not orders:
            return
        for st in list(orders.values()):
            if not st.is_working:
                continue
            if not st.triggered:
                if st.trigger_hit(book):
                    self._trigger(st, now)
                    self._take(st, book, now, out)
                    if st.is_working and st.request.tif is TimeInForce.IOC:
                        self._expire(st, "IOC remainder", now, out)
                continue
            if st.marketable_price(book) is None:
                continue
            if st.request.order_type in (OrderType.MARKET, OrderType.STOP_MARKET):
                self._take(st, book, now, out)
            else:
                price = st.request.price
                if price is not None:  # a resting limit always has one (OrderRequest checks)
                    self._fill(st, self._fillable(st, book, None), price, "maker", now, out)
