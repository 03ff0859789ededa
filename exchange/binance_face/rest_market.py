"""Public market endpoints: ping, time, exchangeInfo, book and 24h tickers,
leverage brackets.

They read the engine's books and the face's market specs and change nothing.
Contracts (Binance's): a named symbol the venue does not list is -1121; a
listed symbol without a quote yet is -1121 "no quote yet" when named, and left
out of a list; ``leverageBracket`` is signed (it goes through the door).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from exchange.binance_face import errors, shapes
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.face import Face
from exchange.binance_face.markets import exchange_info
from exchange.binance_face.rest_door import Door


class MarketEndpoints:
    def __init__(self, face: Face, door: Door) -> None:
        self.face = face
        self.door = door

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/fapi/v1/ping", self.ping), web.get("/fapi/v1/time", self.time),
            web.get("/fapi/v1/exchangeInfo", self.exchange_info),
            web.get("/fapi/v1/ticker/bookTicker", self.book_ticker),
            web.get("/fapi/v1/leverageBracket", self.leverage_bracket),
            web.get("/fapi/v1/ticker/24hr", self.ticker_24hr),
        ]

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.face.server_ms()})

    async def exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(exchange_info(self.face.markets, self.face.server_ms()))

    async def book_ticker(self, request: web.Request) -> web.Response:
        def row(sym: str, book: Any) -> dict[str, Any]:
            t = shapes.book_ticker(sym, book.bid, book.bid_size, book.ask, book.ask_size,
                                   book.ts or self.face.now())
            return {"symbol": sym, "bidPrice": t["b"], "bidQty": t["B"], "askPrice": t["a"],
                    "askQty": t["A"], "time": t["T"], "lastUpdateId": t["u"]}
        return self._tickers(request, row)

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        """A 24h ticker from the engine's book (the simulator keeps no trade
        history: last = open = high = low = the mid, volumes 0)."""
        return self._tickers(request, lambda sym, book: shapes.ticker_24hr(
            sym, book.bid, book.ask, book.ts or self.face.now()))

    def _tickers(self, request: web.Request,
                 row: Callable[[str, Any], dict[str, Any]]) -> web.Response:
        """One row per listed symbol with a quote, or the named symbol's row
        (the module's contract: unlisted -1121; named without a quote -1121
        "no quote yet"; left out of a list)."""
        symbol = request.query.get("symbol")
        rows = []
        for sym in ([symbol] if symbol else list(self.face.markets)):
            if sym not in self.face.markets:
                raise errors.unknown_symbol()
            book = self.face.engine.books.get(sym)
            if book is not None and book.has_quote:
                rows.append(row(sym, book))
        if symbol:
            if not rows:
                raise BinanceError(-1121, "Invalid symbol (no quote yet).")
            return web.json_response(rows[0])
        return web.json_response(rows)

    async def leverage_bracket(self, request: web.Request) -> web.Response:
        await self.door.signed(request)
        return web.json_response([
            {"symbol": sym, "notionalCoef": 1.0, "brackets": [
                {"bracket": 1, "initialLeverage": shapes.LEVERAGE, "notionalCap": 1_000_000_000,
                 "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]}
            for sym in self.face.markets])
