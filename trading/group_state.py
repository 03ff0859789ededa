"""State of one order group (rule 6), kept apart from the actor that drives it.

The state machine::

    pending -> submitting -> partially_filled -> filled
       |            \\               |
       |             +--------------+--> rolling_back -> rolled_back
       +-> failed (margin gate, no market)        \\-> failed (residue to the hedger)

Quantities are derived, never stored twice: a leg's ``held`` quantity is
what its orders filled, minus what unwind orders took back, minus what was
handed to the hedger. ``unhedged`` is the part of each leg's holding that
the other legs do not match in proportion, i.e. the legging exposure the
100 ms check watches. The record round-trips through the store (msgpack:
Decimals, datetimes, no floats), so a restarted group resumes the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from messages.types import Quantity
from trading.group_spec import GroupSpec, LegSpec, parse_group
from trading.fill_tracking import FillTracking

ZERO = Decimal(0)
PENDING, SUBMITTING = "pending", "submitting"
PARTIALLY_FILLED, FILLED = "partially_filled", "filled"
ROLLING_BACK, ROLLED_BACK, FAILED = "rolling_back", "rolled_back", "failed"
STATES = (PENDING, SUBMITTING, PARTIALLY_FILLED, FILLED, ROLLING_BACK, ROLLED_BACK, FAILED)
TERMINAL = frozenset({FILLED, ROLLED_BACK, FAILED})
TRANSITIONS = {
    PENDING: {SUBMITTING, FAILED},
    SUBMITTING: {PARTIALLY_FILLED, FILLED, ROLLING_BACK},
    PARTIALLY_FILLED: {FILLED, ROLLING_BACK},
    ROLLING_BACK: {ROLLED_BACK, FAILED},
}
LEG, UNWIND = "leg", "unwind"


class BadTransition(RuntimeError):
    """A bug: the actor asked for a transition the state machine does not have."""


@dataclass
class GroupOrder(FillTracking):
    """One order the group sent: a leg's opening order or an unwind of a leg."""

    kind: str                 # LEG / UNWIND
    leg: int                  # spec index of the leg
    side: str
    qty: Decimal
    sent_at: datetime
    fills: dict[str, Decimal] = field(default_factory=dict)
    #: None while it can still fill; else filled / rejected / canceled / expired / ...
    closed: str | None = None
    cancel_requested: bool = False


@dataclass
class PendingIntent:
    kind: str
    leg: int
    side: str
    qty: Quantity
    sent_at: datetime


def make_tag(group_id: str, seq: int, p: PendingIntent) -> str:
    return f"{group_id}|{seq}|{p.kind}|{p.leg}|{p.side}|{p.qty}"


def parse_tag(tag: str, sent_at: datetime) -> PendingIntent | None:
    try:
        _gid, _seq, kind, leg, side, qty = tag.split("|")
        return PendingIntent(kind, int(leg), side, Quantity(Decimal(qty)), sent_at)
    except (ValueError, ArithmeticError):
        return None


@dataclass
class Group:
    spec: GroupSpec
    created_at: datetime
    state: str = PENDING
    reason: str | None = None
    orders: dict[str, GroupOrder] = field(default_factory=dict)
    pending: dict[str, PendingIntent] = field(default_factory=dict)
    seq: int = 0
    history: list[tuple[str, str | None, datetime]] = field(default_factory=list)
    submitted_at: datetime | None = None
    margin: dict[str, Any] | None = None
    unwind_failures: dict[int, int] = field(default_factory=dict)
    handed_off: dict[int, Decimal] = field(default_factory=dict)
    #: why unwinding gave up: the residue goes to the hedger once nothing can fill
    handoff: str | None = None
    settled: bool = False

    @property
    def group_id(self) -> str:
        return self.spec.group_id

    @property
    def legs(self) -> tuple[LegSpec, ...]:
        return self.spec.legs  # priority order

    def leg(self, index: int) -> LegSpec:
        return next(g for g in self.legs if g.index == index)

    # -- transitions ------------------------------------------------------------------------

    def transition(self, new: str, reason: str | None, ts: datetime) -> str:
        old = self.state
        if new == old:
            return old
        if new not in TRANSITIONS.get(old, ()):
            raise BadTransition(f"group {self.group_id}: {old} -> {new} is not a transition")
        self.state, self.reason = new, reason
        self.history.append((new, reason, ts))
        return old

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    # -- quantities ----------------------------------------------------------------------------

    def _orders(self, kind: str, leg: int) -> list[GroupOrder]:
        return [o for o in self.orders.values() if o.kind == kind and o.leg == leg]

    def _pending(self, kind: str, leg: int) -> list[PendingIntent]:
        return [p for p in self.pending.values() if p.kind == kind and p.leg == leg]

    def filled(self, leg: int) -> Decimal:
        return sum((o.filled for o in self._orders(LEG, leg)), ZERO)

    def unwound(self, leg: int) -> Decimal:
        return sum((o.filled for o in self._orders(UNWIND, leg)), ZERO)

    def held(self, leg: int) -> Decimal:
        """What the group still holds from ``leg`` (unsigned, in the leg's direction)."""
        return self.filled(leg) - self.unwound(leg) - self.handed_off.get(leg, ZERO)

    def live(self, kind: str, leg: int) -> Decimal:
        """Quantity of ``kind`` orders for ``leg`` that may still fill (intents included)."""
        return (sum((o.live_qty for o in self._orders(kind, leg)), ZERO)
                + sum((p.qty for p in self._pending(kind, leg)), ZERO))

    def sent(self, leg: int) -> bool:
        return bool(self._orders(LEG, leg) or self._pending(LEG, leg))

    def accepted(self, leg: int) -> bool:
        return bool(self._orders(LEG, leg))

    def complete(self) -> bool:
        return all(self.filled(g.index) >= g.qty for g in self.legs)

    def any_fill(self) -> bool:
        return any(o.filled > 0 for o in self.orders.values())

    def open_orders(self) -> list[tuple[str, GroupOrder]]:
        return [(c, o) for c, o in self.orders.items() if not o.closed]

    def quiet(self) -> bool:
        """Nothing of ours can still fill or answer (no open order, no pending intent)."""
        return not self.pending and not self.open_orders()

    def unhedged(self) -> dict[str, Decimal]:
        """Signed quantity per leg symbol not matched, in proportion, by the other legs."""
        ratios = [self.held(g.index) / g.qty for g in self.legs]
        done = max(ZERO, min(ratios)) if ratios else ZERO
        out: dict[str, Decimal] = {}
        for g in self.legs:
            extra = self.held(g.index) - done * g.qty
            if extra != 0:
                out[g.symbol] = g.sign * extra
        return out

    # -- record ----------------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        return {
            "v": 1, "id": self.group_id, "kind": self.spec.kind, "account": self.spec.account,
            "spec": self.spec.as_dict(), "state": self.state, "reason": self.reason,
            "created_at": self.created_at, "submitted_at": self.submitted_at, "seq": self.seq,
            "settled": self.settled, "margin": self.margin, "handoff": self.handoff,
            "legs": [{"index": g.index, "symbol": g.symbol, "side": g.side, "qty": g.qty,
                      "role": g.role, "priority": g.priority, "filled": self.filled(g.index),
                      "held": self.held(g.index)} for g in self.legs],
            "orders": {c: {"kind": o.kind, "leg": o.leg, "side": o.side, "qty": o.qty,
                           "sent_at": o.sent_at, "fills": dict(o.fills), "closed": o.closed,
                           "cancel_requested": o.cancel_requested}
                       for c, o in self.orders.items()},
            "pending": {t: {"kind": p.kind, "leg": p.leg, "side": p.side, "qty": p.qty,
                            "sent_at": p.sent_at} for t, p in self.pending.items()},
            "history": [[s, r, t] for s, r, t in self.history],
            "unwind_failures": {str(k): v for k, v in self.unwind_failures.items()},
            "handed_off": {str(k): v for k, v in self.handed_off.items()},
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Group:
        spec = replace(parse_group(_lists(rec["spec"])), kind=rec.get("kind") or "custom")
        if rec["state"] not in STATES:
            raise ValueError(f"unknown group state {rec['state']!r}")
        g = cls(spec, rec["created_at"], rec["state"], rec.get("reason"), seq=int(rec["seq"]),
                submitted_at=rec.get("submitted_at"), margin=_lists(rec.get("margin")),
                handoff=rec.get("handoff"), settled=bool(rec.get("settled")))
        for coid, o in rec["orders"].items():
            g.orders[coid] = GroupOrder(o["kind"], int(o["leg"]), o["side"], Decimal(o["qty"]),
                                        o["sent_at"], dict(o["fills"]), o["closed"],
                                        bool(o["cancel_requested"]))
        for tag, p in rec["pending"].items():
            g.pending[tag] = PendingIntent(p["kind"], int(p["leg"]), p["side"],
                                           Quantity(Decimal(p["qty"])), p["sent_at"])
        g.history = [(s, r, t) for s, r, t in rec.get("history", ())]
        g.unwind_failures = {int(k): int(v) for k, v in rec.get("unwind_failures", {}).items()}
        g.handed_off = {int(k): Decimal(v) for k, v in rec.get("handed_off", {}).items()}
        return g


def _lists(value: Any) -> Any:
    """The codec gives tuples back for lists; specs and figures want plain lists/dicts."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
