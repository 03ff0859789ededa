"""The book against the broker's positions: confirmed divergences, takeover prices (rules 11, 18).

The broker wins a divergence, but only one that two answers in a row show
with the same quantity: a one-off partial or wrong answer cannot whipsaw
the book. Until the second answer comes, the position is in doubt and the
gate fails closed for new risk (``PositionSync.fresh``). A position taken
over from the broker gets a price (its entry price, else the mark), so that
closing it never books its whole notional as PnL.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

from messages.control import BrokerPositions, ConfirmPositions
from messages.types import Price, Quantity
from trading.positions import ZERO, Key, PositionBook
from trading.effects import Effects
from trading.gate import MarketView
from trading.store_keys import position_put

#: per answer: divergences audited one by one and warned about one by one;
#: the rest of a (hostile or huge) answer is one aggregate record and line
AUDITED_PER_ANSWER = 20
LOGGED_PER_ANSWER = 5
#: confirming questions asked back to back before waiting for the next poll
MAX_CONFIRMS_IN_A_ROW = 3


class PositionSync:
    """What the book knows of the broker's positions, and what is in doubt."""

    def __init__(self, *, book: PositionBook, market: dict[str, MarketView], venue: str,
                 reconciler: str, counts: Counter[str], last_activity: dict[Key, Any],
                 log: Any) -> None:
        self.book, self.market, self.venue, self.reconciler = book, market, venue, reconciler
        self.counts, self.last_activity, self.log = counts, last_activity, log
        #: position key -> (broker qty, the answer's source): a divergence seen
        #: once, waiting for a second answer to confirm it before the book moves
        self.unconfirmed: dict[Key, tuple[Decimal, str]] = {}
        #: a confirmation query is out (one at a time, whatever the number of triggers)
        self.confirm_asked = False
        #: confirming answers in a row that still found a new divergence
        self.confirm_streak = 0
        #: keys taken over from the broker with no price known yet: the first
        #: mark (or fill) prices them (:meth:`price_unpriced`)
        self.unpriced: set[Key] = set()
        #: when the last positions answer came in (monotonic seconds)
        self.synced_at: float | None = None

    def fresh(self, now: float, stream_reconciling: bool, stale_after_s: float) -> bool:
        """Rule 3: a recent answer, the stream up and resynced, nothing in doubt."""
        return (self.synced_at is not None and not stream_reconciling
                and not self.unconfirmed and now - self.synced_at <= stale_after_s)

    def ask_confirmation(self, account: str, reason: str, now: datetime, fx: Effects) -> None:
        """One positions query at a time."""
        if not self.confirm_asked:
            self.confirm_asked = True
            fx.send(self.reconciler, ConfirmPositions(account, reason, now))

    def apply(self, msg: BrokerPositions, now: datetime, fx: Effects) -> int:
        """Correct the book to the broker's answer where a divergence is confirmed.

        The first sighting asks for a confirming query at once; audit records
        and log lines are bounded per answer. Returns the number of corrections."""
        self.confirm_asked = False
        broker = {sym: qty for sym, qty in msg.positions}
        entries = dict(msg.entry_prices)
        book = self.book
        ours = {key[2]: key for key in book.positions if key[0] == msg.account}
        pending = self.unconfirmed
        diverging: set[Key] = set()
        confirmed: list[tuple[str, Key, Decimal, Decimal, str]] = []
        suspected: list[str] = []
        for sym in sorted(set(broker) | set(ours)):
            key = ours.get(sym, (msg.account, self.venue, sym))
            theirs = broker.get(sym, ZERO)
            mine = book.qty(key)
            if mine == theirs:
                continue
            diverging.add(key)
            touched = self.last_activity.get(key)
            if msg.requested_at is not None and touched is not None and touched >= msg.requested_at:
                # An order or fill on this symbol since the question left: the
                # answer may predate it. Correcting now could undo (or double) a
                # fill, so this symbol waits for the next answer.
                self.counts["stale_snapshots_skipped"] += 1
                continue
            prev = pending.get(key)
            if prev is not None and prev[0] == theirs:
                del pending[key]
                confirmed.append((sym, key, mine, theirs, prev[1]))
            else:
                pending[key] = (theirs, msg.source)
                suspected.append(sym)
        # A divergence the next answer no longer shows was not the broker's state.
        for key in [k for k in pending if k[0] == msg.account and k not in diverging]:
            del pending[key]
            self.counts["divergences_not_confirmed"] += 1
        # A broker whose answer changes every time (another client trading the
        # account) gets a few confirming questions in a row, then the next poll.
        self.confirm_streak = self.confirm_streak + 1 if msg.source == "confirm" else 0
        if suspected:
            self.counts["divergences_suspected"] += len(suspected)
            self.log.info("{} position divergence(s) in the broker's answer ({}): {}{}; asking "
                          "again before the book changes", len(suspected), msg.source,
                          ", ".join(suspected[:LOGGED_PER_ANSWER]),
                          "" if len(suspected) <= LOGGED_PER_ANSWER else ", ...")
            if self.confirm_streak < MAX_CONFIRMS_IN_A_ROW:
                self.ask_confirmation(msg.account, f"confirm {len(suspected)} divergence(s)",
                                      now, fx)
        for i, (sym, key, had, theirs, first_source) in enumerate(confirmed):
            self.counts["divergences"] += 1
            avg, price_source = self._take_over(key, sym, theirs, entries.get(sym))
            if i < AUDITED_PER_ANSWER:
                fx.record(kind="divergence", reason="broker_wins", ts=now,
                          inputs={"symbol": sym, "account": msg.account, "ours": str(had),
                                  "broker": str(theirs), "source": first_source,
                                  "confirmed_by": msg.source, "confirmed": True,
                                  "avg_price": str(avg), "price_source": price_source})
            if i < LOGGED_PER_ANSWER:
                self.log.warning("position divergence on {}: ours {} broker {} (seen by {}, "
                                 "confirmed by {}); broker wins at {} ({})", sym, had, theirs,
                                 first_source, msg.source, avg, price_source)
            fx.store(position_put(key, book.position(key)))
        if len(confirmed) > AUDITED_PER_ANSWER:
            rest = confirmed[AUDITED_PER_ANSWER:]
            fx.record(kind="divergence", reason="broker_wins", ts=now,
                      inputs={"account": msg.account, "source": msg.source, "confirmed": True,
                              "aggregated": len(rest),
                              "symbols": [sym for sym, *_ in rest[:AUDITED_PER_ANSWER]]})
        if len(confirmed) > LOGGED_PER_ANSWER:
            self.log.warning("... and {} more position divergences corrected ({}); see the audit",
                             len(confirmed) - LOGGED_PER_ANSWER, msg.source)
        return len(confirmed)

    def _take_over(self, key: Key, sym: str, theirs: Decimal,
                   entry: Decimal | None) -> tuple[Decimal, str]:
        """Set ``key`` to the broker's quantity, with a price (rule 18).

        The broker's entry price wins where the venue gives one; else the mark
        at takeover (the audit says so); an added quantity on the same side is
        blended in at the mark; with no mark yet, the first mark or fill
        prices it (:meth:`price_unpriced`)."""
        pos = self.book.position(key)
        mv = self.market.get(sym)
        mark = mv.mid if mv is not None else None
        self.unpriced.discard(key)
        avg: Decimal
        if theirs == 0:
            avg, source = ZERO, "flat"
        elif entry is not None:
            avg, source = entry, "broker_entry_price"
        elif pos.qty == 0 or (pos.qty > 0) != (theirs > 0):
            if mark is not None:
                avg, source = mark, "mark_at_takeover (venue gave no entry price)"
            else:
                avg, source = ZERO, ("unpriced: no entry price and no mark yet; the first mark "
                                     "or fill prices it")
                self.unpriced.add(key)
        elif abs(theirs) > abs(pos.qty) and mark is not None:
            added = abs(theirs) - abs(pos.qty)
            avg = (pos.avg_price * abs(pos.qty) + mark * added) / abs(theirs)
            source = "kept, the added quantity at the mark (venue gave no entry price)"
        else:
            avg, source = pos.avg_price, "kept"
        pos.qty, pos.avg_price = Quantity(theirs), Price(avg)
        return avg, source

    def price_unpriced(self, key: Key, price: Decimal | None, source: str, now: datetime,
                       fx: Effects) -> bool:
        """Price a position taken over with no price, at ``price`` (audited).
        True if the position's price changed (its PnL is to be marked again)."""
        pos = self.book.positions.get(key)
        if price is None or pos is None or key not in self.unpriced:
            return False
        self.unpriced.discard(key)
        if pos.qty == 0:
            return False
        pos.avg_price = Price(price)
        fx.record(kind="takeover_priced", reason="mark_at_takeover", ts=now,
                  inputs={"symbol": key[2], "account": key[0], "qty": str(pos.qty),
                          "avg_price": str(price), "price_source": source})
        fx.store(position_put(key, pos))
        return True
