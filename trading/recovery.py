"""Rebuilding the coordinator's state from the store, and applying the
broker's positions (the broker wins every divergence, rules 10 and 11)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from messages.control import BrokerPositions
from messages.orders import OrderRequest
from messages.persistence import Put, StoreDb
from trading.book import ZERO, InFlight, Position

OPEN_STATUSES = {"intent", "submitted", "acked", "partially_filled"}


def rebuild_coordinator_state(coord: Any, store: Any) -> None:
    """Positions, fill ids and open orders as the store last saw them."""
    book = coord.book
    for key, rec in store.items(StoreDb.POSITIONS):
        parts = tuple(key.split("|"))
        if len(parts) != 3 or not isinstance(rec, dict):
            coord.log.error("skipping malformed position record {!r}", key)
            continue
        book.positions[parts] = Position(qty=Decimal(rec.get("qty", ZERO)),
                                         avg_price=Decimal(rec.get("avg_price", ZERO)),
                                         realized=Decimal(rec.get("realized", ZERO)))
    filled_by_order: dict[str, Decimal] = {}
    fill_ids = []
    for fill_id, fill in store.items(StoreDb.FILLS):
        fill_ids.append(fill_id)
        coid = getattr(fill, "client_order_id", None)
        if coid is not None:
            filled_by_order[coid] = filled_by_order.get(coid, ZERO) + fill.qty
    book.fills.load(fill_ids)
    statuses = dict(store.items(StoreDb.META, prefix="order_status|"))
    for coid, rec in store.items(StoreDb.ORDERS):
        order = rec.get("order") if isinstance(rec, dict) else None
        if not isinstance(order, OrderRequest):
            continue
        status = statuses.get(f"order_status|{coid}", rec.get("status"))
        coord.orders[coid] = {"status": status, "owner": rec.get("owner"), "tag": None,
                              "purpose": str(order.purpose), "symbol": order.symbol}
        if status in OPEN_STATUSES:
            inflight = InFlight(coid, (order.account, rec.get("venue", coord.venue), order.symbol),
                                order.side, order.qty, order.purpose, order.reduce_only,
                                owner=rec.get("owner"), stop_loss=rec.get("stop_loss"),
                                filled=filled_by_order.get(coid, ZERO))
            if inflight.remaining > 0:
                book.add_inflight(inflight)
    if book.positions or book.inflight:
        coord.log.info("rebuilt from store: {} positions, {} open orders, {} fills",
                       len(book.positions), len(book.inflight), len(fill_ids))


def apply_broker_positions(coord: Any, msg: BrokerPositions) -> int:
    """Correct the book to the broker's positions; audit and count each divergence."""
    broker = {sym: qty for sym, qty in msg.positions}
    book = coord.book
    ours = {key[2]: key for key in book.positions if key[0] == msg.account}
    corrected = 0
    for sym in sorted(set(broker) | set(ours)):
        key = ours.get(sym, (msg.account, coord.venue, sym))
        theirs = broker.get(sym, ZERO)
        mine = book.qty(key)
        if mine == theirs:
            continue
        touched = coord.last_activity.get(key)
        if msg.requested_at is not None and touched is not None and touched >= msg.requested_at:
            # An order or fill on this symbol since the question left: the
            # answer may predate it. Correcting now could undo (or double) a
            # fill, so this symbol waits for the next poll.
            coord.counts["stale_snapshots_skipped"] += 1
            continue
        corrected += 1
        coord.counts["divergences"] += 1
        coord.audit.record(kind="divergence", reason="broker_wins", ts=coord.ctx.clock.now(),
                           inputs={"symbol": sym, "account": msg.account, "ours": str(mine),
                                   "broker": str(theirs), "source": msg.source})
        coord.log.warning("position divergence on {}: ours {} broker {} ({}); broker wins",
                          sym, mine, theirs, msg.source)
        pos = book.position(key)
        if theirs == 0 or (pos.qty != 0 and (pos.qty > 0) != (theirs > 0)):
            mv = coord.state.market.get(sym)
            pos.avg_price = mv.mid if (mv is not None and mv.mid is not None and theirs != 0) else ZERO
        pos.qty = theirs
        coord.ctx.tell(coord.persistence, Put(StoreDb.POSITIONS, "|".join(key), {
            "qty": pos.qty, "avg_price": pos.avg_price, "realized": pos.realized}))
    return corrected
