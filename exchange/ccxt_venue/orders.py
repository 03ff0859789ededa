"""SubmitOrder -> the arguments of ccxt's ``create_order`` (and back for queries).

Amounts and prices go to ccxt as strings of the exact Decimals (ccxt formats
them to the market's precision by truncation, never rounding up; the risk
gate has already put them on the step and tick). The mapping per type:

======================  ================================================
ours                    Binance USDⓈ-M (through ccxt)
======================  ================================================
market                  MARKET
limit (gtc / ioc)       LIMIT, timeInForce GTC / IOC
stop_limit              STOP (stop-limit) with stopPrice: ccxt sends it to
                        the algo service (``clientAlgoId``)
stop_market             STOP_MARKET with stopPrice (algo service)
======================  ================================================

In one-way position mode ``reduceOnly`` is sent as asked. In hedge mode
(dual side) Binance refuses ``reduceOnly`` and wants ``positionSide``:
a reducing sell closes the LONG side, a reducing buy the SHORT side, an
opening buy adds to LONG and an opening sell to SHORT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exchange.ccxt_venue.ids import venue_client_id
from messages import OrderRequest, OrderType, Side, TimeInForce
from messages.exchange import OpenOrder

#: the stop-market type, as a string so this module works whether or not the
#: protocol's OrderType has the member (the simulated exchange has no such type)
STOP_MARKET = "stop_market"


@dataclass(frozen=True, slots=True)
class OrderCall:
    symbol: str          # ccxt unified symbol
    type: str            # ccxt type: "market" / "limit"
    side: str            # "buy" / "sell"
    amount: str
    price: str | None
    params: dict[str, Any] = field(default_factory=dict)
    #: True: a conditional order, kept by Binance's algo service
    algo: bool = False


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


_MARKET, _LIMIT, _STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT
_STOP_MARKET = getattr(OrderType, "STOP_MARKET", None)
_SELL, _IOC = Side.SELL, TimeInForce.IOC


def order_call(req: OrderRequest, unified_symbol: str, *, hedge_mode: bool = False) -> OrderCall:
    """The ``create_order`` arguments for ``req`` (raises ClientIdError for a bad id)."""
    params: dict[str, Any] = {"newClientOrderId": venue_client_id(req.client_order_id)}
    otype = req.order_type
    price = None
    algo = False
    if otype is _MARKET:
        ctype = "market"
    elif otype is _LIMIT:
        ctype = "limit"
        price = _plain(req.price) if req.price is not None else None
        params["timeInForce"] = "IOC" if req.tif is _IOC else "GTC"
    elif otype is _STOP_LIMIT:
        ctype = "limit"
        price = _plain(req.price) if req.price is not None else None
        params["stopPrice"] = _plain(req.trigger_price) if req.trigger_price is not None else None
        params["timeInForce"] = "GTC"
        algo = True
    elif otype is _STOP_MARKET or str(otype) == STOP_MARKET:
        ctype = "market"
        params["stopPrice"] = _plain(req.trigger_price) if req.trigger_price is not None else None
        algo = True
    else:
        raise ValueError(f"order type {otype!r} has no venue mapping")
    if algo and params.get("stopPrice") is None:
        raise ValueError(f"{otype} order {req.client_order_id} without a trigger price")
    sell = req.side is _SELL
    if hedge_mode:
        params["positionSide"] = position_side(req.side, req.reduce_only)
    elif req.reduce_only:
        params["reduceOnly"] = True
    return OrderCall(unified_symbol, ctype, "sell" if sell else "buy", _plain(req.qty), price,
                     params, algo)


def position_side(side: Side, reduce_only: bool) -> str:
    """The dual-side leg an order trades: a reducing order closes the opposite
    leg (a sell the LONG, a buy the SHORT), any other opens its own side's."""
    return "LONG" if (side is _SELL) is reduce_only else "SHORT"


_TYPES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT, "STOP": OrderType.STOP_LIMIT}


def open_order(info: dict[str, Any], coid: str, account: str, ts: Any) -> OpenOrder | None:
    """A working order from a REST open-orders answer (raw ``info``), or None
    for a type the protocol cannot describe (it is still reported by the poll's
    positions; a stop-market is shown as stop_limit without a price)."""
    from exchange.ccxt_venue.events import dec, side_of

    vtype = str(info.get("type") or info.get("orderType") or "").upper()
    otype = _TYPES.get(vtype)
    if otype is None and vtype == "STOP_MARKET":
        otype = OrderType.STOP_LIMIT
    if otype is None:
        return None
    qty = dec(info.get("origQty") or info.get("quantity"), "origQty")
    if qty <= 0:
        return None
    executed = dec(info.get("executedQty") or "0", "executedQty")
    price_raw = info.get("price")
    price = dec(price_raw, "price") if price_raw not in (None, "") else None
    trig_raw = info.get("stopPrice") or info.get("triggerPrice")
    trigger = dec(trig_raw, "stopPrice") if trig_raw not in (None, "") else None
    status = str(info.get("status") or info.get("algoStatus") or "").upper()
    return OpenOrder(
        client_order_id=coid,
        exchange_order_id=str(info.get("orderId") or f"algo-{info.get('algoId')}"),
        symbol=str(info.get("symbol")), side=side_of(info.get("side")), order_type=otype,
        qty=qty, leaves_qty=max(qty - executed, Decimal(0)), ts=ts,
        price=price if price and price > 0 else None,
        trigger_price=trigger if trigger and trigger > 0 else None,
        triggered=status in ("TRIGGERED", "TRIGGERING") or otype is not OrderType.STOP_LIMIT,
        reduce_only=bool(info.get("reduceOnly")) or _closes_leg(info),
        tif=TimeInForce.IOC if str(info.get("timeInForce")).upper() == "IOC" else TimeInForce.GTC,
        account=account)


def _closes_leg(info: dict[str, Any]) -> bool:
    """A dual-side order that closes its leg (SELL/LONG, BUY/SHORT) is reduce-only
    by its leg, though the venue shows ``reduceOnly`` false (it refuses the flag
    in hedge mode)."""
    ps = str(info.get("positionSide") or "BOTH").upper()
    side = str(info.get("side") or "").upper()
    return (ps, side) in (("LONG", "SELL"), ("SHORT", "BUY"))
