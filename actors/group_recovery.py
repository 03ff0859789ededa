"""Restart safety and figures of an order group (``actors.order_group``).

Kept apart so the group's decisions read on their own. The house style of a
restart-safe order owner (see ``actors.stops``): the record is written after
every message, *before* the orders that message decided leave (write, then
send); a restarted group rebuilds from its record plus the coordinator's own
order, status and fill records (``actors.rebuild_gate``), adopting any order
the gate approved for it that the record missed, so a restart neither
repeats a leg nor forgets one. Messages addressed to the group while it
restarts are held and applied once, after the rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from actors.rebuild_gate import CLOSED_STATUSES, catch_up, owned_orders
from messages.enums import OrderPurpose
from messages.persistence import Put, StoreDb
from trading.group_state import LEG, PENDING, UNWIND, Group, GroupOrder

if TYPE_CHECKING:
    from collections import Counter

    from loguru import Logger

    from runtime.context import ActorContext
    from trading.group_spec import GroupSpec

KEY_PREFIX = "group|"


@dataclass(frozen=True)
class GroupSettings:
    exposure_check_s: float = 0.1
    leg_timeout_s: float = 5.0
    margin_limit: Decimal = Decimal("0.90")
    grid: Any = None                     # exchange.margin.ShockGrid (None: the default grid)
    max_unwind_attempts: int = 2
    retry_s: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> GroupSettings:
        from trading.group_margin import grid_from_config

        return cls(cfg.exposure_check_ms / 1000.0, float(cfg.leg_timeout_s),
                   Decimal(cfg.margin_limit), grid_from_config(cfg.shock_grid))


# -- timers (to self only) ----------------------------------------------------------------------

@dataclass(frozen=True)
class ExposureCheck:
    pass


@dataclass(frozen=True)
class SnapshotDue:
    request_id: str


@dataclass(frozen=True)
class IntentDue:
    tag: str


@dataclass(frozen=True)
class RetryDue:
    leg: int


@dataclass(frozen=True)
class LingerDone:
    pass


class GroupRecovery:
    """Mixin for :class:`actors.order_group.OrderGroup` (listed before RebuildGate)."""

    if TYPE_CHECKING:  # what the order group provides
        ctx: ActorContext
        log: Logger
        g: Group | None
        group_id: str
        spec: GroupSpec | None
        cfg: GroupSettings
        persistence: str
        counts: Counter[str]
        max_unhedged: dict[str, Decimal]
        _dirty: bool
        _check_timer: int | None

        @property
        def key(self) -> str: ...
        def _begin(self, spec: GroupSpec) -> None: ...
        def _request_book(self) -> None: ...
        def _timer(self, delay: float, msg: Any) -> None: ...
        def _drive(self) -> None: ...

    def _group(self) -> Group:
        """The group's state, for the steps that run only once it was begun or rebuilt."""
        g = self.g
        if g is None:
            raise RuntimeError(f"order group {self.group_id} has no state yet")
        return g

    def persist_changes(self) -> None:
        if self._dirty and self.g is not None:
            self.ctx.tell(self.persistence, Put(StoreDb.GROUPS, self.key, self.g.record()))
        self._dirty = False

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:
        rec = snapshot.get("groups", {}).get(self.key)
        try:
            self.g = Group.from_record(rec) if rec is not None else None
        except (KeyError, TypeError, ValueError) as exc:
            self.log.error("unreadable group record {}: {!r}", self.key, exc)
            self.g = None
        if self.g is None:
            if self.spec is None:
                self.log.error("group {}: no record and no spec; nothing to resume", self.group_id)
                self.ctx.stop_self("nothing to resume")
                return
            self._begin(self.spec)
            return
        g = self._group()
        self.counts["restarts"] += 1
        catch_up(snapshot, g.orders)
        self._adopt(snapshot)
        self._resume()

    def _adopt(self, snapshot: dict[str, dict[str, Any]]) -> None:
        """Orders the gate approved for us that our record missed (we died before the
        acceptance arrived): matched to the pending intent by leg and kind."""
        g = self._group()
        for coid, owned in owned_orders(snapshot, self.ctx.name).items():
            if coid in g.orders:
                continue
            req = owned.request
            kind = UNWIND if req.purpose is OrderPurpose.ROLLBACK else LEG
            leg = next((x.index for x in g.legs if x.symbol == req.symbol), None)
            if leg is None:
                continue
            tag = next((t for t, p in g.pending.items() if p.kind == kind and p.leg == leg
                        and p.qty == req.qty), None)
            sent_at = g.pending.pop(tag).sent_at if tag else req.ts
            o = g.orders[coid] = GroupOrder(kind, leg, req.side.value, req.qty, sent_at,
                                            dict(owned.fills),
                                            CLOSED_STATUSES.get(owned.status or ""))
            if o.filled >= o.qty:
                o.closed = o.closed or "filled"
            self.counts["adopted_orders"] += 1
            self._dirty = True

    def _resume(self) -> None:
        g = self._group()
        self._dirty = True
        if g.state == PENDING:
            self._request_book()
            return
        if not g.terminal:
            self._check_timer = self.ctx.schedule(self.cfg.exposure_check_s, ExposureCheck(),
                                                  interval_s=self.cfg.exposure_check_s)
        for tag in g.pending:
            self._timer(self.cfg.leg_timeout_s, IntentDue(tag))
        if g.settled:
            self._timer(0.0, LingerDone())
            return
        self._drive()

    # -- introspection --------------------------------------------------------------------------

    def _publish(self) -> None:
        g = self.g
        self.ctx.cell.info = {} if g is None else {
            "group_id": g.group_id, "kind": g.spec.kind, "state": g.state, "reason": g.reason,
            "settled": g.settled,
            "legs": [{**leg_info(x), "filled": str(g.filled(x.index)),
                      "held": str(g.held(x.index))} for x in g.legs],
            "unhedged": {s: str(q) for s, q in g.unhedged().items()},
            "max_unhedged": {s: str(q) for s, q in self.max_unhedged.items()},
            "open_orders": len(g.open_orders()), "pending": len(g.pending),
            "margin": g.margin, "counts": dict(self.counts),
        }


def leg_info(leg: Any) -> dict[str, Any]:
    return {"symbol": leg.symbol, "side": leg.side, "qty": str(leg.qty), "role": leg.role,
            "priority": leg.priority, "price": None if leg.price is None else str(leg.price)}


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
