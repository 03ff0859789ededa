"""State of one exit plan (rule 8), kept apart from the actor that drives it.

A :class:`Stop` is one entry order's exit plan: how much is protected, the
exit orders sent for it (SL-limits, a take-profit limit, at most the market
remainder), their fills by fill id, what was released because the position
shrank by other means (a strategy's own exit, a broker correction), the
trailing stop's level, the time limit, and the phase (protecting ->
triggered -> cancelling -> done). The orders are one contingent group: the
quantities the manager decides on are derived here, never stored twice:
``exited`` is the sum of the exit orders' fills, ``open_qty`` is protected -
exited - released, and ``live(kind)`` is what orders of a kind (intents not
yet answered included) could still fill. Every order is sized from
``open_qty``, so a fill of one (or a release) shrinks what the others may
still take. The record round-trips through the store so a restarted manager
resumes the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from messages.control import OrderIntent
from messages.enums import OrderPurpose, OrderType, Side
from messages.market import Quote
from messages.types import Account, Price, Quantity, Symbol, as_price
from trading.fill_tracking import FillTracking

ZERO = Decimal(0)
BPS = Decimal(10_000)
PRICE_QUANTUM = Decimal("0.00000001")
PROTECTING, TRIGGERED, CANCELLING, DONE = "protecting", "triggered", "cancelling", "done"
LIMIT, MARKET, TAKE_PROFIT = "limit", "market", "take_profit"
#: orders that rest at the venue until something fills or cancels them
RESTING = (LIMIT, TAKE_PROFIT)


@dataclass
class ExitOrder(FillTracking):
    kind: str
    qty: Decimal
    fills: dict[str, Decimal] = field(default_factory=dict)
    #: None while it can still fill; else filled / canceled / already_filled / unknown / ...
    closed: str | None = None
    cancel_requested: bool = False


@dataclass
class Stop:
    """One entry order's protection and, when it triggers, its exit."""

    stop_id: str
    symbol: Symbol
    account: Account
    position_side: Side
    stop_price: Price | None
    protected: Quantity = Quantity(ZERO)
    phase: str = PROTECTING
    triggered_at: datetime | None = None
    fallback_at: datetime | None = None
    alerted: bool = False
    failures: int = 0
    retry_wait: bool = False
    seq: int = 0
    orders: dict[str, ExitOrder] = field(default_factory=dict)
    #: intents sent, not yet accepted or refused: tag -> (kind, qty)
    pending: dict[str, tuple[str, Quantity]] = field(default_factory=dict)
    outcome: str | None = None
    entry_id: str = ""
    take_profit: Decimal | None = None
    trail_distance: Decimal | None = None
    trail_percent: Decimal | None = None
    #: the trailing stop: best price seen, the level, when it last moved
    trail_anchor: Decimal | None = None
    trail_level: Decimal | None = None
    trail_moved_at: datetime | None = None
    #: when the time limit closes what is left
    deadline: datetime | None = None
    #: let go because the position shrank by other means (never sent)
    released: Decimal = ZERO
    release_cause: str | None = None
    #: why a forced exit began (trailing, time_limit); None for the stop itself
    exit_kind: str | None = None
    #: a refused exit alerts once per plan, however often it is retried
    refusal_alerted: bool = False

    def __post_init__(self) -> None:
        self.entry_id = self.entry_id or self.stop_id

    @property
    def exit_side(self) -> Side:
        return self.position_side.opposite()

    @property
    def exited(self) -> Decimal:
        return sum((o.filled for o in self.orders.values()), ZERO)

    @property
    def open_qty(self) -> Decimal:
        return self.protected - self.exited - self.released

    @property
    def trailing(self) -> bool:
        return self.trail_distance is not None or self.trail_percent is not None

    @property
    def watches_quotes(self) -> bool:
        return self.phase == PROTECTING and (self.stop_price is not None or self.trailing)

    def filled_by(self, kind: str) -> Decimal:
        return sum((o.filled for o in self.orders.values() if o.kind == kind), ZERO)

    def resting_live(self) -> Decimal:
        return sum((self.live(k) for k in RESTING), ZERO)

    def live(self, kind: str) -> Decimal:
        """Quantity of ``kind`` orders that may still fill (pending intents included)."""
        return (sum((o.live_qty for o in self.orders.values() if o.kind == kind), ZERO)
                + sum((q for k, q in self.pending.values() if k == kind), ZERO))

    def crossed(self, q: Quote) -> bool:
        """The market reached the stop: the side an exit would trade against."""
        if self.stop_price is None:
            return False
        if self.position_side is Side.BUY:
            return q.bid <= self.stop_price
        return q.ask >= self.stop_price

    def limit_price(self, slippage_bps: Decimal) -> Price:
        assert self.stop_price is not None, "an SL-limit needs the plan's stop price"
        bound = self.stop_price * slippage_bps / BPS
        price = self.stop_price - bound if self.exit_side is Side.SELL else self.stop_price + bound
        return Price(Decimal(f"{price.quantize(PRICE_QUANTUM).normalize():f}"))  # 94.525, never 1E+2

    def row(self) -> dict[str, Any]:
        """The plan for people (``/actors``, the report): plain strings, no Decimals."""
        return {"symbol": self.symbol, "phase": self.phase, "stop_price": _s(self.stop_price),
                "protected": str(self.protected), "exited": str(self.exited),
                "orders": len(self.orders), "pending": len(self.pending),
                "take_profit": _s(self.take_profit), "trail_level": _s(self.trail_level),
                "released": str(self.released),
                "deadline": self.deadline.isoformat() if self.deadline else None}

    def record(self) -> dict[str, Any]:
        return {"v": 2, "stop_id": self.stop_id, "symbol": self.symbol, "account": self.account,
                "position_side": self.position_side.value, "stop_price": self.stop_price,
                "protected": self.protected, "phase": self.phase,
                "triggered_at": self.triggered_at, "fallback_at": self.fallback_at,
                "alerted": self.alerted, "failures": self.failures, "seq": self.seq,
                "outcome": self.outcome, "entry_id": self.entry_id,
                "take_profit": self.take_profit, "trail_distance": self.trail_distance,
                "trail_percent": self.trail_percent, "trail_anchor": self.trail_anchor,
                "trail_level": self.trail_level, "trail_moved_at": self.trail_moved_at,
                "deadline": self.deadline, "released": self.released,
                "release_cause": self.release_cause, "exit_kind": self.exit_kind,
                "refusal_alerted": self.refusal_alerted,
                "orders": {c: {"kind": o.kind, "qty": o.qty, "fills": dict(o.fills),
                               "closed": o.closed, "cancel_requested": o.cancel_requested}
                           for c, o in self.orders.items()},
                "pending": {t: {"kind": k, "qty": q} for t, (k, q) in self.pending.items()}}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Stop:
        st = cls(r["stop_id"], r["symbol"], r["account"], Side(r["position_side"]),
                 _price(r["stop_price"]), Quantity(Decimal(r["protected"])), r["phase"],
                 r["triggered_at"],
                 r["fallback_at"], r["alerted"], r["failures"], False, r["seq"], {}, {},
                 r.get("outcome"), r.get("entry_id", ""),
                 _dec(r.get("take_profit")), _dec(r.get("trail_distance")),
                 _dec(r.get("trail_percent")), _dec(r.get("trail_anchor")),
                 _dec(r.get("trail_level")), r.get("trail_moved_at"), r.get("deadline"),
                 Decimal(r.get("released", ZERO)), r.get("release_cause"), r.get("exit_kind"),
                 bool(r.get("refusal_alerted", False)))
        for coid, o in r["orders"].items():
            st.orders[coid] = ExitOrder(o["kind"], Decimal(o["qty"]), dict(o["fills"]),
                                        o["closed"], o["cancel_requested"])
        st.pending = {t: (p["kind"], Quantity(Decimal(p["qty"]))) for t, p in r["pending"].items()}
        return st


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _price(value: Any) -> Price | None:
    return None if value is None else Price(Decimal(value))


def parse_tag(tag: str) -> tuple[str, Quantity]:
    """(kind, qty) from a tag the manager made, for an acceptance whose intent it no longer holds."""
    _stop_id, _seq, kind, qty = tag.rsplit("|", 3)
    return kind, Quantity(Decimal(qty))


def exit_intent(st: Stop, kind: str, qty: Quantity, tag: str, *, slippage_bps: Decimal,
                owner: str, now: datetime) -> OrderIntent:
    """The reduce-only order an exit of ``kind`` sends through the coordinator (rule 1):
    the SL-limit at the stop, limit worsened by ``slippage_bps``; the take-profit
    limit; or the market order for the rest."""
    if kind == LIMIT:
        return OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                           order_type=OrderType.STOP_LIMIT, price=st.limit_price(slippage_bps),
                           trigger_price=st.stop_price, reduce_only=True,
                           account=st.account, owner=owner, tag=tag)
    if kind == TAKE_PROFIT:
        return OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                           order_type=OrderType.LIMIT, price=as_price(st.take_profit),
                           reduce_only=True, account=st.account, owner=owner, tag=tag)
    return OrderIntent(st.symbol, st.exit_side, qty, OrderPurpose.STOP, now,
                       order_type=OrderType.MARKET, reduce_only=True,
                       account=st.account, owner=owner, tag=tag)
