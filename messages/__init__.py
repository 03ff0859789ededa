"""Immutable message types and the msgpack codec."""

from messages.base import SCHEMA_VERSION, Message, MessageError, message, utc_now
from messages.enums import CancelOutcome, OrderPurpose, OrderType, Side, TimeInForce
from messages.market import Bar, Quote
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

__all__ = [
    "SCHEMA_VERSION", "Message", "MessageError", "message", "utc_now",
    "CancelOutcome", "OrderPurpose", "OrderType", "Side", "TimeInForce",
    "Bar", "Quote",
    "CancelConfirmed", "CancelOrder", "OrderAcked", "OrderFilled", "OrderRejected",
    "OrderRequest", "PositionSnapshot", "Signal",
]
