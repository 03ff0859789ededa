"""REST endpoints of the face (Binance USDⓈ-M ``/fapi``), on aiohttp.web.

Every handler runs on the server loop (the engine's only thread). The
middleware gives each answer Binance's error shape, applies the venue faults
that hit any request (429, 418) and the request weights, and, for signed
endpoints, checks key, signature and timestamp before the handler runs: a
refused request never reaches the engine, and is recorded in events.jsonl as
``request_refused`` (method, path, HTTP status, Binance code, message).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from loguru import logger

from exchange.binance_face import errors, shapes
from exchange.binance_face.auth import ApiKey
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.face import Face
from exchange.binance_face.ids import numeric_id
from exchange.binance_face.markets import SETTLE, exchange_info
from exchange.binance_face.orders import is_algo
from exchange.virtual_wire import WireLedger, token_of
from messages import ExchangeError, Quote
from messages.sim_events import EventsPage, QueryEvents
from messages.types import Price, Quantity, Symbol

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY = web.AppKey("face_key", dict)
MAX_TRADES = 1000


def _err(exc: BinanceError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers={**(headers or {}),
                                                                     **exc.headers})


class Rest:
    def __init__(self, face: Face, *, allow_control: bool = True,
                 on_fault: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.face = face
        self.allow_control = allow_control
        self.on_fault = on_fault
        self.requests = 0

    # -- plumbing ---------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        faults = self.face.faults
        headers: dict[str, str] = {}
        try:
            if request.path.startswith(("/fapi/", "/futures/")):
                if faults.take(faults.ban):
                    raise errors.banned(faults.server_ms() + faults.ban.retry_after_s * 1000,
                                        faults.ban.retry_after_s)
                if faults.take(faults.rate_limit):
                    raise errors.too_many_requests(faults.rate_limit.retry_after_s)
                headers = self.face.weights.charge(request.method, request.path,
                                                   "symbol=" in request.rel_url.raw_query_string)
            response = await handler(request)
            response.headers.update(headers)
            return response
        except BinanceError as exc:
            self.face.engine.log.append("request_refused", self.face.now(), method=request.method,
                                        path=request.path, status=exc.status, code=exc.code,
                                        reason=exc.msg)
            return _err(exc, headers)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - answered, logged, never fatal
            logger.opt(exception=exc).error("binance face: {} {} failed", request.method,
                                            request.path)
            return _err(BinanceError(-1000, f"An unknown error occured while processing the "
                                            f"request: {type(exc).__name__}", 500))

    async def signed(self, request: web.Request) -> tuple[ApiKey, dict[str, str]]:
        body = await request.text()
        query = request.rel_url.raw_query_string
        face = self.face
        key = face.auth.verify(request.headers.get("X-MBX-APIKEY"), query, body,
                               face.server_ms())
        if face.faults.take_timestamp_error():
            raise errors.outside_recv_window()
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        return key, params

    def routes(self) -> list[web.RouteDef]:
        r = [
            web.get("/fapi/v1/ping", self.ping), web.get("/fapi/v1/time", self.time),
            web.get("/fapi/v1/exchangeInfo", self.exchange_info),
            web.get("/fapi/v1/ticker/bookTicker", self.book_ticker),
            web.get("/fapi/v1/leverageBracket", self.leverage_bracket),
            web.post("/fapi/v1/order", self.create_order),
            web.get("/fapi/v1/order", self.get_order),
            web.delete("/fapi/v1/order", self.cancel_order),
            web.post("/fapi/v1/algoOrder", self.create_algo),
            web.get("/fapi/v1/algoOrder", self.get_algo),
            web.delete("/fapi/v1/algoOrder", self.cancel_algo),
            web.get("/fapi/v1/openOrders", self.open_orders),
            web.get("/fapi/v1/allOrders", self.all_orders),
            web.delete("/fapi/v1/allOpenOrders", self.cancel_all),
            web.delete("/fapi/v1/algoOpenOrders", self.cancel_all_algo),
            web.get("/fapi/v1/ticker/24hr", self.ticker_24hr),
            web.get("/fapi/v1/openAlgoOrders", self.open_algo_orders),
            web.get("/fapi/v2/positionRisk", self.position_risk),
            web.get("/fapi/v3/positionRisk", self.position_risk),
            web.get("/fapi/v2/balance", self.balance), web.get("/fapi/v3/balance", self.balance),
            web.get("/fapi/v2/account", self.account), web.get("/fapi/v3/account", self.account),
            web.get("/fapi/v1/userTrades", self.user_trades),
            web.get("/fapi/v1/positionSide/dual", self.get_dual),
            web.post("/fapi/v1/positionSide/dual", self.set_dual),
            web.post("/fapi/v1/listenKey", self.listen_key_create),
            web.put("/fapi/v1/listenKey", self.listen_key_keepalive),
            web.delete("/fapi/v1/listenKey", self.listen_key_close),
        ]
        if self.allow_control:
            r += [web.post("/_sim/fault", self.sim_fault), web.post("/_sim/quote", self.sim_quote),
                  web.get("/_sim/events", self.sim_events)]
        return r

    # -- public -----------------------------------------------------------------------

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.face.server_ms()})

    async def exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(exchange_info(self.face.markets, self.face.server_ms()))

    async def book_ticker(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")
        rows = []
        for sym in ([symbol] if symbol else list(self.face.markets)):
            if sym not in self.face.markets:
                raise errors.unknown_symbol()
            book = self.face.engine.books.get(sym)
            if book is None or not book.has_quote:
                continue
            t = shapes.book_ticker(sym, book.bid, book.bid_size, book.ask, book.ask_size,
                                   book.ts or self.face.now())
            rows.append({"symbol": sym, "bidPrice": t["b"], "bidQty": t["B"], "askPrice": t["a"],
                         "askQty": t["A"], "time": t["T"], "lastUpdateId": t["u"]})
        if symbol:
            if not rows:
                raise BinanceError(-1121, "Invalid symbol (no quote yet).")
            return web.json_response(rows[0])
        return web.json_response(rows)

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        """A 24h ticker from the engine's book (the simulator keeps no trade
        history: last = open = high = low = the mid, volumes 0)."""
        symbol = request.query.get("symbol")
        rows = []
        for sym in ([symbol] if symbol else list(self.face.markets)):
            if sym not in self.face.markets:
                raise errors.unknown_symbol()
            book = self.face.engine.books.get(sym)
            if book is not None and book.has_quote:
                rows.append(shapes.ticker_24hr(sym, book.bid, book.ask,  # type: ignore[arg-type]  # has_quote: bid and ask are set
                                               book.ts or self.face.now()))
        if symbol:
            if not rows:
                raise BinanceError(-1121, "Invalid symbol (no quote yet).")
            return web.json_response(rows[0])
        return web.json_response(rows)

    async def leverage_bracket(self, request: web.Request) -> web.Response:
        await self.signed(request)
        return web.json_response([
            {"symbol": sym, "notionalCoef": 1.0, "brackets": [
                {"bracket": 1, "initialLeverage": shapes.LEVERAGE, "notionalCap": 1_000_000_000,
                 "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]}
            for sym in self.face.markets])

    # -- orders -------------------------------------------------------------------------

    async def create_order(self, request: web.Request, *, algo: bool = False) -> web.StreamResponse:
        key, params = await self.signed(request)
        counts = self.face.weights.count_order(key.account)
        answer, delay = self.face.submit(key, params, algo=algo)
        lose = self.face.faults.lose_create
        if self.face.faults.take(lose):
            self.face.engine.log.append("answer_lost", self.face.now(),
                                        client_order_id=answer.get("clientOrderId")
                                        or answer.get("clientAlgoId"), mode=lose.mode)
            if lose.mode == "hang":
                await asyncio.sleep(lose.hang_s)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing is written: the answer is lost
        # the engine's latency: on a virtual clock the request is parked meanwhile
        await self.face.timing.sleep(delay, token=_wire_token(request))
        if params.get("newOrderRespType", "ACK") == "ACK" and not algo:
            answer = {**answer, "status": "NEW", "executedQty": "0", "cumQty": "0",
                      "cumQuote": "0", "avgPrice": "0.00"}
        return web.json_response(answer, headers=counts)

    async def create_algo(self, request: web.Request) -> web.StreamResponse:
        return await self.create_order(request, algo=True)

    async def get_order(self, request: web.Request, *, algo: bool = False) -> web.Response:
        key, params = await self.signed(request)
        symbol = params.get("symbol")
        if not symbol and not algo:
            raise errors.missing("symbol")
        st = self.face.own(self.face.find(params, algo=algo), key, symbol)
        if st is None:
            raise errors.order_does_not_exist()
        now, ps = self.face.now(), self.face.modes.side_of(st.request.client_order_id)
        return web.json_response(shapes.algo_order(st, now, ps) if algo
                                 else shapes.order(st, now, ps))

    async def get_algo(self, request: web.Request) -> web.Response:
        return await self.get_order(request, algo=True)

    async def cancel_order(self, request: web.Request, *, algo: bool = False) -> web.Response:
        key, params = await self.signed(request)
        return web.json_response(await self.face.cancel(key, params, algo=algo,
                                                        token=_wire_token(request)))

    async def cancel_algo(self, request: web.Request) -> web.Response:
        return await self.cancel_order(request, algo=True)

    def _open(self, key: ApiKey, params: dict[str, str], algo: bool) -> list[Any]:
        symbol = params.get("symbol")
        if symbol and symbol not in self.face.markets:
            raise errors.unknown_symbol()
        # untriggered conditional orders are the algo service's; triggered ones
        # are orders of the matching engine
        return [st for st in self.face.engine.open_orders(key.account)
                if (not symbol or st.request.symbol == symbol)
                and (is_algo(st.request) and not st.triggered) == algo]

    async def open_orders(self, request: web.Request) -> web.Response:
        key, params = await self.signed(request)
        now = self.face.now()
        side = self.face.modes.side_of
        return web.json_response([shapes.order(st, now, side(st.request.client_order_id))
                                  for st in self._open(key, params, False)])

    async def all_orders(self, request: web.Request) -> web.Response:
        """Orders of the account in ``symbol`` the engine still remembers (working
        and the most recent closed ones), oldest first: ``orderId`` (>=),
        ``startTime``/``endTime`` (creation, ms), ``limit`` (<= 1000, default 500)."""
        key, params = await self.signed(request)
        symbol = params.get("symbol")
        if not symbol:
            raise errors.missing("symbol")
        try:
            limit = min(int(params.get("limit", 500)), MAX_TRADES)
            from_id = int(params.get("orderId", 0))
            start = int(params.get("startTime", 0))
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError as exc:
            raise errors.bad_param("limit/orderId/startTime/endTime", str(exc)) from None
        now = self.face.now()
        rows = []
        for st in self.face.engine.orders.values():
            req = st.request
            if req.account != key.account or req.symbol != symbol or \
                    (is_algo(req) and not st.triggered):
                continue
            oid, t = numeric_id(st.exchange_order_id), shapes.ms(st.created)
            if oid >= from_id and t >= start and (end is None or t <= end):
                rows.append(shapes.order(st, now, self.face.modes.side_of(req.client_order_id)))
        rows.sort(key=lambda r: r["orderId"])
        return web.json_response(rows[:limit] if from_id or start else rows[-limit:])

    async def _cancel_all(self, request: web.Request, algo: bool) -> web.Response:
        key, params = await self.signed(request)
        if not params.get("symbol"):
            raise errors.missing("symbol")
        for st in self._open(key, params, algo):
            try:
                await self.face.cancel(key, {"symbol": st.request.symbol,
                                             "origClientOrderId": st.request.client_order_id},
                                       algo=algo, token=_wire_token(request))
            except BinanceError:
                pass  # filled or ended meanwhile: nothing left to cancel
        return web.json_response({"code": 200, "msg": "The operation of cancel all open order "
                                                      "is done."})

    async def cancel_all(self, request: web.Request) -> web.Response:
        return await self._cancel_all(request, False)

    async def cancel_all_algo(self, request: web.Request) -> web.Response:
        return await self._cancel_all(request, True)

    async def open_algo_orders(self, request: web.Request) -> web.Response:
        key, params = await self.signed(request)
        now = self.face.now()
        side = self.face.modes.side_of
        return web.json_response([shapes.algo_order(st, now, side(st.request.client_order_id))
                                  for st in self._open(key, params, True)])

    # -- account ------------------------------------------------------------------------

    def _positions(self, key: ApiKey, symbol: str | None) -> list[dict[str, Any]]:
        acct = self.face.engine.account(key.account)
        t = self.face.server_ms()
        rows = []
        for sym in ([symbol] if symbol else list(self.face.markets)):
            if sym not in self.face.markets:
                raise errors.unknown_symbol()
            if self.face.modes.is_dual(key.account):  # one row per leg, as Binance
                rows += [shapes.position_risk(sym, qty, entry, self.face.mark(sym), t, ps)
                         for ps, qty, entry in self.face.modes.rows(key.account, sym)]
                continue
            pos = acct.positions.get(sym)
            qty = pos.qty if pos is not None else Decimal(0)
            entry = pos.avg_price if pos is not None else Decimal(0)
            rows.append(shapes.position_risk(sym, qty, entry, self.face.mark(sym), t))
        return rows

    async def position_risk(self, request: web.Request) -> web.Response:
        key, params = await self.signed(request)
        rows = self._positions(key, params.get("symbol"))
        if request.path.startswith("/fapi/v3/"):
            rows = [r for r in rows if r["positionAmt"] != "0"]
        return web.json_response(rows)

    async def balance(self, request: web.Request) -> web.Response:
        key, _ = await self.signed(request)
        wallet, upnl = self.face.wallet(key.account)
        return web.json_response([{
            "accountAlias": "TW", "asset": SETTLE, "balance": shapes.s(wallet),
            "crossWalletBalance": shapes.s(wallet), "crossUnPnl": shapes.s(upnl),
            "availableBalance": shapes.s(wallet + upnl), "maxWithdrawAmount": shapes.s(wallet),
            "marginAvailable": True, "updateTime": self.face.server_ms()}])

    async def account(self, request: web.Request) -> web.Response:
        key, _ = await self.signed(request)
        wallet, upnl = self.face.wallet(key.account)
        w, u, m = shapes.s(wallet), shapes.s(upnl), shapes.s(wallet + upnl)
        positions = [p for p in self._positions(key, None)]
        return web.json_response({
            "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
            "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
            "totalInitialMargin": "0", "totalMaintMargin": "0", "totalWalletBalance": w,
            "totalUnrealizedProfit": u, "totalMarginBalance": m,
            "totalPositionInitialMargin": "0", "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": w, "totalCrossUnPnl": u, "availableBalance": m,
            "maxWithdrawAmount": w,
            "assets": [{"asset": SETTLE, "walletBalance": w, "unrealizedProfit": u,
                        "marginBalance": m, "maintMargin": "0", "initialMargin": "0",
                        "positionInitialMargin": "0", "openOrderInitialMargin": "0",
                        "crossWalletBalance": w, "crossUnPnl": u, "availableBalance": m,
                        "maxWithdrawAmount": w, "marginAvailable": True,
                        "updateTime": self.face.server_ms()}],
            "positions": [{"symbol": p["symbol"], "positionSide": p["positionSide"],
                           "positionAmt": p["positionAmt"], "entryPrice": p["entryPrice"],
                           "unrealizedProfit": p["unRealizedProfit"],
                           "isolatedMargin": "0", "notional": p["notional"],
                           "isolatedWallet": "0", "initialMargin": p["initialMargin"],
                           "maintMargin": "0", "updateTime": p["updateTime"],
                           "leverage": p["leverage"], "isolated": False}
                          for p in positions],
        })

    async def user_trades(self, request: web.Request) -> web.Response:
        """Fills of the account, oldest first: ``fromId`` (trade id >=),
        ``startTime``/``endTime`` (ms), ``orderId``, ``limit`` (<= 1000). With
        none of them, the latest ``limit`` fills (as Binance)."""
        key, params = await self.signed(request)
        symbol = params.get("symbol")
        if not symbol:
            raise errors.missing("symbol")
        try:
            limit = min(int(params.get("limit", 500)), MAX_TRADES)
            from_id = int(params["fromId"]) if "fromId" in params else None
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
            order_id = int(params["orderId"]) if "orderId" in params else None
        except ValueError as exc:
            raise errors.bad_param("limit/fromId/startTime/endTime/orderId", str(exc)) from None
        if limit < 1:
            raise errors.bad_param("limit", "must be at least 1")
        engine = self.face.engine
        rows = []
        for fill in engine.account(key.account).fills:
            if fill.symbol != symbol:
                continue
            tid, t = numeric_id(fill.fill_id), shapes.ms(fill.ts)
            if (from_id is not None and tid < from_id) or (start is not None and t < start) \
                    or (end is not None and t > end):
                continue
            st = engine.orders.get(fill.client_order_id)
            oid = numeric_id(st.exchange_order_id) if st is not None else 0
            if order_id is not None and oid != order_id:
                continue
            rows.append(shapes.trade(fill, oid, self.face._maker(fill),  # noqa: SLF001
                                     ps=self.face.modes.side_of(fill.client_order_id)))
        rows = rows[:limit] if (from_id is not None or start is not None) else rows[-limit:]
        return web.json_response(rows)

    async def get_dual(self, request: web.Request) -> web.Response:
        key, _ = await self.signed(request)
        return web.json_response({"dualSidePosition": self.face.modes.is_dual(key.account)})

    async def set_dual(self, request: web.Request) -> web.Response:
        """Binance's Change Position Mode (``position_mode`` holds its rules)."""
        key, params = await self.signed(request)
        raw = params.get("dualSidePosition")
        if raw is None:
            raise errors.missing("dualSidePosition")
        if raw.lower() not in ("true", "false"):
            raise errors.bad_param("dualSidePosition", f"{raw!r} is not true/false")
        self.face.modes.switch(key.account, raw.lower() == "true")
        return web.json_response({"code": 200, "msg": "success"})

    # -- user-data stream keys (API key only, no signature: Binance's USER_STREAM) --------

    async def listen_key_create(self, request: web.Request) -> web.Response:
        owner = self.face.auth.key_of(request.headers.get("X-MBX-APIKEY"))
        return web.json_response({"listenKey": self.face.listen_keys.create(owner)})

    async def listen_key_keepalive(self, request: web.Request) -> web.Response:
        owner = self.face.auth.key_of(request.headers.get("X-MBX-APIKEY"))
        return web.json_response({"listenKey": self.face.listen_keys.keepalive(owner)})

    async def listen_key_close(self, request: web.Request) -> web.Response:
        owner = self.face.auth.key_of(request.headers.get("X-MBX-APIKEY"))
        gone = set(self.face.listen_keys.close(owner))
        for sess in list(self.face.sessions):
            if sess.listen_key in gone:
                await sess.ws.close()
        return web.json_response({})

    # -- simulator control (loopback tooling, never part of Binance's API) ----------------

    async def sim_fault(self, request: web.Request) -> web.Response:
        try:
            spec = json.loads(await request.text())
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object {engine: {...}, venue: {...}}")
            if self.on_fault is None:
                raise ValueError("this server takes no faults")
            self.on_fault(spec)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def sim_quote(self, request: web.Request) -> web.Response:
        try:
            q = json.loads(await request.text())
            quote = Quote(Symbol(q["symbol"]), Price(Decimal(str(q["bid"]))),
                          Price(Decimal(str(q["ask"]))), self.face.now(),
                          bid_size=Quantity(Decimal(str(q.get("bid_size", "0")))),
                          ask_size=Quantity(Decimal(str(q.get("ask_size", "0")))))
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return web.json_response({"error": f"bad quote: {exc!r}"}, status=400)
        self.face.route(self.face.engine.handle(quote, self.face.now()))
        return web.json_response({"ok": True})

    async def sim_events(self, request: web.Request) -> web.Response:
        """A page of the engine's events.jsonl, as ``QueryEvents`` gives the
        native protocol: ``?since_seq=&cursor=&limit=`` (limit 0: the mark
        only, with the positions held then), so a run against this face can
        copy the exchange's record into its run directory."""
        try:
            q = QueryEvents("http", since_seq=int(request.query.get("since_seq", 0)),
                            cursor=int(request.query.get("cursor", 0)),
                            limit=int(request.query.get("limit", 5000)))
        except ValueError as exc:
            return web.json_response({"error": f"bad query: {exc}"}, status=400)
        (emit,) = self.face.engine.query_events(q, self.face.now())
        page = emit.event
        if isinstance(page, ExchangeError):
            return web.json_response({"error": page.reason}, status=404)
        assert isinstance(page, EventsPage)
        return web.json_response({"lines": list(page.lines), "cursor": page.cursor,
                                  "last_seq": page.last_seq, "more": page.more,
                                  "positions": [[a, sym, str(qty)]
                                                for a, sym, qty in page.positions]})


def _wire_token(request: web.Request) -> int | None:
    """The scenario harness's ledger token of a request (exchange.virtual_wire)."""
    return token_of(request.headers.get(WireLedger.HEADER))
