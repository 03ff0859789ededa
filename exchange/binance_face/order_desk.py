"""The order desk: placing, finding and cancelling orders on the engine.

REST order endpoints call :meth:`OrderDesk.submit` and :meth:`OrderDesk.cancel`;
both hand every engine emit to the face's ``route`` (so streams see the order's
events before, or with, its REST answer). A cancel answers only once the engine
confirmed it: its HTTP request parks on a future in :class:`CancelWaiters`,
which the delivery part resolves when the ``CancelConfirmed`` is routed.

Contracts: a query names an order by client id, else by numeric id (an
``algoId`` is offset by ``ALGO_BASE``); the algo service knows conditional
orders only, the matching engine a conditional order only once it triggered;
an order of another account is answered as unknown.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from exchange.binance_face import errors, orders, shapes
from exchange.binance_face.account_view import AccountView
from exchange.binance_face.auth import ApiKey
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.ids import ALGO_BASE
from exchange.binance_face.markets import MarketSpec
from exchange.binance_face.position_mode import PositionModes
from exchange.binance_face.registry import Registry
from exchange.book import CANCELED, OrderState
from exchange.emit import Emit
from exchange.engine import SimulatedExchange
from exchange.virtual_wire import VirtualTiming, WallTiming
from messages import (
    CancelConfirmed,
    CancelOrder,
    CancelOutcome,
    OrderAcked,
    OrderRejected,
    SubmitOrder,
)
from messages.types import ClientOrderId, Symbol

#: seconds a cancel's HTTP answer waits for the engine's (delayed) confirmation
#: beyond the configured cancel delay
CANCEL_GRACE_S = 30.0


class CancelWaiters:
    """Cancels waiting for their engine confirmation, by client order id."""

    def __init__(self, timing: VirtualTiming | WallTiming) -> None:
        self.timing = timing
        self._waiting: dict[str, list[asyncio.Future[CancelConfirmed]]] = defaultdict(list)

    def add(self, coid: str) -> asyncio.Future[CancelConfirmed]:
        waiter: asyncio.Future[CancelConfirmed] = asyncio.get_running_loop().create_future()
        self._waiting[coid].append(waiter)
        return waiter

    def discard(self, coid: str, waiter: asyncio.Future[CancelConfirmed]) -> None:
        waiters = self._waiting.get(coid)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[coid]

    def resolve(self, confirmed: CancelConfirmed) -> None:
        for waiter in self._waiting.get(confirmed.client_order_id, ()):
            self.timing.resolve(waiter, confirmed)


class OrderDesk:
    def __init__(self, engine: SimulatedExchange, markets: dict[str, MarketSpec],
                 modes: PositionModes, registry: Registry, view: AccountView,
                 timing: VirtualTiming | WallTiming, waiters: CancelWaiters,
                 route: Callable[[list[Emit]], None]) -> None:
        self.engine = engine
        self.markets = markets
        self.modes = modes
        self.registry = registry
        self.view = view
        self.timing = timing
        self.waiters = waiters
        self.route = route

    def now(self) -> datetime:
        return self.engine.now()

    def submit(self, key: ApiKey, params: dict[str, str], *,
               algo: bool) -> tuple[dict[str, Any], float]:
        """Place an order: (answer JSON, seconds until the answer is due)."""
        now = self.now()
        symbol = params.get("symbol", "")
        ps = self.modes.check(params, key.account, algo=algo)
        req = orders.build(params, self.markets, key.account, now, self.view.mark(symbol),
                           algo=algo)
        if req.client_order_id not in self.engine.orders:  # (a duplicate id keeps the original's)
            self.modes.placed(req.client_order_id, ps)  # before its fills are routed
        emits = self.engine.handle(SubmitOrder(req), now)
        verdict: Emit | None = None
        for e in emits:
            ev = e.event
            if type(ev) in (OrderAcked, OrderRejected) and ev.client_order_id == req.client_order_id:
                verdict = e
                break
        self.route(emits)
        if verdict is None:
            raise BinanceError(-1000, "the exchange gave no answer for the order", 500)
        if isinstance(verdict.event, OrderRejected):
            raise orders.rejection(verdict.event.reason)
        st = self.engine.orders[req.client_order_id]
        answer = shapes.algo_order(st, now, ps) if algo else shapes.order(st, now, ps)
        return answer, verdict.delay_s

    def find(self, params: dict[str, str], *, algo: bool) -> OrderState | None:
        """The order a query names (client id, else numeric id), or None."""
        coid = params.get("origClientOrderId") or params.get("clientAlgoId")
        if not coid:
            raw = params.get("algoId" if algo else "orderId") or params.get("orderId")
            if not raw:
                raise errors.missing("clientAlgoId/algoId" if algo else
                                     "orderId/origClientOrderId")
            try:
                number = int(raw)
            except ValueError:
                raise errors.bad_param("orderId", f"{raw!r} is not an integer") from None
            if algo and "algoId" in params:
                number -= ALGO_BASE
            coid = self.registry.coid_of(number, self.engine)
        st = self.engine.orders.get(coid) if coid else None
        if st is None:
            return None
        if algo:  # the algo service knows conditional orders only
            return st if orders.is_algo(st.request) else None
        # the matching engine knows a conditional order only once it triggered
        return None if orders.is_algo(st.request) and not st.triggered else st

    def own(self, st: OrderState | None, key: ApiKey, symbol: str | None) -> OrderState | None:
        """``st`` only if it is this key's account's order (and of ``symbol``)."""
        if st is None or st.request.account != key.account:
            return None
        if symbol and st.request.symbol != symbol:
            return None
        return st

    async def cancel(self, key: ApiKey, params: dict[str, str], *, algo: bool,
                     token: int | None = None) -> dict[str, Any]:
        """Cancel; answers once the engine confirmed (after its cancel delay; on
        virtual time with the request's wire ``token`` lent back meanwhile)."""
        symbol = params.get("symbol")
        if not symbol and not algo:
            raise errors.missing("symbol")
        st = self.own(self.find(params, algo=algo), key, symbol)
        coid = params.get("origClientOrderId") or params.get("clientAlgoId")
        if st is None and not coid:
            raise errors.unknown_order_cancel()
        now = self.now()
        target = st.request.client_order_id if st is not None else coid
        assert target is not None
        if st is None and target in self.engine.orders:
            # another account's order, or one the door asked for does not hold
            # (a conditional order not yet triggered on the plain endpoint)
            raise errors.unknown_order_cancel()
        if algo and st is not None and st.triggered:
            raise errors.unknown_order_cancel()  # triggered: cancel its engine order instead
        waiter = self.waiters.add(target)
        self.route(self.engine.handle(CancelOrder(ClientOrderId(target), Symbol(symbol or "?"), now),
                                      now))
        delay = self.engine.config.cancel_ack_delay_ms / 1000.0 + CANCEL_GRACE_S
        try:
            confirmed = await self.timing.park(waiter, delay, token=token)
        finally:
            self.waiters.discard(target, waiter)
        st = self.engine.orders.get(target)
        if confirmed.outcome is not CancelOutcome.CANCELED or st is None \
                or st.status != CANCELED or confirmed.canceled_qty == 0:
            raise errors.unknown_order_cancel()
        ps = self.modes.side_of(target)
        return (shapes.algo_order(st, self.now(), ps) if algo
                else shapes.order(st, self.now(), ps))
