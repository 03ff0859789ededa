"""Restart safety of the stop-loss manager (``actors.stops``).

Kept apart so the manager's decisions read on their own, as
``actors.group_recovery`` is for order groups. A restarted manager rebuilds
its stops from its own record (``stop|<id>`` in ``meta``) plus the
coordinator's order, status and fill records (``actors.rebuild_gate``): the
record may be one message behind, the coordinator's records are the truth of
what left. An exit order the gate approved for the manager that its record
missed is adopted, so a restart neither repeats an exit nor forgets one;
the stop manager then re-arms each stop's timers (``_resume``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from actors.rebuild_gate import CLOSED_STATUSES, catch_up, owned_orders
from messages.enums import OrderType
from trading.stop_state import (CANCELLING, DONE, LIMIT, MARKET, PROTECTING, TAKE_PROFIT,
                                ExitOrder, Stop)

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext

KEY_PREFIX = "stop|"
#: summary.json's ``exits`` keys by outcome (shared with ``actors.stops``)
EXIT_KINDS = {TAKE_PROFIT: TAKE_PROFIT, LIMIT: "stop_loss_limit",
              "market_fallback": "stop_loss_market", "trailing": "trailing",
              "time_limit": "time_limit", "strategy": "strategy", "external": "external"}


class StopRecovery:
    """Mixin of ``StopLossManager``: ``rebuild`` (RebuildGate's hook) and adoption."""

    if TYPE_CHECKING:  # what the stop manager provides
        ctx: ActorContext
        log: Logger
        stops: dict[str, Stop]
        by_coid: dict[str, str]
        finished: set[str]
        entries_done: Counter[str]
        counts: Counter[str]
        stop_exits: Counter[str]
        exits: Counter[str]
        exit_qty: Any  # a Counter of Decimal quantities (typeshed's Counter counts ints)
        _dirty: set[str]

        def _resume(self, st: Stop) -> None: ...

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:
        meta = snapshot.get("meta", {})
        for key, rec in meta.items():
            if not key.startswith(KEY_PREFIX):
                continue
            try:
                st = Stop.from_record(rec)
            except (KeyError, TypeError, ValueError) as exc:
                self.log.error("skipping unreadable stop record {}: {!r}", key, exc)
                continue
            if st.phase == DONE:
                self.finished.update(st.orders)
                self.entries_done[st.entry_id] += 1
                outcome = st.outcome or LIMIT
                if outcome in (LIMIT, "market_fallback"):
                    self.stop_exits[outcome] += 1
                self.exits[EXIT_KINDS.get(outcome, "external")] += 1
                self.exit_qty[st.symbol] += st.exited
                continue
            self.stops[st.stop_id] = st
            self.by_coid.update({c: st.stop_id for c in st.orders})
        catch_up(snapshot, {coid: self.stops[stop_id].orders[coid]
                            for coid, stop_id in self.by_coid.items()})
        self._adopt(snapshot)
        for st in list(self.stops.values()):
            self._resume(st)
        if self.stops:
            self.log.info("rebuilt {} active stops from the store", len(self.stops))

    def _adopt(self, snapshot: dict[str, dict[str, Any]]) -> None:
        """Orders the coordinator approved for us that our record does not know."""
        for coid, owned in owned_orders(snapshot, self.ctx.name).items():
            if coid in self.by_coid or coid in self.finished:
                continue
            req = owned.request
            st = next((s for s in self.stops.values() if s.symbol == req.symbol
                       and s.account == req.account and s.exit_side is req.side), None)
            kind = {OrderType.MARKET: MARKET, OrderType.LIMIT: TAKE_PROFIT}.get(req.order_type, LIMIT)
            if st is None:
                st = Stop(f"adopted-{coid}", req.symbol, req.account, req.side.opposite(),
                          req.trigger_price if kind == LIMIT else None, req.qty,
                          PROTECTING if kind != MARKET else CANCELLING,
                          take_profit=req.price if kind == TAKE_PROFIT else None)
                self.stops[st.stop_id] = st
            st.orders[coid] = ExitOrder(kind, req.qty, dict(owned.fills),
                                        CLOSED_STATUSES.get(owned.status or ""))
            self.by_coid[coid] = st.stop_id
            self.counts["adopted_orders"] += 1
            self.log.warning("adopted exit order {} ({} {}) from the coordinator's records",
                             coid, kind, req.qty)
            self._dirty.add(st.stop_id)
