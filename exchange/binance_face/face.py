"""The Binance face's core: engine calls and the delivery of what they emit.

One ``Face`` per server, used only from the server's event loop (the engine
is single-threaded). REST handlers call :meth:`submit`, :meth:`cancel` and
the read methods; every list of engine emits goes through :meth:`route`,
which turns account events into Binance user-data events (for the streams
of that account only: a listen key belongs to one API key, a key to one
account), quotes into ``bookTicker`` events, engine timers into loop timers
and stream faults into actions on the open WebSockets.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from loguru import logger

from exchange.binance_face import errors, orders, shapes
from exchange.binance_face.auth import ApiKey, Authenticator
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.ids import ALGO_BASE
from exchange.binance_face.listen_keys import ListenKeys
from exchange.binance_face.markets import MarketSpec
from exchange.binance_face.position_mode import PositionModes
from exchange.binance_face.registry import Registry
from exchange.binance_face.venue_faults import VenueFaults
from exchange.binance_face.weights import Limits, Weights
from exchange.book import CANCELED, OrderState
from exchange.emit import (
    ACCOUNT,
    ENGINE,
    MARKET,
    REQUESTER,
    TRANSPORT,
    Emit,
    StreamAction,
)
from exchange.engine import SimulatedExchange
from exchange.virtual_wire import VirtualTiming, WallTiming
from messages import (
    CancelConfirmed,
    CancelOrder,
    CancelOutcome,
    OrderAcked,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    Quote,
    SubmitOrder,
)
from messages.types import ClientOrderId, Symbol

if TYPE_CHECKING:
    from exchange.binance_face.streams import StreamSession

#: seconds a cancel's HTTP answer waits for the engine's (delayed) confirmation
#: beyond the configured cancel delay
CANCEL_GRACE_S = 30.0


class Face:
    def __init__(self, engine: SimulatedExchange, keys: tuple[ApiKey, ...] | list[ApiKey],
                 markets: dict[str, MarketSpec], limits: Limits | None = None,
                 timing: VirtualTiming | WallTiming | None = None) -> None:
        self.engine = engine
        #: the engine's delays: on the loop's clock or a scenario's virtual one
        self.timing: VirtualTiming | WallTiming = timing or WallTiming()
        self.auth = Authenticator(keys)
        self.markets = markets
        self.faults = VenueFaults()
        self.weights = Weights(limits)
        self.registry = Registry()
        self.modes = PositionModes(engine)
        self.listen_keys = ListenKeys()
        self.sessions: set[StreamSession] = set()
        #: conditional orders acked and not yet triggered: each route checks
        #: them, so their trigger is announced (ALGO_UPDATE TRIGGERED, then the
        #: matching-engine order's NEW) before any fill it causes
        self._untriggered: dict[str, None] = {
            st.request.client_order_id: None for st in engine.open_orders()
            if orders.is_algo(st.request) and not st.triggered}
        self._cancel_waiters: dict[str, list[asyncio.Future[CancelConfirmed]]] = defaultdict(list)

    # -- time ------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.engine.now()

    def server_ms(self) -> int:
        return self.faults.server_ms()

    def mark(self, symbol: str) -> Decimal | None:
        book = self.engine.books.get(symbol)
        return book.mid if book is not None else None

    # -- orders ----------------------------------------------------------------------

    def submit(self, key: ApiKey, params: dict[str, str], *,
               algo: bool) -> tuple[dict[str, Any], float]:
        """Place an order: (answer JSON, seconds until the answer is due)."""
        now = self.now()
        symbol = params.get("symbol", "")
        ps = self.modes.check(params, key.account, algo=algo)
        req = orders.build(params, self.markets, key.account, now, self.mark(symbol), algo=algo)
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
        loop = asyncio.get_running_loop()
        target = st.request.client_order_id if st is not None else coid
        assert target is not None
        if st is None and target in self.engine.orders:
            # another account's order, or one the door asked for does not hold
            # (a conditional order not yet triggered on the plain endpoint)
            raise errors.unknown_order_cancel()
        if algo and st is not None and st.triggered:
            raise errors.unknown_order_cancel()  # triggered: cancel its engine order instead
        waiter: asyncio.Future[CancelConfirmed] = loop.create_future()
        self._cancel_waiters[target].append(waiter)
        self.route(self.engine.handle(CancelOrder(ClientOrderId(target), Symbol(symbol or "?"), now),
                                      now))
        delay = self.engine.config.cancel_ack_delay_ms / 1000.0 + CANCEL_GRACE_S
        try:
            confirmed = await self.timing.park(waiter, delay, token=token)
        finally:
            waiters = self._cancel_waiters.get(target)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._cancel_waiters[target]
        st = self.engine.orders.get(target)
        if confirmed.outcome is not CancelOutcome.CANCELED or st is None \
                or st.status != CANCELED or confirmed.canceled_qty == 0:
            raise errors.unknown_order_cancel()
        ps = self.modes.side_of(target)
        return (shapes.algo_order(st, self.now(), ps) if algo
                else shapes.order(st, self.now(), ps))

    # -- delivery --------------------------------------------------------------------

    def route(self, emits: list[Emit]) -> None:
        touched: dict[str, tuple[float, set[str]]] = {}
        if self._untriggered:
            self._announce_triggers(emits[0].delay_s if emits else 0.0)
        for e in emits:
            aud, ev = e.audience, e.event
            if aud == ENGINE:
                self.timing.call_later(e.delay_s, functools.partial(self._on_timer, ev))
            elif aud == TRANSPORT:
                self._stream_action(ev)
            elif aud == MARKET:
                if type(ev) is Quote:
                    self._publish_quote(ev, e.delay_s)
            elif aud == ACCOUNT:
                account = self._user_event(ev, e.delay_s)
                if account is not None and type(ev) is OrderFilled:
                    _, symbols = touched.get(account, (0.0, set()))
                    symbols.add(ev.symbol)
                    touched[account] = (e.delay_s, symbols)
            elif aud != REQUESTER:
                logger.warning("binance face: emit for unknown audience {}", aud)
        for account, (delay, symbols) in touched.items():
            self._deliver_user(account, self._account_update(account, symbols), delay)

    def _announce_triggers(self, delay: float) -> None:
        for coid in list(self._untriggered):
            st = self.engine.orders.get(coid)
            if st is not None and st.triggered:  # (it may have filled at once)
                del self._untriggered[coid]
                self._triggered(st, delay)
            elif st is None or not st.is_working:
                del self._untriggered[coid]

    def _triggered(self, st: OrderState, delay: float) -> None:
        """A conditional order placed its order in the matching engine."""
        now = self.now()
        account = st.request.account
        ps = self.modes.side_of(st.request.client_order_id)
        self._deliver_user(account, shapes.algo_update(st, X="TRIGGERED", now=now, ps=ps), delay)
        self._deliver_user(account, shapes.order_update(st, x="NEW", X="NEW", now=now,
                                                        filled=Decimal(0), avg=Decimal(0),
                                                        ps=ps),
                           delay)

    def _on_timer(self, timer: Any) -> None:
        try:
            self.route(self.engine.handle(timer, self.now()))
        except Exception as exc:  # noqa: BLE001 - a timer must never kill the loop
            logger.opt(exception=exc).error("binance face: timer failed")

    def _user_event(self, ev: Any, delay: float) -> str | None:
        """Translate one account event; returns the account it went to."""
        kind = type(ev)
        if kind is OrderRejected:
            return None  # refused orders are answered on REST, never streamed
        st = self.engine.orders.get(ev.client_order_id)
        if kind is CancelConfirmed:
            for waiter in self._cancel_waiters.get(ev.client_order_id, ()):
                self.timing.resolve(waiter, ev)
        if st is None:
            return None
        algo = orders.is_algo(st.request)
        now = ev.ts
        ps = self.modes.side_of(ev.client_order_id)
        payload: dict[str, Any] | None = None
        if kind is OrderAcked:
            self.registry.note_order(st.exchange_order_id, ev.client_order_id)
            if algo:
                self._deliver_user(st.request.account,
                                   shapes.algo_update(st, X="NEW", now=now, ps=ps), delay)
                if st.triggered:  # through its trigger on arrival
                    self._triggered(st, delay)
                elif st.is_working:
                    self._untriggered[ev.client_order_id] = None
                return st.request.account
            payload = shapes.order_update(st, x="NEW", X="NEW", now=now, filled=Decimal(0),
                                          avg=Decimal(0), ps=ps)
        elif kind is OrderFilled:
            payload = self.registry.fill_events.get(ev.fill_id)
            if payload is None:
                filled, notional = self.registry.tally(
                    ev.client_order_id, ev.qty, ev.price, st.request.qty - ev.leaves_qty,
                    st.avg_price)
                done = ev.leaves_qty == 0
                payload = shapes.order_update(
                    st, x="TRADE", X="FILLED" if done else "PARTIALLY_FILLED", now=now,
                    fill=ev, filled=filled, avg=notional / filled, maker=self._maker(ev), ps=ps)
                self.registry.fill_events[ev.fill_id] = payload
                self.modes.on_fill(st.request.account, ev)  # once per fill id
        elif kind is OrderExpired:
            payload = (shapes.algo_update(st, X="EXPIRED", now=now, ps=ps)
                       if algo and not st.triggered
                       else shapes.order_update(st, x="EXPIRED", X="EXPIRED", now=now, ps=ps))
        elif kind is CancelConfirmed:
            if ev.outcome is CancelOutcome.CANCELED and ev.canceled_qty > 0:
                payload = (shapes.algo_update(st, X="CANCELED", now=now, ps=ps) if algo and
                           not st.triggered else
                           shapes.order_update(st, x="CANCELED", X="CANCELED", now=now, ps=ps))
        if payload is None:
            return None
        self._deliver_user(st.request.account, payload, delay)
        return st.request.account

    def _maker(self, fill: OrderFilled) -> bool:
        cfg = self.engine.config
        if cfg.maker_fee_bps == cfg.taker_fee_bps:
            return False
        fee = fill.qty * fill.price * Decimal(cfg.maker_fee_bps) / Decimal(10000)
        return abs(fill.fee - fee) < Decimal("0.00000001")

    def wallet(self, account: str) -> tuple[Decimal, Decimal]:
        """(wallet balance, unrealized PnL at the mid) in the settlement asset.

        The engine keeps cash like a spot account (a buy pays its notional);
        a futures wallet holds cash plus the cost of the open positions, i.e.
        starting cash + realized PnL - fees."""
        acct = self.engine.account(account)
        wallet = acct.cash.get(self.engine.config.quote_currency, Decimal(0))
        upnl = Decimal(0)
        for sym, pos in acct.positions.items():
            wallet += pos.qty * pos.avg_price
            mark = self.mark(sym)
            if mark is not None and pos.qty:
                upnl += (mark - pos.avg_price) * pos.qty
        return wallet, upnl

    def _account_update(self, account: str, symbols: set[str]) -> dict[str, Any]:
        acct = self.engine.account(account)
        t = shapes.ms(self.now())
        cash, _ = self.wallet(account)
        positions = []
        for sym in sorted(symbols):
            if self.modes.is_dual(account):
                positions += [self._leg_update(sym, ps, qty, entry)
                              for ps, qty, entry in self.modes.rows(account, sym)]
                continue
            pos = acct.positions.get(sym)
            qty = pos.qty if pos is not None else Decimal(0)
            entry = pos.avg_price if pos is not None else Decimal(0)
            mark = self.mark(sym)
            upnl = (mark - entry) * qty if (mark is not None and qty) else Decimal(0)
            positions.append({"s": sym, "pa": shapes.s(qty), "ep": shapes.s(entry),
                              "bep": shapes.s(entry), "cr": shapes.s(pos.realized if pos else None),
                              "up": shapes.s(upnl), "mt": "cross", "iw": "0", "ps": "BOTH"})
        return {"e": "ACCOUNT_UPDATE", "E": t, "T": t, "a": {
            "m": "ORDER", "B": [{"a": "USDT", "wb": shapes.s(cash), "cw": shapes.s(cash),
                                 "bc": "0"}], "P": positions}}

    def _deliver_user(self, account: str, payload: dict[str, Any], delay: float) -> None:
        text = None
        for sess in self.sessions:
            if sess.account == account:
                text = text or json.dumps(payload)
                sess.send(text, delay)

    def _publish_quote(self, q: Quote, delay: float) -> None:
        low = q.symbol.lower()
        texts: dict[str, str] = {}
        for sess in self.sessions:
            for channel in shapes.CHANNELS:
                stream = f"{low}@{channel}"
                if sess.wants(stream):
                    text = texts.get(channel)
                    if text is None:
                        text = texts[channel] = json.dumps(shapes.market_event(
                            channel, q.symbol, q.bid, q.bid_size, q.ask, q.ask_size, q.ts))
                    sess.send(sess.wrap(stream, text), delay)

    def _stream_action(self, action: StreamAction) -> None:
        if action.kind == "drop" and self.sessions and self.timing.ledger is not None:
            self.timing.ledger.expect_down()  # counted until the client reports it down
        for sess in list(self.sessions):
            if action.kind == "drop":
                sess.drop()
            elif action.kind == "stall":
                sess.stall(action.duration_s)
            elif action.kind == "resume":
                sess.resume()

    def _leg_update(self, sym: str, ps: str, qty: Decimal, entry: Decimal) -> dict[str, Any]:
        """One dual-side leg in an ``ACCOUNT_UPDATE`` (realized PnL is the engine's net's)."""
        mark = self.mark(sym)
        upnl = (mark - entry) * qty if (mark is not None and qty) else Decimal(0)
        return {"s": sym, "pa": shapes.s(qty), "ep": shapes.s(entry), "bep": shapes.s(entry),
                "cr": "0", "up": shapes.s(upnl), "mt": "cross", "iw": "0", "ps": ps}
