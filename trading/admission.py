"""Admitting an order into the ledger: one gate decision, audited, and a write-ahead intent (rules 1-5).

Every order, whatever its purpose, comes in here as an ``Intent``: it is
conformed to the venue's lot step and tick, judged by the risk gate
(``trading.gate.decide``), and the decision is one audit record, approved
or not. An approved order gets its client order id (rule 15), enters the
book's in-flight orders at once (so the next decision counts it, rule 2),
and is written to the store as an intent; it leaves for the gateway only
once that write is durable (``OrderLedger.on_durable``).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from messages.control import IntentAccepted, IntentRejected, OrderIntent
from messages.enums import OrderPurpose, OrderType
from messages.orders import ExitPlan, OrderRequest, Signal, merge_plan
from messages.persistence import Ack, Put, StoreDb
from messages.types import ClientOrderId, Price, as_price
from trading.positions import InFlight
from trading.effects import Effects
from trading.gate import Intent, decide
from trading.reasons import Reason
from trading.venue_rules import conform

if TYPE_CHECKING:
    from trading.ledger import OrderLedger


def signal_intent(sig: Signal, venue: str) -> tuple[Intent, ExitPlan | None]:
    """A strategy's signal as the gate sees it (an entry at market), and its exit plan."""
    plan = sig.exit_plan
    return Intent(sig.symbol, sig.side, sig.qty, account=sig.account, venue=venue,
                  purpose=OrderPurpose.ENTRY, reduce_only=sig.reduce_only,
                  stop_loss=as_price(plan.stop_loss if plan else None),
                  order_type=OrderType.MARKET), plan


def order_intent(it: OrderIntent, venue: str) -> tuple[Intent, ExitPlan | None]:
    """An actor's order intent as the gate sees it, and its exit plan (its stop-loss merged in)."""
    plan = merge_plan(it.stop_loss, it.exit_plan)
    return Intent(it.symbol, it.side, it.qty, account=it.account, venue=venue,
                  purpose=it.purpose, reduce_only=it.reduce_only,
                  stop_loss=as_price(plan.stop_loss if plan else None),
                  limit_price=it.price, owner=it.owner, order_type=it.order_type,
                  trigger_price=it.trigger_price), plan


def admit(ledger: OrderLedger, intent: Intent, order_type: OrderType, *,
          price: Price | None = None, trigger: Price | None = None, tag: str | None = None,
          group_id: str | None = None, source: str = "intent",
          exit_plan: ExitPlan | None = None) -> Effects:
    """Judge ``intent``; if approved, record it in the ledger as a write-ahead intent."""
    fx = Effects()
    mono, now = ledger.clock.monotonic(), ledger.clock.now()
    limits = ledger.limits
    gate = ledger.risk.gate_for_decision(ledger.sync.fresh(
        mono, ledger.stream_reconciling, limits.positions_stale_after_s))
    notes: dict[str, str] = {}
    rules = limits.instrument_rules.get(intent.symbol)
    if rules is not None and isinstance(intent.qty, Decimal):
        # the venue's lot step and tick (trading.venue_rules): quantity rounded
        # down, prices on the tick in the passive direction, before the decision
        c = conform(rules, intent.side, intent.qty, price=price, trigger=trigger,
                    market=order_type in (OrderType.MARKET, OrderType.STOP_MARKET))
        notes = c.notes
        price, trigger = c.price, c.trigger
        intent = replace(intent, qty=c.qty if c.qty > 0 else intent.qty,
                         limit_price=c.price if intent.limit_price is not None else None,
                         trigger_price=c.trigger)
    decision = decide(intent, gate, mono)
    if notes:
        decision.inputs.update(notes)
    coid = ClientOrderId(ledger.next_id()) if decision.approved else None
    fx.record(kind="risk_decision", reason=str(decision.reason), approved=decision.approved,
              ts=now, inputs=decision.inputs, client_order_id=coid, tag=tag, source=source,
              order_type=str(order_type), risk_reducing=decision.risk_reducing)
    if not decision.approved:
        ledger.rejected[str(decision.reason)] += 1
        if decision.reason is Reason.NETTING_CONFLICT:
            ledger.counts["blocked_by_invariant"] += 1
            ledger.blocked.append({"symbol": intent.symbol, "side": str(intent.side),
                                   "qty": str(intent.qty), "at": now.isoformat()})
        if intent.owner:
            fx.send(intent.owner, IntentRejected(tag, intent.symbol, str(decision.reason), now,
                                                 position=ledger.book.qty(intent.key)))
        return fx
    ledger.counts["approved"] += 1
    assert coid is not None  # allocated above for every approved decision
    # The approval reaches the OS before the intent can become durable: a
    # killed process must not leave an order that will be (re)sent with no
    # audit record of its decision (rules 1 and 10).
    fx.flush_audit()
    order = OrderRequest(coid, intent.symbol, intent.side, order_type, intent.qty, now,
                         price=price, trigger_price=trigger,
                         reduce_only=intent.reduce_only or decision.risk_reducing,
                         account=intent.account, purpose=intent.purpose, group_id=group_id)
    ledger.book.add_inflight(InFlight(coid, intent.key, intent.side, intent.qty, intent.purpose,
                                      order.reduce_only, owner=intent.owner,
                                      stop_loss=intent.stop_loss, exit_plan=exit_plan))
    ledger.orders.add(coid, {"status": "intent", "owner": intent.owner, "tag": tag,
                             "purpose": str(intent.purpose), "symbol": intent.symbol, "at": now})
    ledger.awaiting_durable[coid] = order
    # Write-ahead intent: the order leaves only once this write is durable.
    record: dict[str, Any] = {"order": order, "status": "intent", "owner": intent.owner,
                              "stop_loss": intent.stop_loss, "venue": ledger.venue}
    if exit_plan is not None:
        record["exit_plan"] = exit_plan
    fx.store(Put(StoreDb.ORDERS, coid, record, ack=Ack(ledger.peers.me, coid)))
    if intent.owner:
        fx.send(intent.owner, IntentAccepted(tag, coid, intent.symbol, now))
    return fx
