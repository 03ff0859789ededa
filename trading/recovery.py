"""Rebuilding the coordinator's state from the store, and reconciling it with
the broker: positions, and after every resync the orders (rules 10, 11, 15).

The broker wins every divergence, by synthesizing the missing events rather
than by overwriting: a fill the runtime missed goes through the normal fill
path (position, store, the order's owner); an order the broker never got is
resubmitted with the same client order id, so the broker refuses it if it
did get it after all; an order the broker no longer works is closed. Each
correction is one audit record.

These are plain functions of the coordinator (``coord``), called from its
handlers, so they run on its thread like the rest of its state changes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from messages.control import BrokerOrders, BrokerPositions
from messages.exchange import OrderExpired, SubmitOrder
from messages.orders import ExitPlan, OrderAcked, OrderRejected, OrderRequest, merge_plan
from messages.persistence import Put, StoreDb
from messages.types import Price, Quantity, Symbol
from trading.positions import ZERO, InFlight, Key, Position

OPEN_STATUSES = {"intent", "submitted", "acked", "partially_filled"}
#: statuses at which the order may never have reached the broker
UNSENT_OR_UNSEEN = {"intent", "submitted"}
ONE_US = timedelta(microseconds=1)
#: meta key of the kill switch: the reason while engaged, None once released
KILL_SWITCH_KEY = "kill_switch"
#: meta keys of each order's latest status (written by the coordinator only)
ORDER_STATUS_PREFIX = "order_status|"


def order_status_key(client_order_id: str) -> str:
    return f"{ORDER_STATUS_PREFIX}{client_order_id}"


def position_put(key: Key, pos: Position) -> Put:
    """The store write of one position (read back by ``rebuild_coordinator_state``)."""
    return Put(StoreDb.POSITIONS, "|".join(key), {
        "qty": pos.qty, "avg_price": pos.avg_price, "realized": pos.realized})


def rebuild_coordinator_state(coord: Any, store: Any) -> None:
    """Positions, fill ids, open orders and the kill switch as the store last saw them.

    The kill switch is restored because a crash must never be a way out of
    it (rule 5): an operator's halt, or the daily loss limit, holds until
    someone releases it, whether or not the process died in between.
    """
    from trading.gate import HALTED

    why = store.get(StoreDb.META, KILL_SWITCH_KEY)
    if why and coord.state.trading_state != HALTED:
        coord.state.trading_state, coord.kill_reason = HALTED, str(why)
        coord.log.warning("kill switch still engaged from before the restart: {}", why)
    book = coord.book
    for key, rec in store.items(StoreDb.POSITIONS):
        parts = tuple(key.split("|"))
        if len(parts) != 3 or not isinstance(rec, dict):
            coord.log.error("skipping malformed position record {!r}", key)
            continue
        book.positions[parts] = Position(qty=Quantity(Decimal(rec.get("qty", ZERO))),
                                         avg_price=Price(Decimal(rec.get("avg_price", ZERO))),
                                         realized=Decimal(rec.get("realized", ZERO)))
    filled_by_order: dict[str, Decimal] = {}
    fill_ids = []
    for fill_id, fill in store.items(StoreDb.FILLS):
        fill_ids.append(fill_id)
        coid = getattr(fill, "client_order_id", None)
        if coid is not None:
            filled_by_order[coid] = filled_by_order.get(coid, ZERO) + fill.qty
    book.fills.load(fill_ids)
    statuses = dict(store.items(StoreDb.META, prefix=ORDER_STATUS_PREFIX))
    for coid, rec in store.items(StoreDb.ORDERS):
        order = rec.get("order") if isinstance(rec, dict) else None
        if not isinstance(order, OrderRequest):
            continue
        status = statuses.get(order_status_key(coid), rec.get("status"))
        coord.orders[coid] = {"status": status, "owner": rec.get("owner"), "tag": None,
                              "purpose": str(order.purpose), "symbol": order.symbol}
        if status in OPEN_STATUSES:
            inflight = InFlight(coid, (order.account, rec.get("venue", coord.venue), order.symbol),
                                order.side, order.qty, order.purpose, order.reduce_only,
                                owner=rec.get("owner"), stop_loss=rec.get("stop_loss"),
                                filled=Quantity(filled_by_order.get(coid, ZERO)),
                                exit_plan=_exit_plan(rec))
            if inflight.remaining > 0:
                book.add_inflight(inflight)
    if book.positions or book.inflight:
        coord.log.info("rebuilt from store: {} positions, {} open orders, {} fills",
                       len(book.positions), len(book.inflight), len(fill_ids))


def _exit_plan(rec: dict[str, Any]) -> ExitPlan | None:
    """The order's exit plan as stored (older records: their stop-loss alone)."""
    plan = rec.get("exit_plan")
    return merge_plan(rec.get("stop_loss"), plan if isinstance(plan, ExitPlan) else None)


#: per answer: divergences audited one by one and warned about one by one;
#: the rest of a (hostile or huge) answer is one aggregate record and line
AUDITED_PER_ANSWER = 20
LOGGED_PER_ANSWER = 5
#: confirming questions asked back to back before waiting for the next poll
MAX_CONFIRMS_IN_A_ROW = 3


def apply_broker_positions(coord: Any, msg: BrokerPositions) -> int:
    """Correct the book to the broker's positions (broker wins), but only on a
    divergence that two answers in a row show with the same quantity (rule
    18): a one-off partial or wrong answer cannot whipsaw the book. The first
    sighting asks for a confirming query at once (``ask_confirmation``);
    meanwhile the coordinator fails closed for new risk. Audit records and
    log lines are bounded per answer. Returns the number of corrections."""
    broker = {sym: qty for sym, qty in msg.positions}
    entries = dict(msg.entry_prices)
    book = coord.book
    ours = {key[2]: key for key in book.positions if key[0] == msg.account}
    pending = coord.unconfirmed
    diverging: set[Key] = set()
    confirmed: list[tuple[str, Key, Decimal, Decimal, str]] = []
    suspected: list[str] = []
    for sym in sorted(set(broker) | set(ours)):
        key = ours.get(sym, (msg.account, coord.venue, sym))
        theirs = broker.get(sym, ZERO)
        mine = book.qty(key)
        if mine == theirs:
            continue
        diverging.add(key)
        touched = coord.last_activity.get(key)
        if msg.requested_at is not None and touched is not None and touched >= msg.requested_at:
            # An order or fill on this symbol since the question left: the
            # answer may predate it. Correcting now could undo (or double) a
            # fill, so this symbol waits for the next answer.
            coord.counts["stale_snapshots_skipped"] += 1
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
        coord.counts["divergences_not_confirmed"] += 1
    # A broker whose answer changes every time (another client trading the
    # account) gets a few confirming questions in a row, then the next poll.
    coord.confirm_streak = coord.confirm_streak + 1 if msg.source == "confirm" else 0
    if suspected:
        coord.counts["divergences_suspected"] += len(suspected)
        coord.log.info("{} position divergence(s) in the broker's answer ({}): {}{}; asking again "
                       "before the book changes", len(suspected), msg.source,
                       ", ".join(suspected[:LOGGED_PER_ANSWER]),
                       "" if len(suspected) <= LOGGED_PER_ANSWER else ", ...")
        if coord.confirm_streak < MAX_CONFIRMS_IN_A_ROW:
            coord.ask_confirmation(msg.account, f"confirm {len(suspected)} divergence(s)")
    now = coord.ctx.clock.now()
    for i, (sym, key, mine, theirs, first_source) in enumerate(confirmed):
        coord.counts["divergences"] += 1
        avg, price_source = _take_over(coord, key, sym, theirs, entries.get(sym))
        if i < AUDITED_PER_ANSWER:
            coord.audit.record(kind="divergence", reason="broker_wins", ts=now,
                               inputs={"symbol": sym, "account": msg.account, "ours": str(mine),
                                       "broker": str(theirs), "source": first_source,
                                       "confirmed_by": msg.source, "confirmed": True,
                                       "avg_price": str(avg),
                                       "price_source": price_source})
        if i < LOGGED_PER_ANSWER:
            coord.log.warning("position divergence on {}: ours {} broker {} (seen by {}, confirmed "
                              "by {}); broker wins at {} ({})", sym, mine, theirs, first_source,
                              msg.source, avg, price_source)
        coord.ctx.tell(coord.persistence, position_put(key, book.position(key)))
    if len(confirmed) > AUDITED_PER_ANSWER:
        rest = confirmed[AUDITED_PER_ANSWER:]
        coord.audit.record(kind="divergence", reason="broker_wins", ts=now,
                           inputs={"account": msg.account, "source": msg.source, "confirmed": True,
                                   "aggregated": len(rest),
                                   "symbols": [sym for sym, *_ in rest[:AUDITED_PER_ANSWER]]})
    if len(confirmed) > LOGGED_PER_ANSWER:
        coord.log.warning("... and {} more position divergences corrected ({}); see the audit",
                          len(confirmed) - LOGGED_PER_ANSWER, msg.source)
    return len(confirmed)


def _take_over(coord: Any, key: Key, sym: str, theirs: Decimal,
               entry: Decimal | None) -> tuple[Decimal, str]:
    """Set ``key`` to the broker's quantity, with a price (rule 18).

    A position taken over with no price would book its whole notional as
    PnL when closed. The broker's entry price wins where the venue gives
    one; else the mark at takeover (the audit says so); an added quantity on
    the same side is blended in at the mark; with no mark yet, the first
    mark or fill prices it (``price_unpriced``)."""
    pos = coord.book.position(key)
    mv = coord.state.market.get(sym)
    mark = mv.mid if mv is not None else None
    coord.unpriced.discard(key)
    if theirs == 0:
        avg, source = ZERO, "flat"
    elif entry is not None:
        avg, source = entry, "broker_entry_price"
    elif pos.qty == 0 or (pos.qty > 0) != (theirs > 0):
        if mark is not None:
            avg, source = mark, "mark_at_takeover (venue gave no entry price)"
        else:
            avg, source = ZERO, "unpriced: no entry price and no mark yet; the first mark or fill prices it"
            coord.unpriced.add(key)
    elif abs(theirs) > abs(pos.qty) and mark is not None:
        added = abs(theirs) - abs(pos.qty)
        avg = (pos.avg_price * abs(pos.qty) + mark * added) / abs(theirs)
        source = "kept, the added quantity at the mark (venue gave no entry price)"
    else:
        avg, source = pos.avg_price, "kept"
    pos.qty, pos.avg_price = theirs, avg
    return avg, source


def price_unpriced(coord: Any, key: Key, price: Decimal | None, source: str) -> None:
    """Price a position taken over with no price, at ``price`` (audited)."""
    pos = coord.book.positions.get(key)
    if price is None or pos is None or key not in coord.unpriced:
        return
    coord.unpriced.discard(key)
    if pos.qty == 0:
        return
    pos.avg_price = price
    coord.audit.record(kind="takeover_priced", reason="mark_at_takeover", ts=coord.ctx.clock.now(),
                       inputs={"symbol": key[2], "account": key[0], "qty": str(pos.qty),
                               "avg_price": str(price), "price_source": source})
    coord.ctx.tell(coord.persistence, position_put(key, pos))
    coord.pnl.update_key(key)


# -- orders (after every resync) -------------------------------------------------------


def reconcile_orders(coord: Any, msg: BrokerOrders) -> dict[str, int]:
    """Settle the coordinator's open orders against the broker's answer.

    Which orders may be judged is decided *before* the missing fills move
    any status: an order qualifies if this coordinator instance existed when
    the question left (``requested_at >= started_at``; an older round cannot
    know what the previous instance sent last) and its status last changed
    before the question left (orders rebuilt from the store predate this
    instance; ``at`` is stamped after the order left for the gateway, so an
    order stamped earlier reached the broker before the question did). An
    intent still waiting for its durable write is never judged: it has not
    been sent, and will be.

    An order the broker works whose acknowledgement was lost is marked
    acknowledged (that needs no timing: working there proves it arrived).
    """
    asked = msg.requested_at
    judge = asked >= coord.started_at
    eligible = []
    if judge:
        for coid, order in coord.book.inflight.items():
            rec = coord.orders.get(coid)
            if order.key[0] != msg.account or rec is None or rec["status"] not in OPEN_STATUSES:
                continue
            at = rec.get("at")
            if (at is not None and at >= asked) or coid in coord.awaiting_durable:
                continue
            eligible.append(coid)
    done = {"synthesized_fills": apply_missing_fills(coord, msg), "synthesized_acks": 0,
            "resubmitted": 0, "closed": 0}
    working = set(msg.open_order_ids)
    for coid in msg.open_order_ids:
        rec = coord.orders.get(coid)
        if rec is not None and rec["status"] in UNSENT_OR_UNSEEN and coid in coord.book.inflight:
            _synthesize_ack(coord, coid, msg)  # working there: the ack was lost
            done["synthesized_acks"] += 1
    for coid in eligible:
        order = coord.book.inflight.get(coid)
        if coid in working or order is None:  # working, or completely filled just now
            continue
        status = coord.orders[coid]["status"]
        if status in UNSENT_OR_UNSEEN:
            done["resubmitted" if _resubmit(coord, coid, order, msg) else "closed"] += 1
        else:
            # Acknowledged once, not working now, its fills all applied: the
            # broker ended it (a cancel or expiry whose report was lost).
            _close(coord, coid, order, "canceled", "not_open_at_broker", msg.source,
                   OrderExpired(coid, order.key[2], order.remaining,
                                "reconciliation: no longer open at the exchange",
                                coord.ctx.clock.now()))
            done["closed"] += 1
    for coid in [c for c in coord.resubmitted if c not in coord.book.inflight]:
        del coord.resubmitted[coid]
    if any(done.values()) or not judge:
        coord.log.info("orders reconciled ({}): {}{}", msg.source, done,
                       "" if judge else "; round older than this instance, orders not judged")
    return done


def apply_missing_fills(coord: Any, msg: BrokerOrders) -> int:
    """Fills the broker made that the runtime never saw (stream gap, crash).

    Each goes through the coordinator's own fill path, so position, store,
    status and the order's owner move exactly as for a live report; the fill
    id makes it count once. Fills of orders this store never placed (another
    client on the account) are left to the positions reconciliation. A
    synthesized fill marks its position key as touched just before the
    question left: a positions answer asked earlier may lack it, one asked
    later includes it (the broker answers in order).
    """
    applied = 0
    floor = msg.requested_at - ONE_US
    for fill in msg.fills:
        if fill.fill_id in coord.book.fills:
            continue
        if fill.client_order_id not in coord.orders:
            coord.counts["unknown_fills_skipped"] += 1
            continue
        order = coord.book.inflight.get(fill.client_order_id)
        key = order.key if order is not None else (fill.account, coord.venue, fill.symbol)
        before = coord.last_activity.get(key)
        coord.on_filled(fill)
        coord.last_activity[key] = floor if before is None else max(before, floor)
        applied += 1
        coord.counts["synthesized_fills"] += 1
        coord.audit.record(kind="synthesized_fill", reason="broker_wins", ts=coord.ctx.clock.now(),
                           inputs={"symbol": fill.symbol, "side": str(fill.side),
                                   "qty": str(fill.qty), "price": str(fill.price),
                                   "fill_id": fill.fill_id, "leaves_qty": str(fill.leaves_qty),
                                   "source": msg.source},
                           client_order_id=fill.client_order_id)
    return applied


def _synthesize_ack(coord: Any, coid: str, msg: BrokerOrders) -> None:
    """An order the store calls unsent or unanswered works at the broker:
    the acknowledgement was lost (crash, stream gap). Applied through the
    normal ack path, so its status no longer says "in doubt"."""
    order = coord.book.inflight[coid]
    status = coord.orders[coid]["status"]
    coord.on_acked(OrderAcked(order.client_order_id, "unknown (reconciled)", Symbol(order.key[2]),
                              coord.ctx.clock.now()))
    coord.counts["synthesized_acks"] += 1
    coord.audit.record(kind="synthesized_ack", reason="broker_wins", ts=coord.ctx.clock.now(),
                       inputs={"symbol": order.key[2], "status_before": status,
                               "source": msg.source},
                       client_order_id=coid)


def _resubmit(coord: Any, coid: str, order: InFlight, msg: BrokerOrders) -> bool:
    """Send the stored request again, same client order id (rule 15).

    The broker has it neither working nor filled: either it never arrived,
    and this sends it, or the broker knew and ended it, and refuses the
    duplicate id (``close_dead_resubmission``). Never a second order.
    """
    store = coord.ctx.services.get("store")
    rec = store.get(StoreDb.ORDERS, coid) if store is not None else None
    request = rec.get("order") if isinstance(rec, dict) else None
    now = coord.ctx.clock.now()
    if not isinstance(request, OrderRequest):
        coord.log.error("cannot resubmit {}: no stored request", coid)
        _close(coord, coid, order, "rejected", "no_stored_request", msg.source,
               OrderRejected(order.client_order_id, Symbol(order.key[2]),
                             "reconciliation: no stored request", now))
        return False
    from trading.gate import HALTED

    if coord.state.trading_state == HALTED and not request.reduce_only:
        _close(coord, coid, order, "rejected", "halted", msg.source,
               OrderRejected(request.client_order_id, request.symbol, "halted: not resubmitted while the kill "
                             "switch is on", now))
        return False
    coord.ctx.tell(coord.gateway, SubmitOrder(request))
    coord.resubmitted[coid] = now
    coord.counts["resubmitted"] += 1
    coord.last_activity[order.key] = now
    status = coord.orders[coid]["status"]
    coord._set_status(coid, "submitted")  # stamped after it left (see reconcile_orders)
    coord.audit.record(kind="resubmitted", reason="not_at_broker", ts=now,
                       inputs={"symbol": request.symbol, "side": str(request.side),
                               "qty": str(request.qty), "remaining": str(order.remaining),
                               "status_before": status, "source": msg.source},
                       client_order_id=coid)
    coord.log.warning("order {} ({}) neither working nor filled at the broker: resubmitted with "
                      "the same id", coid, status)
    return True


def close_dead_resubmission(coord: Any, ev: OrderRejected) -> None:
    """The broker refused a resubmission as a duplicate: it had the order,
    and (at the resync) neither worked nor filled it, so it is over."""
    order = coord.book.inflight.get(ev.client_order_id)
    coord.resubmitted.pop(ev.client_order_id, None)
    if order is None:
        return
    _close(coord, ev.client_order_id, order, "rejected", "ended_at_broker", "resubmission", ev)


def _close(coord: Any, coid: str, order: InFlight, status: str, reason: str, source: str,
           event: Any) -> None:
    coord.book.close_inflight(coid)
    coord._set_status(coid, status)
    coord.counts["closed_by_reconciliation"] += 1
    coord.audit.record(kind="order_closed", reason=reason, ts=coord.ctx.clock.now(),
                       inputs={"symbol": order.key[2], "side": str(order.side),
                               "qty": str(order.qty), "filled": str(order.filled),
                               "status": status, "source": source},
                       client_order_id=coid)
    coord.log.warning("order {} closed by reconciliation: {} ({})", coid, reason, status)
    if order.owner:
        coord.ctx.tell(order.owner, event)
