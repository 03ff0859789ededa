"""A seeded synthetic market: the data feed of the default ``run`` and the bench.

For each symbol, quotes arrive on a regular grid (``tick_interval_s``, with a
random per-symbol phase so symbols do not all tick at once), and bars close
every ``bar_interval_s``. Mid prices follow a geometric random walk with
per-tick log-return standard deviation ``tick_volatility`` and occasional
jumps (Poisson, ``jump_rate_per_s`` per symbol, log size ~ N(0, jump_sigma)).
Spreads are a few bps with noise and widen sharply right after a jump,
decaying over ``jump_spread_decay_s`` — which is when real books thin out,
and what exercises the risk gate's spread and volatility limits.

Why it looks like this:

* Pure and deterministic: ``events(duration)`` rebuilds its
  ``numpy.random.Generator`` from the seed on every call, so the same seed
  and symbols give the same sequence, twice, in any process. No I/O, no
  clock: time is the event's offset ``t`` in seconds from ``start``.
* Cheap at scale: random draws and price paths are vectorised over all
  symbols one block (one bar interval) at a time; the only per-event Python
  work is building the Decimal-priced message. 1,000 symbols at 5,000
  events/s is far below its cost.
* Prices sit on a per-symbol tick grid (about six significant digits) and
  are built from integers, so every Decimal is exact and bid < ask always.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, UTC
from decimal import Decimal
from typing import Any

import numpy as np

from messages.market import Bar, Quote
from messages.types import Price, Quantity, Symbol

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
_US = 1_000_000


def make_symbols(n: int, prefix: str = "SYM") -> list[str]:
    """``n`` distinct symbol names (``SYM0001``...) for load runs and benchmarks."""
    width = max(4, len(str(n)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


def _positive(name: str, value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"synthetic market: {name} must be a number, got {value!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"synthetic market: {name} must be > 0, got {value!r}")
    return f


def _non_negative(name: str, value: Any) -> float:
    f = float(value) if not isinstance(value, bool) else math.nan
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"synthetic market: {name} must be >= 0, got {value!r}")
    return f


#: open, high, low, close, ticks and jumped, per symbol, of the block just walked
_BarArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: where synthetic markets start by default: the virtual clock's default epoch
#: (runtime.clock.EPOCH_DEFAULT; exchange/ does not import the kernel)
EPOCH_DEFAULT = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


class SyntheticMarket:
    """Quotes and bars for ``symbols``; see the module docstring."""

    def __init__(self, symbols: Sequence[str] = DEFAULT_SYMBOLS, *, seed: int = 42,
                 tick_interval_s: float = 0.1, bar_interval_s: float | None = 1.0,
                 start_price: Any = 100, start_prices: Mapping[str, Any] | None = None,
                 tick_volatility: Any = 0.0005, spread_bps: Any = 2,
                 quote_size: Any = 50, volume_per_tick: Any = None,
                 jump_rate_per_s: float = 1 / 120, jump_sigma: float = 0.02,
                 jump_spread_mult: float = 40.0, jump_spread_decay_s: float = 3.0,
                 start: datetime = EPOCH_DEFAULT) -> None:
        self.symbols = tuple(symbols)
        if not self.symbols or any(not isinstance(s, str) or not s for s in self.symbols):
            raise ValueError("synthetic market: symbols must be non-empty strings")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("synthetic market: duplicate symbols")
        if start.tzinfo is None or start.utcoffset() != timedelta(0):
            raise ValueError("synthetic market: start must be timezone-aware UTC")
        self.seed = int(seed)
        self.tick_us = max(1, round(_positive("tick_interval_s", tick_interval_s) * _US))
        self.bar_us = (None if bar_interval_s is None
                       else max(1, round(_positive("bar_interval_s", bar_interval_s) * _US)))
        prices = dict(start_prices or {})
        unknown = set(prices) - set(self.symbols)
        if unknown:
            raise ValueError(f"synthetic market: start_prices for unknown symbols {sorted(unknown)}")
        default = _positive("start_price", start_price)
        self.start_prices = np.array(
            [_positive(f"start_prices.{s}", prices[s]) if s in prices else default
             for s in self.symbols], dtype=np.float64)
        self.tick_volatility = _non_negative("tick_volatility", tick_volatility)
        self.spread_bps = _positive("spread_bps", spread_bps)
        self.quote_size = _positive("quote_size", quote_size)
        self.volume_per_tick = (0.2 * self.quote_size if volume_per_tick is None
                                else _non_negative("volume_per_tick", volume_per_tick))
        self.jump_rate_per_s = _non_negative("jump_rate_per_s", jump_rate_per_s)
        self.jump_sigma = _non_negative("jump_sigma", jump_sigma)
        self.jump_spread_mult = _non_negative("jump_spread_mult", jump_spread_mult)
        self.jump_spread_decay_s = _positive("jump_spread_decay_s", jump_spread_decay_s)
        self.start = start
        # About six significant digits: 100 -> 0.001, 0.5 -> 0.000001, 30000 -> 0.1.
        self.decimals = np.array([max(0, 5 - math.floor(math.log10(p))) for p in self.start_prices],
                                 dtype=np.int64)

    @property
    def events_per_s(self) -> float:
        """Average events per second of market time (quotes plus bars)."""
        per_symbol = _US / self.tick_us + (_US / self.bar_us if self.bar_us else 0.0)
        return per_symbol * len(self.symbols)

    def events(self, duration_s: float | None = None) -> Iterator[tuple[float, Quote | Bar]]:
        """``(t_seconds, Quote | Bar)`` in time order: quotes with ``t < duration_s``
        and the bars closing at or before it (endless when ``duration_s`` is None).
        Bars close at the end of their interval and follow that interval's quotes."""
        end_us = None if duration_s is None else round(_non_negative("duration_s", duration_s) * _US)
        rng = np.random.default_rng(self.seed)
        state = _State(self, rng)
        block_us = self.bar_us or _US
        b0 = 0
        while end_us is None or b0 < end_us:
            b1 = b0 + block_us
            for t_us, msg in state.block(b0, b1):
                if end_us is not None and t_us >= end_us:
                    return
                yield t_us / _US, msg
            if self.bar_us is not None and (end_us is None or b1 <= end_us):
                for bar in state.bars(b1):
                    yield b1 / _US, bar
            b0 = b1


class _State:
    """The walk's state between blocks, one array entry per symbol."""

    def __init__(self, m: SyntheticMarket, rng: np.random.Generator) -> None:
        self.m = m
        self.rng = rng
        n = len(m.symbols)
        self.phase = rng.integers(0, m.tick_us, n)
        self.next_k = np.zeros(n, dtype=np.int64)
        self.logp = np.log(m.start_prices)
        self.last_jump = np.full(n, -np.inf)
        self.tick = 10.0 ** -m.decimals.astype(np.float64)
        self.scale = [Decimal(1).scaleb(-int(d)) for d in m.decimals]
        # Bar accumulators for the current block.
        self._bar: _BarArrays | None = None

    def block(self, b0: int, b1: int) -> list[tuple[int, Quote]]:
        m, rng = self.m, self.rng
        n = len(m.symbols)
        k_end = np.maximum(self.next_k, (b1 - self.phase + m.tick_us - 1) // m.tick_us)
        counts = k_end - self.next_k
        total = int(counts.sum())
        seg_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        sym = np.repeat(np.arange(n), counts)
        idx = np.arange(total)
        t_us = self.phase[sym] + (self.next_k[sym] + idx - seg_start[sym]) * m.tick_us
        t_s = t_us / _US
        z, u, jz, sn, n1, n2 = (rng.standard_normal(total), rng.random(total),
                                rng.standard_normal(total), rng.standard_normal(total),
                                rng.standard_normal(total), rng.standard_normal(total))
        sigma = m.tick_volatility
        jump = u < m.jump_rate_per_s * (m.tick_us / _US)
        logret = sigma * z - 0.5 * sigma * sigma + np.where(jump, m.jump_sigma * jz, 0.0)
        cs = np.cumsum(logret)
        base = np.where(seg_start > 0, cs[np.maximum(seg_start - 1, 0)], 0.0) if total else cs
        logp = self.logp[sym] + cs - base[sym] if total else cs
        mid = np.exp(logp)
        # Time of the latest jump per event: forward fill within each symbol's segment.
        pos = np.maximum.accumulate(np.where(jump, idx, -1)) if total else idx
        own = pos >= seg_start[sym]
        t_jump = np.where(own, t_s[np.maximum(pos, 0)], self.last_jump[sym])
        widen = 1.0 + m.jump_spread_mult * np.exp(-(t_s - t_jump) / m.jump_spread_decay_s)
        half = mid * (m.spread_bps * np.exp(0.2 * sn - 0.02) * widen) / 20_000.0
        tick = self.tick[sym]
        bid_t = np.maximum(np.floor((mid - half) / tick), 1.0)
        ask_t = np.maximum(np.ceil((mid + half) / tick), bid_t + 1.0)
        bsz = np.maximum(1.0, np.round(m.quote_size * np.exp(0.3 * n1 - 0.045)))
        asz = np.maximum(1.0, np.round(m.quote_size * np.exp(0.3 * n2 - 0.045)))
        # Carry the walk, and collect what the bars of this block need.
        has = counts > 0
        last = seg_start[has] + counts[has] - 1
        prev_close = np.exp(self.logp)
        o, h, lo, c = prev_close.copy(), prev_close.copy(), prev_close.copy(), prev_close.copy()
        jumped = np.zeros(n, dtype=bool)
        if total:
            starts = seg_start[has]
            o[has] = mid[starts]
            h[has] = np.maximum.reduceat(mid, starts)
            lo[has] = np.minimum.reduceat(mid, starts)
            c[has] = mid[last]
            jumped[has] = np.logical_or.reduceat(jump, starts)
            self.logp[has] = logp[last]
            self.last_jump[has] = t_jump[last]
        self.next_k = k_end
        self._bar = (o, h, lo, c, counts, jumped)
        # Messages, in (time, symbol) order.
        order = np.lexsort((sym, t_us))
        start, syms, scale = self.m.start, m.symbols, self.scale
        out = []
        for j, ts, b, a, bs, az in zip(order.tolist(), t_us[order].tolist(),
                                       bid_t[order].tolist(), ask_t[order].tolist(),
                                       bsz[order].tolist(), asz[order].tolist(), strict=True):
            i = int(sym[j])
            sc = scale[i]
            out.append((ts, Quote(Symbol(syms[i]), Price(Decimal(int(b)) * sc),
                                  Price(Decimal(int(a)) * sc), start + timedelta(microseconds=ts),
                                  Quantity(Decimal(int(bs))), Quantity(Decimal(int(az))))))
        return out

    def bars(self, b1: int) -> list[Bar]:
        """One bar per symbol for the block that closes at ``b1``."""
        m = self.m
        assert self._bar is not None  # block() ran first: it fills the bar arrays
        o, h, lo, c, counts, jumped = self._bar
        noise = self.rng.standard_normal(len(m.symbols))
        vol = np.round(m.volume_per_tick * counts * np.exp(0.5 * noise - 0.125)
                       * np.where(jumped, 3.0, 1.0))
        ts = m.start + timedelta(microseconds=b1)
        out = []
        grid = [np.maximum(np.round(x / self.tick), 1.0) for x in (o, h, lo, c)]
        for i, (oo, hh, ll, cc, vv) in enumerate(zip(*(g.tolist() for g in grid), vol.tolist(), strict=True)):
            sc = self.scale[i]
            out.append(Bar(Symbol(m.symbols[i]), Price(Decimal(int(oo)) * sc), Price(Decimal(int(hh)) * sc),
                           Price(Decimal(int(ll)) * sc), Price(Decimal(int(cc)) * sc),
                           Quantity(Decimal(int(vv))), ts))
        return out
