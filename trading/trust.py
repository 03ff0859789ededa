"""The runtime's trust boundary (DESIGN rule 18), as plain functions and state.

What comes from outside is judged before it is believed:

* numbers: :mod:`messages.bounds` (price, quantity, notional, exponent,
  digits) with the ranges of the ``bounds`` config section
  (:func:`messages.bounds.bounds_from_config`);
* accounts: an event for an account this runtime does not manage is
  ignored (:func:`foreign_account`);
* answers: a snapshot nobody asked for is ignored (the reconciler keeps the
  request ids it issued, :class:`AskedIds`).

Every refusal is counted by a bounded reason code and reported (log line,
audit record) through a :class:`TrustTally`, which reports the first few of
each reason one by one and then one in every ``every``: a hostile peer
sending a million bad frames costs a million counter increments, not a
million log lines and audit records.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from decimal import Decimal
from typing import Any

from messages.bounds import (Bounds, first, notional_problem, price_problem,
                             qty_problem)
from messages.exchange import BalanceSnapshot, FillsSnapshot, OpenOrdersSnapshot
from messages.orders import OrderFilled, PositionSnapshot

#: verdicts: the input was wrong (rejected) or not ours to act on (ignored)
REJECTED, IGNORED = "rejected", "ignored"
#: reason codes (bounded: counters and metric labels are keyed by these)
OUT_OF_RANGE = "out_of_range"
FOREIGN_ACCOUNT = "foreign_account"
UNSOLICITED = "unsolicited_answer"
UNKNOWN_ORDER = "unknown_order"
STALE_ANSWER = "stale_answer"
WRONG_TYPE = "wrong_type"
BAD_FRAME = "bad_frame"

ACCOUNT_EVENTS = (OrderFilled, PositionSnapshot, OpenOrdersSnapshot, BalanceSnapshot, FillsSnapshot)


def foreign_account(event: Any, accounts: frozenset[str] | tuple[str, ...]) -> str | None:
    """The account of ``event`` when it is one this runtime does not manage.

    Fills and snapshots name their account; a fills snapshot is foreign if
    any fill in it belongs to another account than the ones managed.
    """
    if not isinstance(event, ACCOUNT_EVENTS):
        return None
    account = event.account
    if account not in accounts:
        return account if isinstance(account, str) else repr(account)
    if type(event) is FillsSnapshot:
        for fill in event.fills:
            if fill.account not in accounts:
                return fill.account
    return None


def intent_problem(intent: Any, bounds: Bounds, mark: Decimal | None) -> str | None:
    """Why an order intent's numbers are not believable (the gate's door), or None.

    The notional is priced at the intent's own limit or trigger price, else
    at the mark when there is one."""
    b = bounds.for_symbol(intent.symbol)
    problem = first(qty_problem(intent.qty, "qty", b),
                    price_problem(intent.limit_price, "limit_price", b, optional=True),
                    price_problem(intent.trigger_price, "trigger_price", b, optional=True),
                    price_problem(intent.stop_loss, "stop_loss", b, optional=True))
    if problem is not None:
        return problem
    price = intent.limit_price or intent.trigger_price or mark
    if price is None:
        return None
    return notional_problem(intent.qty, price, "notional", b)


class TrustTally:
    """Counts of refused inputs by (verdict, reason), and which to report.

    ``add`` returns True when this occurrence should be reported one by one
    (a log line, an audit record): the first ``first`` of each reason, then
    every ``every``-th, so reporting stays bounded under a flood while the
    counts stay exact.
    """

    def __init__(self, first: int = 20, every: int = 1000) -> None:
        if first < 0 or every < 1:
            raise ValueError(f"TrustTally: first >= 0 and every >= 1, got {first}, {every}")
        self.first, self.every = first, every
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, verdict: str, reason: str) -> bool:
        key = (verdict, reason)
        n = self.counts[key] + 1
        self.counts[key] = n
        return n <= self.first or n % self.every == 0

    def count(self, verdict: str, reason: str | None = None) -> int:
        return sum(n for (v, r), n in self.counts.items()
                   if v == verdict and (reason is None or r == reason))

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {REJECTED: {}, IGNORED: {}}
        for (verdict, reason), n in sorted(self.counts.items()):
            out.setdefault(verdict, {})[reason] = n
        return out


class TrustReport:
    """One actor's refused inputs: counted exactly (``tally``), reported
    bounded (a warning and an ``untrusted_input`` audit record for the
    occurrences the tally picks), the audit file flushed when the actor
    goes idle."""

    def __init__(self, where: str, log: Any) -> None:
        self.where = where
        self.log = log
        self.tally = TrustTally()
        self._dirty = False

    def refuse(self, audit: Any, ts: Any, verdict: str, reason: str, event: str, detail: str,
               **inputs: Any) -> int | None:
        """Count one refusal; returns its number when it was reported, else None."""
        if not self.tally.add(verdict, reason):
            return None
        n = self.tally.counts[(verdict, reason)]
        self.log.warning("{} {} ({}, #{}): {}", verdict, event, reason, n, detail)
        if audit is not None:
            self._dirty = True
            audit.record(kind="untrusted_input", reason=reason, approved=False, ts=ts,
                         inputs={"verdict": verdict, "where": self.where, "event": event,
                                 "detail": detail[:300], "count": n, **inputs})
        return n

    def flush(self, audit: Any) -> None:
        if self._dirty and audit is not None:
            self._dirty = False
            audit.flush()


class AskedIds:
    """Request ids this runtime issued, newest last, bounded.

    Tells an answer to a question given up on (stale: ours, superseded) from
    one to a question never asked (unsolicited). A stale answer comes within
    a round's timeout or so; ``keep`` covers hours of questions at the
    reconciler's pace and bounds memory however long the run."""

    def __init__(self, keep: int = 1_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._keep = keep

    def add(self, request_id: str) -> None:
        self._ids[request_id] = None
        if len(self._ids) > self._keep:
            self._ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids


def shown(items: list[Any], limit: int = 20) -> tuple[list[Any], int]:
    """The first ``limit`` items and how many were left out (bounded audit inputs)."""
    return items[:limit], max(0, len(items) - limit)
