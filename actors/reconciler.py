"""The reconciler: startup recovery, resync after reconnects, and the
reconciliation poll (rules 10 and 11).

Broker events update state at once; this actor also asks the broker for its
positions after every (re)connect and every ``poll_s`` seconds, and hands
them to the coordinator, where the broker wins every divergence (audited and
counted). The first successful reconciliation ends startup recovery: only
then does the coordinator accept signals. The poll cannot be turned off.
"""

from __future__ import annotations

import itertools
from typing import Any

from messages.connectivity import PollNow, ResyncDone, ResyncRequest
from messages.control import BrokerPositions, RecoveryDone
from messages.exchange import QueryPositions
from messages.orders import PositionSnapshot
from runtime import Actor, handles


class Reconciler(Actor):
    def __init__(self, ctx, *, poll_s: float = 12.0, accounts: tuple[str, ...] = ("default",),
                 gateway: str = "gateway", coordinator: str = "coordinator") -> None:
        super().__init__(ctx)
        if not poll_s > 0:
            raise ValueError(f"reconciler poll_s must be > 0 (the poll is never off), got {poll_s}")
        self.poll_s, self.accounts = poll_s, accounts
        self.gateway, self.coordinator = gateway, coordinator
        self._ids = itertools.count(1)
        self.pending: dict[str, tuple[str, Any]] = {}  # request id -> (reason, asked at)
        self.recovered = False
        self.polls = 0
        self.resyncs = 0
        self.last_reconciled: str | None = None

    def on_start(self) -> None:
        self.ctx.schedule(self.poll_s, PollNow(), interval_s=self.poll_s)

    @handles(ResyncRequest)
    def on_resync(self, msg: ResyncRequest) -> None:
        self.resyncs += 1
        self._query(f"resync:{msg.reason}")

    @handles(PollNow)
    def on_poll(self, msg: PollNow) -> None:
        self.polls += 1
        self._query("poll")

    def _query(self, reason: str) -> None:
        for account in self.accounts:
            rid = f"rec-{next(self._ids)}"
            self.pending[rid] = (reason, self.ctx.clock.now())
            self.ctx.tell(self.gateway, QueryPositions(rid, account))
        # Replies that never come (stream down) are replaced by the next poll.
        if len(self.pending) > 100:
            for rid in list(self.pending)[:-100]:
                del self.pending[rid]

    @handles(PositionSnapshot)
    def on_positions(self, snap: PositionSnapshot) -> None:
        rid = getattr(snap, "request_id", None)
        reason, asked_at = self.pending.pop(rid, ("poll", None)) if rid is not None else ("poll", None)
        now = self.ctx.clock.now()
        self.ctx.tell(self.coordinator, BrokerPositions(snap.account, snap.positions, now,
                                                        source=reason, requested_at=asked_at))
        self.last_reconciled = now.isoformat()
        if reason.startswith("resync"):
            self.ctx.tell(self.gateway, ResyncDone(now))
        if not self.recovered or reason.startswith("resync"):
            # Every resync ends a recovery: the first at startup, later ones
            # after a coordinator restart (it fails closed until told).
            self.recovered = True
            self.ctx.tell(self.coordinator, RecoveryDone(now, f"positions reconciled ({reason})"))
        self.ctx.cell.info = {"polls": self.polls, "resyncs": self.resyncs,
                              "last_reconciled": self.last_reconciled, "recovered": self.recovered}
