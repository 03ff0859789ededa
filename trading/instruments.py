"""Option instruments as symbols: ``<UNDERLYING>-<YYYYMMDD>-<C|P>-<STRIKE>``.

Why symbols and not a contract table: the simulated exchange, the gate and
the store all key everything by symbol already, so an option leg needs no new
plumbing anywhere if its symbol says what it is. ``SPY-20260320-P-95`` is a
put on SPY, strike 95, expiring at the end of 2026-03-20 (24:00 UTC). Any
other symbol is a linear instrument (stock, future, perpetual). The format
fits the config's symbol rule (upper case, digits, ``-``, at most 32).

Prices come from the market: the underlying's mid is the spot, and the
volatility is implied from the option's own mid with the same Black-Scholes
the margin grid uses (``trading.pricing``), so "now" in the grid is the
market's price, not a model's guess.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, UTC
from decimal import Decimal
from typing import Any

from trading.pricing import bs_price_scalar

_OPTION = re.compile(r"^(?P<und>[A-Z0-9][A-Z0-9._:/]*)-(?P<date>\d{8})-(?P<right>[CP])-"
                     r"(?P<strike>\d+(?:\.\d+)?)$")
YEAR_S = 365.0 * 86_400.0
#: implied-vol search bounds (annualised)
IV_LOW, IV_HIGH = 1e-4, 5.0


@dataclass(frozen=True, slots=True)
class OptionSpec:
    underlying: str
    expiry: date
    right: str          # "C" or "P"
    strike: Decimal

    @property
    def is_call(self) -> bool:
        return self.right == "C"

    @property
    def expires_at(self) -> datetime:
        return datetime.combine(self.expiry, time(0), tzinfo=UTC) + timedelta(days=1)

    def years_to_expiry(self, now: datetime) -> float:
        return max(0.0, (self.expires_at - now).total_seconds() / YEAR_S)

    @property
    def symbol(self) -> str:
        return option_symbol(self.underlying, self.expiry, self.right, self.strike)


def parse_option(symbol: str) -> OptionSpec | None:
    """The option a symbol names, or None for a linear instrument."""
    m = _OPTION.match(symbol or "")
    if m is None:
        return None
    try:
        expiry = datetime.strptime(m["date"], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None
    strike = Decimal(m["strike"])
    if strike <= 0:
        return None
    return OptionSpec(m["und"], expiry, m["right"], strike)


def parse_expiry(value: Any) -> date:
    """``2026-03-20``, ``20260320`` or a date (YAML reads unquoted dates as dates)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).date()
        except ValueError:
            continue
    raise ValueError(f"expiry {value!r} is not a date (write 2026-03-20)")


def option_symbol(underlying: str, expiry: Any, right: str, strike: Any) -> str:
    right = str(right).upper()[:1]
    if right not in ("C", "P"):
        raise ValueError(f"right {right!r} must be C or P")
    k = Decimal(str(strike))
    if not k.is_finite() or k <= 0:
        raise ValueError(f"strike {strike!r} must be a positive number")
    text = f"{k.normalize():f}"
    return f"{underlying}-{parse_expiry(expiry):%Y%m%d}-{right}-{text}"


def implied_vol(is_call: bool, *, price: float, spot: float, strike: float,
                years: float) -> float | None:
    """Volatility that makes Black-Scholes give ``price``; None if no vol can.

    Bisection: the price is monotonic in vol and 60 halvings of [1e-4, 5]
    are far below a tick; robust where Newton steps blow up (deep in or out
    of the money, vega ~ 0).
    """
    if not (price > 0 and spot > 0 and strike > 0) or years <= 0:
        return None
    lo_px = bs_price_scalar(is_call, spot=spot, strike=strike, expiry_years=years, vol=IV_LOW)
    hi_px = bs_price_scalar(is_call, spot=spot, strike=strike, expiry_years=years, vol=IV_HIGH)
    if not lo_px <= price <= hi_px:
        return None
    lo, hi = IV_LOW, IV_HIGH
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if bs_price_scalar(is_call, spot=spot, strike=strike, expiry_years=years, vol=mid) < price:
            lo = mid
        else:
            hi = mid
    vol = 0.5 * (lo + hi)
    return vol if math.isfinite(vol) else None
