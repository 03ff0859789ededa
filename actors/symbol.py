"""Symbol actors: bars/quotes -> ring buffer -> features -> strategy -> Signal.

One ``SymbolActor`` per symbol, named ``symbol-<SYM>``, under the ``symbols``
supervisor (one_for_one: a crash in one symbol never touches another).

Why it is built this way:

* Market data lands in preallocated numpy ring buffers: no allocation per
  tick, so memory stays flat however long the run (rule 13).
* Features are cheap (kept up to date quote by quote, see
  ``RollingFeatures``: a few microseconds), so by default they are
  computed inline in the handler (``features_on="inline"``): a hop to an
  executor and back costs more than the work. A heavy feature set or model
  uses ``features_on="executor"``: the system's one shared executor
  (``ctx.submit``), never a pool of the actor's own. There at most one
  computation per symbol is in flight; ticks arriving meanwhile go into the
  ring and the next computation, started when the result comes back, sees
  the latest data. A slow executor therefore costs freshness, never
  unbounded queues.
* On the executor, the computation reads a private chronological copy of
  the rings (taken when it starts), so the actor keeps writing ticks while
  it runs; the strategy then reads that same copy on the actor thread.
  Inline, nothing pushes while the handler runs, so the strategy reads the
  rings' mirrored windows directly and no copy is taken.
* The mailbox conflates Quote/Bar (``ChildSpec(conflate=True)``): when the
  actor is behind, only the latest quote and bar per symbol wait.
* Bad input (wrong symbol, non-finite or crossed prices, naive or
  out-of-order timestamps) is rejected, counted and logged; it never crashes
  the actor. A strategy that raises is counted and logged the same way: a
  restart would not fix a deterministic bug, it would only burn the
  supervisor's restart budget and halt the system.
* Decimals at the boundary: ticks are converted to floats on the way in,
  Signals and MarketStats are built with Decimals on the way out.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from collections.abc import Iterable

import numpy as np
from loguru import logger

from actors.features import (
    BAR_COLUMNS,
    QUOTE_COLUMNS,
    FeatureParams,
    Features,
    RingBuffer,
    RollingFeatures,
    compute_features,
)
from trading.strategy import (
    BarHistory,
    MarketHistory,
    QuoteHistory,
    SignalIntent,
    Strategy,
    strategy_by_name,
)
from messages.base import MessageError, to_decimal
from messages.enums import Side
from messages.market import Bar, MarketStats, Quote
from messages.orders import ExitPlan, Signal
from messages.types import Account, Price, Quantity, Symbol
from runtime.actor import Actor, handles
from runtime.rolling import percentile_of_sorted
from runtime.signals import TaskDone
from runtime.supervisor import ChildSpec, SupervisorSpec

DEFAULT_RING_SIZE = 512
DEFAULT_STATS_EVERY = 10
LATENCY_SAMPLES = 1024
#: where features are computed: in the handler, or on the shared executor
FEATURES_ON = ("inline", "executor")
_COUNTERS = ("ticks", "quotes", "bars", "signals", "rejected", "computations", "coalesced",
             "feature_errors", "strategy_errors", "stats_sent")


def symbol_actor_name(symbol: str) -> str:
    return f"symbol-{symbol}"


def symbol_of_actor(name: str) -> str | None:
    """The symbol of a ``symbol-<SYM>`` actor name (None for any other name)."""
    return name[len("symbol-"):] if name.startswith("symbol-") else None


def _finite(x: Any) -> float:
    """A Decimal/int/float as a float, or NaN for anything else or non-finite."""
    try:
        if isinstance(x, Decimal) and not x.is_finite():
            return math.nan
        f = float(x)
    except (TypeError, ValueError, OverflowError, InvalidOperation):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _aware(ts: Any) -> bool:
    return isinstance(ts, datetime) and ts.tzinfo is not None and ts.utcoffset() is not None


def _plain(x: Any) -> Any:
    """numpy scalars (what strategies naturally compute) as Python numbers."""
    return x.item() if isinstance(x, np.generic) else x


def _on_grid(value: Any, quote: Quote | None) -> Price:
    """A strategy's price as a Decimal on the quote's price grid (its decimals)."""
    dec = to_decimal(_plain(value), "stop_loss")
    if quote is None:
        return Price(dec)
    exp = min(quote.bid.as_tuple().exponent, quote.ask.as_tuple().exponent)
    return Price(dec.quantize(Decimal(1).scaleb(exp)) if isinstance(exp, int) else dec)


def _exit_plan(intent: SignalIntent, quote: Quote | None) -> ExitPlan | None:
    """The intent's take-profit, trailing stop and time limit as an ExitPlan
    (its stop-loss travels on the Signal); None when it has none of them."""
    tp, dist, pct = intent.take_profit, intent.trailing_distance, intent.trailing_percent
    limit = _plain(intent.time_limit_s)
    if tp is None and dist is None and pct is None and limit is None:
        return None
    return ExitPlan(
        take_profit=None if tp is None else _on_grid(tp, quote),
        trailing_distance=None if dist is None else to_decimal(_plain(dist), "trailing_distance"),
        trailing_percent=None if pct is None else to_decimal(_plain(pct), "trailing_percent"),
        time_limit_s=None if limit is None else float(limit))


def _dec(x: float, places: int) -> Decimal:
    return Decimal(f"{x:.{places}f}")


class SymbolActor(Actor):
    """One symbol's market data, features and strategy. See the module docstring.

    ``strategy`` is a registry name (built fresh with ``strategy_params`` on
    every start, so a restart does not inherit a crashed instance's state), a
    Strategy instance, or a zero-argument factory.
    """

    def __init__(self, ctx: Any, symbol: str, strategy: Any = "demo",
                 coordinator: str = "coordinator", ring_size: int = DEFAULT_RING_SIZE, *,
                 strategy_params: dict[str, Any] | None = None, bar_ring_size: int | None = None,
                 stats_every: int = DEFAULT_STATS_EVERY,
                 feature_params: FeatureParams | dict[str, Any] | None = None,
                 account: str = "default", features_on: str = "inline") -> None:
        super().__init__(ctx)
        if features_on not in FEATURES_ON:
            raise ValueError(f"{symbol}: features_on must be one of {FEATURES_ON}, "
                             f"got {features_on!r}")
        self.inline_features = features_on == "inline"
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
        if not isinstance(ring_size, int) or ring_size < 8:
            raise ValueError(f"{symbol}: ring_size must be an integer >= 8, got {ring_size!r}")
        if not isinstance(stats_every, int) or stats_every < 1:
            raise ValueError(f"{symbol}: stats_every must be an integer >= 1, got {stats_every!r}")
        self.symbol = Symbol(symbol)
        self.coordinator = coordinator
        self.account = Account(account)
        self.stats_every = stats_every
        self.strategy: Strategy = _build_strategy(strategy, strategy_params)
        self.feature_params = (feature_params if isinstance(feature_params, FeatureParams)
                               else FeatureParams(**(feature_params or {})))
        self.quotes = RingBuffer(len(QUOTE_COLUMNS), ring_size)
        self.bars = RingBuffer(len(BAR_COLUMNS), bar_ring_size or max(8, ring_size // 2))
        #: inline only: the features kept up to date quote by quote
        self._rolling = (RollingFeatures(self.feature_params, ring_size) if self.inline_features
                         else None)
        self.features: Features | None = None
        self._views: MarketHistory | None = None
        self._bar_views: BarHistory | None = None
        self._bar_views_at = -1
        self._coord = ctx.system.address(coordinator)
        self._incarnation = ctx.cell.incarnation
        self._seq = 0
        self._in_flight = False
        self._dirty = False
        self._snap: tuple[int, int, float, int, Quote | None] = (0, 0, 0.0, 0, None)
        self._last_recv = 0.0
        self._last_quote: Quote | None = None
        self._last_quote_ts: datetime | None = None
        self._last_bar_ts: datetime | None = None
        self._ticks_at_stats = -stats_every
        self._latency = np.zeros(LATENCY_SAMPLES, dtype=np.float64)
        self._lat_n = 0
        prev = ctx.cell.info if ctx.cell.info.get("kind") == "symbol" else {}
        info: dict[str, Any] = {"kind": "symbol", "symbol": symbol, "strategy": self.strategy.name,
                                "coordinator": coordinator}
        for key in _COUNTERS:
            info[key] = prev.get(key, 0)
        info["rejected_by_reason"] = dict(prev.get("rejected_by_reason", {}))
        info["conflated"] = ctx.cell.mailbox.conflated
        info["signal_latency_us"] = {"n": 0, "last": None, "p50": None, "p99": None, "max": None}
        self.info = ctx.cell.info = info

    # -- market data ------------------------------------------------------------

    @handles(Quote)
    def on_quote(self, q: Quote) -> None:
        recv = time.perf_counter()
        info = self.info
        info["conflated"] = self._cell.mailbox.conflated
        try:  # float() of a corrupted field may raise; NaN passes and is caught below
            bid, ask = float(q.bid), float(q.ask)
            bsz, asz = float(q.bid_size), float(q.ask_size)
        except Exception:  # noqa: BLE001 - bad input never crashes the actor
            bid = ask = bsz = asz = math.nan
        reason = self._check_quote(q, bid=bid, ask=ask, bsz=bsz, asz=asz)
        if reason is not None:
            self._reject(reason, q)
            return
        row = (q.ts.timestamp(), bid, ask, (bid + ask) * 0.5, bsz, asz)
        self.quotes.push(row)
        if self._rolling is not None:
            self._rolling.push(*row)
        self._last_quote = q
        self._last_quote_ts = q.ts
        info["quotes"] += 1
        self._tick(recv)

    @handles(Bar)
    def on_bar(self, b: Bar) -> None:
        recv = time.perf_counter()
        self.info["conflated"] = self._cell.mailbox.conflated
        reason = self._check_bar(b)
        if reason is not None:
            self._reject(reason, b)
            return
        self.bars.push((b.ts.timestamp(), float(b.open), float(b.high), float(b.low),
                        float(b.close), float(b.volume)))
        self._last_bar_ts = b.ts
        self.info["bars"] += 1
        self._tick(recv)

    def _tick(self, recv: float) -> None:
        self.info["ticks"] += 1
        self._last_recv = recv
        self._dirty = True
        if self._in_flight:
            self.info["coalesced"] += 1
        else:
            self._compute()

    def _check_quote(self, q: Quote, *, bid: float, ask: float, bsz: float,
                     asz: float) -> str | None:
        try:
            if q.symbol != self.symbol:
                return "wrong_symbol"
            if not (0 < bid < math.inf and 0 < ask < math.inf):  # NaN compares False
                return "bad_price"
            if ask < bid:
                return "crossed"
            if not (0 <= bsz < math.inf and 0 <= asz < math.inf):
                return "bad_size"
            ts = q.ts
            if not _aware(ts):
                return "bad_ts"
            if self._last_quote_ts is not None and ts < self._last_quote_ts:
                return "out_of_order"
        except Exception:  # noqa: BLE001 - a corrupted message must not crash the actor
            return "malformed"
        return None

    def _check_bar(self, b: Bar) -> str | None:
        try:
            if b.symbol != self.symbol:
                return "wrong_symbol"
            o, h, lo, c = (_finite(b.open), _finite(b.high), _finite(b.low), _finite(b.close))
            if not (o > 0 and h > 0 and lo > 0 and c > 0):
                return "bad_price"
            if not (lo <= min(o, c) and max(o, c) <= h):
                return "bad_range"
            if not _finite(b.volume) >= 0:
                return "bad_size"
            if not _aware(b.ts):
                return "bad_ts"
            if self._last_bar_ts is not None and b.ts < self._last_bar_ts:
                return "out_of_order"
        except Exception:  # noqa: BLE001
            return "malformed"
        return None

    def _reject(self, reason: str, msg: Any) -> None:
        info = self.info
        info["rejected"] += 1
        by = info["rejected_by_reason"]
        n = by[reason] = by.get(reason, 0) + 1
        if n <= 5 or n % 1000 == 0:  # logged, but a flood of bad ticks must not flood the log
            self.log.warning("{}: rejected {} ({}, {} so far): {!r}", self.symbol,
                             type(msg).__name__, reason, n, msg)

    # -- features: inline, or on the shared executor ---------------------------------

    def _compute(self) -> None:
        quotes, bars = self.quotes, self.bars
        self._dirty = False
        self._seq += 1
        self.info["computations"] += 1
        if self.inline_features:
            # On the actor's own thread nothing pushes until this returns: the
            # features are the rolling ones (equal to the batch kernel's on the
            # ring), the strategy reads the rings' mirrored windows, no copy.
            nq, nb = quotes.count, bars.count
            self._snap = (nq, nb, self._last_recv, self.info["ticks"], self._last_quote)
            try:
                assert self._rolling is not None
                features = self._rolling.features(nq, bars.window(nb))
            except Exception as exc:  # noqa: BLE001 - counted and logged, never a crash
                self.info["feature_errors"] += 1
                self.log.error("{}: feature computation failed: {!r}", self.symbol, exc)
            else:
                self._on_features(features)
            return
        nq = quotes.snapshot()
        nb = bars.snapshot()
        self._snap = (nq, nb, self._last_recv, self.info["ticks"], self._last_quote)
        self._in_flight = True
        self.ctx.submit(compute_features, quotes.scratch[:, :nq], bars.scratch[:, :nb],
                        self.feature_params, tag=("features", self._incarnation, self._seq))

    @handles(TaskDone)
    def on_task_done(self, done: TaskDone) -> None:
        tag = done.tag
        if tag != ("features", self._incarnation, self._seq):
            return  # a result for a previous instance or a superseded computation
        self._in_flight = False
        if done.error is not None:
            self.info["feature_errors"] += 1
            self.log.error("{}: feature computation failed: {!r}", self.symbol, done.error)
        else:
            self._on_features(done.result)
        if self._dirty:
            self._compute()

    def _on_features(self, features: Features) -> None:
        self.features = features
        nq, nb, recv, snap_ticks, snap_quote = self._snap
        signals = (self._run_strategy(features, nq, nb, snap_quote)
                   if nq >= self.strategy.warmup else [])
        due = snap_ticks - self._ticks_at_stats >= self.stats_every
        fresh_for_signal = signals and snap_ticks != self._ticks_at_stats
        if features.valid and (due or fresh_for_signal):
            # Before a signal, so the gate judges it on the figures the strategy saw.
            self._send_stats(features, snap_quote)
            self._ticks_at_stats = snap_ticks
        for sig in signals:
            self._coord.tell(sig)
            self._record_latency(time.perf_counter() - recv)
        if signals:
            self.info["signals"] += len(signals)
            self._publish_latency()

    def _run_strategy(self, features: Features, nq: int, nb: int,
                      quote: Quote | None) -> list[Signal]:
        market = self._history(nq, nb)
        try:
            intents = list(self.strategy.on_data(market, features) or ())
        except Exception as exc:  # noqa: BLE001 - counted and logged, see module docstring
            self._strategy_error(f"on_data raised {exc!r}", exc)
            return []
        if not intents:
            return []
        now = self.ctx.clock.now()
        out = []
        for intent in intents:
            try:
                out.append(self._to_signal(intent, now, quote))
            except (MessageError, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
                self._strategy_error(f"bad intent {intent!r}: {exc}", None)
        return out

    def _history(self, nq: int, nb: int) -> MarketHistory:
        """Read-only views of what the features were computed on: the rings'
        windows (inline) or the snapshots (executor). Bar views are rebuilt only
        when a bar arrived; snapshot views only while the rings fill up."""
        if self.inline_features:
            bars = self._bar_views
            if bars is None or self._bar_views_at != self.bars.version:
                bars = self._bar_views = BarHistory(*self.bars.columns(nb))
                self._bar_views_at = self.bars.version
            return MarketHistory(self.symbol, QuoteHistory(*self.quotes.columns(nq)), bars)
        cached = self._views
        if cached is None or cached.quotes.t.shape[0] != nq or cached.bars.t.shape[0] != nb:
            cached = self._views = MarketHistory(self.symbol, QuoteHistory(*self.quotes.view(nq)),
                                                 BarHistory(*self.bars.view(nb)))
        return cached

    def _to_signal(self, intent: SignalIntent, now: datetime, quote: Quote | None) -> Signal:
        stop = intent.stop_loss
        if stop is not None:
            stop = _on_grid(stop, quote)
        return Signal(self.symbol, Side(intent.side), Quantity(to_decimal(_plain(intent.qty), "qty")), now,
                      stop_loss=stop, strategy=self.strategy.name, account=self.account,
                      reduce_only=bool(intent.reduce_only), exits=_exit_plan(intent, quote))

    def _strategy_error(self, what: str, exc: BaseException | None) -> None:
        n = self.info["strategy_errors"] = self.info["strategy_errors"] + 1
        if n <= 5 or n % 1000 == 0:
            self.log.opt(exception=exc).error("{}: strategy {} ({} errors so far): {}", self.symbol,
                                              self.strategy.name, n, what)

    def _send_stats(self, f: Features, q: Quote | None) -> None:
        mid = q.mid if q is not None else _dec(f.mid, 8)
        try:
            stats = MarketStats(self.symbol, _dec(f.volatility, 8), _dec(f.adv, 2),
                                _dec(f.spread_bps, 4), mid, self.ctx.clock.now())
        except MessageError as exc:
            self.log.error("{}: cannot build MarketStats from {}: {}", self.symbol, f, exc)
            return
        self._coord.tell(stats)
        self.info["stats_sent"] += 1

    # -- latency ----------------------------------------------------------------------

    def _record_latency(self, seconds: float) -> None:
        self._latency[self._lat_n % LATENCY_SAMPLES] = seconds * 1e6
        self._lat_n += 1

    def signal_latencies_us(self) -> np.ndarray:
        """Tick receipt -> Signal told, in microseconds (the last 1024 signals)."""
        return self._latency[: min(self._lat_n, LATENCY_SAMPLES)].copy()

    def _publish_latency(self) -> None:
        lat = np.sort(self._latency[: min(self._lat_n, LATENCY_SAMPLES)])
        last = self._latency[(self._lat_n - 1) % LATENCY_SAMPLES]
        self.info["signal_latency_us"] = {"n": self._lat_n, "last": round(float(last), 1),
                                          "p50": round(percentile_of_sorted(lat, 50), 1),
                                          "p99": round(percentile_of_sorted(lat, 99), 1),
                                          "max": round(float(lat[-1]), 1)}


def _build_strategy(strategy: Any, params: dict[str, Any] | None) -> Strategy:
    if isinstance(strategy, str):
        return strategy_by_name(strategy, params)
    if isinstance(strategy, Strategy):
        return strategy
    if callable(strategy):
        built = strategy(**(params or {}))
        if isinstance(built, Strategy):
            return built
    raise TypeError(f"strategy must be a name, a Strategy or a factory, got {strategy!r}")


def symbols_supervisor(symbols: Iterable[str], strategy_name: str = "demo",
                       params: dict[str, Any] | None = None, coordinator: str = "coordinator",
                       *, ring_size: int = DEFAULT_RING_SIZE,
                       stats_every: int = DEFAULT_STATS_EVERY,
                       feature_params: dict[str, Any] | None = None, account: str = "default",
                       name: str = "symbols", intensity: int = 5,
                       period_s: float = 60.0,
                       quiet_symbols: Iterable[str] = (),
                       features_on: str = "inline",
                       execution: str | None = None) -> SupervisorSpec:
    """The ``symbols`` supervisor: one conflating ``symbol-<SYM>`` child per symbol.

    The strategy name and parameters are checked here, so a typo fails when
    the tree is built, not as a string of crashing children. ``quiet_symbols``
    get a symbol actor with no strategy (``none``): the coordinator still gets
    their market statistics for the risk gate, but only someone else (the demo
    order-group driver) trades them.
    """
    symbols = list(symbols)
    strategy_by_name(strategy_name, params)
    FeatureParams(**(feature_params or {}))
    if features_on not in FEATURES_ON:
        raise ValueError(f"features_on must be one of {FEATURES_ON}, got {features_on!r}")
    if execution == "remote":
        features_on = "inline"  # a remote actor's own process computes; it has no executor
    plan = [(s, strategy_name, dict(params or {})) for s in symbols]
    plan += [(s, "none", {}) for s in quiet_symbols if s not in symbols]
    children = [
        ChildSpec(symbol_actor_name(s), SymbolActor, args=(s, strat, coordinator, ring_size),
                  kwargs={"strategy_params": p, "stats_every": stats_every,
                          "feature_params": dict(feature_params or {}), "account": account,
                          "features_on": features_on},
                  conflate=True, execution=execution)
        for s, strat, p in plan
    ]
    logger.debug("symbols supervisor: {} symbols, strategy {}", len(children), strategy_name)
    return SupervisorSpec(name, children, strategy="one_for_one", intensity=intensity,
                          period_s=period_s)
