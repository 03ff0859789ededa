"""Trading state and the kill switch (rule 5): halt new risk, and stay halted.

Two states. ``ACTIVE``: the gate judges every order. ``HALTED``: the gate
refuses every risk-increasing order and lets reduce-only exits through
(``trading.gate``: halting must never trap an exit). The switch is engaged
by an operator (``KillSwitch`` message, ``/kill-switch``) or by the daily
loss limit, and released only by an operator. It survives restarts both
ways: a restarted coordinator instance reads what its cell last published
(:meth:`KillSwitch.restore_published`), a restarted process reads
:data:`KILL_SWITCH_KEY` from the store (:meth:`KillSwitch.restore_stored`).
Every change is one audit record and one alert: a kill switch that fires
silently is one of the failures this runtime exists to prevent.

There is no third, "reducing" state: halted already means entries refused
and reduce-only exits allowed, so a second name for it would be a state
with no rule of its own (README, Decisions).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from messages.alerts import Alert
from messages.persistence import Put, StoreDb
from trading.effects import Effects
from trading.store_keys import KILL_SWITCH_KEY


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    HALTED = "HALTED"


class KillSwitch:
    """The trading state, why it is halted, and since when.

    Changes add their effects (store write, audit record, alert) to the
    caller's :class:`~trading.effects.Effects`; ``alerts`` names the actor
    alerts go to, ``source`` the sender they are signed with."""

    def __init__(self, *, alerts: str, source: str, log: Any, counts: Counter[str]) -> None:
        self.alerts, self.source, self.log = alerts, source, log
        #: the owner's counters (``kill_switch_trips`` is one of them)
        self.counts = counts
        self.state = TradingState.ACTIVE
        self.reason: str | None = None
        #: when this process saw it engage (None: not engaged, or engaged
        #: before a process restart, which the store does not date)
        self.since: datetime | None = None

    @property
    def halted(self) -> bool:
        return self.state is TradingState.HALTED

    def restore_published(self, previous: dict[str, Any]) -> None:
        """From the figures the previous instance published (the cell outlives
        it): a crash must never be a way out of the kill switch."""
        if previous.get("trading_state") == TradingState.HALTED:
            self.state = TradingState.HALTED
            self.reason = previous.get("kill_reason") or "kill switch engaged before a restart"
            since = previous.get("kill_since")
            self.since = datetime.fromisoformat(since) if since else None
            self.log.warning("kill switch still engaged after restart: {}", self.reason)

    def restore_stored(self, why: Any) -> None:
        """From the store's :data:`KILL_SWITCH_KEY` after a process restart."""
        if why and not self.halted:
            self.state, self.reason = TradingState.HALTED, str(why)
            self.log.warning("kill switch still engaged from before the restart: {}", why)

    def engage(self, why: str, now: datetime, fx: Effects) -> None:
        if self.halted:
            return
        self.state, self.reason, self.since = TradingState.HALTED, why, now
        # In the store too: a runtime restart must not release it.
        fx.store(Put(StoreDb.META, KILL_SWITCH_KEY, why))
        self.counts["kill_switch_trips"] += 1
        fx.record(kind="kill_switch", reason="engaged", ts=now, inputs={"why": why})
        fx.publish()  # now, not when idle: a crash right after must not forget it
        self.alert(fx, "critical", "kill switch engaged", why, now)

    def release(self, why: str, now: datetime, fx: Effects) -> None:
        self.state, self.reason, self.since = TradingState.ACTIVE, None, None
        fx.store(Put(StoreDb.META, KILL_SWITCH_KEY, None))
        fx.record(kind="kill_switch", reason="released", ts=now, inputs={"why": why})
        self.alert(fx, "info", "kill switch released", why, now)

    def check_daily_loss(self, daily_pnl: Decimal, max_daily_loss: Decimal, now: datetime,
                         fx: Effects) -> None:
        if not self.halted and daily_pnl <= -max_daily_loss:
            self.engage(f"daily loss {daily_pnl} reached the limit {max_daily_loss}", now, fx)

    def alert(self, fx: Effects, severity: str, title: str, text: str, now: datetime,
              dedup_key: str | None = None) -> None:
        fx.send(self.alerts, Alert(severity, title, text, now, self.source, dedup_key=dedup_key))
