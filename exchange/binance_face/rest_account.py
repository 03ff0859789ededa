"""Account and position endpoints: positionRisk, balance, account, userTrades
and the position mode (``positionSide/dual``).

Every endpoint is signed (through the door) and answers for the key's account
only. Wallet and unrealized PnL come from the face's
:class:`~exchange.binance_face.account_view.AccountView` (the same numbers
the streamed ``ACCOUNT_UPDATE`` carries); in hedge mode a position is one row
per leg, as Binance. ``/fapi/v3/positionRisk`` leaves out flat rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from exchange.binance_face import errors, shapes
from exchange.binance_face.auth import ApiKey
from exchange.binance_face.face import Face
from exchange.binance_face.ids import numeric_id
from exchange.binance_face.markets import SETTLE
from exchange.binance_face.rest_door import Door
from exchange.binance_face.rest_orders import history_limit


class AccountEndpoints:
    def __init__(self, face: Face, door: Door) -> None:
        self.face = face
        self.door = door

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/fapi/v2/positionRisk", self.position_risk),
            web.get("/fapi/v3/positionRisk", self.position_risk),
            web.get("/fapi/v2/balance", self.balance), web.get("/fapi/v3/balance", self.balance),
            web.get("/fapi/v2/account", self.account), web.get("/fapi/v3/account", self.account),
            web.get("/fapi/v1/userTrades", self.user_trades),
            web.get("/fapi/v1/positionSide/dual", self.get_dual),
            web.post("/fapi/v1/positionSide/dual", self.set_dual),
        ]

    def _positions(self, key: ApiKey, symbol: str | None) -> list[dict[str, Any]]:
        face = self.face
        acct = face.engine.account(key.account)
        t = face.server_ms()
        rows = []
        for sym in ([symbol] if symbol else list(face.markets)):
            if sym not in face.markets:
                raise errors.unknown_symbol()
            if face.modes.is_dual(key.account):  # one row per leg, as Binance
                rows += [shapes.position_risk(sym, qty, entry, face.mark(sym), t, ps)
                         for ps, qty, entry in face.modes.rows(key.account, sym)]
                continue
            pos = acct.positions.get(sym)
            qty = pos.qty if pos is not None else Decimal(0)
            entry = pos.avg_price if pos is not None else Decimal(0)
            rows.append(shapes.position_risk(sym, qty, entry, face.mark(sym), t))
        return rows

    async def position_risk(self, request: web.Request) -> web.Response:
        key, params = await self.door.signed(request)
        rows = self._positions(key, params.get("symbol"))
        if request.path.startswith("/fapi/v3/"):
            rows = [r for r in rows if r["positionAmt"] != "0"]
        return web.json_response(rows)

    async def balance(self, request: web.Request) -> web.Response:
        key, _ = await self.door.signed(request)
        wallet, upnl = self.face.view.wallet(key.account)
        return web.json_response([{
            "accountAlias": "TW", "asset": SETTLE, "balance": shapes.s(wallet),
            "crossWalletBalance": shapes.s(wallet), "crossUnPnl": shapes.s(upnl),
            "availableBalance": shapes.s(wallet + upnl), "maxWithdrawAmount": shapes.s(wallet),
            "marginAvailable": True, "updateTime": self.face.server_ms()}])

    async def account(self, request: web.Request) -> web.Response:
        key, _ = await self.door.signed(request)
        wallet, upnl = self.face.view.wallet(key.account)
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
        key, params = await self.door.signed(request)
        symbol = params.get("symbol")
        if not symbol:
            raise errors.missing("symbol")
        try:
            limit = history_limit(params)
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
            rows.append(shapes.trade(fill, oid, self.face.view.maker(fill),
                                     ps=self.face.modes.side_of(fill.client_order_id)))
        rows = rows[:limit] if (from_id is not None or start is not None) else rows[-limit:]
        return web.json_response(rows)

    async def get_dual(self, request: web.Request) -> web.Response:
        key, _ = await self.door.signed(request)
        return web.json_response({"dualSidePosition": self.face.modes.is_dual(key.account)})

    async def set_dual(self, request: web.Request) -> web.Response:
        """Binance's Change Position Mode (``position_mode`` holds its rules)."""
        key, params = await self.door.signed(request)
        raw = params.get("dualSidePosition")
        if raw is None:
            raise errors.missing("dualSidePosition")
        if raw.lower() not in ("true", "false"):
            raise errors.bad_param("dualSidePosition", f"{raw!r} is not true/false")
        self.face.modes.switch(key.account, raw.lower() == "true")
        return web.json_response({"code": 200, "msg": "success"})
