"""Order endpoints: ``/fapi/v1/order``, ``algoOrder``, open/all orders and
cancel-all, for the matching engine's orders and the algo service's
conditional ones.

Every endpoint is signed (through the door). Placing and cancelling go
through the face's :class:`~exchange.binance_face.order_desk.OrderDesk`;
the answer of a placement is held back for the engine's latency (on a
virtual clock the request's wire token is lent back meanwhile), and the
``lose_create`` venue fault drops or hangs it after the order was placed.
Untriggered conditional orders are the algo service's; triggered ones are
orders of the matching engine. Order counts are charged per account
(``X-MBX-ORDER-COUNT-*`` headers on a placement).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from exchange.binance_face import errors, shapes
from exchange.binance_face.auth import ApiKey
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.face import Face
from exchange.binance_face.ids import numeric_id
from exchange.binance_face.orders import is_algo
from exchange.binance_face.rest_door import Door, wire_token

#: the most rows a history query answers (``limit`` is capped to it)
MAX_ROWS = 1000


def history_limit(params: dict[str, str]) -> int:
    """``limit`` of a history query (default 500, capped); ValueError if not an int."""
    return min(int(params.get("limit", 500)), MAX_ROWS)


class OrderEndpoints:
    def __init__(self, face: Face, door: Door) -> None:
        self.face = face
        self.door = door

    def routes(self) -> list[web.RouteDef]:
        return [
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
            web.get("/fapi/v1/openAlgoOrders", self.open_algo_orders),
        ]

    async def create_order(self, request: web.Request, *, algo: bool = False) -> web.StreamResponse:
        key, params = await self.door.signed(request)
        face = self.face
        counts = face.weights.count_order(key.account)
        answer, delay = face.desk.submit(key, params, algo=algo)
        lose = face.faults.lose_create
        if face.faults.take(lose):
            face.engine.log.append("answer_lost", face.now(),
                                   client_order_id=answer.get("clientOrderId")
                                   or answer.get("clientAlgoId"), mode=lose.mode)
            if lose.mode == "hang":
                await asyncio.sleep(lose.hang_s)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing is written: the answer is lost
        # the engine's latency: on a virtual clock the request is parked meanwhile
        await face.timing.sleep(delay, token=wire_token(request))
        if params.get("newOrderRespType", "ACK") == "ACK" and not algo:
            answer = {**answer, "status": "NEW", "executedQty": "0", "cumQty": "0",
                      "cumQuote": "0", "avgPrice": "0.00"}
        return web.json_response(answer, headers=counts)

    async def create_algo(self, request: web.Request) -> web.StreamResponse:
        return await self.create_order(request, algo=True)

    async def get_order(self, request: web.Request, *, algo: bool = False) -> web.Response:
        key, params = await self.door.signed(request)
        symbol = params.get("symbol")
        if not symbol and not algo:
            raise errors.missing("symbol")
        desk = self.face.desk
        st = desk.own(desk.find(params, algo=algo), key, symbol)
        if st is None:
            raise errors.order_does_not_exist()
        now, ps = self.face.now(), self.face.modes.side_of(st.request.client_order_id)
        return web.json_response(shapes.algo_order(st, now, ps) if algo
                                 else shapes.order(st, now, ps))

    async def get_algo(self, request: web.Request) -> web.Response:
        return await self.get_order(request, algo=True)

    async def cancel_order(self, request: web.Request, *, algo: bool = False) -> web.Response:
        key, params = await self.door.signed(request)
        return web.json_response(await self.face.desk.cancel(key, params, algo=algo,
                                                             token=wire_token(request)))

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
        key, params = await self.door.signed(request)
        now = self.face.now()
        side = self.face.modes.side_of
        return web.json_response([shapes.order(st, now, side(st.request.client_order_id))
                                  for st in self._open(key, params, False)])

    async def all_orders(self, request: web.Request) -> web.Response:
        """Orders of the account in ``symbol`` the engine still remembers (working
        and the most recent closed ones), oldest first: ``orderId`` (>=),
        ``startTime``/``endTime`` (creation, ms), ``limit`` (<= 1000, default 500)."""
        key, params = await self.door.signed(request)
        symbol = params.get("symbol")
        if not symbol:
            raise errors.missing("symbol")
        try:
            limit = history_limit(params)
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
        key, params = await self.door.signed(request)
        if not params.get("symbol"):
            raise errors.missing("symbol")
        for st in self._open(key, params, algo):
            try:
                await self.face.desk.cancel(key, {"symbol": st.request.symbol,
                                                  "origClientOrderId": st.request.client_order_id},
                                            algo=algo, token=wire_token(request))
            except BinanceError:
                pass  # filled or ended meanwhile: nothing left to cancel
        return web.json_response({"code": 200, "msg": "The operation of cancel all open order "
                                                      "is done."})

    async def cancel_all(self, request: web.Request) -> web.Response:
        return await self._cancel_all(request, False)

    async def cancel_all_algo(self, request: web.Request) -> web.Response:
        return await self._cancel_all(request, True)

    async def open_algo_orders(self, request: web.Request) -> web.Response:
        key, params = await self.door.signed(request)
        now = self.face.now()
        side = self.face.modes.side_of
        return web.json_response([shapes.algo_order(st, now, side(st.request.client_order_id))
                                  for st in self._open(key, params, True)])
