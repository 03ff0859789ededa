"""JSON shapes of Binance's USDⓈ-M answers and stream events, from engine state.

Field names and types follow Binance's documentation (numbers as strings,
times in ms, ids as integers); only engine facts go in, nothing is made up
beyond constants the engine has no notion of (cross margin, leverage 20);
``positionSide`` is the order's leg from ``position_mode`` (``BOTH`` one-way).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from exchange.binance_face.ids import algo_id, numeric_id
from exchange.binance_face.markets import SETTLE
from exchange.book import CANCELED, EXPIRED, FILLED, OrderState
from messages import OrderFilled, OrderRequest, OrderType, Side, TimeInForce

ZERO = Decimal("0")
LEVERAGE = 20

#: engine type -> Binance type
TYPES = {OrderType.LIMIT: "LIMIT", OrderType.MARKET: "MARKET", OrderType.STOP_LIMIT: "STOP",
         OrderType.STOP_MARKET: "STOP_MARKET"}
#: the order a triggered conditional order places in the matching engine
ACTUAL = {OrderType.STOP_LIMIT: "LIMIT", OrderType.STOP_MARKET: "MARKET"}


def live_type(req: OrderRequest) -> str:
    """The type of the (matching-engine) order: a triggered STOP is a LIMIT."""
    return ACTUAL.get(req.order_type, TYPES[req.order_type])


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def s(d: Decimal | None) -> str:
    return "0" if d is None else format(d.normalize() if d == d.to_integral() else d, "f")


def status(st: OrderState) -> str:
    if st.status == FILLED:
        return "FILLED"
    if st.status == CANCELED:
        return "CANCELED"
    if st.status == EXPIRED:
        return "EXPIRED"
    return "PARTIALLY_FILLED" if st.filled > 0 else "NEW"


def tif(t: TimeInForce) -> str:
    return "IOC" if t is TimeInForce.IOC else "GTC"


def order(st: OrderState, updated: datetime | None = None, ps: str = "BOTH") -> dict[str, Any]:
    """``GET/POST/DELETE /fapi/v1/order`` (newOrderRespType RESULT)."""
    req = st.request
    avg = st.avg_price
    btype = live_type(req)
    return {
        "orderId": numeric_id(st.exchange_order_id), "symbol": req.symbol,
        "status": status(st), "clientOrderId": req.client_order_id,
        "price": s(req.price), "avgPrice": s(avg) if avg is not None else "0",
        "origQty": s(req.qty), "executedQty": s(st.filled), "cumQty": s(st.filled),
        "cumQuote": s(st.notional), "timeInForce": tif(req.tif), "type": btype,
        "reduceOnly": req.reduce_only, "closePosition": False, "side": req.side.value.upper(),
        "positionSide": ps, "stopPrice": s(req.trigger_price),
        "workingType": "CONTRACT_PRICE", "priceProtect": False,
        "origType": TYPES[req.order_type],
        "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
        "time": ms(st.created), "updateTime": ms(updated or st.created),
    }


def algo_status(st: OrderState) -> str:
    """NEW / CANCELED / EXPIRED while in the algo service; once triggered, the
    order lives in the matching engine: TRIGGERED, FINISHED when that ended."""
    if st.triggered:
        return "TRIGGERED" if st.is_working else "FINISHED"
    return {"CANCELED": "CANCELED", "EXPIRED": "EXPIRED"}.get(status(st), "NEW")


def algo_order(st: OrderState, updated: datetime | None = None,
               ps: str = "BOTH") -> dict[str, Any]:
    """``/fapi/v1/algoOrder`` (Binance's conditional-order service)."""
    req = st.request
    return {
        "algoId": algo_id(st.exchange_order_id), "clientAlgoId": req.client_order_id,
        "algoType": "CONDITIONAL", "orderType": TYPES[req.order_type], "symbol": req.symbol,
        "side": req.side.value.upper(), "positionSide": ps, "timeInForce": tif(req.tif),
        "quantity": s(req.qty), "algoStatus": algo_status(st),
        "actualOrderId": str(numeric_id(st.exchange_order_id)) if st.triggered else "",
        "actualPrice": s(st.avg_price), "triggerPrice": s(req.trigger_price),
        "price": s(req.price), "icebergQuantity": None, "tpTriggerPrice": "0.0000",
        "tpPrice": "0.0000", "slTriggerPrice": "0.0000", "slPrice": "0.0000",
        "tpOrderType": "", "selfTradePreventionMode": "NONE", "workingType": "CONTRACT_PRICE",
        "priceMatch": "NONE", "closePosition": False, "priceProtect": False,
        "reduceOnly": req.reduce_only, "createTime": ms(st.created),
        "updateTime": ms(updated or st.created), "triggerTime": 0, "goodTillDate": 0,
        "executedQty": s(st.filled),
    }


def trade(fill: OrderFilled, order_id: int, liquidity_maker: bool,
          realized: Decimal = ZERO, ps: str = "BOTH") -> dict[str, Any]:
    """One ``/fapi/v1/userTrades`` row."""
    buy = fill.side is Side.BUY
    return {
        "buyer": buy, "commission": s(fill.fee), "commissionAsset": SETTLE,
        "id": numeric_id(fill.fill_id), "maker": liquidity_maker, "orderId": order_id,
        "price": s(fill.price), "qty": s(fill.qty), "quoteQty": s(fill.qty * fill.price),
        "realizedPnl": s(realized), "side": "BUY" if buy else "SELL", "positionSide": ps,
        "symbol": fill.symbol, "time": ms(fill.ts),
    }


def order_update(st: OrderState, *, x: str, X: str, now: datetime,
                 fill: OrderFilled | None = None, filled: Decimal | None = None,
                 avg: Decimal | None = None, maker: bool = False,
                 ps: str = "BOTH") -> dict[str, Any]:
    """``ORDER_TRADE_UPDATE`` for one execution (NEW, TRADE, CANCELED, EXPIRED)."""
    req = st.request
    t = ms(now)
    cum = filled if filled is not None else st.filled
    o: dict[str, Any] = {
        "s": req.symbol, "c": req.client_order_id, "S": req.side.value.upper(),
        "o": live_type(req), "f": tif(req.tif), "q": s(req.qty), "p": s(req.price),
        "ap": s(avg if avg is not None else st.avg_price), "sp": s(req.trigger_price),
        "x": x, "X": X, "i": numeric_id(st.exchange_order_id),
        "l": s(fill.qty) if fill else "0", "z": s(cum), "L": s(fill.price) if fill else "0",
        "T": t, "t": numeric_id(fill.fill_id) if fill else 0, "b": "0", "a": "0",
        "m": maker, "R": req.reduce_only, "wt": "CONTRACT_PRICE", "ot": TYPES[req.order_type],
        "ps": ps, "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "NONE",
        "pm": "NONE", "gtd": 0,
    }
    if fill is not None:
        o["N"], o["n"] = SETTLE, s(fill.fee)
    return {"e": "ORDER_TRADE_UPDATE", "E": t, "T": t, "o": o}


def algo_update(st: OrderState, *, X: str, now: datetime, ps: str = "BOTH") -> dict[str, Any]:
    """``ALGO_UPDATE`` for a conditional order's own life (NEW, TRIGGERED with
    ``ai`` the matching-engine order it placed, CANCELED, EXPIRED)."""
    req = st.request
    t = ms(now)
    actual = str(numeric_id(st.exchange_order_id)) if st.triggered else ""
    return {"e": "ALGO_UPDATE", "T": t, "E": t, "o": {
        "caid": req.client_order_id, "aid": algo_id(st.exchange_order_id),
        "at": "CONDITIONAL", "o": TYPES[req.order_type], "s": req.symbol,
        "S": req.side.value.upper(), "ps": ps, "f": tif(req.tif), "q": s(req.qty),
        "X": X, "ai": actual, "ap": s(st.avg_price), "aq": s(st.filled),
        "act": live_type(req) if st.triggered else "0",
        "tp": s(req.trigger_price), "p": s(req.price), "V": "NONE",
        "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False, "pP": False, "R": req.reduce_only,
        "tt": 0, "gtd": 0}}


def position_risk(symbol: str, qty: Decimal, entry: Decimal, mark: Decimal | None,
                  updated_ms: int, ps: str = "BOTH") -> dict[str, Any]:
    """One ``/fapi/v2/positionRisk`` (and v3) row."""
    mark_px = mark if mark is not None else entry
    upnl = (mark_px - entry) * qty if qty else ZERO
    notional = qty * mark_px
    return {
        "symbol": symbol, "positionAmt": s(qty), "entryPrice": s(entry),
        "breakEvenPrice": s(entry), "markPrice": s(mark_px), "unRealizedProfit": s(upnl),
        "liquidationPrice": "0", "leverage": str(LEVERAGE), "maxNotionalValue": "1000000000",
        "marginType": "cross", "isolatedMargin": "0.00000000", "isAutoAddMargin": "false",
        "positionSide": ps, "notional": s(notional), "isolatedWallet": "0",
        "updateTime": updated_ms, "initialMargin": s(abs(notional) / LEVERAGE),
        "maintMargin": "0", "positionInitialMargin": s(abs(notional) / LEVERAGE),
        "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
    }


def book_ticker(symbol: str, bid: Decimal | None, bid_size: Decimal, ask: Decimal | None,
                ask_size: Decimal, ts: datetime) -> dict[str, Any]:
    """``<symbol>@bookTicker`` event (``u`` update id: the quote's ms time)."""
    t = ms(ts)
    return {"e": "bookTicker", "u": t, "E": t, "T": t, "s": symbol, "b": s(bid),
            "B": s(bid_size), "a": s(ask), "A": s(ask_size)}


def ticker_24hr(symbol: str, bid: Decimal, ask: Decimal, ts: datetime) -> dict[str, Any]:
    """``/fapi/v1/ticker/24hr`` row: the mid as last/open/high/low (no trade tape)."""
    mid = s((bid + ask) / 2)
    t = ms(ts)
    return {"symbol": symbol, "priceChange": "0", "priceChangePercent": "0",
            "weightedAvgPrice": mid, "lastPrice": mid, "lastQty": "0", "openPrice": mid,
            "highPrice": mid, "lowPrice": mid, "volume": "0", "quoteVolume": "0",
            "openTime": t - 86_400_000, "closeTime": t, "firstId": 0, "lastId": 0, "count": 0}


def ticker_event(symbol: str, bid: Decimal, ask: Decimal, ts: datetime) -> dict[str, Any]:
    """``<symbol>@ticker`` stream event (Binance's 24hrTicker), from the book."""
    row = ticker_24hr(symbol, bid, ask, ts)
    t = ms(ts)
    return {"e": "24hrTicker", "E": t, "s": symbol, "p": "0", "P": "0",
            "w": row["weightedAvgPrice"], "c": row["lastPrice"], "Q": "0", "o": row["openPrice"],
            "h": row["highPrice"], "l": row["lowPrice"], "v": "0", "q": "0",
            "O": row["openTime"], "C": t, "F": 0, "L": 0, "n": 0}


def mini_ticker_event(symbol: str, bid: Decimal, ask: Decimal, ts: datetime) -> dict[str, Any]:
    """``<symbol>@miniTicker`` (24hrMiniTicker, what ccxt's watch_ticker uses)."""
    mid = s((bid + ask) / 2)
    return {"e": "24hrMiniTicker", "E": ms(ts), "s": symbol, "c": mid, "o": mid, "h": mid,
            "l": mid, "v": "0", "q": "0"}


#: market channels the face feeds from its quotes
CHANNELS = ("bookTicker", "ticker", "miniTicker")


def market_event(channel: str, symbol: str, bid: Decimal, bid_size: Decimal, ask: Decimal,
                 ask_size: Decimal, ts: datetime) -> dict[str, Any]:
    """The event of one fed channel (:data:`CHANNELS`) for a quote."""
    if channel == "bookTicker":
        return book_ticker(symbol, bid, bid_size, ask, ask_size, ts)
    if channel == "ticker":
        return ticker_event(symbol, bid, ask, ts)
    if channel == "miniTicker":
        return mini_ticker_event(symbol, bid, ask, ts)
    raise ValueError(f"channel {channel!r} is not fed")
