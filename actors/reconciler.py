"""The reconciler: startup recovery, resync after reconnects, and the
reconciliation poll (rules 10 and 11).

Broker events update state at once; this actor also compares with the broker
after every (re)connect and every ``poll_s`` seconds, and hands the answers
to the coordinator, where the broker wins every divergence (audited and
counted). The poll cannot be turned off.

A poll asks for positions only. A *resync* (startup, reconnect, coordinator
restart) is a round of three questions, sent together so the exchange
answers them in this order (its stream is FIFO):

1. ``QueryOpenOrders``: which orders it still works;
2. ``QueryFills(since cursor)``: the fills the runtime may have missed
   (paged while ``more``);
3. ``QueryPositions``: asked again after the last fills page if there were
   several, so the positions answer is never older than a fill handed over.

When all three are in, the coordinator gets ``BrokerOrders`` (missing fills
applied, orders that never reached the broker resubmitted with the same
client order id, orders the broker no longer works closed), then
``BrokerPositions``, then ``RecoveryDone``: signals flow only after the
orders are settled. Order questions wait for resyncs, not polls, because an
order's fate is only in doubt across a gap in the stream; between gaps the
stream reports every ack, fill and cancel.

A round that is not complete after ``round_timeout_s`` (config
``reconciler.startup_timeout_s``; an answer lost while the stream stayed
up) is asked again, so recovery cannot hang on one lost frame.

The fills cursor lives in memory: a restarted reconciler starts from 0, and
the coordinator skips fill ids it already applied. Every fill past the
cursor was handed to the coordinator in a ``BrokerOrders``, so a restarted
coordinator loses nothing by the cursor having moved on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from messages.connectivity import PollNow, ResyncDone, ResyncRequest
from messages.control import BrokerOrders, BrokerPositions, RecoveryDone
from messages.exchange import (FillsSnapshot, OpenOrdersSnapshot, QueryFills, QueryOpenOrders,
                               QueryPositions)
from messages.orders import OrderFilled, PositionSnapshot
from runtime import Actor, handles

#: rounds and polls whose answers never came (stream down) are forgotten past this
MAX_PENDING = 100


@dataclass(frozen=True)
class RoundDue:
    """Timer: resync round ``number`` should be complete by now."""

    number: int


@dataclass
class Round:
    """One resync round for one account: three answers to collect."""

    reason: str
    account: str
    asked_at: datetime
    number: int = 0
    open_ids: tuple[str, ...] | None = None
    fills: list[OrderFilled] = field(default_factory=list)
    fills_done: bool = False
    cursor: int = 0
    positions: PositionSnapshot | None = None
    positions_asked_at: datetime | None = None
    positions_rid: str | None = None

    @property
    def complete(self) -> bool:
        return self.open_ids is not None and self.fills_done and self.positions is not None


class Reconciler(Actor):
    def __init__(self, ctx, *, poll_s: float = 12.0, accounts: tuple[str, ...] = ("default",),
                 gateway: str = "gateway", coordinator: str = "coordinator",
                 fills_page: int = 1000, round_timeout_s: float = 30.0) -> None:
        super().__init__(ctx)
        if not poll_s > 0:
            raise ValueError(f"reconciler poll_s must be > 0 (the poll is never off), got {poll_s}")
        self.poll_s, self.accounts = poll_s, accounts
        self.gateway, self.coordinator = gateway, coordinator
        self.fills_page = fills_page
        self.round_timeout_s = round_timeout_s
        self.live: dict[int, Round] = {}  # round number -> incomplete round
        self._ids = itertools.count(1)
        self.pending: dict[str, tuple[str, Any]] = {}  # poll request id -> (reason, asked at)
        self.rounds: dict[str, Round] = {}  # request id of any of a round's questions -> round
        self.fill_cursor: dict[str, int] = {}
        self.recovered = False
        self.polls = 0
        self.resyncs = 0
        self.rounds_done = 0
        self.rounds_retried = 0
        self.last_reconciled: str | None = None

    def on_start(self) -> None:
        self.ctx.schedule(self.poll_s, PollNow(), interval_s=self.poll_s)
        if self.ctx.cell.incarnation > 1:
            # Restarted: the rounds in progress died with the old instance
            # (their answers are dropped as unknown). Ask for a fresh resync;
            # the gateway fails the coordinator closed until it is done.
            self.ctx.tell(self.gateway, ResyncRequest("reconciler restarted", self.ctx.clock.now()))

    @handles(ResyncRequest)
    def on_resync(self, msg: ResyncRequest) -> None:
        self.resyncs += 1
        for account in self.accounts:
            self._start_round(f"resync:{msg.reason}", account)
        self._prune()

    def _start_round(self, reason: str, account: str) -> None:
        n = next(self._ids)
        rnd = Round(reason, account, self.ctx.clock.now(), number=n,
                    cursor=self.fill_cursor.get(account, 0))
        self.live[n] = rnd
        self._ask(rnd, QueryOpenOrders(f"rec-{n}-orders", account))
        self._ask_fills(rnd)
        self._ask_positions(rnd)
        self.ctx.schedule(self.round_timeout_s, RoundDue(n))

    @handles(RoundDue)
    def on_round_due(self, msg: RoundDue) -> None:
        rnd = self.live.pop(msg.number, None)
        if rnd is None:
            return  # completed in time
        for rid in [r for r, v in self.rounds.items() if v is rnd]:
            del self.rounds[rid]
        self.rounds_retried += 1
        self.log.warning("resync round {} ({}) incomplete after {}s; asking again", msg.number,
                         rnd.reason, self.round_timeout_s)
        self._start_round(rnd.reason, rnd.account)
        self._publish()

    @handles(PollNow)
    def on_poll(self, msg: PollNow) -> None:
        self.polls += 1
        for account in self.accounts:
            rid = f"rec-{next(self._ids)}"
            self.pending[rid] = ("poll", self.ctx.clock.now())
            self.ctx.tell(self.gateway, QueryPositions(rid, account))
        self._prune()

    # -- answers ----------------------------------------------------------------------

    @handles(OpenOrdersSnapshot)
    def on_open_orders(self, snap: OpenOrdersSnapshot) -> None:
        rnd = self.rounds.pop(snap.request_id, None)
        if rnd is None:
            return
        rnd.open_ids = tuple(o.client_order_id for o in snap.orders)
        self._maybe_done(rnd)

    @handles(FillsSnapshot)
    def on_fills(self, snap: FillsSnapshot) -> None:
        rnd = self.rounds.pop(snap.request_id, None)
        if rnd is None:
            return
        rnd.fills.extend(snap.fills)
        rnd.cursor = max(rnd.cursor, snap.cursor)
        if snap.more:
            # The positions already asked for may predate the next page's
            # fills: ask again once the last page is in.
            if rnd.positions_rid is not None:
                self.rounds.pop(rnd.positions_rid, None)
            rnd.positions, rnd.positions_rid = None, None
            self._ask_fills(rnd)
            self._ask_positions(rnd)
            return
        rnd.fills_done = True
        self._maybe_done(rnd)

    @handles(PositionSnapshot)
    def on_positions(self, snap: PositionSnapshot) -> None:
        rid = getattr(snap, "request_id", None)
        rnd = self.rounds.pop(rid, None) if rid is not None else None
        if rnd is not None:
            rnd.positions = snap
            self._maybe_done(rnd)
            return
        if rid is None:  # pushed unasked: as fresh as it says
            reason, asked_at = "poll", None
        elif rid in self.pending:
            reason, asked_at = self.pending.pop(rid)
        else:
            # A question given up on (superseded by a later page, or pruned):
            # its answer may predate what the runtime knows since. Dropped.
            self.log.debug("dropping the answer to {}: no longer asked", rid)
            return
        now = self.ctx.clock.now()
        self.ctx.tell(self.coordinator, BrokerPositions(snap.account, snap.positions, now,
                                                        source=reason, requested_at=asked_at))
        self.last_reconciled = now.isoformat()
        self._publish()

    # -- helpers ------------------------------------------------------------------------

    def _ask(self, rnd: Round, query: Any) -> None:
        self.rounds[query.request_id] = rnd
        self.ctx.tell(self.gateway, query)

    def _ask_fills(self, rnd: Round) -> None:
        rid = f"rec-{next(self._ids)}-fills"
        self._ask(rnd, QueryFills(rid, rnd.account, since_cursor=rnd.cursor, limit=self.fills_page))

    def _ask_positions(self, rnd: Round) -> None:
        rid = f"rec-{next(self._ids)}-positions"
        rnd.positions_rid, rnd.positions_asked_at = rid, self.ctx.clock.now()
        self._ask(rnd, QueryPositions(rid, rnd.account))

    def _maybe_done(self, rnd: Round) -> None:
        if not rnd.complete or rnd.positions is None:  # complete means the positions came
            return
        now = self.ctx.clock.now()
        self.live.pop(rnd.number, None)
        self.rounds_done += 1
        if rnd.cursor > self.fill_cursor.get(rnd.account, 0):
            self.fill_cursor[rnd.account] = rnd.cursor
        # Orders first: their fills move positions, and resubmissions must be
        # decided before the coordinator accepts signals again.
        self.ctx.tell(self.coordinator, BrokerOrders(rnd.account, rnd.open_ids or (),
                                                     tuple(rnd.fills), rnd.asked_at, now,
                                                     source=rnd.reason))
        snap = rnd.positions
        self.ctx.tell(self.coordinator, BrokerPositions(
            snap.account, snap.positions, now, source=rnd.reason,
            requested_at=rnd.positions_asked_at))
        self.last_reconciled = now.isoformat()
        self.ctx.tell(self.gateway, ResyncDone(now))
        # Every resync ends a recovery: the first at startup, later ones after
        # a coordinator restart (it fails closed until told).
        self.recovered = True
        self.ctx.tell(self.coordinator, RecoveryDone(
            now, f"orders and positions reconciled ({rnd.reason}; {len(rnd.fills)} fills, "
                 f"{len(rnd.open_ids or ())} open orders)", requested_at=rnd.asked_at))
        self._publish()

    def _prune(self) -> None:
        """Answers that never come (stream down) are replaced by the next round or poll."""
        tables: tuple[dict[Any, Any], ...] = (self.pending, self.rounds, self.live)
        for table in tables:
            if len(table) > MAX_PENDING:
                for rid in list(table)[:-MAX_PENDING]:
                    del table[rid]

    def _publish(self) -> None:
        self.ctx.cell.info = {"polls": self.polls, "resyncs": self.resyncs,
                              "rounds_done": self.rounds_done, "open_rounds": len(self.live),
                              "rounds_retried": self.rounds_retried,
                              "fill_cursor": dict(self.fill_cursor),
                              "last_reconciled": self.last_reconciled, "recovered": self.recovered}
