"""The coordinator's kill switch (rule 5): halt trading, and stay halted.

Engaged by an operator (``KillSwitch`` message, ``/kill-switch``) or by the
daily loss limit; released only by an operator. While engaged the gate
refuses every risk-increasing order (``trading.gate``). It survives restarts
both ways: a restarted coordinator instance reads the state its cell last
published, and a restarted process reads ``KILL_SWITCH_KEY`` from the store
(``trading.recovery``). Every change is audited and alerted: a kill switch
that fires silently is one of the failures this runtime exists to prevent.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from messages.control import KillSwitch
from messages.persistence import Put, StoreDb
from runtime import handles
from trading.gate import ACTIVE, HALTED
from trading.recovery import KILL_SWITCH_KEY

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext
    from trading.gate import GateState
    from trading.limits import Limits
    from trading.pnl import PnlTracker


class KillSwitchKeeper:
    """Mixin of ``actors.coordinator.Coordinator`` (its state, audit and alerts)."""

    if TYPE_CHECKING:  # what the coordinator provides
        ctx: ActorContext
        log: Logger
        state: GateState
        pnl: PnlTracker
        limits: Limits
        audit: Any
        counts: Counter[str]
        persistence: str
        alerts: str
        kill_reason: str | None

        def _publish(self) -> None: ...

    def _restore_kill_switch(self) -> None:
        previous = self.ctx.cell.info  # the cell outlives the instance it published from
        if previous.get("trading_state") == HALTED:
            # A crash must never be a way out of the kill switch: a restarted
            # coordinator stays halted until someone releases it.
            self.state.trading_state = HALTED
            self.kill_reason = previous.get("kill_reason") or "kill switch engaged before a restart"
            since = previous.get("kill_since")
            self.kill_since = datetime.fromisoformat(since) if since else None
            self.log.warning("kill switch still engaged after restart: {}", self.kill_reason)

    @handles(KillSwitch)
    def on_kill_switch(self, msg: KillSwitch) -> None:
        if msg.on:
            self._halt(f"manual: {msg.reason}")
        else:
            self.state.trading_state, self.kill_reason, self.kill_since = ACTIVE, None, None
            self.ctx.tell(self.persistence, Put(StoreDb.META, KILL_SWITCH_KEY, None))
            self.audit.record(kind="kill_switch", reason="released", ts=self.ctx.clock.now(),
                              inputs={"why": msg.reason})
            self._alert("info", "kill switch released", msg.reason)

    def _check_daily_loss(self) -> None:
        if self.state.trading_state == HALTED:
            return
        pnl = self.pnl.daily
        if pnl <= -self.limits.max_daily_loss:
            self._halt(f"daily loss {pnl} reached the limit {self.limits.max_daily_loss}")

    def _halt(self, why: str) -> None:
        if self.state.trading_state == HALTED:
            return
        self.state.trading_state, self.kill_reason = HALTED, why
        self.kill_since = self.ctx.clock.now()
        # In the store too: a runtime restart must not release it (trading.recovery)
        self.ctx.tell(self.persistence, Put(StoreDb.META, KILL_SWITCH_KEY, why))
        self.counts["kill_switch_trips"] += 1
        self.audit.record(kind="kill_switch", reason="engaged", ts=self.ctx.clock.now(),
                          inputs={"why": why})
        self._publish()  # now, not when idle: a crash right after must not forget it
        self._alert("critical", "kill switch engaged", why)

    def _alert(self, severity: str, title: str, text: str, dedup_key: str | None = None) -> None:
        from messages.alerts import Alert

        self.ctx.tell(self.alerts, Alert(severity, title, text, self.ctx.clock.now(), "coordinator",
                                         dedup_key=dedup_key))
