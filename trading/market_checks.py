"""What a symbol actor refuses of the market data it is given (quotes, bars).

The gateway has already checked every number against the sane bounds (rule
18, ``messages.bounds``); what is left is what only the symbol's own stream
can tell: a tick of another symbol, a crossed or non-finite price, a size
below zero, a naive timestamp, or a tick older than the last one. Each check
returns the reason as a short word (counted per reason by the actor) or None,
and never raises, whatever the message holds: a corrupted field is
``malformed``.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from messages.market import Bar, Quote


def finite(x: Any) -> float:
    """A Decimal/int/float as a float, or NaN for anything else or non-finite."""
    try:
        if isinstance(x, Decimal) and not x.is_finite():
            return math.nan
        f = float(x)
    except (TypeError, ValueError, OverflowError, InvalidOperation):
        return math.nan
    return f if math.isfinite(f) else math.nan


def aware(ts: Any) -> bool:
    """A datetime with a UTC offset (a naive one has no place on a timeline)."""
    return isinstance(ts, datetime) and ts.tzinfo is not None and ts.utcoffset() is not None


def quote_problem(q: Quote, symbol: str, bid: float, ask: float, bsz: float, asz: float,
                  last_ts: datetime | None) -> str | None:
    """Why quote ``q`` (its numbers already as floats, NaN where they would not
    convert) cannot go into ``symbol``'s history after a quote stamped
    ``last_ts``, or None."""
    try:
        if q.symbol != symbol:
            return "wrong_symbol"
        if not (0 < bid < math.inf and 0 < ask < math.inf):  # NaN compares False
            return "bad_price"
        if ask < bid:
            return "crossed"
        if not (0 <= bsz < math.inf and 0 <= asz < math.inf):
            return "bad_size"
        ts = q.ts
        if not aware(ts):
            return "bad_ts"
        if last_ts is not None and ts < last_ts:
            return "out_of_order"
    except Exception:  # noqa: BLE001 - a corrupted message must not crash the actor
        return "malformed"
    return None


def bar_problem(b: Bar, symbol: str, last_ts: datetime | None) -> str | None:
    """Why bar ``b`` cannot go into ``symbol``'s history after a bar stamped
    ``last_ts``, or None."""
    try:
        if b.symbol != symbol:
            return "wrong_symbol"
        o, h, lo, c = (finite(b.open), finite(b.high), finite(b.low), finite(b.close))
        if not (o > 0 and h > 0 and lo > 0 and c > 0):
            return "bad_price"
        if not (lo <= min(o, c) and max(o, c) <= h):
            return "bad_range"
        if not finite(b.volume) >= 0:
            return "bad_size"
        if not aware(b.ts):
            return "bad_ts"
        if last_ts is not None and b.ts < last_ts:
            return "out_of_order"
    except Exception:  # noqa: BLE001
        return "malformed"
    return None
