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

Only answers to this reconciler's own questions are believed (rule 18):
an answer whose request id it never issued (a snapshot pushed unasked, a
forged one) is ignored, counted and audited; an answer to a question it gave
up on is dropped as stale; an answer for another account than asked is
ignored. The coordinator asks for a confirming query (``ConfirmPositions``)
before a divergence changes its book.

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
from messages.control import BrokerOrders, BrokerPositions, ConfirmPositions, RecoveryDone
from messages.exchange import (FillsSnapshot, OpenOrdersSnapshot, QueryFills, QueryOpenOrders,
                               QueryPositions)
from messages.orders import OrderFilled, PositionSnapshot
from runtime import Actor, handles
from trading.trust import IGNORED, STALE_ANSWER, UNSOLICITED, AskedIds, TrustReport

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
        #: request ids this instance issued (an answer to anything else is unsolicited)
        self.asked = AskedIds()
        #: poll / confirmation request id -> the account asked
        self.asked_account: dict[str, str] = {}
        self.trust = TrustReport("reconciler", self.log)
        self.confirms = 0

    def on_start(self) -> None:
        self.ctx.schedule(self.poll_s, PollNow(), interval_s=self.poll_s)
        if self.ctx.cell.incarnation > 1:
            # Restarted: the rounds in progress died with the old instance
            # (their answers are dropped as unknown). Ask for a fresh resync;
            # the gateway fails the coordinator closed until it is done.
            self.ctx.tell(self.gateway, ResyncRequest("reconciler restarted", self.ctx.clock.now()))

    def on_idle(self) -> None:
        self.trust.flush(self.ctx.services.get("audit"))

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
            self._ask_poll("poll", account)
        self._prune()

    @handles(ConfirmPositions)
    def on_confirm(self, msg: ConfirmPositions) -> None:
        """The coordinator saw a divergence (or a fill of an order it never
        sent): one more positions answer, asked now, confirms or clears it."""
        if msg.account not in self.accounts:
            return
        self.confirms += 1
        self._ask_poll("confirm", msg.account)
        self._prune()
        self._publish()

    def _ask_poll(self, reason: str, account: str) -> None:
        rid = f"rec-{next(self._ids)}"
        self.pending[rid] = (reason, self.ctx.clock.now())
        self.asked_account[rid] = account
        self.asked.add(rid)
        self.ctx.tell(self.gateway, QueryPositions(rid, account))

    # -- answers ----------------------------------------------------------------------

    @handles(OpenOrdersSnapshot)
    def on_open_orders(self, snap: OpenOrdersSnapshot) -> None:
        rnd = self._round_of(snap)
        if rnd is None:
            return
        rnd.open_ids = tuple(o.client_order_id for o in snap.orders)
        self._maybe_done(rnd)

    @handles(FillsSnapshot)
    def on_fills(self, snap: FillsSnapshot) -> None:
        rnd = self._round_of(snap)
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
        rid = snap.request_id
        if rid is not None and rid in self.rounds:
            rnd = self._round_of(snap)
            if rnd is not None:
                rnd.positions = snap
                self._maybe_done(rnd)
            return
        if rid is None or rid not in self.pending:
            # Pushed unasked, forged, or a question given up on (superseded by
            # a later page, or pruned: it may predate what the runtime knows
            # since). Never applied: a partial snapshot once zeroed the book.
            self._not_believed(snap, "a positions snapshot")
            return
        reason, asked_at = self.pending.pop(rid)
        if snap.account != self.asked_account.pop(rid, snap.account):
            self._not_believed(snap, "a positions snapshot", why="for another account than asked")
            return
        now = self.ctx.clock.now()
        self.ctx.tell(self.coordinator, BrokerPositions(snap.account, snap.positions, now,
                                                        source=reason, requested_at=asked_at,
                                                        entry_prices=snap.entry_prices))
        self.last_reconciled = now.isoformat()
        self._publish()

    # -- the trust boundary (rule 18) -----------------------------------------------------

    def _round_of(self, snap: Any) -> Round | None:
        """The live round that asked this question, else None (the answer is
        counted and audited as unsolicited, stale or for another account)."""
        rid = snap.request_id
        rnd = self.rounds.get(rid)
        what = f"a {type(snap).__name__}"
        if rnd is None:
            self._not_believed(snap, what)
            return None
        if snap.account != rnd.account:
            self._not_believed(snap, what, why="for another account than asked")
            return None
        del self.rounds[rid]
        return rnd

    def _not_believed(self, snap: Any, what: str, why: str | None = None) -> None:
        rid = snap.request_id
        reason = STALE_ANSWER if rid is not None and rid in self.asked and why is None else UNSOLICITED
        if reason == STALE_ANSWER:
            self.trust.tally.add(IGNORED, reason)  # ours, superseded: expected, not worth a record
            self.log.debug("dropping the answer to {}: no longer asked", rid)
            return
        detail = why or ("pushed unasked" if rid is None else "answers no question of ours")
        self.trust.refuse(self.ctx.services.get("audit"), self.ctx.clock.now(), IGNORED, reason,
                          what, f"{detail}; request id {str(rid)[:64]!r}",
                          request_id=str(rid)[:64], account=str(snap.account)[:64])
        self._publish()

    # -- helpers ------------------------------------------------------------------------

    def _ask(self, rnd: Round, query: Any) -> None:
        self.rounds[query.request_id] = rnd
        self.asked.add(query.request_id)
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
            requested_at=rnd.positions_asked_at, entry_prices=snap.entry_prices))
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
        tables: tuple[dict[Any, Any], ...] = (self.pending, self.rounds, self.live,
                                              self.asked_account)
        for table in tables:
            if len(table) > MAX_PENDING:
                for rid in list(table)[:-MAX_PENDING]:
                    del table[rid]

    def _publish(self) -> None:
        self.ctx.cell.info = {"polls": self.polls, "resyncs": self.resyncs,
                              "rounds_done": self.rounds_done, "open_rounds": len(self.live),
                              "rounds_retried": self.rounds_retried,
                              "fill_cursor": dict(self.fill_cursor),
                              "last_reconciled": self.last_reconciled, "recovered": self.recovered,
                              "confirms": self.confirms, "trust": self.trust.tally.as_dict()}
