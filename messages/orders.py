"""Order, fill and cancel messages. Never conflated, never dropped."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from messages.base import Message, MessageError, check_decimal, check_str, check_utc, message
from messages.enums import CancelOutcome, OrderPurpose, OrderType, Side, TimeInForce
from messages.types import DEFAULT_ACCOUNT, Account, ClientOrderId, Price, Quantity, Symbol


def _check_enum(obj: Message, field: str, enum_cls: type[Enum]) -> None:
    value = getattr(obj, field)
    if isinstance(value, enum_cls):
        return
    # A decoded frame carries the value ("buy"): the member by value, as
    # ``enum_cls(value)`` finds it first, without the metaclass call
    member = enum_cls._value2member_map_.get(value) if isinstance(value, str) else None
    if member is not None:
        object.__setattr__(obj, field, member)
        return
    try:
        object.__setattr__(obj, field, enum_cls(value))
    except ValueError:
        allowed = ", ".join(e.value for e in enum_cls)
        raise MessageError(
            f"{type(obj).__name__}.{field}: {value!r} is not one of {allowed}") from None


@message
class ExitPlan(Message):
    """How an entry leaves: one contingent group of exits (the stop manager's).

    ``stop_loss`` is a resting SL-limit (rule 8), ``take_profit`` a resting
    reduce-only limit, ``trailing_distance`` / ``trailing_percent`` a stop
    that follows the best price (only in the position's favour) and
    ``time_limit_s`` closes whatever is left after that many seconds. Any
    part may be absent; a plan with none is refused where it is built.
    """

    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None
    trailing_percent: Decimal | None = None
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("stop_loss", "take_profit", "trailing_distance", "trailing_percent"):
            check_decimal(self, name, positive=True, optional=True)
        if self.trailing_percent is not None and self.trailing_percent >= 100:
            raise MessageError(f"ExitPlan.trailing_percent: {self.trailing_percent} must be "
                               "below 100")
        if self.trailing_distance is not None and self.trailing_percent is not None:
            raise MessageError("ExitPlan: trailing_distance and trailing_percent are "
                               "alternatives; give one")
        t = self.time_limit_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))
                              or not math.isfinite(t) or t <= 0):
            raise MessageError(f"ExitPlan.time_limit_s: expected a positive number of "
                               f"seconds, got {t!r}")
        if self.empty:
            raise MessageError("ExitPlan: needs at least one of stop_loss, take_profit, "
                               "trailing_distance, trailing_percent, time_limit_s")

    @property
    def empty(self) -> bool:
        return (self.stop_loss is None and self.take_profit is None and self.trailing_distance
                is None and self.trailing_percent is None and self.time_limit_s is None)

    @property
    def trailing(self) -> bool:
        return self.trailing_distance is not None or self.trailing_percent is not None


def merge_plan(stop_loss: Decimal | None, plan: ExitPlan | None) -> ExitPlan | None:
    """A signal's exit plan with its ``stop_loss`` shortcut folded in (the
    plan's own stop wins when both are given)."""
    if plan is None:
        return ExitPlan(stop_loss=stop_loss) if stop_loss is not None else None
    if plan.stop_loss is None and stop_loss is not None:
        return ExitPlan(stop_loss, plan.take_profit, plan.trailing_distance,
                        plan.trailing_percent, plan.time_limit_s)
    return plan


@message
class Signal(Message):
    """Strategy output: what the strategy wants, before any risk decision."""

    symbol: Symbol
    side: Side
    qty: Quantity
    ts: datetime
    stop_loss: Price | None = None
    strategy: str = "manual"
    account: Account = DEFAULT_ACCOUNT
    reduce_only: bool = False
    #: take-profit, trailing stop, time limit (and a stop-loss) as one plan
    exits: ExitPlan | None = None

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        _check_enum(self, "side", Side)
        check_decimal(self, "qty", positive=True)
        check_decimal(self, "stop_loss", positive=True, optional=True)
        check_utc(self, "ts")
        if self.exits is not None and not isinstance(self.exits, ExitPlan):
            raise MessageError(f"Signal.exits: expected an ExitPlan, got {type(self.exits).__name__}")

    @property
    def exit_plan(self) -> ExitPlan | None:
        return merge_plan(self.stop_loss, self.exits)


@message
class OrderRequest(Message):
    """An order as the broker sees it. Built by the coordinator only."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    order_type: OrderType
    qty: Quantity
    ts: datetime
    price: Price | None = None
    trigger_price: Price | None = None
    reduce_only: bool = False
    tif: TimeInForce = TimeInForce.GTC
    account: Account = DEFAULT_ACCOUNT
    purpose: OrderPurpose = OrderPurpose.ENTRY
    group_id: str | None = None

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_str(self, "symbol")
        _check_enum(self, "side", Side)
        _check_enum(self, "order_type", OrderType)
        _check_enum(self, "tif", TimeInForce)
        _check_enum(self, "purpose", OrderPurpose)
        check_decimal(self, "qty", positive=True)
        check_decimal(self, "price", positive=True, optional=True)
        check_decimal(self, "trigger_price", positive=True, optional=True)
        check_utc(self, "ts")
        otype = self.order_type
        if otype not in (OrderType.MARKET, OrderType.STOP_MARKET) and self.price is None:
            raise MessageError(f"OrderRequest {self.client_order_id}: {otype} needs a price")
        if otype in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET) and self.trigger_price is None:
            raise MessageError(f"OrderRequest {self.client_order_id}: {otype} needs a trigger_price")


@message
class OrderAcked(Message):
    client_order_id: ClientOrderId
    exchange_order_id: str
    symbol: Symbol
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_str(self, "symbol")
        check_utc(self, "ts")


@message
class OrderRejected(Message):
    client_order_id: ClientOrderId
    symbol: Symbol
    reason: str
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_utc(self, "ts")


@message
class OrderFilled(Message):
    """One fill report. ``fill_id`` is unique per fill at the exchange."""

    client_order_id: ClientOrderId
    fill_id: str
    symbol: Symbol
    side: Side
    qty: Quantity
    price: Price
    leaves_qty: Quantity
    ts: datetime
    fee: Decimal = Decimal("0")
    account: Account = DEFAULT_ACCOUNT

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_str(self, "fill_id")
        check_str(self, "symbol")
        _check_enum(self, "side", Side)
        check_decimal(self, "qty", positive=True)
        check_decimal(self, "price", positive=True)
        check_decimal(self, "leaves_qty", non_negative=True)
        check_decimal(self, "fee")
        check_utc(self, "ts")


@message
class CancelOrder(Message):
    client_order_id: ClientOrderId
    symbol: Symbol
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_utc(self, "ts")


@message
class CancelConfirmed(Message):
    """The exchange's answer to a cancel: canceled, already filled, or unknown."""

    client_order_id: ClientOrderId
    symbol: Symbol
    outcome: CancelOutcome
    canceled_qty: Quantity
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        _check_enum(self, "outcome", CancelOutcome)
        check_decimal(self, "canceled_qty", non_negative=True)
        check_utc(self, "ts")


@message
class PositionSnapshot(Message):
    """Positions at the broker for one account: ((symbol, qty), ...)."""

    account: str
    positions: tuple[tuple[str, Decimal], ...]
    ts: datetime
    #: the QueryPositions this answers (None when the broker pushed it unasked)
    request_id: str | None = None
    #: the broker's average entry price per symbol, where the venue gives one
    #: ((symbol, price), ...); a position taken over from the broker keeps it
    entry_prices: tuple[tuple[str, Decimal], ...] = ()

    def __post_init__(self) -> None:
        check_str(self, "account")
        check_str(self, "request_id", optional=True)
        check_utc(self, "ts")
        norm = []
        for i, item in enumerate(self.positions):
            try:
                sym, qty = item
            except (TypeError, ValueError):
                raise MessageError(f"PositionSnapshot.positions[{i}]: expected (symbol, qty)") from None
            from messages.base import to_decimal
            norm.append((str(sym), to_decimal(qty, f"positions[{i}].qty", where="PositionSnapshot.")))
        object.__setattr__(self, "positions", tuple(norm))
        object.__setattr__(self, "entry_prices", _symbol_prices(self.entry_prices))

    def as_dict(self) -> dict[str, Decimal]:
        return dict(self.positions)


def _symbol_prices(items: Any) -> tuple[tuple[str, Decimal], ...]:
    """Normalise ``((symbol, price), ...)`` (prices positive and finite)."""
    from messages.base import to_decimal

    try:
        entries = tuple(items)
    except TypeError:
        raise MessageError("PositionSnapshot.entry_prices: expected ((symbol, price), ...)") from None
    norm = []
    for i, item in enumerate(entries):
        try:
            sym, price = item
        except (TypeError, ValueError):
            raise MessageError(f"PositionSnapshot.entry_prices[{i}]: expected (symbol, price)") from None
        if not isinstance(sym, str) or not sym:
            raise MessageError(f"PositionSnapshot.entry_prices[{i}]: bad symbol {sym!r}")
        dec = to_decimal(price, f"entry_prices[{i}].price", where="PositionSnapshot.")
        if dec <= 0:
            raise MessageError(f"PositionSnapshot.entry_prices[{i}]: must be > 0, got {dec}")
        norm.append((sym, dec))
    return tuple(norm)

