"""Market data messages. These are the only conflatable messages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from messages.base import Message, MessageError, check_decimal, check_str, check_utc, message


@message
class Quote(Message):
    symbol: str
    bid: Decimal
    ask: Decimal
    ts: datetime
    bid_size: Decimal = Decimal("0")
    ask_size: Decimal = Decimal("0")

    conflatable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        for f in ("bid", "ask"):
            check_decimal(self, f, positive=True)
        for f in ("bid_size", "ask_size"):
            check_decimal(self, f, non_negative=True)
        check_utc(self, "ts")
        if self.ask < self.bid:
            raise MessageError(f"Quote {self.symbol}: ask {self.ask} below bid {self.bid}")

    def conflation_key(self) -> Any:
        return ("quote", self.symbol)

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@message
class Bar(Message):
    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    ts: datetime

    conflatable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        for f in ("open", "high", "low", "close"):
            check_decimal(self, f, positive=True)
        check_decimal(self, "volume", non_negative=True)
        check_utc(self, "ts")
        if self.low > self.high:
            raise MessageError(f"Bar {self.symbol}: low {self.low} above high {self.high}")

    def conflation_key(self) -> Any:
        return ("bar", self.symbol)
