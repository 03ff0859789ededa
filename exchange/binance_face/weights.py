"""Binance's request-weight and order-count limits, enforced like the venue.

Every ``/fapi`` request costs its endpoint's weight against a per-minute IP
budget (``X-MBX-USED-WEIGHT-1M`` on every answer); every new order counts
against the account's 10-second and 1-minute order limits
(``X-MBX-ORDER-COUNT-10S`` / ``-1M``). Past a limit the request is refused
with HTTP 429 and ``Retry-After`` (seconds until the window frees enough),
``-1003`` for weight and ``-1015`` for orders, and is not served. The
weights are those of Binance's USDⓈ-M documentation for the endpoints the
face serves; ``None`` for a limit switches it off (the benchmark does).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from exchange.binance_face.errors import BinanceError

#: (method, path) -> weight; unlisted paths weigh 1
WEIGHTS: dict[tuple[str, str], int] = {
    ("POST", "/fapi/v1/order"): 0, ("DELETE", "/fapi/v1/order"): 1,
    ("POST", "/fapi/v1/algoOrder"): 0, ("DELETE", "/fapi/v1/algoOrder"): 1,
    ("GET", "/fapi/v1/exchangeInfo"): 1, ("GET", "/fapi/v1/ticker/bookTicker"): 2,
    ("GET", "/fapi/v2/positionRisk"): 5, ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v2/balance"): 5, ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v2/account"): 5, ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v1/userTrades"): 5, ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("POST", "/fapi/v1/positionSide/dual"): 1,
}
#: weight of the open-orders lists without a symbol (with one: 1)
ALL_SYMBOLS_WEIGHT = 40
ORDER_PATHS = {("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder")}


@dataclass
class Limits:
    weight_per_min: int | None = 2400
    orders_per_10s: int | None = 300
    orders_per_min: int | None = 1200


class _Window:
    """Amounts spent within the last ``span_s`` seconds."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.items: deque[tuple[float, int]] = deque()
        self.total = 0

    def _trim(self, now: float) -> None:
        while self.items and self.items[0][0] <= now - self.span_s:
            self.total -= self.items.popleft()[1]

    def used(self, now: float) -> int:
        self._trim(now)
        return self.total

    def retry_after(self, now: float, need: int, limit: int) -> int:
        """Whole seconds until ``need`` more fits under ``limit``."""
        self._trim(now)
        excess = self.total + need - limit  # what must expire first
        freed = 0
        for t, amount in self.items:
            freed += amount
            if freed >= excess:
                return max(1, math.ceil(t + self.span_s - now))
        return math.ceil(self.span_s)

    def add(self, now: float, amount: int) -> None:
        if amount:
            self.items.append((now, amount))
            self.total += amount


class Weights:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.weight = _Window(60.0)
        self.orders_10s: dict[str, _Window] = {}
        self.orders_1m: dict[str, _Window] = {}

    @staticmethod
    def weight_of(method: str, path: str, has_symbol: bool) -> int:
        if path in ("/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders") and not has_symbol:
            return ALL_SYMBOLS_WEIGHT
        return WEIGHTS.get((method, path), 1)

    def charge(self, method: str, path: str, has_symbol: bool) -> dict[str, str]:
        """Spend this request's weight; the headers to send, or BinanceError 429."""
        now = time.monotonic()
        w = self.weight_of(method, path, has_symbol)
        limit = self.limits.weight_per_min
        if limit is not None and self.weight.used(now) + w > limit:
            retry = self.weight.retry_after(now, w, limit)
            raise BinanceError(-1003, f"Too many requests; current limit of IP(127.0.0.1) is "
                                      f"{limit} requests per minute. Please use the websocket "
                                      f"for live updates to avoid polling the API.", 429,
                               {"Retry-After": str(retry),
                                "X-MBX-USED-WEIGHT-1M": str(self.weight.used(now))})
        self.weight.add(now, w)
        return {"X-MBX-USED-WEIGHT-1M": str(self.weight.used(now))}

    def count_order(self, account: str) -> dict[str, str]:
        """Count one new order of ``account``; headers, or BinanceError 429 (-1015)."""
        now = time.monotonic()
        w10 = self.orders_10s.setdefault(account, _Window(10.0))
        w60 = self.orders_1m.setdefault(account, _Window(60.0))
        for window, limit, name in ((w10, self.limits.orders_per_10s, "TEN_SECONDS"),
                                    (w60, self.limits.orders_per_min, "MINUTE")):
            if limit is not None and window.used(now) + 1 > limit:
                raise BinanceError(-1015, f"Too many new orders; current limit is {limit} "
                                          f"orders per {name}.", 429,
                                   {"Retry-After": str(window.retry_after(now, 1, limit))})
        w10.add(now, 1)
        w60.add(now, 1)
        return {"X-MBX-ORDER-COUNT-10S": str(w10.used(now)),
                "X-MBX-ORDER-COUNT-1M": str(w60.used(now))}
