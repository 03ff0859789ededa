"""What the risk gate judges an order with, besides the book (rules 3, 4, 5).

Limits, market views and the PnL marked on them, the kill switch, the
circuit breaker and the rate limiter, stop-out cool-downs, symbols whose
actor is down, and whether start-up recovery is done. The order ledger
(``trading.ledger``) owns one; the market and control events go to it
directly (``ledger.risk.on_quote``), and like the ledger's, its ``on_*``
methods return what is to be told, stored or audited as
:class:`~trading.effects.Effects`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from messages.bounds import Bounds
from messages import control
from messages.exchange import ExchangeError
from messages.market import MarketStats, Quote
from trading.positions import PositionBook
from trading.effects import Effects
from trading.gate import GateState, MarketView
from trading.limits import CircuitBreaker, Limits, RateLimiter
from trading.pnl import PnlTracker
from trading.position_sync import PositionSync
from trading.trading_state import KillSwitch, TradingState

#: the sender alerts and refused inputs are signed with
SOURCE = "coordinator"


class RiskState:
    """The gate's inputs other than the book, and the kill switch over them."""

    def __init__(self, *, limits: Limits, symbols: frozenset[str], bounds: Bounds,
                 require_recovery: bool, book: PositionBook, counts: Counter[str],
                 alerts: str, clock: Any, log: Any) -> None:
        self.limits, self.counts, self.clock, self.log = limits, counts, clock, log
        self.gate = GateState(
            limits=limits, book=book, market={}, symbols=symbols,
            limiter=RateLimiter(limits.orders_per_s, limits.order_burst),
            breaker=CircuitBreaker(limits.breaker_failures, limits.breaker_cooloff_s),
            recovering=require_recovery, bounds=bounds)
        self.market: dict[str, MarketView] = self.gate.market
        self.pnl = PnlTracker(book, self.market)
        self.kill = KillSwitch(alerts=alerts, source=SOURCE, log=log, counts=counts)

    @property
    def trading_state(self) -> TradingState:
        return self.kill.state

    def gate_for_decision(self, positions_fresh: bool) -> GateState:
        """The gate's state as of now (the kill switch owns the trading state)."""
        self.gate.positions_fresh = positions_fresh
        self.gate.trading_state = self.kill.state
        return self.gate

    def check_daily_loss(self, now: datetime, fx: Effects) -> None:
        self.kill.check_daily_loss(self.pnl.daily, self.limits.max_daily_loss, now, fx)

    def alert(self, fx: Effects, severity: str, title: str, text: str, now: datetime,
              dedup_key: str | None = None) -> None:
        self.kill.alert(fx, severity, title, text, now, dedup_key)

    # -- market ----------------------------------------------------------------------------

    def on_quote(self, q: Quote, sync: PositionSync) -> Effects:
        """Mark the symbol's positions (pricing any taken over unpriced, see
        ``sync``) and check the daily loss; a quote that does not compute is
        dropped."""
        fx = Effects()
        now = self.clock.now()
        mv = self.market.setdefault(q.symbol, MarketView())
        prev = mv.bid, mv.ask
        mv.bid, mv.ask = q.bid, q.ask
        if not self.gate.book.positions:
            return fx
        try:
            if sync.unpriced:
                for key in [k for k in sync.unpriced if k[2] == q.symbol]:
                    if sync.price_unpriced(key, mv.mid, "first mark after takeover", now, fx):
                        self.pnl.update_key(key)
            self.pnl.mark_symbol(q.symbol)
        except ArithmeticError as exc:
            # The gateway bounds every quote; should one still not compute,
            # it is dropped rather than crash-looping the coordinator (rule 18).
            mv.bid, mv.ask = prev
            self.counts["quotes_not_computable"] += 1
            self.log.error("quote for {} dropped: {!r}", q.symbol, exc)
            self.pnl.rebuild()
            return fx
        self.check_daily_loss(now, fx)
        return fx

    def on_stats(self, s: MarketStats) -> None:
        mv = self.market.setdefault(s.symbol, MarketView())
        mv.volatility, mv.adv = s.volatility, s.adv

    # -- control ---------------------------------------------------------------------------

    def on_kill_switch(self, msg: control.KillSwitch) -> Effects:
        """An operator engages or releases the kill switch."""
        fx = Effects()
        if msg.on:
            self.kill.engage(f"manual: {msg.reason}", self.clock.now(), fx)
        else:
            self.kill.release(msg.reason, self.clock.now(), fx)
        return fx

    def on_recovery_done(self, msg: control.RecoveryDone, started_at: datetime) -> None:
        """Start-up recovery finished: risk-increasing orders may pass (rule
        10). A round asked before ``started_at`` (by the previous coordinator
        instance) does not count: this one's own resync decides."""
        if msg.requested_at is not None and msg.requested_at < started_at:
            return
        self.gate.recovering = False
        self.log.info("recovery done: {}", msg.summary)

    def symbol_down(self, symbol: str, actor: str, reason: str) -> Effects:
        """A symbol actor's remote host is lost: no risk-increasing order for
        its symbol until it is back (its market figures and strategy are gone)."""
        fx, now = Effects(), self.clock.now()
        self.gate.symbols_down.add(symbol)
        self.log.warning("symbol actor {} is down ({}): {} fails closed until it is back",
                         actor, reason, symbol)
        fx.record(kind="symbol_actor_down", reason=reason, ts=now,
                  inputs={"symbol": symbol, "actor": actor})
        fx.publish()
        return fx

    def symbol_up(self, symbol: str, actor: str) -> Effects:
        fx, now = Effects(), self.clock.now()
        if symbol not in self.gate.symbols_down:
            return fx
        self.gate.symbols_down.discard(symbol)
        self.log.info("symbol actor {} is back: {} trades again", actor, symbol)
        fx.record(kind="symbol_actor_up", reason="restarted", ts=now,
                  inputs={"symbol": symbol, "actor": actor})
        fx.publish()
        return fx

    def on_stopped_out(self, msg: control.StoppedOut) -> None:
        """A stop-loss exit filled: no new entry on the symbol for the cool-down."""
        self.gate.cooldown_until[msg.symbol] = self.clock.monotonic() + self.limits.stop_out_cooldown_s

    def on_venue_trouble(self, err: ExchangeError) -> Effects:
        """A rate limit or ban opens the circuit breaker for the venue's
        Retry-After at least; every such report is alerted (the alerts actor
        deduplicates)."""
        fx, now = Effects(), self.clock.now()
        self.counts[f"venue_{err.code}"] += 1
        if err.code in ("rate_limited", "ip_banned", "auth"):
            if self.gate.breaker.trip(self.clock.monotonic(), err.retry_after_s or 0.0):
                self.counts["breaker_open"] += 1
            self.alert(fx, "critical" if err.code != "rate_limited" else "warning",
                       f"venue {err.code.replace('_', ' ')}: circuit breaker open",
                       f"{err.reason} (ref {err.ref})", now)
        elif err.code == "clock_skew":
            self.alert(fx, "warning", "venue clock skew", f"{err.reason}; time resynced", now)
        elif err.code == "unknown_outcome":
            self.alert(fx, "warning", "order outcome unknown",
                       f"{err.reason}; kept in flight, looked up by client order id", now)
        elif err.code == "cancel_failed":
            self.alert(fx, "warning", "cancel not confirmed", f"{err.reason} (ref {err.ref})", now)
        return fx

    def broker_rejected(self, reason: str, mono: float, now: datetime, fx: Effects) -> None:
        """A broker reject counts towards opening the circuit breaker."""
        breaker = self.gate.breaker
        if breaker.failure(mono):
            self.counts["breaker_open"] += 1
            self.alert(fx, "warning", "circuit breaker open",
                       f"{breaker.consecutive} consecutive broker rejects; last: {reason}", now)
