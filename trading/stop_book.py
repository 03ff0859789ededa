"""The stop manager's book of exit plans (rule 8): which plans exist, which order is whose,
what completed, and how it ended.

A plan (``trading.stop_state.Stop``) belongs to one entry order; its exit
orders are found by client order id, its intents by tag. A completed plan
leaves the book; what it leaves behind is the tallies ``summary.json``
reports (``stop_exits``, ``exits`` by kind, the quantity exited per symbol)
and, for the newest ``RECENT`` only, completed plans' orders (an adoption
must not take one of them for a stranger) and the number of plans an entry
completed (more of an entry filling after its stop exited is a new plan,
``<entry>#2``). Memory stays flat however long the run: an older plan is
known by its DONE record in the store, durable long before ``RECENT`` more
complete, which the adoption (``trading.stop_rebuild``) and the naming of a
new plan (:meth:`StopBook.next_stop_id`) read. Plain state, no
actor: the stop manager drives the plans, a restart rebuilds this book.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from messages.enums import Side
from trading.stop_state import DONE, LIMIT, MARKET, TAKE_PROFIT, ZERO, ExitOrder, Stop

MARKET_FALLBACK = "market_fallback"
#: summary.json's ``exits`` keys by outcome
EXIT_KINDS = {TAKE_PROFIT: TAKE_PROFIT, LIMIT: "stop_loss_limit",
              MARKET_FALLBACK: "stop_loss_market", "trailing": "trailing",
              "time_limit": "time_limit", "strategy": "strategy", "external": "external"}
#: outcomes that are stop-outs (the coordinator's cool-down starts)
STOP_OUTS = (LIMIT, MARKET_FALLBACK, "trailing")
#: completed plans' orders, and entries' plan counts, that stay in memory
RECENT = 100


def outcome(st: Stop) -> str:
    """How a finished plan ended: its forced exit, else the order kind that exited it,
    else why its protection was released."""
    if st.exit_kind is not None and st.exited > 0:
        return st.exit_kind
    market, tp, sl = (st.filled_by(MARKET), st.filled_by(TAKE_PROFIT), st.filled_by(LIMIT))
    if market > 0:
        return MARKET_FALLBACK
    if tp > 0 and tp >= sl:
        return TAKE_PROFIT
    if sl > 0:
        return LIMIT
    return st.release_cause or "external"


@dataclass
class StopBook:
    #: active plans by stop id
    stops: dict[str, Stop] = field(default_factory=dict)
    #: client order id -> stop id, for the orders of active plans
    by_coid: dict[str, str] = field(default_factory=dict)
    #: the newest ``RECENT`` client order ids of completed plans, oldest first
    finished: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: entry order id -> plans of it completed, for the newest ``RECENT`` plans' entries
    entries_done: OrderedDict[str, int] = field(default_factory=OrderedDict)
    stop_exits: Counter[str] = field(default_factory=lambda: Counter({LIMIT: 0, MARKET_FALLBACK: 0}))
    #: completed plans by kind (summary.json ``exits``)
    exits: Counter[str] = field(default_factory=lambda: Counter({k: 0 for k in EXIT_KINDS.values()}))
    #: symbol -> quantity exited by completed plans
    exit_qty: dict[str, Decimal] = field(default_factory=dict)

    # -- finding ------------------------------------------------------------------------------

    def for_entry(self, entry_id: str) -> Stop | None:
        return next((s for s in self.stops.values() if s.entry_id == entry_id), None)

    def next_stop_id(self, entry_id: str, on_record: Callable[[str], bool] = lambda _: False) -> str:
        """The id of a new plan for ``entry_id``: the entry's id, then ``<entry>#2``...
        ``on_record(stop_id)`` says whether a plan of that id is in the store:
        a plan completed before the newest ``RECENT`` is known only there."""
        n = self.entries_done.get(entry_id, 0)
        while on_record(stop_id := entry_id if n == 0 else f"{entry_id}#{n + 1}"):
            n += 1
        return stop_id

    def of_tag(self, tag: str | None) -> Stop | None:
        stop_id = tag.split("|", 1)[0] if tag else None
        return self.stops.get(stop_id) if stop_id else None

    def order(self, coid: str) -> tuple[Stop | None, ExitOrder | None]:
        st = self.stops.get(self.by_coid.get(coid, ""))
        return (st, st.orders.get(coid)) if st is not None else (None, None)

    def knows(self, coid: str) -> bool:
        """An order of an active or a completed plan."""
        return coid in self.by_coid or coid in self.finished

    def open_plans(self, symbol: str, account: str, side: Side) -> list[Stop]:
        return [s for s in self.stops.values() if s.symbol == symbol and s.account == account
                and s.position_side is side and s.phase != DONE]

    def protecting(self) -> dict[str, list[Stop]]:
        """Plans that watch quotes (a stop to trigger, a trailing level), by symbol."""
        out: dict[str, list[Stop]] = {}
        for st in self.stops.values():
            if st.watches_quotes:
                out.setdefault(st.symbol, []).append(st)
        return out

    # -- changes ----------------------------------------------------------------------------------

    def add_order(self, st: Stop, coid: str, order: ExitOrder) -> None:
        """``coid`` is ``st``'s (kept if ``st`` already holds it)."""
        st.orders.setdefault(coid, order)
        self.by_coid[coid] = st.stop_id

    def releases(self, symbol: str, account: str, qty: Decimal,
                 cause: str) -> Iterator[tuple[Stop, Decimal]]:
        """Release protection above the position ``qty`` (signed), oldest plans first.

        The position went by other means (a strategy's exit, the broker says
        so): an exit of it could only be refused or, re-entered, sell too much.
        Yields each plan as its release is recorded, with the quantity let go."""
        for side in (Side.BUY, Side.SELL):
            plans = self.open_plans(symbol, account, side)
            if not plans:
                continue
            avail = max(ZERO, qty if side is Side.BUY else -qty)
            excess = sum((s.open_qty for s in plans), ZERO) - avail
            for st in plans:
                if excess <= 0:
                    break
                take = min(excess, max(ZERO, st.open_qty))
                if take <= 0:
                    continue
                excess -= take
                st.released += take
                st.release_cause = "strategy" if cause == "fill:entry" else "external"
                yield st, take

    def complete(self, st: Stop) -> str:
        """``st`` is done: record how it ended and forget its orders; returns the outcome."""
        st.phase = DONE
        st.outcome = outcome(st)
        self.count_done(st, st.outcome)
        for coid in st.orders:
            self.by_coid.pop(coid, None)
        return st.outcome

    def count_done(self, st: Stop, how: str) -> None:
        """The tallies and memory of one completed plan (live, or read back on a restart)."""
        if how in (LIMIT, MARKET_FALLBACK):
            self.stop_exits[how] += 1
        self.exits[EXIT_KINDS.get(how, "external")] += 1
        self.exit_qty[st.symbol] = self.exit_qty.get(st.symbol, ZERO) + st.exited
        self.finished.update(dict.fromkeys(st.orders))
        self.entries_done[st.entry_id] = self.entries_done.get(st.entry_id, 0) + 1
        self.entries_done.move_to_end(st.entry_id)
        while len(self.entries_done) > RECENT:
            self.entries_done.popitem(last=False)
        while len(self.finished) > RECENT:
            self.finished.popitem(last=False)

    def exit_qty_now(self) -> dict[str, Decimal]:
        """Quantity exited per symbol, completed and active plans together."""
        total = dict(self.exit_qty)
        for st in self.stops.values():
            total[st.symbol] = total.get(st.symbol, ZERO) + st.exited
        return total
