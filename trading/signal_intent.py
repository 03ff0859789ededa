"""The ``Signal`` a strategy's :class:`~trading.strategy.SignalIntent` becomes.

A strategy computes in floats and numpy; the coordinator reads Decimals. The
conversion happens here, once, at the message boundary: numpy scalars become
Python numbers, prices go onto the quote's price grid (its decimals), and a
take-profit, trailing stop or time limit becomes the Signal's ``ExitPlan``.
A number that is no number fails here, with the field named, not at the gate.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from messages.base import to_decimal
from messages.enums import Side
from messages.market import Quote
from messages.orders import ExitPlan, Signal
from messages.types import Account, Price, Quantity, Symbol
from trading.strategy import SignalIntent


def plain(x: Any) -> Any:
    """numpy scalars (what strategies naturally compute) as Python numbers."""
    return x.item() if isinstance(x, np.generic) else x


def on_grid(value: Any, quote: Quote | None) -> Price:
    """A strategy's price as a Decimal on the quote's price grid (its decimals)."""
    dec = to_decimal(plain(value), "stop_loss")
    if quote is None:
        return Price(dec)
    exp = min(quote.bid.as_tuple().exponent, quote.ask.as_tuple().exponent)
    return Price(dec.quantize(Decimal(1).scaleb(exp)) if isinstance(exp, int) else dec)


def exit_plan(intent: SignalIntent, quote: Quote | None) -> ExitPlan | None:
    """The intent's take-profit, trailing stop and time limit as an ExitPlan
    (its stop-loss travels on the Signal); None when it has none of them."""
    tp, dist, pct = intent.take_profit, intent.trailing_distance, intent.trailing_percent
    limit = plain(intent.time_limit_s)
    if tp is None and dist is None and pct is None and limit is None:
        return None
    return ExitPlan(
        take_profit=None if tp is None else on_grid(tp, quote),
        trailing_distance=None if dist is None else to_decimal(plain(dist), "trailing_distance"),
        trailing_percent=None if pct is None else to_decimal(plain(pct), "trailing_percent"),
        time_limit_s=None if limit is None else float(limit))


def signal_from_intent(intent: SignalIntent, symbol: Symbol, now: datetime, quote: Quote | None,
                       *, strategy: str, account: Account) -> Signal:
    """The Signal for ``intent``, priced on ``quote``'s grid. Raises MessageError,
    ValueError, TypeError or ArithmeticError for a number that is no number."""
    stop = intent.stop_loss
    return Signal(symbol, Side(intent.side), Quantity(to_decimal(plain(intent.qty), "qty")), now,
                  stop_loss=None if stop is None else on_grid(stop, quote), strategy=strategy,
                  account=account, reduce_only=bool(intent.reduce_only),
                  exits=exit_plan(intent, quote))
