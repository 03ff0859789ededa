"""The features of ``trading.features.compute_features``, kept up to date
quote by quote: the inline path of a symbol actor."""

from __future__ import annotations

import math
from array import array

import numpy as np

from trading.features import (B_CLOSE, B_T, B_VOLUME, BPS, SECONDS_PER_DAY, FeatureParams,
                              Features, adv_from_bars)


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
        fill (what the batch kernel reports); ``bars`` the chronological bars.
        Runs per quote: the arithmetic is the batch kernel's, the calls are few
        (window lengths as conditionals, the spread inline)."""
        cap, total = self._cap, self._total
        nb = bars.shape[1]
        mid = sprd = vol = ma_f = ma_s = z = adv = math.nan
        if total:
            last = (self._head - 1) % cap
            k = self._k
            mid = self._mid[last]
            bid, ask = self._bid, self._ask
            half = (bid + ask) / 2.0  # spread_bps, inline
            sprd = (ask - bid) / half * BPS if half > 0 else math.nan
            n = self._vw + 1 if total > self._vw else total
            if n >= 2:
                t = self._t
                elapsed = t[last] - t[(last - n + 1) % cap]
                if not elapsed > 0:
                    elapsed = float(n - 1)
                r2sum = self._r2sum if self._nonzero and self._r2sum > 0.0 else 0.0
                vol = math.sqrt(r2sum / elapsed * self.p.vol_horizon_s)
            fw, sw, zw = self._fw, self._sw, self._zw
            ma_f = k + self._sf / (fw if total > fw else total)
            ma_s = k + self._ss / (sw if total > sw else total)
            nz = zw if total > zw else total
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
        nq = cap if total > cap else total
        if nq >= 2 and not math.isfinite(adv):
            last = (self._head - 1) % cap
            span = self._t[last] - self._t[(last - nq + 1) % cap]
            if span > 0:
                adv = (self._sizes / (2.0 * nq) * self.p.adv_quote_factor
                       * (nq - 1) / span * SECONDS_PER_DAY)
            if not math.isfinite(adv):
                adv = 0.0  # unknown: reported as no measured volume, never guessed upward
        return Features(n_quotes, nb, mid, sprd, vol, ma_f, ma_s, z, adv)

    def _adv_from_bars(self, bars: np.ndarray) -> float:
        key = (bars.shape[1], float(bars[B_T, -1]), float(bars[B_VOLUME, -1]))
        if key != self._bars_at:
            self._bars_at = key
            self._bars_adv = adv_from_bars(bars[B_T], bars[B_VOLUME])
        return self._bars_adv
