"""A Binance new-order request -> the engine's ``OrderRequest``, and the
engine's rejection reasons -> Binance's error codes.

Types: ``LIMIT`` (price, timeInForce GTC/IOC) and ``MARKET`` on
``/fapi/v1/order``; ``STOP`` (stop-limit: price + triggerPrice) and
``STOP_MARKET`` (triggerPrice) on ``/fapi/v1/algoOrder`` only: since
2025-12-09 Binance answers ``-4120`` to conditional types on the plain order
endpoint, and so does the face. ``reduceOnly`` and ``newClientOrderId`` (or
``clientAlgoId``) as Binance spells them; the client id must match Binance's
rule ``^[.A-Z:/a-z0-9_-]{1,36}$``; without one the face makes one, as the
venue does.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from exchange.binance_face import errors
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.markets import MarketSpec, check_order
from messages import OrderRequest, OrderType, Side, TimeInForce
from messages.types import Account, ClientOrderId, Price, Quantity, Symbol

CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
TYPES = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET, "STOP": OrderType.STOP_LIMIT,
         "STOP_MARKET": OrderType.STOP_MARKET}
#: decimal exponents a price or quantity may have (1e-12 .. 1e12): beyond it
#: the number is garbage, and Decimal arithmetic on it could raise
MAX_EXPONENT = 12
CONDITIONAL = (OrderType.STOP_LIMIT, OrderType.STOP_MARKET)
_generated = itertools.count(1)


def is_algo(req: OrderRequest) -> bool:
    """Conditional orders live in Binance's Algo Service (``/fapi/v1/algoOrder``,
    ``openAlgoOrders``, ``ALGO_UPDATE``), whichever door they came in by."""
    return req.order_type in CONDITIONAL


def decimal(params: dict[str, str], name: str, *, required: bool = False) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise errors.missing(name)
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise errors.bad_param(name, f"{raw!r} is not a number") from None
    if not value.is_finite():
        raise errors.bad_param(name, f"{raw!r} is not a finite number")
    if value and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise errors.bad_param(name, f"{raw!r} is outside any sane range")
    return value


def flag(params: dict[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise errors.bad_param(name, f"{raw!r} is not true/false")
    return raw == "true"


def build(params: dict[str, str], markets: dict[str, MarketSpec], account: str,
          now: datetime, mark: Decimal | None, *, algo: bool) -> OrderRequest:
    """The engine order for a Binance new-order request; BinanceError if invalid."""
    symbol = params.get("symbol")
    if not symbol:
        raise errors.missing("symbol")
    market = markets.get(symbol)
    if market is None:
        raise errors.unknown_symbol()
    side_raw = params.get("side", "")
    if side_raw not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.") if side_raw else errors.missing("side")
    type_key = "type" if "type" in params or not algo else "orderType"
    btype = params.get(type_key, "")
    otype = TYPES.get(btype)
    if otype is None:
        raise BinanceError(-1116, "Invalid orderType.") if btype else errors.missing("type")
    if algo and otype in (OrderType.LIMIT, OrderType.MARKET):
        raise BinanceError(-4500, f"algo orders need a conditional type, got {btype}")
    if not algo and otype in CONDITIONAL:
        # Binance moved conditional orders to its Algo Service (2025-12-09)
        raise BinanceError(-4120, "Order type not supported for this endpoint. Please use "
                                  "the Algo Order API endpoints instead.")
    # positionSide: checked against the account's position mode (``position_mode``)
    tif_raw = params.get("timeInForce", "GTC")
    if tif_raw not in ("GTC", "IOC"):
        raise BinanceError(-1115, "Invalid timeInForce.")
    coid = params.get("clientAlgoId" if algo else "newClientOrderId") \
        or params.get("newClientOrderId") or f"face_{next(_generated)}"
    if not CLIENT_ID.match(coid):
        raise BinanceError(-4015, "Client order id is not valid.")
    qty = decimal(params, "quantity", required=True)
    price = decimal(params, "price", required=otype in (OrderType.LIMIT, OrderType.STOP_LIMIT))
    trigger = decimal(params, "triggerPrice") or decimal(params, "stopPrice")
    if otype in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET) and trigger is None:
        raise errors.missing("triggerPrice" if algo else "stopPrice")
    if otype in (OrderType.MARKET, OrderType.STOP_MARKET):
        price = None
    if otype in (OrderType.LIMIT, OrderType.MARKET):
        trigger = None
    reduce_only = flag(params, "reduceOnly")
    assert qty is not None
    check_order(market, qty=qty, price=price, trigger=trigger,
                is_market=otype in (OrderType.MARKET, OrderType.STOP_MARKET),
                reduce_only=reduce_only, mark=mark)
    return OrderRequest(ClientOrderId(coid), Symbol(symbol),
                        Side.BUY if side_raw == "BUY" else Side.SELL, otype, Quantity(qty), now,
                        price=None if price is None else Price(price),
                        trigger_price=None if trigger is None else Price(trigger),
                        reduce_only=reduce_only,
                        tif=TimeInForce.IOC if tif_raw == "IOC" else TimeInForce.GTC,
                        account=Account(account))


def rejection(reason: str) -> BinanceError:
    """Binance's answer for an engine rejection reason (``code: detail``)."""
    code = reason.split(":", 1)[0]
    if code == "duplicate_client_order_id":
        return BinanceError(-4116, "ClientOrderId is duplicated.")
    if code == "reduce_only":
        return BinanceError(-2022, "ReduceOnly Order is rejected.")
    if code == "unknown_symbol":
        return errors.unknown_symbol()
    if code == "no_market":
        return BinanceError(-2020, "Unable to fill.")
    if code == "injected_reject":
        return BinanceError(-2019, "Margin is insufficient.")
    if code in ("invalid_qty", "invalid_price", "invalid_trigger_price", "malformed_order"):
        return BinanceError(-1102, f"A mandatory parameter was malformed: {reason}")
    return BinanceError(-1000, f"An unknown error occured while processing the request: {reason}",
                        500)
