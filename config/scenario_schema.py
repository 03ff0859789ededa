"""Schema of scenario files (DESIGN section 9), validated with the config machinery.

The document and its timeline are fixed pydantic models; the two open-ended
parts, ``expect`` here and the ``exchange`` blocks in
:mod:`config.sim_exchange`, are :class:`~config.registry.KeyRegistry`
objects that can learn new keys while still refusing unknown ones.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from config.registry import KeyRegistry, Spec, flag
from config.sim_exchange import EXCHANGE_KEYS, FAULT, SETTING
from config.types import Dec, Duration, Ident, NonNegDec, NonNegInt, PosDec, Symbol, unique

__all__ = ["EXCHANGE_KEYS", "EXPECT_KEYS", "FAULT", "SETTING", "EntryDoc", "ScenarioDoc"]


class NoOptions(Spec):
    """A flag with no options (``restart: true``)."""


# -- expectations ------------------------------------------------------------------------


class CountRange(Spec):
    min: NonNegInt = 0
    max: NonNegInt | None = None

    @model_validator(mode="after")
    def _order(self) -> CountRange:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"max: {self.max} is below min {self.min}")
        return self


def _count(value: Any) -> Any:
    """``3`` means exactly three: ``{min: 3, max: 3}``."""
    if isinstance(value, bool) or not isinstance(value, (int, dict)):
        raise ValueError("must be a count (e.g. 3) or a range {min: 1, max: 5}")
    return {"min": value, "max": value} if isinstance(value, int) else value


Count = Annotated[CountRange, BeforeValidator(_count)]


class OrderCounts(Spec):
    submitted: Count | None = None
    filled: Count | None = None
    partially_filled: Count | None = None
    canceled: Count | None = None
    rejected: Count | None = None


class StopExitCounts(Spec):
    limit: Count | None = None
    market_fallback: Count | None = None


class ExitCounts(Spec):
    """Completed exit plans by kind (summary.json ``exits``)."""

    take_profit: Count | None = None
    stop_loss_limit: Count | None = None
    stop_loss_market: Count | None = None
    trailing: Count | None = None
    time_limit: Count | None = None
    strategy: Count | None = None
    external: Count | None = None


#: What ``expect`` may check; each maps onto summary.json (DESIGN section 8).
EXPECT_KEYS = KeyRegistry("expect", {
    "positions": dict[Symbol, Dec],
    "exchange_positions": dict[Symbol, Dec],
    "max_exit_qty": dict[Symbol, NonNegDec],
    "hedge_qty": dict[Symbol, NonNegDec],
    "orders": OrderCounts,
    "risk_approved": Count,
    "risk_rejected": dict[Ident, Count],
    "stop_exits": StopExitCounts,
    "exits": ExitCounts,
    "hedges": Count,
    "restarts": dict[Ident, Count],
    "signals": Count,
    "market_events": Count,
    "alerts": Count,
    "kill_switch": bool,
    "no_invariant_violations": Literal[True],
})


# -- timeline ----------------------------------------------------------------------------


class QuoteSpec(Spec):
    symbol: Symbol
    bid: PosDec
    ask: PosDec
    bid_size: NonNegDec | None = None
    ask_size: NonNegDec | None = None

    @model_validator(mode="after")
    def _crossed(self) -> QuoteSpec:
        if self.ask < self.bid:
            raise ValueError(f"ask: {self.ask} is below bid {self.bid}")
        return self


class BarSpec(Spec):
    symbol: Symbol
    open: PosDec
    high: PosDec
    low: PosDec
    close: PosDec
    volume: NonNegDec

    @model_validator(mode="after")
    def _range(self) -> BarSpec:
        if self.low > self.high:
            raise ValueError(f"low: {self.low} is above high {self.high}")
        for name in ("open", "close"):
            value: Decimal = getattr(self, name)
            if not self.low <= value <= self.high:
                raise ValueError(f"{name}: {value} is outside low..high ({self.low}..{self.high})")
        return self


class TrailingSpec(Spec):
    """A trailing stop: ``distance`` (price units) or ``percent`` behind the best price."""

    distance: PosDec | None = None
    percent: Annotated[Dec, Field(gt=0, lt=100)] | None = None

    @model_validator(mode="after")
    def _one(self) -> TrailingSpec:
        if (self.distance is None) == (self.percent is None):
            raise ValueError("distance: give exactly one of distance or percent")
        return self


class SignalSpec(Spec):
    """A signal; ``stop_loss``, ``take_profit``, ``trailing_stop`` and ``time_limit``
    (a duration: ``30s``) make the entry's exit plan."""

    symbol: Symbol
    side: Literal["buy", "sell"]
    qty: PosDec
    stop_loss: PosDec | None = None
    take_profit: PosDec | None = None
    trailing_stop: TrailingSpec | None = None
    time_limit: Annotated[Duration, Field(gt=0)] | None = None
    account: Ident = "default"
    reduce_only: bool = False
    strategy: Ident = "scenario"


#: named crash points (``app.crash_points.POINTS``; kept in step by a test)
CRASH_POINTS = ("after_intent", "after_submit", "after_fill")


class CrashSpec(Spec):
    """``point``: the runtime dies when the coordinator next reaches it (``after_intent``:
    an order's intent is durable, not yet sent; ``after_submit``: sent, not yet
    acknowledged; ``after_fill``: a fill applied, the next not yet); none: at once."""

    point: Literal["after_intent", "after_submit", "after_fill"] | None = None


class ControlSpec(Spec):
    kill_switch: bool
    reason: str | None = None


KINDS = ("quote", "bar", "signal", "exchange", "crash", "restart", "control", "group", "end")


if TYPE_CHECKING:  # what the fields hold; pydantic validates them as flag() says
    CrashFlag = CrashSpec | None
    RestartFlag = NoOptions | None
else:
    CrashFlag = flag(CrashSpec)
    RestartFlag = flag(NoOptions)


class EntryDoc(Spec):
    at: Duration
    quote: QuoteSpec | None = None
    bar: BarSpec | None = None
    signal: SignalSpec | None = None
    exchange: dict[str, Any] | None = None  # checked against EXCHANGE_KEYS afterwards
    crash: CrashFlag = None
    restart: RestartFlag = None
    control: ControlSpec | None = None
    group: dict[str, Any] | None = Field(default=None, min_length=1)  # the group actor validates
    end: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> EntryDoc:
        found = [k for k in KINDS if k in self.model_fields_set]
        if len(found) != 1:
            got = f"found {', '.join(found)}" if found else "found none"
            raise ValueError(f"an entry needs `at` and exactly one of {', '.join(KINDS)} ({got})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if k in self.model_fields_set)


class ScenarioDoc(Spec):
    name: str | None = Field(default=None, min_length=1)
    description: str | None = None
    seed: NonNegInt = 0
    config: dict[str, Any] = {}     # validated against the config schema afterwards
    exchange: dict[str, Any] = {}   # checked against EXCHANGE_KEYS afterwards
    symbols: Annotated[list[Symbol], Field(min_length=1)]
    timeline: Annotated[list[EntryDoc], Field(min_length=1)]
    expect: dict[str, Any] = {}     # checked against EXPECT_KEYS afterwards

    @model_validator(mode="after")
    def _unique_symbols(self) -> ScenarioDoc:
        try:
            unique(self.symbols, "symbol")
        except ValueError as exc:
            raise ValueError(f"symbols: {exc}") from None
        return self
