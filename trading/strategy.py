"""The strategy interface: the one piece of Tradewarden a user writes.

A strategy is a small class. Its symbol actor calls :meth:`Strategy.on_data`
with the symbol's recent history and the features computed for it, and the
strategy returns zero or more :class:`SignalIntent`. That is all it does: it
never sends orders, sees positions or sleeps. Every intent becomes a
``messages.Signal`` for the coordinator, which decides (risk gate, netting,
limits) whether it turns into an order. Keeping strategies this narrow is
what lets the runtime guarantee the safety rules whatever the strategy does.

Example::

    from messages import Side
    from trading.strategy import SignalIntent, Strategy, register_strategy

    @register_strategy
    class Breakout(Strategy):
        name = "breakout"

        def __init__(self, lookback: int = 50, qty: int = 1) -> None:
            self.lookback = lookback
            self.warmup = lookback + 1
            self.qty = qty

        def on_data(self, market, features):
            mid = market.quotes.mid
            if mid[-1] > mid[-self.lookback - 1:-1].max():
                return [SignalIntent(Side.BUY, self.qty, stop_loss=mid[-1] * 0.98)]
            return []

    strategy_by_name("breakout", {"lookback": 20})

Rules for the history arrays: they are read-only views, oldest first, valid
only during the call (copy what you keep). ``on_data`` runs on the symbol
actor's thread, one call at a time, so a strategy may keep plain state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from collections.abc import Iterable

import numpy as np

from messages.enums import Side

if TYPE_CHECKING:  # the symbol actor computes them; a strategy only reads them
    from actors.features import Features


@dataclass(frozen=True, slots=True)
class SignalIntent:
    """What a strategy wants: a side, a quantity and optionally an exit plan
    (stop-loss and take-profit prices, a trailing stop by distance or
    percent, a time limit in seconds; see ``messages.orders.ExitPlan``).

    Numbers may be int, float or Decimal; the symbol actor converts them to
    ``Decimal`` (prices on the quote's price grid) when it builds the Signal.
    """

    side: Side | str
    qty: Decimal | int | float
    stop_loss: Decimal | float | None = None
    reduce_only: bool = False
    take_profit: Decimal | float | None = None
    trailing_distance: Decimal | float | None = None
    trailing_percent: Decimal | float | None = None
    time_limit_s: float | None = None


class QuoteHistory(NamedTuple):
    t: np.ndarray         # epoch seconds (UTC)
    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray


class BarHistory(NamedTuple):
    t: np.ndarray         # bar close time, epoch seconds (UTC)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True, slots=True)
class MarketHistory:
    """One symbol's recent quotes and bars, oldest first, read-only."""

    symbol: str
    quotes: QuoteHistory
    bars: BarHistory


class Strategy:
    """Base class. Override ``on_data``; set ``name``; set ``warmup`` if needed."""

    #: registry name, also written into every Signal's ``strategy`` field
    name: ClassVar[str] = "base"
    #: quotes needed before ``on_data`` is first called
    warmup: int = 1
    #: one line for ``run --help`` (default: the docstring's first line)
    summary: ClassVar[str] = ""

    def on_data(self, market: MarketHistory, features: Features) -> Iterable[SignalIntent]:
        raise NotImplementedError


class DemoStrategy(Strategy):
    """Mean reversion on the z-score of the mid price (the default ``run``'s strategy).

    Buys when the z-score crosses below ``-entry_z``, sells when it crosses
    above ``+entry_z`` (edge-triggered, so one crossing is one signal), then
    waits ``cooldown_s`` of market time. Quantity grows with |z| from 1 to
    ``max_qty``; the stop-loss sits ``stop_pct`` away from the mid (0.5 %:
    about what the default synthetic market moves in half a minute, so a
    30 s ``run`` sees stops trigger and the stop-loss manager exit). It
    produces repeated same-side signals as well as reversals, which is what
    the coordinator's duplicate-position and netting checks need to see.
    Deterministic: its only state is derived from the data it was given.
    """

    name: ClassVar[str] = "demo"
    summary: ClassVar[str] = "mean reversion on the z-score of the mid price (the default)"

    def __init__(self, entry_z: float = 1.5, stop_pct: float = 0.005, max_qty: int = 5,
                 cooldown_s: float = 2.0, warmup: int = 60) -> None:
        _check_number("entry_z", entry_z, low=0.0)
        _check_number("stop_pct", stop_pct, low=0.0, high=0.5)
        _check_number("cooldown_s", cooldown_s, low=0.0, allow_low=True)
        if not isinstance(max_qty, int) or isinstance(max_qty, bool) or max_qty < 1:
            raise ValueError(f"strategy demo: max_qty must be an integer >= 1, got {max_qty!r}")
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 2:
            raise ValueError(f"strategy demo: warmup must be an integer >= 2, got {warmup!r}")
        self.entry_z = float(entry_z)
        self.stop_pct = float(stop_pct)
        self.max_qty = max_qty
        self.cooldown_s = float(cooldown_s)
        self.warmup = warmup
        self._prev_z = math.nan
        self._next_ok_t = -math.inf

    def on_data(self, market: MarketHistory, features: Features) -> list[SignalIntent]:
        z, mid = features.zscore, features.mid
        prev, self._prev_z = self._prev_z, z
        if not (math.isfinite(z) and math.isfinite(prev) and mid > 0):
            return []
        now = float(market.quotes.t[-1])
        if now < self._next_ok_t:
            return []
        e = self.entry_z
        if prev > -e >= z:
            side, stop = Side.BUY, mid * (1.0 - self.stop_pct)
        elif prev < e <= z:
            side, stop = Side.SELL, mid * (1.0 + self.stop_pct)
        else:
            return []
        self._next_ok_t = now + self.cooldown_s
        qty = int(min(self.max_qty, max(1, round(abs(z) * 2 - 1))))
        return [SignalIntent(side, qty, stop_loss=stop)]


class NoStrategy(Strategy):
    """Emits nothing: for scenarios, whose signals come from the timeline, and
    for runs that only want the market data path (``strategy.name: none``)."""

    name: ClassVar[str] = "none"
    summary: ClassVar[str] = "emits nothing (scenarios: signals come from the timeline only)"

    def on_data(self, market: MarketHistory, features: Features) -> list[SignalIntent]:
        return []


def _check_number(key: str, value: Any, *, low: float, high: float = math.inf,
                  allow_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if allow_low else value > low) and value <= high
    if not ok:
        bound = f">= {low}" if allow_low else f"> {low}"
        raise ValueError(f"strategy demo: {key} must be a number {bound} and <= {high}, got {value!r}")


# -- registry -------------------------------------------------------------------------

_STRATEGIES: dict[str, type[Strategy]] = {"demo": DemoStrategy, "mean_reversion": DemoStrategy,
                                          "none": NoStrategy}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class available by its ``name`` (class decorator)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == Strategy.name:
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    existing = _STRATEGIES.get(name)
    if existing is not None and existing is not cls:
        raise TypeError(f"strategy name {name!r} already registered by {existing.__name__}")
    _STRATEGIES[name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_STRATEGIES)


def strategy_summaries() -> list[tuple[str, str]]:
    """(name, first docstring line) of every registered strategy; an alias says so."""
    out = []
    for name in strategy_names():
        cls = _STRATEGIES[name]
        doc = (cls.__doc__ or "").strip().splitlines()
        line = cls.summary or (doc[0].rstrip(".") if doc else cls.__name__)
        if cls.name != name:
            line = f"the same as {cls.name}"
        out.append((name, line))
    return out


def _import_strategy(spec: str) -> type[Strategy] | None:
    """``package.module.ClassName``: a user's strategy, imported from the Python path
    (the config is trusted operator input, like a plugin list). None if ``spec``
    is not dotted; a ValueError naming what failed otherwise."""
    module, _, attr = spec.rpartition(".")
    if not module or not attr:
        return None
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"strategy {spec!r}: cannot import {module} ({exc}); is its directory "
                         f"on PYTHONPATH?") from None
    cls = getattr(mod, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)) or cls is Strategy:
        raise ValueError(f"strategy {spec!r}: {module}.{attr} is not a Strategy subclass")
    _STRATEGIES.setdefault(spec, cls)
    return cls


def strategy_by_name(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """A fresh strategy instance; a bad name or parameter is a ValueError naming it.

    ``name`` is a registered name (the built-ins, or one a user module registered
    with :func:`register_strategy`) or ``package.module.ClassName`` (imported)."""
    cls = _STRATEGIES.get(name) or _import_strategy(name)
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(strategy_names())} "
                         "(or package.module.ClassName of your own)")
    params = dict(params or {})
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"strategy {name}: bad parameters {sorted(params)}: {exc}") from None
