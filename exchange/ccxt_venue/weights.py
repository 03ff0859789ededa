"""The venue's request budget: weight per window, plus a hold after a 429/418.

Binance counts request *weight* per IP per minute (2,400 on USDⓈ-M futures)
and orders per account per 10 s and per minute; going over earns a 429, and
ignoring 429s earns a 418 ban. ccxt's own throttle only spaces requests; it
does not know the window, other processes on the same IP, or a Retry-After.
This budget is the adapter's rule 12: a request that would overdraw the
window, or that comes while a Retry-After hold runs, is not sent. What the
adapter does with it depends on the command (an order is refused before it
leaves; a cancel or a query waits for the window).

It reads time from an injected monotonic clock, so tests drive it exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    seconds: float


#: Binance USDⓈ-M futures defaults (exchangeInfo rateLimits), with headroom
BINANCE_USDM_WEIGHT = Window(limit=2000, seconds=60.0)
BINANCE_USDM_ORDERS_10S = Window(limit=250, seconds=10.0)


class RequestBudget:
    """Sliding windows of spent weight; ``hold_until`` after a 429 or 418."""

    def __init__(self, clock: Callable[[], float], weight: Window = BINANCE_USDM_WEIGHT,
                 orders: Window = BINANCE_USDM_ORDERS_10S) -> None:
        self.clock = clock
        self.weight = weight
        self.orders = orders
        self._spent: deque[tuple[float, int]] = deque()
        self._spent_total = 0
        self._orders: deque[float] = deque()
        self.hold_until = 0.0
        self.hold_reason = ""
        self.refused = 0
        #: the venue's own count (X-MBX-USED-WEIGHT-1M), when it told us
        self.venue_used: int | None = None

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.weight.seconds:
            self._spent_total -= self._spent.popleft()[1]
        while self._orders and now - self._orders[0] >= self.orders.seconds:
            self._orders.popleft()

    def wait_s(self, weight: int, order: bool = False) -> float:
        """0 if a request of ``weight`` may go now, else how long until it may."""
        now = self.clock()
        if now < self.hold_until:
            return self.hold_until - now
        self._expire(now)
        used = max(self._spent_total, self.venue_used or 0)
        if used + weight > self.weight.limit and self._spent:
            return max(self.weight.seconds - (now - self._spent[0][0]), 0.001)
        if order and len(self._orders) >= self.orders.limit:
            return max(self.orders.seconds - (now - self._orders[0]), 0.001)
        return 0.0

    def take(self, weight: int, order: bool = False) -> bool:
        """Spend ``weight`` if the budget allows it now (True), else count a refusal."""
        if self.wait_s(weight, order) > 0:
            self.refused += 1
            return False
        now = self.clock()
        self._spent.append((now, weight))
        self._spent_total += weight
        if order:
            self._orders.append(now)
        return True

    def hold(self, seconds: float, reason: str) -> None:
        """No request until ``seconds`` from now (a Retry-After)."""
        until = self.clock() + max(seconds, 0.0)
        if until > self.hold_until:
            self.hold_until, self.hold_reason = until, reason

    def note_used(self, headers: object) -> None:
        """Adopt the venue's own weight count from response headers."""
        if not isinstance(headers, dict):
            return
        value = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
        if value is not None:
            try:
                self.venue_used = int(str(value))
            except ValueError:
                pass

    def figures(self) -> dict[str, object]:
        now = self.clock()
        self._expire(now)
        return {"weight_used": self._spent_total, "weight_limit": self.weight.limit,
                "venue_used": self.venue_used, "refused": self.refused,
                "hold_s": round(max(self.hold_until - now, 0.0), 3),
                "hold_reason": self.hold_reason if now < self.hold_until else ""}
