"""Messages between the runtime's own trading actors (coordinator, stops,
hedger, groups, reconciler, gateway). All codec-able, all validated."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from messages.base import Message, MessageError, check_decimal, check_str, check_utc, message
from messages.enums import OrderPurpose, OrderType, Side
from messages.orders import ExitPlan, OrderFilled, _check_enum
from messages.types import DEFAULT_ACCOUNT, Account, Price, Quantity, Symbol


@message
class OrderIntent(Message):
    """An order someone inside the runtime wants; only the coordinator sends it on."""

    symbol: Symbol
    side: Side
    qty: Quantity
    purpose: OrderPurpose
    ts: datetime
    order_type: OrderType = OrderType.MARKET
    price: Price | None = None
    trigger_price: Price | None = None
    reduce_only: bool = False
    account: Account = DEFAULT_ACCOUNT
    owner: str | None = None
    tag: str | None = None
    stop_loss: Price | None = None
    group_id: str | None = None
    #: an order-group leg's exit plan: the stop manager protects its fills
    exit_plan: ExitPlan | None = None

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        _check_enum(self, "side", Side)
        _check_enum(self, "purpose", OrderPurpose)
        _check_enum(self, "order_type", OrderType)
        check_decimal(self, "qty", positive=True)
        check_decimal(self, "price", positive=True, optional=True)
        check_decimal(self, "trigger_price", positive=True, optional=True)
        check_decimal(self, "stop_loss", positive=True, optional=True)
        check_utc(self, "ts")


@message
class IntentRejected(Message):
    """Told to an intent's owner when the gate refuses it. ``position`` is the
    key's position at the decision, so an exit refused because there is
    nothing left to reduce can learn that instead of retrying."""

    tag: str | None
    symbol: str
    reason: str
    ts: datetime
    position: Decimal | None = None


@message
class IntentAccepted(Message):
    """Told to an intent's owner with the client order id it was given."""

    tag: str | None
    client_order_id: str
    symbol: str
    ts: datetime


@message
class CancelIntent(Message):
    client_order_id: str
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")


@message
class KillSwitch(Message):
    """Manual kill switch (on halts risk-increasing orders; off resumes)."""

    on: bool
    reason: str
    ts: datetime

    def __post_init__(self) -> None:
        check_utc(self, "ts")


@message
class ConnectivityChanged(Message):
    """From the gateway: while ``stream_reconciling``, refuse new risk."""

    connected: bool
    stream_reconciling: bool
    reason: str
    ts: datetime


@message
class BrokerPositions(Message):
    """From the reconciler: the broker's positions for an account; the broker wins."""

    account: str
    positions: tuple[tuple[str, Decimal], ...]
    ts: datetime
    source: str = "poll"
    #: when the question left: anything the runtime did on a symbol after this
    #: may be missing from the answer, so that symbol waits for the next poll
    requested_at: datetime | None = None
    #: the broker's entry price per symbol where the venue gives one (takeover price)
    entry_prices: tuple[tuple[str, Decimal], ...] = ()


@message
class BrokerOrders(Message):
    """From the reconciler at every resync: the broker's working orders and the
    fills after the reconciler's cursor, for one account (rules 10 and 15).

    The coordinator applies the fills it has not seen, resubmits (same client
    order id) the orders it holds as sent that the broker neither works nor
    filled, and closes acknowledged orders the broker no longer works. Only
    orders whose status last changed before ``requested_at`` are judged: the
    answer cannot know about anything sent after the question left.
    """

    account: str
    open_order_ids: tuple[str, ...]
    fills: tuple[OrderFilled, ...]  # oldest first
    requested_at: datetime
    ts: datetime
    source: str = "resync"

    def __post_init__(self) -> None:
        check_str(self, "account")
        ids = tuple(self.open_order_ids)
        if not all(isinstance(i, str) for i in ids):
            raise MessageError("BrokerOrders.open_order_ids: expected client order ids")
        object.__setattr__(self, "open_order_ids", ids)
        fills = tuple(self.fills)
        if not all(isinstance(f, OrderFilled) for f in fills):
            raise MessageError("BrokerOrders.fills: expected OrderFilled reports")
        object.__setattr__(self, "fills", fills)
        check_utc(self, "requested_at")
        check_utc(self, "ts")


@message
class RecoveryDone(Message):
    """From the reconciler: startup recovery finished; signals may flow."""

    ts: datetime
    summary: str = ""
    #: when the round's first question left; a coordinator started after
    #: that ignores it (its own resync is still to come)
    requested_at: datetime | None = None


@message
class ConfirmPositions(Message):
    """To the reconciler: ask the broker's positions once more, now.

    The coordinator changes its book only on a divergence that a second
    answer, asked after the first arrived, confirms (rule 18); it also asks
    when a fill of an order it never sent shows the account moved."""

    account: str
    reason: str
    ts: datetime


@message
class ProtectPosition(Message):
    """To the stop-loss manager: an entry filled with an exit plan attached
    (``stop_price`` is the plan's stop-loss, kept for the plain stop case)."""

    symbol: Symbol
    position_side: Side
    qty: Quantity
    stop_price: Price | None
    account: Account
    entry_order_id: str
    ts: datetime
    plan: ExitPlan | None = None
    #: the entry fill's price (a trailing stop's first anchor)
    entry_price: Decimal | None = None

    def __post_init__(self) -> None:
        _check_enum(self, "position_side", Side)
        check_decimal(self, "qty", positive=True)
        check_decimal(self, "stop_price", positive=True, optional=True)
        check_decimal(self, "entry_price", positive=True, optional=True)
        if self.stop_price is None and (self.plan is None or self.plan.empty):
            raise MessageError("ProtectPosition: needs a stop_price or an exit plan")


@message
class PositionChanged(Message):
    """To the stop manager: a protected key's position after a fill or a broker
    correction. The exit plans learn from it: protection above the position
    (a strategy's own exit, a position zeroed at the broker) is released
    instead of being sent to an exchange that has nothing left to reduce.
    ``cause`` is ``fill:<purpose>`` or ``broker``."""

    symbol: str
    account: str
    qty: Decimal
    cause: str
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        check_decimal(self, "qty")
        check_utc(self, "ts")


@message
class ExitPlanAudit(Message):
    """An exit plan's change (created, ratcheted, triggered, released,
    completed...), written by the coordinator as one ``exit_plan`` record."""

    plan_id: str
    symbol: str
    reason: str
    inputs: dict[str, Any]
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "plan_id")
        check_str(self, "reason")
        check_utc(self, "ts")


@message
class WatchQuotes(Message):
    """To the gateway from a quote listener (the stop manager): forward quotes
    of these symbols only. Until a listener sends one, and again after a
    gateway restart, it gets every quote: over-delivering is safe, a missed
    quote is not."""

    listener: str
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        check_str(self, "listener")
        if not isinstance(self.symbols, tuple) or not all(
                isinstance(s, str) and s for s in self.symbols):
            raise MessageError(f"WatchQuotes.symbols: expected a tuple of symbols, "
                               f"got {self.symbols!r}")


@message
class StoppedOut(Message):
    """From the stop-loss manager: a stop exit completed (starts the cool-down)."""

    symbol: str
    account: str
    ts: datetime


@message
class HedgeRequest(Message):
    """To the hedger: what the hedge position in ``symbol`` should be now.

    ``target_qty`` is signed (negative = short) and absolute, not a change:
    the hedger sends only target - current hedge - hedge in flight (rule 7),
    so a burst of requests built from partial fills can never add up to more
    than the exposure they describe. ``source`` says who asked (a group id,
    ``recovery``...), for the audit and the figures.
    """

    symbol: str
    target_qty: Decimal
    account: str
    ts: datetime
    source: str = "unknown"

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        check_str(self, "account")
        check_decimal(self, "target_qty")
        check_utc(self, "ts")


# -- order groups (rule 6) ------------------------------------------------------------


@message
class SubmitGroup(Message):
    """To ``groups``: start an order group. ``spec`` is plain data (see
    ``trading.group_spec``); the supervisor validates it before a group starts."""

    spec: dict[str, Any]
    ts: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.spec, dict):
            raise MessageError(f"SubmitGroup.spec: expected a mapping, got {type(self.spec).__name__}")
        check_utc(self, "ts")


@message
class PortfolioRequest(Message):
    """To the coordinator: a group's margin gate needs the book (two tells, no ask)."""

    reply_to: str
    request_id: str
    account: str
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "reply_to")
        check_str(self, "request_id")
        check_utc(self, "ts")


@message
class PortfolioSnapshot(Message):
    """The coordinator's answer: positions, in-flight (symbol, buys, sells), quotes
    (symbol, bid, ask) and equity (starting cash + realized + unrealized)."""

    request_id: str
    account: str
    positions: tuple[tuple[str, Decimal], ...]
    pending: tuple[tuple[str, Decimal, Decimal], ...]
    quotes: tuple[tuple[str, Decimal, Decimal], ...]
    equity: Decimal
    ts: datetime

    def __post_init__(self) -> None:
        check_decimal(self, "equity")
        check_utc(self, "ts")


@message
class GroupAudit(Message):
    """A group's decision or step, written by the coordinator (the audit trail's
    single writer) as one ``group_decision`` record."""

    group_id: str
    reason: str
    state: str
    approved: bool | None
    inputs: dict[str, Any]
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "group_id")
        check_str(self, "reason")
        check_utc(self, "ts")
