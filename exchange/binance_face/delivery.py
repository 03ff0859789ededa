"""Delivery: the engine's emits turned into what the face's clients see.

Every list of engine emits goes through :meth:`Delivery.route`, which turns
account events into Binance user-data events (for the streams of that account
only: a listen key belongs to one API key, a key to one account), quotes into
market-stream events, engine timers into loop timers and stream faults into
actions on the open WebSockets. Used only from the server's event loop.

State it owns: the open stream sessions and the conditional orders acked and
not yet triggered (each route checks them, so a trigger is announced,
ALGO_UPDATE TRIGGERED then the matching-engine order's NEW, before any fill
it causes). A routed ``CancelConfirmed`` resolves the waiting cancels.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from loguru import logger

from exchange.binance_face import orders, shapes
from exchange.binance_face.account_view import AccountView
from exchange.binance_face.order_desk import CancelWaiters
from exchange.binance_face.position_mode import PositionModes
from exchange.binance_face.registry import Registry
from exchange.book import OrderState
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
    CancelOutcome,
    OrderAcked,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    Quote,
)

if TYPE_CHECKING:
    from exchange.binance_face.streams import StreamSession


class Delivery:
    def __init__(self, engine: SimulatedExchange, modes: PositionModes, registry: Registry,
                 view: AccountView, timing: VirtualTiming | WallTiming,
                 waiters: CancelWaiters) -> None:
        self.engine = engine
        self.modes = modes
        self.registry = registry
        self.view = view
        self.timing = timing
        self.waiters = waiters
        self.sessions: set[StreamSession] = set()
        self._untriggered: dict[str, None] = {
            st.request.client_order_id: None for st in engine.open_orders()
            if orders.is_algo(st.request) and not st.triggered}

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
        now = self.engine.now()
        account = st.request.account
        ps = self.modes.side_of(st.request.client_order_id)
        self._deliver_user(account, shapes.algo_update(st, X="TRIGGERED", now=now, ps=ps), delay)
        self._deliver_user(account, shapes.order_update(st, x="NEW", X="NEW", now=now,
                                                        filled=Decimal(0), avg=Decimal(0),
                                                        ps=ps),
                           delay)

    def _on_timer(self, timer: Any) -> None:
        try:
            self.route(self.engine.handle(timer, self.engine.now()))
        except Exception as exc:  # noqa: BLE001 - a timer must never kill the loop
            logger.opt(exception=exc).error("binance face: timer failed")

    def _user_event(self, ev: Any, delay: float) -> str | None:
        """Translate one account event; returns the account it went to."""
        kind = type(ev)
        if kind is OrderRejected:
            return None  # refused orders are answered on REST, never streamed
        st = self.engine.orders.get(ev.client_order_id)
        if kind is CancelConfirmed:
            self.waiters.resolve(ev)
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
                    fill=ev, filled=filled, avg=notional / filled, maker=self.view.maker(ev),
                    ps=ps)
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

    def _account_update(self, account: str, symbols: set[str]) -> dict[str, Any]:
        acct = self.engine.account(account)
        t = shapes.ms(self.engine.now())
        cash, _ = self.view.wallet(account)
        positions = []
        for sym in sorted(symbols):
            if self.modes.is_dual(account):
                positions += [self._leg_update(sym, ps, qty, entry)
                              for ps, qty, entry in self.modes.rows(account, sym)]
                continue
            pos = acct.positions.get(sym)
            qty = pos.qty if pos is not None else Decimal(0)
            entry = pos.avg_price if pos is not None else Decimal(0)
            mark = self.view.mark(sym)
            upnl = (mark - entry) * qty if (mark is not None and qty) else Decimal(0)
            positions.append({"s": sym, "pa": shapes.s(qty), "ep": shapes.s(entry),
                              "bep": shapes.s(entry), "cr": shapes.s(pos.realized if pos else None),
                              "up": shapes.s(upnl), "mt": "cross", "iw": "0", "ps": "BOTH"})
        return {"e": "ACCOUNT_UPDATE", "E": t, "T": t, "a": {
            "m": "ORDER", "B": [{"a": "USDT", "wb": shapes.s(cash), "cw": shapes.s(cash),
                                 "bc": "0"}], "P": positions}}

    def _leg_update(self, sym: str, ps: str, qty: Decimal, entry: Decimal) -> dict[str, Any]:
        """One dual-side leg in an ``ACCOUNT_UPDATE`` (realized PnL is the engine's net's)."""
        mark = self.view.mark(sym)
        upnl = (mark - entry) * qty if (mark is not None and qty) else Decimal(0)
        return {"s": sym, "pa": shapes.s(qty), "ep": shapes.s(entry), "bep": shapes.s(entry),
                "cr": "0", "up": shapes.s(upnl), "mt": "cross", "iw": "0", "ps": ps}

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
