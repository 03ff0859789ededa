"""The face's markets: ``/fapi/v1/exchangeInfo`` and the filters it enforces.

Each engine symbol (``BTCUSDT``) is a Binance perpetual of that id, settled
in ``USDT``. Its filters (PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE,
MIN_NOTIONAL, PERCENT_PRICE) are published and enforced on every new order
with Binance's codes, so a client's own pre-trade checks can be tested
against a venue that really refuses what breaks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchange.binance_face.errors import BinanceError

SETTLE = "USDT"
ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET"]
TIME_IN_FORCE = ["GTC", "IOC"]


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """Filters of one symbol (Binance's names in the comments)."""

    symbol: str
    tick_size: Decimal = Decimal("0.01")       # PRICE_FILTER tickSize
    min_price: Decimal = Decimal("0.01")       # PRICE_FILTER minPrice
    max_price: Decimal = Decimal("1000000")    # PRICE_FILTER maxPrice
    step_size: Decimal = Decimal("0.001")      # LOT_SIZE stepSize (and MARKET_LOT_SIZE)
    min_qty: Decimal = Decimal("0.001")        # LOT_SIZE minQty
    max_qty: Decimal = Decimal("1000000")      # LOT_SIZE maxQty
    max_market_qty: Decimal = Decimal("100000")  # MARKET_LOT_SIZE maxQty
    min_notional: Decimal = Decimal("5")       # MIN_NOTIONAL notional
    multiplier_up: Decimal = Decimal("1.5")    # PERCENT_PRICE multiplierUp
    multiplier_down: Decimal = Decimal("0.5")  # PERCENT_PRICE multiplierDown

    @property
    def base(self) -> str:
        return self.symbol[: -len(SETTLE)] if self.symbol.endswith(SETTLE) and \
            len(self.symbol) > len(SETTLE) else self.symbol

    @property
    def ccxt_symbol(self) -> str:
        """ccxt's unified symbol, e.g. ``BTC/USDT:USDT``."""
        return f"{self.base}/{SETTLE}:{SETTLE}"


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]  # a finite step: its exponent is an int


def _s(d: Decimal) -> str:
    return format(d, "f")


def symbol_info(m: MarketSpec) -> dict[str, Any]:
    """One entry of ``exchangeInfo.symbols`` (Binance's USDⓈ-M shape)."""
    return {
        "symbol": m.symbol, "pair": m.symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": m.base, "quoteAsset": SETTLE, "marginAsset": SETTLE,
        "pricePrecision": _places(m.tick_size), "quantityPrecision": _places(m.step_size),
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _s(m.min_price),
             "maxPrice": _s(m.max_price), "tickSize": _s(m.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": _s(m.min_qty), "maxQty": _s(m.max_qty),
             "stepSize": _s(m.step_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": _s(m.min_qty),
             "maxQty": _s(m.max_market_qty), "stepSize": _s(m.step_size)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": _s(m.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": _s(m.multiplier_up),
             "multiplierDown": _s(m.multiplier_down), "multiplierDecimal": "4"},
        ],
        "orderTypes": ORDER_TYPES, "timeInForce": TIME_IN_FORCE,
    }


def exchange_info(markets: dict[str, MarketSpec], server_ms: int) -> dict[str, Any]:
    return {
        "timezone": "UTC", "serverTime": server_ms, "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": SETTLE, "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(m) for m in markets.values()],
    }


def check_order(m: MarketSpec, *, qty: Decimal, price: Decimal | None,
                trigger: Decimal | None, is_market: bool, reduce_only: bool,
                mark: Decimal | None) -> None:
    """Binance's filter checks for a new order; BinanceError names the one broken."""
    for name, value in (("price", price), ("stopPrice", trigger)):
        if value is None:
            continue
        if value < m.min_price or value > m.max_price:
            raise BinanceError(-4013 if value < m.min_price else -4016,
                               f"{name} {_s(value)} outside [{_s(m.min_price)}, "
                               f"{_s(m.max_price)}] (PRICE_FILTER).")
        if value % m.tick_size != 0:
            raise BinanceError(-4014, "Price not increased by tick size.")
    if qty % m.step_size != 0:
        raise BinanceError(-4023, "Qty not increased by step size.")
    if qty < m.min_qty:
        raise BinanceError(-4004, "Quantity less than or equal to zero."
                           if qty <= 0 else "Quantity less than min quantity.")
    if qty > (m.max_market_qty if is_market else m.max_qty):
        raise BinanceError(-4005, "Quantity greater than max quantity.")
    if price is not None and mark is not None:
        if price > mark * m.multiplier_up:
            raise BinanceError(-4016, f"Limit price can't be higher than "
                                      f"{_s((mark * m.multiplier_up).quantize(m.tick_size))}.")
        if price < mark * m.multiplier_down:
            raise BinanceError(-4024, f"Limit price can't be lower than "
                                      f"{_s((mark * m.multiplier_down).quantize(m.tick_size))}.")
    ref = price if price is not None else trigger if trigger is not None else mark
    if not reduce_only and ref is not None and qty * ref < m.min_notional:
        raise BinanceError(-4164, f"Order's notional must be no smaller than "
                                  f"{_s(m.min_notional)} (unless you choose reduce only).")
