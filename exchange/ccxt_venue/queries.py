"""Venue answers to the snapshot queries: positions, open orders, balances, fills.

All read the venue's raw records (``info``), so quantities are exact.

Fills are paged per symbol by Binance's trade id (``fromId``: every trade
with an id at or above it, ascending), the only order Binance guarantees. The
protocol's cursor is one integer, so the adapter keeps, per cursor it handed
out, the next ``fromId`` of every symbol; a page never splits a symbol's
trades except at a trade-id boundary, and the next page starts exactly after
the last trade handed out: nothing skipped, nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.ids import our_client_id
from exchange.ccxt_venue.orders import open_order
from messages import OrderFilled, PositionSnapshot
from messages.exchange import BalanceSnapshot, OpenOrdersSnapshot
from messages.types import Account, ClientOrderId, Price, Quantity, Symbol

if TYPE_CHECKING:
    from exchange.ccxt_venue.adapter import CcxtVenueAdapter

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

    def __init__(self, adapter: CcxtVenueAdapter, account: str) -> None:
        self.adapter = adapter
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
        ad = self.adapter
        unified = ad._unified(sym)
        if unified is None:
            return []
        if not await ad._budget_wait(5):
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
        ad = self.adapter
        order_id = str(t.get("orderId"))
        coid = ad.tracker.coid_for(order_id)
        order = await self._order(sym, order_id)
        if coid is None:
            raw = (order or {}).get("clientOrderId")
            if not raw:
                return None  # an order this adapter cannot name: left to the positions poll
            coid = our_client_id(str(raw))
            ad.tracker.learn_venue_id(coid, order_id)
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
        ad = self.adapter
        unified = ad._unified(sym)
        if not await ad._budget_wait(1):
            raise RuntimeError("request budget exhausted")
        try:
            answer = await ad.ex.fetch_order(order_id, unified)
        except Exception:  # noqa: BLE001 - unknown order: the fill keeps leaves 0
            self._orders[order_id] = {}
            return None
        info = answer.get("info", answer) if isinstance(answer, dict) else {}
        self._orders[order_id] = info
        return info
