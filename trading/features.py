"""Feature kernels for symbol actors (pure numpy, no I/O).

The kernels run on the system's one shared executor (DESIGN section 2: CPU work
never gets a pool per symbol), so they take plain arrays and return plain
values; they never touch an actor or a message. Floats live only here and in
the ring buffers that feed them (``trading.ring_buffer``); what leaves a
symbol actor is converted to ``Decimal`` at the message boundary. The same
features kept up to date quote by quote are ``trading.rolling_features``.

Inputs are chronological 2-D arrays, one row per column:

* quotes: ``QUOTE_COLUMNS`` = t (epoch seconds), bid, ask, mid, bid_size, ask_size
* bars:   ``BAR_COLUMNS``   = t (bar close, epoch seconds), open, high, low, close, volume

Units (the risk gate compares them with its limits, see ``MarketStats``):

* volatility: realized volatility of log mid returns over the last
  ``vol_window`` quotes, scaled by time to ``vol_horizon_s`` (60 s by
  default). Scaling by elapsed time rather than by tick count keeps the
  figure independent of the quote rate, and so of conflation under load: a
  busy actor that skips ticks must not see a different volatility;
* adv: average daily volume, the volume rate over the window extrapolated to
  24 h (markets of the default run trade around the clock); from bars when
  there are at least two, else a rough proxy from displayed quote sizes;
* spread_bps: (ask - bid) / mid of the latest quote, in basis points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

QUOTE_COLUMNS = ("t", "bid", "ask", "mid", "bid_size", "ask_size")
BAR_COLUMNS = ("t", "open", "high", "low", "close", "volume")
Q_T, Q_BID, Q_ASK, Q_MID, Q_BID_SIZE, Q_ASK_SIZE = range(6)
B_T, B_OPEN, B_HIGH, B_LOW, B_CLOSE, B_VOLUME = range(6)

SECONDS_PER_DAY = 86_400.0
BPS = 10_000.0
_sum = np.add.reduce  # ndarray.sum minus a Python-level wrapper: this runs per tick


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """Window lengths (in quotes) and scaling of the features."""

    vol_window: int = 100
    vol_horizon_s: float = 60.0
    ma_fast: int = 10
    ma_slow: int = 50
    z_window: int = 60
    #: without bars, the share of displayed top-of-book size assumed to trade
    #: per quote update; deliberately low so the ADV proxy errs small
    adv_quote_factor: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vol_window", "ma_fast", "ma_slow", "z_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(f"features.{name}: must be an integer >= 2, got {value!r}")
        for name in ("vol_horizon_s", "adv_quote_factor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"features.{name}: must be a positive number, got {value!r}")

    @property
    def lookback(self) -> int:
        """Quotes any feature looks at (a strategy's natural warm-up)."""
        return max(self.vol_window + 1, self.ma_slow, self.z_window)


class Features(NamedTuple):
    """Latest feature values of one symbol. NaN means not enough data yet.

    A named tuple, not a frozen dataclass: as immutable, and built per quote
    at a quarter of the cost (a frozen dataclass sets each field through
    ``object.__setattr__``)."""

    n_quotes: int
    n_bars: int
    mid: float
    spread_bps: float
    volatility: float
    ma_fast: float
    ma_slow: float
    zscore: float
    adv: float

    @property
    def valid(self) -> bool:
        """Enough data for the figures the risk gate needs."""
        return (self.n_quotes >= 2 and math.isfinite(self.mid) and self.mid > 0
                and math.isfinite(self.spread_bps) and math.isfinite(self.volatility)
                and math.isfinite(self.adv))


# -- single features ------------------------------------------------------------


def realized_volatility(t: np.ndarray, mid: np.ndarray, window: int = 100,
                        horizon_s: float = 60.0) -> float:
    """Realized volatility of the last ``window`` log returns, per ``horizon_s``.

    Variance per second is the sum of squared returns over the elapsed time;
    if the timestamps do not advance (replayed data stamped alike), one
    second per tick is assumed rather than dividing by zero.
    """
    n = min(len(mid), window + 1)
    if n < 2:
        return math.nan
    lr = np.log(mid[-n:])
    r = lr[1:] - lr[:-1]
    elapsed = float(t[-1] - t[-n])
    if not elapsed > 0:
        elapsed = float(n - 1)
    var_per_s = float(_sum(r * r)) / elapsed
    return math.sqrt(var_per_s * horizon_s)


def moving_average(x: np.ndarray, window: int) -> float:
    """Mean of the last ``window`` values (of all of them while fewer)."""
    w = x[-window:]
    if len(w) == 0:
        return math.nan
    return float(_sum(w)) / len(w)


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Full rolling-mean series (length ``len(x) - window + 1``), for strategies."""
    if window < 1 or len(x) < window:
        return np.empty(0)
    c = np.cumsum(np.concatenate(([0.0], np.asarray(x, dtype=float))))
    means: np.ndarray = (c[window:] - c[:-window]) / window
    return means


def zscore(x: np.ndarray, window: int) -> float:
    """(last - mean) / std over the last ``window`` values; 0 when flat."""
    w = x[-window:]
    n = len(w)
    if n < 2:
        return math.nan
    mean = float(_sum(w)) / n
    d = w - mean
    var = float(_sum(d * d)) / n
    # Relative floor: float noise on a flat series must not read as a signal.
    if not var > (1e-12 * mean) ** 2:
        return 0.0
    return (float(w[-1]) - mean) / math.sqrt(var)


def spread_bps(*, bid: float, ask: float) -> float:
    mid = (bid + ask) / 2.0
    if not mid > 0:
        return math.nan
    return (ask - bid) / mid * BPS


def adv_from_bars(t: np.ndarray, volume: np.ndarray) -> float:
    """Volume of bars after the first over the time they span, times 24 h.

    Bar timestamps are close times, so the first bar's volume lies before the
    span and is left out; no bar length has to be assumed.
    """
    if len(t) < 2:
        return math.nan
    span = float(t[-1] - t[0])
    if not span > 0:
        return math.nan
    return float(_sum(volume[1:])) / span * SECONDS_PER_DAY


def adv_from_quotes(t: np.ndarray, *, bid_size: np.ndarray, ask_size: np.ndarray,
                    factor: float = 0.1) -> float:
    """Crude ADV proxy: ``factor`` of mean displayed size per quote update, times
    the update rate, times 24 h. Only used before two bars have arrived."""
    if len(t) < 2:
        return math.nan
    span = float(t[-1] - t[0])
    if not span > 0:
        return math.nan
    per_update = float(_sum(bid_size) + _sum(ask_size)) / (2.0 * len(t)) * factor
    return per_update * (len(t) - 1) / span * SECONDS_PER_DAY


# -- all features at once (the executor task) -----------------------------------------


def compute_features(quotes: np.ndarray, bars: np.ndarray,
                     params: FeatureParams = FeatureParams()) -> Features:
    """Every feature of one symbol from its chronological quote and bar arrays.

    Only the last ``params.lookback`` quotes are read, so the cost does not
    grow with the ring size; this runs once per tick per symbol when the
    market is quiet, so it is kept to a dozen numpy calls.
    """
    nq = quotes.shape[1]
    nb = bars.shape[1]
    mid = sprd = vol = ma_f = ma_s = z = adv = math.nan
    q = quotes[:, -params.lookback:]
    if nq:
        t, m = q[Q_T], q[Q_MID]
        mid = float(m[-1])
        sprd = spread_bps(bid=float(q[Q_BID, -1]), ask=float(q[Q_ASK, -1]))
        vol = realized_volatility(t, m, params.vol_window, params.vol_horizon_s)
        ma_f = moving_average(m, params.ma_fast)
        ma_s = moving_average(m, params.ma_slow)
        z = zscore(m, params.z_window)
    elif nb:
        mid = float(bars[B_CLOSE, -1])
    if nb >= 2:
        adv = adv_from_bars(bars[B_T], bars[B_VOLUME])
    if not math.isfinite(adv) and nq >= 2:
        adv = adv_from_quotes(q[Q_T], bid_size=q[Q_BID_SIZE], ask_size=q[Q_ASK_SIZE],
                              factor=params.adv_quote_factor)
    if not math.isfinite(adv) and nq >= 2:
        adv = 0.0  # unknown: reported as no measured volume, never guessed upward
    return Features(n_quotes=nq, n_bars=nb, mid=mid, spread_bps=sprd, volatility=vol,
                    ma_fast=ma_f, ma_slow=ma_s, zscore=z, adv=adv)
