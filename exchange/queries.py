"""Query replies of the simulated exchange (positions, open orders, balances,
fills since a cursor, pages of its own events.jsonl). These are what the
reconciler and startup recovery compare against: the broker wins on
divergence, so they must be exact."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from exchange.accounts import Accounts
from exchange.book import OrderState
from exchange.emit import REQUESTER, Emit
from exchange.events_log import EventsLog
from exchange.order_table import OrderTable
from exchange.outbox import Outbox
from messages import (
    BalanceSnapshot,
    FillsSnapshot,
    OpenOrder,
    OpenOrdersSnapshot,
    PositionSnapshot,
    QueryBalances,
    QueryFills,
    QueryOpenOrders,
    QueryPositions,
)
from messages.sim_events import EventsPage, QueryEvents


class Queries:
    """Answers queries from the order table and the accounts without changing
    an order or a position (a query naming a new account opens it empty, as a
    real venue shows one)."""

    def __init__(self, table: OrderTable, accounts: Accounts, outbox: Outbox, log: EventsLog,
                 stats: Counter[str]) -> None:
        self._table = table
        self._accounts = accounts
        self._outbox = outbox
        self._log = log
        self._stats = stats

    def answer(self, q: Any, now: datetime) -> list[Emit]:
        acct = self._accounts.get(q.account)
        self._stats["queries"] += 1
        kind = type(q)
        reply: Any
        if kind is QueryPositions:
            what = "positions"
            held = sorted(acct.positions.items())
            reply = PositionSnapshot(acct.name, tuple((s, p.qty) for s, p in held), now,
                                     request_id=q.request_id,
                                     entry_prices=tuple((s, p.avg_price) for s, p in held
                                                        if p.qty != 0 and p.avg_price > 0))
        elif kind is QueryOpenOrders:
            what = "open_orders"
            reply = OpenOrdersSnapshot(q.request_id, acct.name, tuple(
                _open_order(st) for st in self._table.open_orders(acct.name)), now)
        elif kind is QueryBalances:
            what = "balances"
            reply = BalanceSnapshot(q.request_id, acct.name, tuple(sorted(acct.cash.items())), now,
                                    realized_pnl=acct.realized, fees_paid=acct.fees_paid)
        elif kind is QueryFills:
            what = "fills"
            fills, cursor, more = acct.fills_since(q.since_cursor, q.limit)
            reply = FillsSnapshot(q.request_id, acct.name, tuple(fills), cursor, now, more=more)
        else:
            raise TypeError(f"not a query: {kind.__name__}")
        self._log.append("query", now, what=what, request_id=getattr(q, "request_id", None),
                         account=acct.name)
        return [self._outbox.emit(reply, now, REQUESTER)]

    def events_page(self, q: QueryEvents, now: datetime) -> list[Emit]:
        """A page of this exchange's own events.jsonl (``messages.sim_events``)."""
        self._stats["queries"] += 1
        try:
            lines, cursor, last_seq, more = self._log.read_page(q.since_seq, q.cursor, q.limit)
        except (OSError, ValueError) as exc:
            return [self._outbox.error("no_events_log", str(exc), now)]
        positions = () if q.limit else tuple(
            (name, symbol, p.qty) for name, acct in sorted(self._accounts.by_name.items())
            for symbol, p in sorted(acct.positions.items()) if p.qty != 0)
        return [self._outbox.emit(EventsPage(q.request_id, tuple(lines), cursor, last_seq, more,
                                             positions), now, REQUESTER)]


def _open_order(st: OrderState) -> OpenOrder:
    req = st.request
    return OpenOrder(req.client_order_id, st.exchange_order_id, req.symbol, req.side,
                     req.order_type, req.qty, st.leaves, st.created, price=req.price,
                     trigger_price=req.trigger_price, triggered=st.triggered,
                     reduce_only=req.reduce_only, tif=req.tif, account=req.account)
