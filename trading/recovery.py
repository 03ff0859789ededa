"""Start-up recovery and reconciliation of the order ledger with the broker (rules 10, 11, 15).

Functions over an :class:`~trading.ledger.OrderLedger`, each adding what it
decided to an :class:`~trading.effects.Effects`: no actor is needed to run
or test them. :func:`rebuild` loads the ledger from the store on start;
:func:`reconcile_orders` settles its open orders against the broker's
answer after every resync (positions are settled by
``trading.position_sync``).

The broker wins every divergence, by synthesizing the missing events rather
than by overwriting: a fill the runtime missed goes through the ledger's
normal fill path (position, store, the order's owner); an order the broker
never got is resubmitted with the same client order id, so the broker
refuses it if it did get it after all; an order the broker no longer works
is closed. Each correction is one audit record.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from messages.control import BrokerOrders
from messages.exchange import OrderExpired, SubmitOrder
from messages.orders import ExitPlan, OrderAcked, OrderRejected, OrderRequest, merge_plan
from messages.persistence import StoreDb
from messages.types import Price, Quantity, Symbol
from trading.positions import ZERO, InFlight, Position
from trading.effects import Effects
from trading.order_records import OPEN_STATUSES, UNSENT_OR_UNSEEN
from trading.store_keys import (KILL_SWITCH_KEY, ORDER_STATUS_PREFIX, order_status_key,
                                position_put)

if TYPE_CHECKING:
    from trading.ledger import OrderLedger

__all__ = ["KILL_SWITCH_KEY", "ORDER_STATUS_PREFIX", "OPEN_STATUSES", "UNSENT_OR_UNSEEN",
           "order_status_key", "position_put", "rebuild", "reconcile_orders",
           "apply_missing_fills", "close_dead_resubmission"]

ONE_US = timedelta(microseconds=1)


def rebuild(ledger: OrderLedger, store: Any) -> None:
    """Positions, fill ids, open orders and the kill switch as the store last saw them.

    The kill switch is restored because a crash must never be a way out of
    it (rule 5): an operator's halt, or the daily loss limit, holds until
    someone releases it, whether or not the process died in between.
    """
    ledger.risk.kill.restore_stored(store.get(StoreDb.META, KILL_SWITCH_KEY))
    book = ledger.book
    for key, rec in store.items(StoreDb.POSITIONS):
        parts = tuple(key.split("|"))
        if len(parts) != 3 or not isinstance(rec, dict):
            ledger.log.error("skipping malformed position record {!r}", key)
            continue
        book.positions[(parts[0], parts[1], parts[2])] = Position(
            qty=Quantity(Decimal(rec.get("qty", ZERO))),
            avg_price=Price(Decimal(rec.get("avg_price", ZERO))),
            realized=Decimal(rec.get("realized", ZERO)))
    filled_by_order: dict[str, Decimal] = {}
    fill_ids: list[tuple[str, str]] = []
    for fill_id, fill in store.items(StoreDb.FILLS):
        coid = getattr(fill, "client_order_id", None)
        fill_ids.append((fill_id, coid or ""))
        if coid is not None:
            filled_by_order[coid] = filled_by_order.get(coid, ZERO) + fill.qty
    book.fills.load(fill_ids)
    statuses = dict(store.items(StoreDb.META, prefix=ORDER_STATUS_PREFIX))
    for coid, rec in store.items(StoreDb.ORDERS):
        order = rec.get("order") if isinstance(rec, dict) else None
        if not isinstance(order, OrderRequest):
            continue
        status = statuses.get(order_status_key(coid), rec.get("status"))
        ledger.orders.add(coid, {"status": status, "owner": rec.get("owner"), "tag": None,
                                 "purpose": str(order.purpose), "symbol": order.symbol})
        if status in OPEN_STATUSES:
            inflight = InFlight(coid, (order.account, rec.get("venue", ledger.venue), order.symbol),
                                order.side, order.qty, order.purpose, order.reduce_only,
                                owner=rec.get("owner"), stop_loss=rec.get("stop_loss"),
                                filled=Quantity(filled_by_order.get(coid, ZERO)),
                                exit_plan=_exit_plan(rec))
            if inflight.remaining > 0:
                book.add_inflight(inflight)
    ledger.protected_keys.update(o.key for o in book.inflight.values()
                                 if o.protective or o.exit_plan is not None)
    if book.positions or book.inflight:
        ledger.log.info("rebuilt from store: {} positions, {} open orders, {} fills",
                        len(book.positions), len(book.inflight), len(fill_ids))


def _exit_plan(rec: dict[str, Any]) -> ExitPlan | None:
    """The order's exit plan as stored (older records: their stop-loss alone)."""
    plan = rec.get("exit_plan")
    return merge_plan(rec.get("stop_loss"), plan if isinstance(plan, ExitPlan) else None)


# -- orders (after every resync) -------------------------------------------------------


def reconcile_orders(ledger: OrderLedger, msg: BrokerOrders, fx: Effects) -> dict[str, int]:
    """Settle the ledger's open orders against the broker's answer.

    Which orders may be judged is decided *before* the missing fills move
    any status: an order qualifies if this ledger existed when the question
    left (``requested_at >= started_at``; an older round cannot know what
    the previous instance sent last) and its status last changed before the
    question left (orders rebuilt from the store predate this instance;
    ``at`` is stamped after the order left for the gateway, so an order
    stamped earlier reached the broker before the question did). An intent
    still waiting for its durable write is never judged: it has not been
    sent, and will be.

    An order the broker works whose acknowledgement was lost is marked
    acknowledged (that needs no timing: working there proves it arrived).
    """
    asked = msg.requested_at
    judge = asked >= ledger.started_at
    eligible = []
    if judge:
        for coid, order in ledger.book.inflight.items():
            rec = ledger.orders.get(coid)
            if order.key[0] != msg.account or rec is None or rec["status"] not in OPEN_STATUSES:
                continue
            at = rec.get("at")
            if (at is not None and at >= asked) or coid in ledger.awaiting_durable:
                continue
            eligible.append(coid)
    done = {"synthesized_fills": apply_missing_fills(ledger, msg, fx), "synthesized_acks": 0,
            "resubmitted": 0, "closed": 0}
    working = set(msg.open_order_ids)
    for coid in msg.open_order_ids:
        if ledger.orders.status(coid) in UNSENT_OR_UNSEEN and coid in ledger.book.inflight:
            _synthesize_ack(ledger, coid, msg, fx)  # working there: the ack was lost
            done["synthesized_acks"] += 1
    for coid in eligible:
        still = ledger.book.inflight.get(coid)
        if coid in working or still is None:  # working, or completely filled just now
            continue
        if ledger.orders.status(coid) in UNSENT_OR_UNSEEN:
            done["resubmitted" if _resubmit(ledger, coid, still, msg, fx) else "closed"] += 1
        else:
            # Acknowledged once, not working now, its fills all applied: the
            # broker ended it (a cancel or expiry whose report was lost).
            _close(ledger, coid, still, "canceled", "not_open_at_broker", msg.source,
                   OrderExpired(coid, still.key[2], still.remaining,
                                "reconciliation: no longer open at the exchange",
                                ledger.clock.now()), fx)
            done["closed"] += 1
    for coid in [c for c in ledger.resubmitted if c not in ledger.book.inflight]:
        del ledger.resubmitted[coid]
    if any(done.values()) or not judge:
        ledger.log.info("orders reconciled ({}): {}{}", msg.source, done,
                        "" if judge else "; round older than this instance, orders not judged")
    return done


def apply_missing_fills(ledger: OrderLedger, msg: BrokerOrders, fx: Effects) -> int:
    """Fills the broker made that the runtime never saw (stream gap, crash).

    Each goes through the ledger's own fill path, so position, store, status
    and the order's owner move exactly as for a live report; the fill id
    makes it count once. Fills of orders not in memory (another client on
    the account, or an order that ended long ago and was dropped,
    ``trading.order_retention``) are left to the positions reconciliation. A
    synthesized fill marks its position key as touched just before the
    question left: a positions answer asked earlier may lack it, one asked
    later includes it (the broker answers in order).
    """
    applied = 0
    floor = msg.requested_at - ONE_US
    for fill in msg.fills:
        if fill.fill_id in ledger.book.fills:
            continue
        if fill.client_order_id not in ledger.orders:
            ledger.counts["unknown_fills_skipped"] += 1
            continue
        order = ledger.book.inflight.get(fill.client_order_id)
        key = order.key if order is not None else (fill.account, ledger.venue, fill.symbol)
        before = ledger.last_activity.get(key)
        ledger.on_filled(fill, fx)
        ledger.last_activity[key] = floor if before is None else max(before, floor)
        applied += 1
        ledger.counts["synthesized_fills"] += 1
        fx.record(kind="synthesized_fill", reason="broker_wins", ts=ledger.clock.now(),
                  inputs={"symbol": fill.symbol, "side": str(fill.side),
                          "qty": str(fill.qty), "price": str(fill.price),
                          "fill_id": fill.fill_id, "leaves_qty": str(fill.leaves_qty),
                          "source": msg.source},
                  client_order_id=fill.client_order_id)
    return applied


def _synthesize_ack(ledger: OrderLedger, coid: str, msg: BrokerOrders, fx: Effects) -> None:
    """An order the store calls unsent or unanswered works at the broker:
    the acknowledgement was lost (crash, stream gap). Applied through the
    normal ack path, so its status no longer says "in doubt"."""
    order = ledger.book.inflight[coid]
    status = ledger.orders.status(coid)
    ledger.on_acked(OrderAcked(order.client_order_id, "unknown (reconciled)",
                               Symbol(order.key[2]), ledger.clock.now()), fx)
    ledger.counts["synthesized_acks"] += 1
    fx.record(kind="synthesized_ack", reason="broker_wins", ts=ledger.clock.now(),
              inputs={"symbol": order.key[2], "status_before": status, "source": msg.source},
              client_order_id=coid)


def _resubmit(ledger: OrderLedger, coid: str, order: InFlight, msg: BrokerOrders,
              fx: Effects) -> bool:
    """Send the stored request again, same client order id (rule 15).

    The broker has it neither working nor filled: either it never arrived,
    and this sends it, or the broker knew and ended it, and refuses the
    duplicate id (``close_dead_resubmission``). Never a second order. While
    the kill switch is on, only a reduce-only request goes again (rule 5).
    """
    store = ledger.store
    rec = store.get(StoreDb.ORDERS, coid) if store is not None else None
    request = rec.get("order") if isinstance(rec, dict) else None
    now = ledger.clock.now()
    if not isinstance(request, OrderRequest):
        ledger.log.error("cannot resubmit {}: no stored request", coid)
        _close(ledger, coid, order, "rejected", "no_stored_request", msg.source,
               OrderRejected(order.client_order_id, Symbol(order.key[2]),
                             "reconciliation: no stored request", now), fx)
        return False
    if ledger.risk.kill.halted and not request.reduce_only:
        _close(ledger, coid, order, "rejected", "halted", msg.source,
               OrderRejected(request.client_order_id, request.symbol,
                             "halted: not resubmitted while the kill switch is on", now), fx)
        return False
    fx.send(ledger.peers.gateway, SubmitOrder(request))
    ledger.resubmitted[coid] = now
    ledger.counts["resubmitted"] += 1
    ledger.last_activity[order.key] = now
    status = ledger.orders.status(coid)
    ledger.orders.set_status(coid, "submitted", now, fx)
    fx.sent_stamp(coid)  # stamped after it left (see reconcile_orders)
    fx.record(kind="resubmitted", reason="not_at_broker", ts=now,
              inputs={"symbol": request.symbol, "side": str(request.side),
                      "qty": str(request.qty), "remaining": str(order.remaining),
                      "status_before": status, "source": msg.source},
              client_order_id=coid)
    ledger.log.warning("order {} ({}) neither working nor filled at the broker: resubmitted "
                       "with the same id", coid, status)
    return True


def close_dead_resubmission(ledger: OrderLedger, ev: OrderRejected, fx: Effects) -> None:
    """The broker refused a resubmission as a duplicate: it had the order,
    and (at the resync) neither worked nor filled it, so it is over."""
    order = ledger.book.inflight.get(ev.client_order_id)
    ledger.resubmitted.pop(ev.client_order_id, None)
    if order is None:
        return
    _close(ledger, ev.client_order_id, order, "rejected", "ended_at_broker", "resubmission", ev,
           fx)


def _close(ledger: OrderLedger, coid: str, order: InFlight, status: str, reason: str,
           source: str, event: Any, fx: Effects) -> None:
    ledger.book.close_inflight(coid)
    now = ledger.clock.now()
    ledger.orders.set_status(coid, status, now, fx)
    ledger.counts["closed_by_reconciliation"] += 1
    fx.record(kind="order_closed", reason=reason, ts=now,
              inputs={"symbol": order.key[2], "side": str(order.side),
                      "qty": str(order.qty), "filled": str(order.filled),
                      "status": status, "source": source},
              client_order_id=coid)
    ledger.log.warning("order {} closed by reconciliation: {} ({})", coid, reason, status)
    if order.owner:
        fx.send(order.owner, event)
