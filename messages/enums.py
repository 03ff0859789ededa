"""Enumerations shared by messages. String-valued so logs and JSON read well."""

from __future__ import annotations

from enum import Enum


class _StrEnum(str, Enum):
    _value_: str

    def __str__(self) -> str:
        return self.value


class Side(_StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(_StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_LIMIT = "stop_limit"
    #: a market order once its trigger is hit (no limit price: it takes the touch)
    STOP_MARKET = "stop_market"


class TimeInForce(_StrEnum):
    GTC = "gtc"
    IOC = "ioc"


class OrderPurpose(_StrEnum):
    """Why an order exists; every purpose still passes the coordinator's gate."""

    ENTRY = "entry"
    EXIT = "exit"
    STOP = "stop"
    HEDGE = "hedge"
    ROLLBACK = "rollback"


class CancelOutcome(_StrEnum):
    CANCELED = "canceled"
    ALREADY_FILLED = "already_filled"
    UNKNOWN = "unknown"


ENUM_TYPES: dict[str, type[Enum]] = {
    cls.__name__: cls for cls in (Side, OrderType, TimeInForce, OrderPurpose, CancelOutcome)
}


def register_enum(cls: type[Enum]) -> type[Enum]:
    """Make an enum known to the codec (decorator)."""
    ENUM_TYPES[cls.__name__] = cls
    return cls
