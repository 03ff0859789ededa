"""What the ledger answers or records for other actors, changing no order in it.

An order group's margin gate gets a copy of the book (the book is the
ledger's alone, so it travels by message, rule 6); the stop manager's
exit-plan changes and the order groups' decisions are written to the one
audit trail beside the risk decisions. Each returns its effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from messages.control import ExitPlanAudit, GroupAudit, PortfolioRequest, PortfolioSnapshot
from trading.effects import Effects

if TYPE_CHECKING:
    from trading.ledger import OrderLedger


def portfolio_snapshot(ledger: OrderLedger, msg: PortfolioRequest) -> Effects:
    """The account's positions, in-flight totals, quotes and equity, to ``msg.reply_to``."""
    fx = Effects()
    book, market = ledger.book, ledger.risk.market
    mine = [(key, pos) for key, pos in book.positions.items() if key[0] == msg.account]
    pending = {o.key for o in book.inflight.values() if o.key[0] == msg.account}
    fx.send(msg.reply_to, PortfolioSnapshot(
        msg.request_id, msg.account,
        tuple((key[2], pos.qty) for key, pos in mine if pos.qty != 0),
        tuple((key[2], *book.pending(key)) for key in sorted(pending)),
        tuple((sym, mv.bid, mv.ask) for sym, mv in sorted(market.items())
              if mv.bid is not None and mv.ask is not None),
        ledger.limits.account_equity + ledger.risk.pnl.daily, ledger.clock.now()))
    return fx


def exit_plan_audit(ledger: OrderLedger, msg: ExitPlanAudit) -> Effects:
    fx = Effects()
    ledger.counts["exit_plan_changes"] += 1
    fx.record(kind="exit_plan", reason=msg.reason, approved=None, ts=msg.ts,
              inputs=dict(msg.inputs), plan_id=msg.plan_id, symbol=msg.symbol)
    return fx


def group_audit(ledger: OrderLedger, msg: GroupAudit) -> Effects:
    fx = Effects()
    ledger.counts["group_decisions"] += 1
    fx.record(kind="group_decision", reason=msg.reason, approved=msg.approved, ts=msg.ts,
              inputs=dict(msg.inputs), group_id=msg.group_id, state=msg.state)
    return fx
