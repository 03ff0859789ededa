"""Immutable message types and the msgpack codec."""

from messages.alerts import Alert, SinkReady
from messages.base import SCHEMA_VERSION, Message, MessageError, message, utc_now
from messages.enums import CancelOutcome, OrderPurpose, OrderType, Side, TimeInForce
from messages.exchange import (
    BalanceSnapshot,
    Connect,
    Disconnect,
    ExchangeError,
    ExchangeFault,
    ExchangeTimer,
    FillsSnapshot,
    OpenOrder,
    OpenOrdersSnapshot,
    OrderExpired,
    QueryBalances,
    QueryFills,
    QueryOpenOrders,
    QueryPositions,
    StreamStatus,
    Subscribe,
    SubmitOrder,
    Unsubscribe,
)
from messages.market import Bar, MarketStats, Quote
from messages.orders import (
    CancelConfirmed,
    CancelOrder,
    OrderAcked,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    PositionSnapshot,
    Signal,
)
from messages.persistence import (
    Ack,
    Delete,
    Durable,
    Flush,
    GetStats,
    PersistenceError,
    Put,
    PutMany,
    Reserve,
    StoreDb,
)
from messages.sim_events import EventsPage, QueryEvents

__all__ = [
    "SCHEMA_VERSION", "Message", "MessageError", "message", "utc_now",
    "Alert", "SinkReady",
    "CancelOutcome", "OrderPurpose", "OrderType", "Side", "TimeInForce",
    "Bar", "MarketStats", "Quote",
    "CancelConfirmed", "CancelOrder", "OrderAcked", "OrderFilled", "OrderRejected",
    "OrderRequest", "PositionSnapshot", "Signal",
    "BalanceSnapshot", "Connect", "Disconnect", "ExchangeError", "ExchangeFault", "ExchangeTimer",
    "FillsSnapshot", "OpenOrder", "OpenOrdersSnapshot", "OrderExpired", "QueryBalances",
    "QueryFills", "QueryOpenOrders", "QueryPositions", "StreamStatus", "Subscribe", "SubmitOrder",
    "Unsubscribe",
    "Ack", "Delete", "Durable", "Flush", "GetStats", "PersistenceError", "Put", "PutMany",
    "Reserve", "StoreDb",
    "EventsPage", "QueryEvents",
]
