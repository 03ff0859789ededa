"""A venue's instrument rules, read from its markets, as plain data.

The risk gate (``trading.venue_rules``) is venue-neutral: it takes per
symbol ``tick_size``, ``step_size``, ``min_qty``, ``max_qty``,
``market_step_size`` / ``market_min_qty`` / ``market_max_qty`` (market
orders may have their own lot rules), ``min_notional``, ``min_price`` /
``max_price`` and a price band (``price_band_up`` / ``price_band_down``:
a limit price must lie within ``reference * down .. reference * up``).
Every value is a decimal string, absent when the venue has no such rule.
This module reads them from Binance's ``exchangeInfo`` filters as ccxt
carries them (``market['info']['filters']``), never from ccxt's float
``limits``, so the numbers are exactly the venue's.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def _pos(value: Any) -> str | None:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not d.is_finite() or d <= 0:
        return None
    return format(d.normalize(), "f")


def binance_rules(info: dict[str, Any]) -> dict[str, str]:
    """Instrument rules of one Binance futures symbol (its exchangeInfo entry)."""
    rules: dict[str, str] = {}
    filters = {f.get("filterType"): f for f in info.get("filters") or [] if isinstance(f, dict)}

    def put(key: str, value: Any) -> None:
        v = _pos(value)
        if v is not None:
            rules[key] = v

    pf = filters.get("PRICE_FILTER", {})
    put("tick_size", pf.get("tickSize"))
    put("min_price", pf.get("minPrice"))
    put("max_price", pf.get("maxPrice"))
    lot = filters.get("LOT_SIZE", {})
    put("step_size", lot.get("stepSize"))
    put("min_qty", lot.get("minQty"))
    put("max_qty", lot.get("maxQty"))
    mlot = filters.get("MARKET_LOT_SIZE", {})
    put("market_step_size", mlot.get("stepSize"))
    put("market_min_qty", mlot.get("minQty"))
    put("market_max_qty", mlot.get("maxQty"))
    mn = filters.get("MIN_NOTIONAL", {})
    put("min_notional", mn.get("notional", mn.get("minNotional")))
    pp = filters.get("PERCENT_PRICE", {})
    put("price_band_up", pp.get("multiplierUp"))
    put("price_band_down", pp.get("multiplierDown"))
    return rules


def rules_from_markets(markets: dict[str, Any], symbols: list[str] | tuple[str, ...]
                       ) -> dict[str, dict[str, str]]:
    """Rules for each of ``symbols`` (venue ids, e.g. BTCUSDT) found in ccxt's markets."""
    by_id = {m.get("id"): m for m in markets.values() if isinstance(m, dict)}
    out: dict[str, dict[str, str]] = {}
    for sym in symbols:
        market = by_id.get(sym)
        if market is not None:
            out[sym] = binance_rules(market.get("info") or {})
    return out
