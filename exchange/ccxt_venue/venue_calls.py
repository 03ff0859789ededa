"""The adapter's access to the venue's REST side: the ccxt object, the request
budget, and what a failed request means for everyone (error mapping).

``VenueCalls`` owns the ccxt exchange object (made by the connection on first
use, dropped at shutdown), whether its markets are loaded, and the local
``RequestBudget``. Its contracts:

* ``budget_wait(weight)`` waits (at most ``MAX_BUDGET_WAIT_S``) until the
  budget allows ``weight`` and takes it; False: give the request up;
* ``trouble(c, ref)`` turns a classified rate limit (429), ban (418), clock
  skew (-1021) or auth failure into the hold on every request and one
  ``ExchangeError`` to the runtime (a skew also measures the offset again);
  other kinds are left to the caller;
* ``venue_ms`` is now on the venue's clock (request timestamps: this host's
  minus ccxt's measured offset); ``record_ms`` is now on the clock the venue
  keeps its records in (the runtime's).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from loguru import logger

from exchange.ccxt_venue.errors import Classified, Kind, retry_after_s
from exchange.ccxt_venue.weights import RequestBudget
from messages import ExchangeError

#: weights of Binance USDⓈ-M endpoints the adapter calls (exchange docs)
W_ORDER, W_QUERY_ORDER, W_OPEN_ALL, W_POSITIONS, W_BALANCE, W_TRADES = 1, 1, 40, 5, 5, 5
#: a request refused by the local budget waits at most this long before the
#: adapter gives up on it (queries and cancels; orders are refused at once)
MAX_BUDGET_WAIT_S = 120.0
DEFAULT_BAN_S = 60.0
DEFAULT_429_S = 1.0


class VenueCalls:
    def __init__(self, *, clock: Callable[[], float], now: Callable[[], datetime],
                 emit: Callable[[Any], None], spawn: Callable[[Awaitable[Any]], Any],
                 counts: Counter[str], name: str) -> None:
        self.budget = RequestBudget(clock)
        #: the ccxt exchange object (None until the first connection, and after close)
        self.ex: Any = None
        self.markets_loaded = False
        self._now = now
        self._emit = emit
        self._spawn = spawn
        self._counts = counts
        self._name = name

    def unified(self, symbol: str) -> str | None:
        """ccxt's unified symbol of the venue's ``symbol`` (None: not listed)."""
        markets = getattr(self.ex, "markets_by_id", None) or {}
        found = markets.get(symbol)
        if not found:
            return None
        market = found[0] if isinstance(found, list) else found
        return str(market["symbol"])

    async def budget_wait(self, weight: int) -> bool:
        waited = 0.0
        while True:
            wait = self.budget.wait_s(weight)
            if wait <= 0:
                return self.budget.take(weight)
            if waited + wait > MAX_BUDGET_WAIT_S:
                return False
            await asyncio.sleep(wait)
            waited += wait

    def trouble(self, c: Classified, ref: str | None) -> None:
        """Rate limit, ban, clock skew, auth: hold, resync, and tell the runtime."""
        if c.kind is Kind.RATE_LIMITED:
            hold = retry_after_s(self.headers(), DEFAULT_429_S)
            self.budget.hold(hold, "HTTP 429 rate limited")
            self._emit(ExchangeError(code="rate_limited", ts=self._now(), ref=ref,
                                     retry_after_s=hold, reason=f"venue rate limit hit; no request for {hold:g}s "
                                            f"(Retry-After): {c.detail}"))
        elif c.kind is Kind.BANNED:
            hold = retry_after_s(self.headers(), DEFAULT_BAN_S)
            self.budget.hold(hold, "HTTP 418 IP banned")
            self._emit(ExchangeError(code="ip_banned", ts=self._now(), ref=ref,
                                     retry_after_s=hold, reason=f"venue banned this IP; no request for {hold:g}s "
                                            f"(Retry-After): {c.detail}"))
        elif c.kind is Kind.CLOCK_SKEW:
            self._emit(ExchangeError(code="clock_skew", ts=self._now(), ref=ref,
                                     reason=f"request timestamp outside the venue's recvWindow; "
                                            f"clock offset measured again: {c.detail}"))
            self._spawn(self._resync_time())
        elif c.kind is Kind.AUTH:
            self._emit(ExchangeError(code="auth", ts=self._now(), ref=ref,
                                     reason=f"the venue refused the API key: {c.detail}"))

    async def _resync_time(self) -> None:
        try:
            offset = await self.ex.load_time_difference()
            self._counts["time_resyncs"] += 1
            logger.warning("{}: clock offset to the venue measured again: {} ms", self._name, offset)
        except Exception as exc:  # noqa: BLE001
            logger.error("{}: could not measure the clock offset: {!r}", self._name, exc)

    def headers(self) -> Any:
        return getattr(self.ex, "last_response_headers", None)

    def note_headers(self) -> None:
        self.budget.note_used(self.headers())

    def record_ms(self) -> int:
        """Now on the clock the venue keeps its records in (trade and order times),
        for look-back windows: the runtime's clock (live: this host's, the venue's
        give or take its offset; a scenario: the simulated venue's virtual time).
        Request timestamps are the transport's and use :meth:`venue_ms`."""
        return int(self._now().timestamp() * 1000)

    def venue_ms(self) -> int:
        ex = self.ex
        diff = 0
        if ex is not None:
            try:
                diff = int(ex.options.get("timeDifference") or 0)
            except (TypeError, ValueError):
                diff = 0
        return int(time.time() * 1000) - diff


def info(obj: Any) -> dict[str, Any]:
    """The venue's raw answer inside a ccxt structure (or the dict itself)."""
    if isinstance(obj, dict):
        inner = obj.get("info")
        return inner if isinstance(inner, dict) else obj
    return {}
