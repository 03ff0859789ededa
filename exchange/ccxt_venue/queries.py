"""Venue answers to the snapshot queries: positions, open orders, balances, fills.

All read the venue's raw records (``info``), so quantities are exact.

Fills are paged per symbol by Binance's trade id (``fromId``: every trade
with an id at or above it, ascending), the only order Binance guarantees. The
protocol's cursor is one integer, so the adapter keeps, per cursor it handed
out, the next ``fromId`` of every symbol; a page never splits a symbol's
trades except at a trade-id boundary, and the next page starts exactly after
the last trade handed out: nothing skipped, nothing twice.

``SnapshotQueries`` runs the four queries for the adapter: each waits for the
request budget (``VenueCalls.budget_wait``), answers with one snapshot, or
with ``ExchangeError(query_failed)`` (after the venue trouble, if any, is
told). It owns the fills cursors: a bounded map cursor -> next ``fromId`` per
symbol; a cursor it does not know starts the paging over.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.ids import our_client_id
from exchange.ccxt_venue.errors import classify
from exchange.ccxt_venue.orders import open_order
from exchange.ccxt_venue.venue_calls import W_BALANCE, W_OPEN_ALL, W_POSITIONS, VenueCalls
from exchange.ccxt_venue.venue_calls import info as raw_info
from messages import ExchangeError, OrderFilled, PositionSnapshot
from messages.exchange import (BalanceSnapshot, FillsSnapshot, OpenOrdersSnapshot, QueryBalances,
                               QueryFills, QueryOpenOrders, QueryPositions)
from messages.types import Account, ClientOrderId, Price, Quantity, Symbol

ZERO = Decimal(0)
#: how far back a first fills page looks (Binance keeps userTrades queries to 7 days)
LOOKBACK_MS = 7 * 24 * 3600 * 1000 - 60_000


def positions_snapshot(rows: list[dict[str, Any]], request_id: str, account: str,
                       now: datetime) -> PositionSnapshot:
    """Net position and entry price per symbol (hedge mode: LONG + SHORT legs)."""
    qty: dict[str, Decimal] = defaultdict(Decimal)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        sym = str(row.get("symbol") or "")
        raw = row.get("positionAmt")
        if not sym or raw in (None, ""):
            continue
        amt = Decimal(str(raw))
        if not amt.is_finite():
            raise ev.ParseError(f"position {sym}: positionAmt {raw!r}")
        side = str(row.get("positionSide") or "BOTH").upper()
        if side == "SHORT" and amt > 0:
            amt = -amt  # hedge-mode SHORT legs may be reported unsigned
        qty[sym] += amt
        entry = row.get("entryPrice")
        if entry not in (None, "") and amt != 0:
            cost[sym] += abs(amt) * Decimal(str(entry))
    positions = tuple((s, q) for s, q in sorted(qty.items()) if q != 0)
    entries = tuple((s, cost[s] / abs(q)) for s, q in positions if cost.get(s))
    return PositionSnapshot(account, positions, now, request_id=request_id, entry_prices=entries)


def open_orders_snapshot(regular: list[dict[str, Any]], algo: list[dict[str, Any]],
                         tracker: ev.OrderTracker, request_id: str, account: str,
                         now: datetime) -> OpenOrdersSnapshot:
    orders = []
    for info, is_algo in [(i, False) for i in regular] + [(i, True) for i in algo]:
        raw_id = info.get("clientAlgoId") if is_algo else info.get("clientOrderId")
        if not raw_id:
            continue
        coid = our_client_id(str(raw_id))
        tracker.track(coid, str(info.get("symbol")), algo=is_algo)
        if not is_algo:
            tracker.learn_venue_id(coid, info.get("orderId"))
        order = open_order(info, coid, account, now)
        if order is not None:
            orders.append(order)
    return OpenOrdersSnapshot(request_id, account, tuple(orders), now)


def balance_snapshot(info: dict[str, Any], request_id: str, account: str,
                     now: datetime) -> BalanceSnapshot:
    """Wallet balance per asset (futures ``assets``), realized PnL not known here."""
    balances = []
    for asset in info.get("assets") or []:
        name = str(asset.get("asset") or "")
        raw = asset.get("walletBalance")
        if name and raw not in (None, ""):
            balances.append((name, Decimal(str(raw))))
    if not balances and isinstance(info.get("totalWalletBalance"), str):
        balances.append(("USDT", Decimal(info["totalWalletBalance"])))
    return BalanceSnapshot(request_id, account, tuple(balances), now)


class FillPager:
    """One page of fills across symbols, from per-symbol ``fromId`` positions."""

    def __init__(self, calls: VenueCalls, tracker: ev.OrderTracker, account: str) -> None:
        self.calls = calls
        self.tracker = tracker
        self.account = account
        self._orders: dict[str, dict[str, Any]] = {}

    async def page(self, symbols: list[str], from_ids: dict[str, int], limit: int
                   ) -> tuple[list[OrderFilled], dict[str, int], bool]:
        out: list[OrderFilled] = []
        next_ids = dict(from_ids)
        more = False
        for sym in symbols:
            room = limit - len(out)
            if room <= 0:
                more = True
                break
            trades = await self._trades(sym, from_ids.get(sym), room)
            if len(trades) >= room:
                more = True
            for t in trades:
                fill = await self._fill(sym, t, trades)
                if fill is not None:
                    out.append(fill)
                next_ids[sym] = int(t["id"]) + 1
        return out, next_ids, more

    async def _trades(self, sym: str, from_id: int | None, limit: int) -> list[dict[str, Any]]:
        ad = self.calls
        unified = ad.unified(sym)
        if unified is None:
            return []
        if not await ad.budget_wait(5):
            raise RuntimeError("request budget exhausted")
        # Without fromId Binance answers the *latest* trades; a first page starts
        # at the oldest of the lookback instead, so paging forward misses none
        since = None if from_id is not None else ad.record_ms() - LOOKBACK_MS
        params: dict[str, Any] = {} if from_id is None else {"fromId": from_id}
        raw = await ad.ex.fetch_my_trades(unified, since, min(limit, 1000), params)
        rows = [r.get("info", r) for r in raw]
        rows = [r for r in rows if isinstance(r, dict) and r.get("id") is not None]
        rows.sort(key=lambda r: int(r["id"]))
        if from_id is not None:
            rows = [r for r in rows if int(r["id"]) >= from_id]
        return rows[:limit]

    async def _fill(self, sym: str, t: dict[str, Any], page: list[dict[str, Any]]
                    ) -> OrderFilled | None:
        order_id = str(t.get("orderId"))
        coid = self.tracker.coid_for(order_id)
        order = await self._order(sym, order_id)
        if coid is None:
            raw = (order or {}).get("clientOrderId")
            if not raw:
                return None  # an order this adapter cannot name: left to the positions poll
            coid = our_client_id(str(raw))
            self.tracker.learn_venue_id(coid, order_id)
        qty = ev.dec(t.get("qty"), "qty")
        if qty <= 0:
            return None
        # leaves after this trade: the order's open quantity now, plus what its
        # later trades on this page took (trades beyond the page are not known)
        leaves = ZERO
        if order is not None:
            leaves = max(ev.dec(order.get("origQty") or "0", "origQty")
                         - ev.dec(order.get("executedQty") or "0", "executedQty"), ZERO)
            later = sum((ev.dec(x.get("qty"), "qty") for x in page
                         if str(x.get("orderId")) == order_id and int(x["id"]) > int(t["id"])),
                        ZERO)
            leaves += later
        return OrderFilled(ClientOrderId(coid), ev.fill_id(sym, t.get("id")), Symbol(sym),
                           ev.side_of(t.get("side")), Quantity(qty),
                           Price(ev.dec(t.get("price"), "price")), Quantity(leaves),
                           ev.ms_to_dt(t.get("time")),
                           fee=ev.dec(t.get("commission") or "0", "commission"),
                           account=Account(self.account))

    async def _order(self, sym: str, order_id: str) -> dict[str, Any] | None:
        if order_id in self._orders:
            return self._orders[order_id]
        ad = self.calls
        unified = ad.unified(sym)
        if not await ad.budget_wait(1):
            raise RuntimeError("request budget exhausted")
        try:
            answer = await ad.ex.fetch_order(order_id, unified)
        except Exception:  # noqa: BLE001 - unknown order: the fill keeps leaves 0
            self._orders[order_id] = {}
            return None
        info = answer.get("info", answer) if isinstance(answer, dict) else {}
        self._orders[order_id] = info
        return info


class SnapshotQueries:
    def __init__(self, calls: VenueCalls, tracker: ev.OrderTracker, symbols: set[str], *,
                 now: Callable[[], datetime], emit: Callable[[Any], None],
                 counts: Counter[str]) -> None:
        self.calls = calls
        self.tracker = tracker
        #: symbols traded or subscribed: the fills query pages these (shared)
        self.symbols = symbols
        self._now = now
        self._emit = emit
        self._counts = counts
        self._fill_cursors: dict[int, dict[str, int]] = {}
        self._next_cursor = 1

    async def positions(self, q: QueryPositions) -> None:
        if not await self.calls.budget_wait(W_POSITIONS):
            self._failed(q, "request budget exhausted")
            return
        try:
            raw = await self.calls.ex.fetch_positions()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._error(q, exc)
            return
        self._emit(positions_snapshot([raw_info(p) for p in raw], q.request_id, q.account, self._now()))

    async def open_orders(self, q: QueryOpenOrders) -> None:
        if not await self.calls.budget_wait(W_OPEN_ALL + 1):
            self._failed(q, "request budget exhausted")
            return
        try:
            regular = await self.calls.ex.fetch_open_orders()
            algo = await self.calls.ex.fetch_open_orders(None, None, None, {"trigger": True})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._error(q, exc)
            return
        snap = open_orders_snapshot([raw_info(o) for o in regular], [raw_info(o) for o in algo],
                                    self.tracker, q.request_id, q.account, self._now())
        self._emit(snap)

    async def balances(self, q: QueryBalances) -> None:
        if not await self.calls.budget_wait(W_BALANCE):
            self._failed(q, "request budget exhausted")
            return
        try:
            raw = await self.calls.ex.fetch_balance()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._error(q, exc)
            return
        self._emit(balance_snapshot(raw_info(raw), q.request_id, q.account, self._now()))

    async def fills(self, q: QueryFills) -> None:
        start = self._fill_cursors.get(q.since_cursor, {}) if q.since_cursor else {}
        pager = FillPager(self.calls, self.tracker, q.account)
        try:
            fills, next_ids, more = await pager.page(sorted(self.symbols), dict(start), q.limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._error(q, exc)
            return
        cursor = self.new_cursor()
        self._fill_cursors[cursor] = next_ids
        while len(self._fill_cursors) > 64:  # bounded: old cursors start over (dedup by fill id)
            self._fill_cursors.pop(next(iter(self._fill_cursors)))
        self._emit(FillsSnapshot(q.request_id, q.account, tuple(fills), cursor, self._now(),
                                 more=more))

    def new_cursor(self) -> int:
        """A fills cursor above every one handed out before, by this adapter or
        an earlier one (the reconciler keeps the highest it saw): a cursor this
        instance does not know starts the paging over, and one below the
        reconciler's would make it ask for an unknown cursor forever."""
        self._next_cursor = max(self._next_cursor + 1, time.time_ns() // 1000)
        return self._next_cursor

    def _error(self, q: Any, exc: BaseException) -> None:
        self.calls.note_headers()
        c = classify(exc)
        self.calls.trouble(c, ref=q.request_id)
        self._failed(q, c.reason())

    def _failed(self, q: Any, detail: str) -> None:
        self._counts["query_failed"] += 1
        self._emit(ExchangeError(code="query_failed", ts=self._now(), ref=q.request_id,
                                 reason=f"{type(q).__name__}: {detail}"[:300]))
