"""Market data messages. These are the only conflatable messages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from messages.base import Message, MessageError, check_decimal, check_str, check_utc, message
from messages.types import Price, Quantity, Symbol


@message
class Quote(Message):
    symbol: Symbol
    bid: Price
    ask: Price
    ts: datetime
    bid_size: Quantity = Quantity(Decimal("0"))
    ask_size: Quantity = Quantity(Decimal("0"))

    conflatable: ClassVar[bool] = True
    market_data: ClassVar[bool] = True

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
    symbol: Symbol
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Quantity
    ts: datetime

    conflatable: ClassVar[bool] = True
    market_data: ClassVar[bool] = True

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


@message
class MarketStats(Message):
    """Per-symbol market figures the risk gate needs, sent by ``symbol-<SYM>``.

    Units, so the coordinator's limits read the same way everywhere:

    * ``volatility``: realized volatility of log mid returns over the symbol
      actor's feature window, scaled to a 60 s horizon (a fraction: 0.02 is
      2 % per minute), compared with ``risk.max_volatility``;
    * ``adv``: average daily volume estimate in units of the instrument
      (volume rate over the window extrapolated to 24 h), for
      ``risk.max_volume_participation``; ``0`` means not measured yet;
    * ``spread_bps``: (ask - bid) / mid of the latest quote, in basis points;
    * ``mid``: the latest quote's mid price.

    Conflatable: only the latest figures per symbol matter to a mailbox
    that is behind.
    """

    symbol: str
    volatility: Decimal
    adv: Decimal
    spread_bps: Decimal
    mid: Decimal
    ts: datetime

    conflatable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_str(self, "symbol")
        for f in ("volatility", "adv", "spread_bps"):
            check_decimal(self, f, non_negative=True)
        check_decimal(self, "mid", positive=True)
        check_utc(self, "ts")

    def conflation_key(self) -> Any:
        return ("stats", self.symbol)
