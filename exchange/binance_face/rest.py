"""REST endpoints of the face (Binance USDⓈ-M ``/fapi``), on aiohttp.web.

Every handler runs on the server loop (the engine's only thread). ``Rest``
composes the parts, each one responsibility:

- :class:`~.rest_door.Door`: the middleware (Binance's error shape, the
  venue faults that hit any request, request weights, ``request_refused``
  records) and ``signed()``, the gate of signed endpoints: a refused request
  never reaches the engine;
- :class:`~.rest_market.MarketEndpoints`: public market data and
  exchangeInfo;
- :class:`~.rest_orders.OrderEndpoints`: orders and conditional (algo)
  orders;
- :class:`~.rest_account.AccountEndpoints`: positions, balances, trades,
  the position mode;
- :class:`~.rest_user_stream.UserStreamEndpoints`: listen keys;
- :class:`~.rest_control.ControlEndpoints`: the ``/_sim/`` tooling, served
  only with ``allow_control``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from exchange.binance_face.face import Face
from exchange.binance_face.rest_account import AccountEndpoints
from exchange.binance_face.rest_control import ControlEndpoints
from exchange.binance_face.rest_door import Door
from exchange.binance_face.rest_market import MarketEndpoints
from exchange.binance_face.rest_orders import OrderEndpoints
from exchange.binance_face.rest_user_stream import UserStreamEndpoints


class Rest:
    def __init__(self, face: Face, *, allow_control: bool = True,
                 on_fault: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.door = Door(face.auth, face.faults, face.weights, face.engine.log, face.now)
        self.market = MarketEndpoints(face, self.door)
        self.orders = OrderEndpoints(face, self.door)
        self.account = AccountEndpoints(face, self.door)
        self.user_stream = UserStreamEndpoints(face, self.door)
        self.control = ControlEndpoints(face, on_fault) if allow_control else None

    def routes(self) -> list[web.RouteDef]:
        r = (self.market.routes() + self.orders.routes() + self.account.routes()
             + self.user_stream.routes())
        if self.control is not None:
            r += self.control.routes()
        return r
