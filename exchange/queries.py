"""Query replies of the simulated exchange (positions, open orders, balances,
fills since a cursor). These are what the reconciler and startup recovery
compare against: the broker wins on divergence, so they must be exact. Also
the engine's read access for tests and tools (``order``, ``open_orders``,
``position``, ``positions``, ``book``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from exchange.book import WORKING, ZERO, Book, OrderState
from exchange.emit import REQUESTER, Emit
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

if TYPE_CHECKING:
    from exchange.engine_host import EngineHost
else:
    EngineHost = object


class QueriesMixin(EngineHost):
    def query(self, q: Any, now: datetime | None = None) -> list[Emit]:
        now = now or self._clock()
        acct = self.account(q.account)
        self.stats["queries"] += 1
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
                _open_order(st) for st in self.open_orders(acct.name)), now)
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
        self.log.append("query", now, what=what, request_id=getattr(q, "request_id", None),
                        account=acct.name)
        return [self._emit(reply, now, REQUESTER)]

    def query_events(self, q: QueryEvents,
                     now: datetime | None = None) -> list[Emit]:
        """A page of this exchange's own events.jsonl (``messages.sim_events``)."""
        now = now or self._clock()
        self.stats["queries"] += 1
        try:
            lines, cursor, last_seq, more = self.log.read_page(q.since_seq, q.cursor, q.limit)
        except (OSError, ValueError) as exc:
            return [self._error("no_events_log", str(exc), now)]
        positions = () if q.limit else tuple(
            (name, symbol, p.qty) for name, acct in sorted(self.accounts.items())
            for symbol, p in sorted(acct.positions.items()) if p.qty != 0)
        return [self._emit(EventsPage(q.request_id, tuple(lines), cursor, last_seq, more,
                                      positions), now, REQUESTER)]

    # -- read access (tests, tools, the venue's introspection) ------------------------

    def order(self, client_order_id: str) -> OrderState | None:
        return self.orders.get(client_order_id)

    def open_orders(self, account: str | None = None) -> list[OrderState]:
        return [st for orders in self.working.values() for st in orders.values()
                if st.status == WORKING and (account is None or st.request.account == account)]

    def position(self, symbol: str, account: str = "default") -> Decimal:
        pos = self.accounts.get(account)
        p = pos.positions.get(symbol) if pos is not None else None
        return p.qty if p is not None else ZERO

    def positions(self, account: str = "default") -> dict[str, Decimal]:
        acct = self.accounts.get(account)
        return {s: p.qty for s, p in sorted(acct.positions.items())} if acct else {}

    def book(self, symbol: str) -> Book | None:
        return self.books.get(symbol)


def _open_order(st: Any) -> OpenOrder:
    req = st.request
    return OpenOrder(req.client_order_id, st.exchange_order_id, req.symbol, req.side,
                     req.order_type, req.qty, st.leaves, st.created, price=req.price,
                     trigger_price=req.trigger_price, triggered=st.triggered,
                     reduce_only=req.reduce_only, tif=req.tif, account=req.account)
