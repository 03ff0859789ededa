"""Pre-trade limits (rule 4), the order rate limiter and the circuit breaker.

All of it reads time from the injected clock (``now`` is monotonic seconds),
so the coordinator behaves the same in virtual and live time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from messages.types import Quantity


@dataclass(frozen=True)
class Limits:
    """Rule 4 defaults. Per-symbol overrides replace individual fields."""

    max_position_size: Quantity = Quantity(Decimal(1000))
    max_order_size: Quantity = Quantity(Decimal(100))
    min_order_size: Quantity = Quantity(Decimal(1))
    max_spread_bps: Decimal = Decimal(50)
    max_volatility: Decimal = Decimal("0.02")
    max_volume_participation: Decimal = Decimal("0.10")
    max_daily_loss: Decimal = Decimal(1000)
    max_loss_per_trade: Decimal | None = Decimal(500)
    max_position_concentration: Decimal = Decimal("0.10")
    account_equity: Decimal = Decimal(1_000_000)
    stop_out_cooldown_s: float = 60.0
    duplicate_position_check: bool = True
    fail_closed_on_missing_positions: bool = True
    positions_stale_after_s: float = 36.0
    orders_per_s: float = 20.0
    order_burst: int = 40
    breaker_failures: int = 5
    breaker_cooloff_s: float = 30.0
    hedging_accounts: frozenset[str] = field(default_factory=frozenset)
    per_symbol: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    #: symbol -> trading.venue_rules.InstrumentRules, loaded from the venue's
    #: markets at start (empty: no venue rules, as with the simulated exchange)
    instrument_rules: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def for_symbol(self, symbol: str) -> Limits:
        over = self.per_symbol.get(symbol)
        if not over:
            return self
        return replace(self, per_symbol={}, **over)

    @staticmethod
    def from_config(risk: Any, *, account_equity: Decimal | None = None,
                    instrument_rules: dict[str, Any] | None = None) -> Limits:
        """Build from the validated config's ``risk`` section (``config.risk.RiskConfig``).

        The config speaks the user's words (``position_staleness_s``,
        ``rate_limit.orders_per_s``, ``hedging_mode: {acct: true}``); this is
        the one place that maps them onto the gate's fields.
        """
        kw: dict[str, Any] = {}
        for name in _SAME_NAME:
            if hasattr(risk, name):
                kw[name] = getattr(risk, name)
        kw["positions_stale_after_s"] = float(risk.position_staleness_s)
        kw["duplicate_position_check"] = bool(risk.block_duplicate_positions)
        kw["orders_per_s"] = float(risk.rate_limit.orders_per_s)
        kw["order_burst"] = int(risk.rate_limit.burst)
        kw["breaker_failures"] = int(risk.circuit_breaker.failures_to_open)
        kw["breaker_cooloff_s"] = float(risk.circuit_breaker.cool_off_s)
        kw["stop_out_cooldown_s"] = float(risk.stop_out_cooldown_s)
        kw["hedging_accounts"] = frozenset(a for a, on in (risk.hedging_mode or {}).items() if on)
        kw["per_symbol"] = {sym: o.model_dump(exclude_none=True)
                            for sym, o in (risk.per_symbol or {}).items()}
        if account_equity is not None:
            kw["account_equity"] = Decimal(account_equity)
        if instrument_rules:  # {symbol: {rule: value}} as the venue's markets gave them
            from trading.venue_rules import rules_table

            kw["instrument_rules"] = rules_table(instrument_rules)
        return Limits(**kw)


#: fields whose config key and gate field share a name
_SAME_NAME = ("max_position_size", "max_order_size", "min_order_size", "max_spread_bps",
              "max_volatility", "max_volume_participation", "max_daily_loss",
              "max_loss_per_trade", "max_position_concentration",
              "fail_closed_on_missing_positions")


class RateLimiter:
    """Token bucket: ``rate`` orders per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"rate limiter needs rate > 0 and burst >= 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last: float | None = None

    def allow(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class CircuitBreaker:
    """Opens after N consecutive broker failures or rejects; after a cool-off
    it half-opens and lets one trial order through; a success closes it, a
    failure opens it again."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures_to_open: int, cooloff_s: float) -> None:
        self.failures_to_open = failures_to_open
        self.cooloff_s = cooloff_s
        self.state = self.CLOSED
        self.consecutive = 0
        self.opened_at: float | None = None
        self.open_count = 0
        self._trial_out = False

    def allow(self, now: float) -> bool:
        if self.state == self.OPEN and self.opened_at is not None \
                and now - self.opened_at >= self.cooloff_s:
            self.state = self.HALF_OPEN
            self._trial_out = False
        if self.state == self.CLOSED:
            return True
        if self.state == self.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.state = self.CLOSED
        self._trial_out = False

    def trip(self, now: float, hold_s: float = 0.0) -> bool:
        """Open now, whatever the count (the venue said stop: a 429, a ban).
        Stays open at least ``hold_s`` (a Retry-After) and the cool-off. True
        if this opened it."""
        was_open = self.state == self.OPEN
        self.state = self.OPEN
        self.consecutive = max(self.consecutive, self.failures_to_open)
        self._trial_out = False
        # opened_at such that the cool-off ends no earlier than now + hold_s
        self.opened_at = now + max(hold_s - self.cooloff_s, 0.0)
        if not was_open:
            self.open_count += 1
        return not was_open

    def failure(self, now: float) -> bool:
        """Record a failure; True if this opened the breaker."""
        self.consecutive += 1
        if self.state == self.HALF_OPEN or (
                self.state == self.CLOSED and self.consecutive >= self.failures_to_open):
            self.state = self.OPEN
            self.opened_at = now
            self.open_count += 1
            return True
        return False
