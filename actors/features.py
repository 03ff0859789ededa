"""Feature kernels for symbol actors (pure numpy, no I/O) and the ring buffer they read.

The kernels run on the system's one shared executor (DESIGN section 2: CPU work
never gets a pool per symbol), so they take plain arrays and return plain
values; they never touch an actor or a message. Floats live only here and in
the ring buffers that feed them; what leaves a symbol actor is converted to
``Decimal`` at the message boundary.

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
from array import array
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Features:
    """Latest feature values of one symbol. NaN means not enough data yet."""

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


# -- the ring buffer the kernels read ---------------------------------------------------


class RingBuffer:
    """Fixed-size columnar ring of float64 rows, mirrored, plus a snapshot area.

    Every row is written twice, at ``head`` and ``head + size`` of a
    ``2 * size`` wide array, so the last ``n`` rows are always one contiguous,
    chronological slice (:meth:`window`): reading them costs a view, never a
    copy. That is what an inline computation and the strategy read, on the
    actor's own thread, between two pushes.

    ``snapshot`` copies the rows, oldest first, into ``scratch`` and returns
    how many there are; the copy is what a computation on the executor reads
    while new rows keep arriving in ``data``. Both arrays are allocated once;
    ``scratch`` only when first used, so an inline symbol actor (which never
    snapshots) does not carry it: at 1,000 symbols that is ~36 MB. A snapshot
    with no push since the last one is free.
    """

    __slots__ = ("data", "_scratch", "size", "head", "count", "version", "_snapped", "_pairs",
                 "_columns")

    def __init__(self, columns: int, size: int) -> None:
        self.data = np.zeros((columns, 2 * size), dtype=np.float64)
        self._scratch: np.ndarray | None = None  # made by the first snapshot
        self.size = size
        self.head = 0  # next row to write
        self.count = 0
        self.version = 0
        self._snapped = -1
        # _pairs[h] is the (2, columns) pair of cells row h is written to: one
        # numpy assignment writes both mirrors.
        item = self.data.itemsize
        self._pairs = np.lib.stride_tricks.as_strided(
            self.data, shape=(size, 2, columns), strides=(item, size * item, 2 * size * item))
        # read-only views of each whole column: slices of them are read-only too
        cols = []
        for c in range(columns):
            col = self.data[c].view()
            col.flags.writeable = False
            cols.append(col)
        self._columns = tuple(cols)

    def push(self, row: tuple[float, ...]) -> None:
        h = self.head
        self._pairs[h] = row
        self.head = h + 1 if h + 1 < self.size else 0
        if self.count < self.size:
            self.count += 1
        self.version += 1

    def window(self, n: int) -> np.ndarray:
        """The last ``n`` rows (``n <= count``), oldest first: a view into ``data``,
        valid until the next push."""
        end = self.head + self.size
        return self.data[:, end - n:end]

    def columns(self, n: int) -> list[np.ndarray]:
        """The last ``n`` rows as one read-only 1-D view per column (no copy)."""
        end = self.head + self.size
        start = end - n
        return [c[start:end] for c in self._columns]

    @property
    def scratch(self) -> np.ndarray:
        """The snapshot area (allocated once, on first use)."""
        if self._scratch is None:
            self._scratch = np.zeros((self.data.shape[0], self.size), dtype=np.float64)
        return self._scratch

    def snapshot(self) -> int:
        n = self.count
        if self._snapped == self.version:
            return n
        self._snapped = self.version
        self.scratch[:, :n] = self.window(n)
        return n

    def view(self, n: int) -> np.ndarray:
        """The first ``n`` snapshot rows as a read-only view (no copy)."""
        v = self.scratch[:, :n]
        v.flags.writeable = False
        return v

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (0 if self._scratch is None else self._scratch.nbytes)


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
    return (c[window:] - c[:-window]) / window


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


# -- the same features, kept up to date quote by quote (the inline path) ---------------


class RollingFeatures:
    """:func:`compute_features`, updated in O(1) per quote instead of recomputed.

    A symbol actor that computes inline calls :meth:`push` for every accepted
    quote and :meth:`features` for the figures: a dozen numpy calls on arrays
    of a hundred values cost far more in call overhead than the arithmetic, and
    all but one value of every window is unchanged since the last quote.

    Windowed sums are kept relative to an anchor (a recent mid), so they do
    not lose precision to the price level, and are recomputed exactly from
    the remembered values every ``lookback`` quotes, so rounding never
    accumulates. A volatility window of zero returns reads exactly 0, however
    the sums rounded, as the batch kernel's does.
    The results equal :func:`compute_features` on the same quotes up to float
    rounding (the tests hold them to a relative 1e-9). Bars change rarely:
    their ADV comes from :func:`adv_from_bars` on the bar array, cached by the
    ring's version.
    """

    __slots__ = ("p", "_cap", "_fw", "_sw", "_zw", "_vw", "_t", "_mid", "_size", "_r2", "_head", "_total", "_k", "_sf", "_ss",
                 "_z1", "_z2", "_r2sum", "_r2n", "_nonzero", "_sizes", "_log_prev",
                 "_bid", "_ask", "_since", "_bars_at", "_bars_adv")

    def __init__(self, params: FeatureParams, ring_size: int) -> None:
        self.p = params
        # What the batch kernel sees: at most ``lookback`` quotes of a ring of
        # ``ring_size``; every window is cut to that.
        cap = self._cap = min(params.lookback, ring_size)
        self._fw, self._sw, self._zw = (min(params.ma_fast, cap), min(params.ma_slow, cap),
                                        min(params.z_window, cap))
        self._vw = min(params.vol_window, cap - 1)  # returns: one fewer than quotes
        self._t = array("d", bytes(8 * cap))
        self._mid = array("d", bytes(8 * cap))
        self._size = array("d", bytes(8 * cap))   # bid size + ask size
        self._r2 = array("d", bytes(8 * cap))     # squared log return into each quote
        self._head = 0     # next slot to write
        self._total = 0    # quotes pushed
        self._k = 0.0      # anchor of the windowed sums
        self._sf = self._ss = self._z1 = self._z2 = 0.0
        self._r2sum = 0.0
        self._r2n = 0      # returns in the volatility window
        self._nonzero = 0  # of which non-zero
        self._sizes = 0.0
        self._log_prev = 0.0
        self._bid = self._ask = math.nan
        self._since = 0
        self._bars_at: tuple[int, float, float] | None = None
        self._bars_adv = math.nan

    def push(self, t: float, bid: float, ask: float, mid: float, bid_size: float,
             ask_size: float) -> None:
        """One accepted quote (finite, positive, in time order: the actor checked)."""
        cap, i, n = self._cap, self._head, self._total
        fw, sw, zw, vw = self._fw, self._sw, self._zw, self._vw
        mids = self._mid
        k = self._k
        if n == 0:
            k = self._k = mid
        d = mid - k
        # the value each window loses (read before the slot is overwritten)
        if n >= fw:
            self._sf += d - (mids[(i - fw) % cap] - k)
        else:
            self._sf += d
        if n >= sw:
            self._ss += d - (mids[(i - sw) % cap] - k)
        else:
            self._ss += d
        if n >= zw:
            old = mids[(i - zw) % cap] - k
            self._z1 += d - old
            self._z2 += d * d - old * old
        else:
            self._z1 += d
            self._z2 += d * d
        size = bid_size + ask_size
        if n >= cap:
            self._sizes += size - self._size[i]
        else:
            self._sizes += size
        log_mid = math.log(mid)
        if n:
            r = log_mid - self._log_prev
            r2 = r * r
            if self._r2n == vw:
                gone = self._r2[(i - vw) % cap]
                self._r2sum += r2 - gone
                self._nonzero -= gone != 0.0
            else:
                self._r2sum += r2
                self._r2n += 1
            self._nonzero += r2 != 0.0
        else:
            r2 = 0.0
        self._t[i] = t
        mids[i] = mid
        self._size[i] = size
        self._r2[i] = r2
        self._log_prev = log_mid
        self._bid, self._ask = bid, ask
        self._head = i + 1 if i + 1 < cap else 0
        self._total = n + 1
        self._since += 1
        if self._since >= cap:
            self._resum()

    def _resum(self) -> None:
        """Every sum recomputed exactly from the remembered values, anchored at
        the latest mid: rounding from add-and-subtract never builds up."""
        cap = self._cap
        self._since = 0
        mids, last = self._mid, (self._head - 1) % cap
        k = self._k = mids[last]

        def tail(w: int) -> list[float]:
            w = min(w, self._total, cap)
            return [mids[(last - j) % cap] - k for j in range(w)]

        self._sf = math.fsum(tail(self._fw))
        self._ss = math.fsum(tail(self._sw))
        z = tail(self._zw)
        self._z1 = math.fsum(z)
        self._z2 = math.fsum(x * x for x in z)
        r2 = [self._r2[(last - j) % cap] for j in range(self._r2n)]
        self._r2sum = math.fsum(r2)
        self._nonzero = sum(1 for x in r2 if x != 0.0)
        n = min(self._total, cap)
        self._sizes = math.fsum(self._size[(last - j) % cap] for j in range(n))

    def features(self, n_quotes: int, bars: np.ndarray) -> Features:
        """The figures after the last push. ``n_quotes`` is the quote ring's
        fill (what the batch kernel reports); ``bars`` the chronological bars."""
        p, cap, total = self.p, self._cap, self._total
        nb = bars.shape[1]
        mid = sprd = vol = ma_f = ma_s = z = adv = math.nan
        if total:
            last = (self._head - 1) % cap
            k = self._k
            mid = self._mid[last]
            sprd = spread_bps(bid=self._bid, ask=self._ask)
            n = min(total, self._vw + 1)
            if n >= 2:
                elapsed = self._t[last] - self._t[(last - n + 1) % cap]
                if not elapsed > 0:
                    elapsed = float(n - 1)
                r2sum = self._r2sum if self._nonzero and self._r2sum > 0.0 else 0.0
                vol = math.sqrt(r2sum / elapsed * p.vol_horizon_s)
            nf = min(total, self._fw)
            ma_f = k + self._sf / nf
            ns = min(total, self._sw)
            ma_s = k + self._ss / ns
            nz = min(total, self._zw)
            if nz >= 2:
                m1 = self._z1 / nz
                mean = k + m1
                var = self._z2 / nz - m1 * m1
                # the batch kernel's relative floor: a flat window reads 0, not noise
                z = (mid - mean) / math.sqrt(var) if var > (1e-12 * mean) ** 2 else 0.0
        elif nb:
            mid = float(bars[B_CLOSE, -1])
        if nb >= 2:
            adv = self._adv_from_bars(bars)
        nq = min(total, cap)
        if not math.isfinite(adv) and nq >= 2:
            last = (self._head - 1) % cap
            span = self._t[last] - self._t[(last - nq + 1) % cap]
            if span > 0:
                adv = (self._sizes / (2.0 * nq) * p.adv_quote_factor
                       * (nq - 1) / span * SECONDS_PER_DAY)
        if not math.isfinite(adv) and nq >= 2:
            adv = 0.0  # unknown: reported as no measured volume, never guessed upward
        return Features(n_quotes=n_quotes, n_bars=nb, mid=mid, spread_bps=sprd, volatility=vol,
                        ma_fast=ma_f, ma_slow=ma_s, zscore=z, adv=adv)

    def _adv_from_bars(self, bars: np.ndarray) -> float:
        key = (bars.shape[1], float(bars[B_T, -1]), float(bars[B_VOLUME, -1]))
        if key != self._bars_at:
            self._bars_at = key
            self._bars_adv = adv_from_bars(bars[B_T], bars[B_VOLUME])
        return self._bars_adv
