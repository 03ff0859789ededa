"""The stop manager's book after a restart: ``rebuild_stops(snapshot, owner) -> RebuiltStops``.

A restarted manager rebuilds its plans from its own records (``stop|<id>``
in ``meta``) plus the coordinator's order, status and fill records
(``trading.owned_orders``): the record may be one message behind, the
coordinator's records are the truth of what left. An exit order the gate
approved for the manager that its record missed is adopted (into the plan of
its symbol, account and side, or a plan of its own), so a restart neither
repeats an exit nor forgets one. Pure: the manager re-arms each plan's timers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from messages.enums import OrderType
from trading.owned_orders import Snapshot, catch_up, owned_orders, records_with_prefix
from trading.stop_book import StopBook
from trading.stop_state import CANCELLING, DONE, LIMIT, MARKET, PROTECTING, TAKE_PROFIT, ExitOrder, Stop

KEY_PREFIX = "stop|"
#: the exit kind of an adopted order, by its order type (anything else is an SL-limit)
_KIND_OF = {OrderType.MARKET: MARKET, OrderType.LIMIT: TAKE_PROFIT}


@dataclass(frozen=True)
class Adopted:
    """An order the coordinator approved for the manager that its record missed."""

    client_order_id: str
    kind: str
    qty: Decimal
    stop_id: str


@dataclass
class RebuiltStops:
    book: StopBook
    #: (store key, why) of records that could not be read (skipped)
    unreadable: list[tuple[str, Exception]] = field(default_factory=list)
    adopted: list[Adopted] = field(default_factory=list)


def rebuild_stops(snapshot: Snapshot, owner: str) -> RebuiltStops:
    """The book of ``owner`` (the manager's name) from ``Store.read_all()``."""
    out = RebuiltStops(StopBook())
    book = out.book
    for key, rec in records_with_prefix(snapshot, "meta", KEY_PREFIX):
        try:
            st = Stop.from_record(rec)
        except (KeyError, TypeError, ValueError) as exc:
            out.unreadable.append((KEY_PREFIX + key, exc))
            continue
        if st.phase == DONE:
            book.count_done(st, st.outcome or LIMIT)
            continue
        book.stops[st.stop_id] = st
        book.by_coid.update({c: st.stop_id for c in st.orders})
    catch_up(snapshot, {coid: book.stops[stop_id].orders[coid]
                        for coid, stop_id in book.by_coid.items()})
    out.adopted = adopt_orders(book, snapshot, owner)
    return out


def adopt_orders(book: StopBook, snapshot: Snapshot, owner: str) -> list[Adopted]:
    """Take into ``book`` the orders approved for ``owner`` that neither it
    nor a plan's record knows (a completed plan leaves memory, not the store)."""
    adopted = []
    recorded = {coid for _, rec in records_with_prefix(snapshot, "meta", KEY_PREFIX)
                if isinstance(rec, dict) and isinstance(rec.get("orders"), dict)
                for coid in rec["orders"]}
    for coid, owned in owned_orders(snapshot, owner).items():
        if book.knows(coid) or coid in recorded:
            continue
        req = owned.request
        st = next((s for s in book.stops.values() if s.symbol == req.symbol
                   and s.account == req.account and s.exit_side is req.side), None)
        kind = _KIND_OF.get(req.order_type, LIMIT)
        if st is None:
            st = Stop(f"adopted-{coid}", req.symbol, req.account, req.side.opposite(),
                      req.trigger_price if kind == LIMIT else None, req.qty,
                      PROTECTING if kind != MARKET else CANCELLING,
                      take_profit=req.price if kind == TAKE_PROFIT else None)
            book.stops[st.stop_id] = st
        st.orders[coid] = ExitOrder(kind, req.qty, dict(owned.fills), owned.closed)
        book.by_coid[coid] = st.stop_id
        adopted.append(Adopted(coid, kind, req.qty, st.stop_id))
    return adopted
