"""Messages of the broker adapter protocol (DESIGN section 7).

Commands go from the gateway to an exchange (simulated or real); events come
back on the exchange's stream. Every type here is a registered message, so it
crosses the msgpack codec unchanged: the same objects travel in-process (to
the ``SimVenue`` actor) and over the loopback WebSocket.

Existing types reused by the protocol live in ``messages.orders``:
``CancelOrder`` (command), ``OrderAcked``, ``OrderRejected``, ``OrderFilled``,
``CancelConfirmed`` and ``PositionSnapshot`` (events). Market data events are
``messages.market.Quote`` and ``Bar``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from messages.base import (
    Message,
    MessageError,
    check_decimal,
    check_str,
    check_utc,
    message,
    to_decimal,
)
from messages.enums import OrderType, Side, TimeInForce
from messages.orders import CancelOrder, OrderFilled, OrderRequest, _check_enum


def _check_symbols(obj: Message, field: str = "symbols") -> None:
    value = getattr(obj, field)
    if isinstance(value, str):
        value = (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise MessageError(f"{type(obj).__name__}.{field}: expected a tuple of symbols") from None
    for i, sym in enumerate(items):
        if not isinstance(sym, str) or not sym:
            raise MessageError(f"{type(obj).__name__}.{field}[{i}]: expected a symbol, got {sym!r}")
    object.__setattr__(obj, field, items)


def _check_int(obj: Message, field: str, *, minimum: int = 0) -> None:
    value = getattr(obj, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MessageError(f"{type(obj).__name__}.{field}: expected an integer >= {minimum}, "
                           f"got {value!r}")


def _check_bool(obj: Message, field: str) -> None:
    if not isinstance(getattr(obj, field), bool):
        raise MessageError(f"{type(obj).__name__}.{field}: expected true/false, "
                           f"got {getattr(obj, field)!r}")


def _check_pairs(obj: Message, field: str) -> None:
    """Normalise ``((name, Decimal), ...)``."""
    norm = []
    for i, item in enumerate(getattr(obj, field)):
        try:
            name, amount = item
        except (TypeError, ValueError):
            raise MessageError(f"{type(obj).__name__}.{field}[{i}]: expected (name, amount)") from None
        if not isinstance(name, str) or not name:
            raise MessageError(f"{type(obj).__name__}.{field}[{i}]: bad name {name!r}")
        norm.append((name, to_decimal(amount, f"{field}[{i}]", where=f"{type(obj).__name__}.")))
    object.__setattr__(obj, field, tuple(norm))


def _check_items(obj: Message, field: str, cls: type) -> None:
    value = getattr(obj, field)
    try:
        items = tuple(value)
    except TypeError:
        raise MessageError(f"{type(obj).__name__}.{field}: expected a tuple of {cls.__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, cls):
            raise MessageError(f"{type(obj).__name__}.{field}[{i}]: expected {cls.__name__}, "
                               f"got {type(item).__name__}")
    object.__setattr__(obj, field, items)


# -- commands: gateway -> exchange ---------------------------------------------


@message
class SubmitOrder(Message):
    """Place an order. The client order id makes a resubmission idempotent."""

    order: OrderRequest

    def __post_init__(self) -> None:
        if not isinstance(self.order, OrderRequest):
            raise MessageError(f"SubmitOrder.order: expected OrderRequest, "
                               f"got {type(self.order).__name__}")


@dataclasses.dataclass(frozen=True, slots=True)
class _AccountQuery(Message):
    """Fields shared by the snapshot queries (not itself a wire type)."""

    request_id: str
    account: str = "default"

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        check_str(self, "account")


@message
class QueryPositions(_AccountQuery):
    """Ask for a ``PositionSnapshot`` of one account."""


@message
class QueryOpenOrders(_AccountQuery):
    """Ask for an ``OpenOrdersSnapshot`` (every working order of the account)."""


@message
class QueryBalances(_AccountQuery):
    """Ask for a ``BalanceSnapshot`` of one account."""


@message
class QueryFills(Message):
    """Ask for the fills after ``since_cursor`` (0 = from the start).

    The reply's ``cursor`` is what to pass next time, so a client that lost
    stream events while disconnected fetches exactly the fills it missed.
    """

    request_id: str
    account: str = "default"
    since_cursor: int = 0
    limit: int = 1000

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        check_str(self, "account")
        _check_int(self, "since_cursor")
        _check_int(self, "limit", minimum=1)


@message
class Subscribe(Message):
    """Start market data (quotes, bars) for these symbols on this session."""

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_symbols(self)


@message
class Unsubscribe(Message):
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_symbols(self)


@message
class Connect(Message):
    """In-process transport: attach ``client`` (an actor name) to the venue's
    stream. A new session starts with no subscriptions, like a new socket."""

    client: str = "gateway"
    #: the account this session trades (None: taken from its first order or query)
    account: str | None = None

    def __post_init__(self) -> None:
        check_str(self, "client")
        check_str(self, "account", optional=True)


@message
class Disconnect(Message):
    """In-process transport: detach ``client`` from the venue's stream."""

    client: str = "gateway"

    def __post_init__(self) -> None:
        check_str(self, "client")


@message
class ExchangeFault(Message):
    """Fault injection / behaviour change for the simulated exchange.

    ``spec`` is the dict of a scenario ``exchange:`` entry, e.g.
    ``{"reject_next": 2}`` or ``{"fill_resting": {"symbol": "BTCUSDT"}}``; see
    ``config.sim_exchange.FAULT_KEYS``. Only the simulator understands it.
    """

    spec: dict[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.spec, Mapping):
            raise MessageError(f"ExchangeFault.spec: expected a mapping, got {type(self.spec).__name__}")
        if not isinstance(self.spec, dict):
            object.__setattr__(self, "spec", dict(self.spec))


@message
class ExchangeTimer(Message):
    """Internal wake-up of the simulated exchange (a delayed cancel taking
    effect, a stall ending). The engine asks for it; its host delivers it back
    after the delay, on whatever clock the host runs."""

    kind: str
    key: str = ""

    def __post_init__(self) -> None:
        check_str(self, "kind")


# -- events: exchange -> gateway ------------------------------------------------


@message
class OpenOrder(Message):
    """One working order as the exchange sees it (inside OpenOrdersSnapshot)."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    leaves_qty: Decimal
    ts: datetime
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    triggered: bool = False
    reduce_only: bool = False
    tif: TimeInForce = TimeInForce.GTC
    account: str = "default"

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_str(self, "exchange_order_id")
        check_str(self, "symbol")
        _check_enum(self, "side", Side)
        _check_enum(self, "order_type", OrderType)
        _check_enum(self, "tif", TimeInForce)
        check_decimal(self, "qty", positive=True)
        check_decimal(self, "leaves_qty", non_negative=True)
        check_decimal(self, "price", positive=True, optional=True)
        check_decimal(self, "trigger_price", positive=True, optional=True)
        _check_bool(self, "triggered")
        _check_bool(self, "reduce_only")
        check_utc(self, "ts")


@message
class OpenOrdersSnapshot(Message):
    request_id: str
    account: str
    orders: tuple[OpenOrder, ...]
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        check_str(self, "account")
        _check_items(self, "orders", OpenOrder)
        check_utc(self, "ts")


@message
class BalanceSnapshot(Message):
    """Cash per asset plus realized PnL and fees paid, for one account."""

    request_id: str
    account: str
    balances: tuple[tuple[str, Decimal], ...]
    ts: datetime
    realized_pnl: Decimal = Decimal("0")
    fees_paid: Decimal = Decimal("0")

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        check_str(self, "account")
        _check_pairs(self, "balances")
        check_decimal(self, "realized_pnl")
        check_decimal(self, "fees_paid")
        check_utc(self, "ts")

    def as_dict(self) -> dict[str, Decimal]:
        return dict(self.balances)


@message
class FillsSnapshot(Message):
    """Fills after the requested cursor; ``cursor`` is the one to ask from next."""

    request_id: str
    account: str
    fills: tuple[OrderFilled, ...]
    cursor: int
    ts: datetime
    more: bool = False

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        check_str(self, "account")
        _check_items(self, "fills", OrderFilled)
        _check_int(self, "cursor")
        _check_bool(self, "more")
        check_utc(self, "ts")


@message
class OrderExpired(Message):
    """The exchange ended an order on its own (IOC remainder, a reduce-only
    order with nothing left to reduce, an exchange restart that wiped it)."""

    client_order_id: str
    symbol: str
    expired_qty: Decimal
    reason: str
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "client_order_id")
        check_decimal(self, "expired_qty", non_negative=True)
        check_str(self, "reason")
        check_utc(self, "ts")


@message
class StreamStatus(Message):
    """The stream came up (``connected=True``) or went down, and why."""

    connected: bool
    reason: str
    ts: datetime

    def __post_init__(self) -> None:
        _check_bool(self, "connected")
        if not isinstance(self.reason, str):
            raise MessageError(f"StreamStatus.reason: expected a string, got {self.reason!r}")
        check_utc(self, "ts")


@message
class ExchangeError(Message):
    """A command or frame the exchange (or the transport) could not process.

    ``code`` is machine-readable: ``bad_frame``, ``bad_command``,
    ``not_connected``, ``internal``, ``bad_fault``; from a real venue also
    ``rate_limited`` / ``ip_banned`` (with ``retry_after_s``), ``clock_skew``,
    ``auth``, ``unknown_outcome`` (an order's answer was lost: it stays in
    flight), ``cancel_failed``, ``query_failed``. ``ref`` names the request
    or order it concerns when that could be read.
    """

    code: str
    reason: str
    ts: datetime
    ref: str | None = None
    #: the venue asked for no request for this long (HTTP Retry-After), if it said
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        check_str(self, "code")
        if not isinstance(self.reason, str):
            raise MessageError(f"ExchangeError.reason: expected a string, got {self.reason!r}")
        check_utc(self, "ts")
        ra = self.retry_after_s
        if ra is not None and (isinstance(ra, bool) or not isinstance(ra, (int, float))
                               or not 0 <= ra <= 86_400):
            raise MessageError(f"ExchangeError.retry_after_s: expected seconds in 0..86400, "
                               f"got {ra!r}")


#: Commands a transport forwards to the exchange engine.
COMMAND_TYPES: tuple[type, ...] = (
    SubmitOrder, CancelOrder, QueryPositions, QueryOpenOrders, QueryBalances, QueryFills,
    Subscribe, Unsubscribe,
)

__all__ = [
    "BalanceSnapshot", "COMMAND_TYPES", "Connect", "Disconnect", "ExchangeError",
    "ExchangeFault", "ExchangeTimer", "FillsSnapshot", "OpenOrder", "OpenOrdersSnapshot",
    "OrderExpired", "QueryBalances", "QueryFills", "QueryOpenOrders", "QueryPositions",
    "StreamStatus", "Subscribe", "SubmitOrder", "Unsubscribe",
]
