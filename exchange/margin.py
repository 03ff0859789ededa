"""Worst-case margin over the shock grid (DESIGN.md rule 6, issue 5).

Before an order group is submitted, the whole portfolio plus the group is
revalued under price shocks x IV shocks x spread multipliers (27 scenarios by
default); the group is rejected with reason ``worst_case_margin`` when the
worst scenario needs more than 90 % of available margin.

Margin requirement of one scenario (price shock p, IV shock v, spread
multiplier m), in account currency:

    max(loss(p, v), 0) + m * sum(|qty| * half_spread * multiplier) + base

* ``loss`` is the drop in model value of all legs versus now: options are
  revalued with Black-Scholes at spot * (1 + p) and iv * (1 + v) (relative IV
  shock), stock/futures legs linearly. "Now" is the Black-Scholes value at the
  current spot and iv, so the (0, 0) scenario has zero loss.
* the spread term is the cost of closing every leg at a widened spread.
* ``base`` is a simple exchange-style charge for naked short options:
  ``naked_short_rate`` (10 %) of the underlying notional that is short per
  (underlying, call/put), after netting long options of the same type on the
  same underlying (any strike/expiry). Covered shorts carry no base: their
  risk is already in the scenario loss. Legs without an ``underlying`` id are
  each their own underlying, i.e. nothing covers them (the safe default).

Speed (issue 5 benchmark: 1,000 legs x 27 scenarios, target 100 us): spread
multipliers are linear, so Black-Scholes runs once per option leg on the 9
(price, iv) pairs, and never for stock legs; puts are calls plus a linear
parity term. numpy has no vectorized float64 ``exp`` on AVX2-only CPUs
(about 5 ns an element), so the normal CDF is the exp-free
``pricing.cdf_table`` (error < 3e-9) and the sums over legs are BLAS
matrix-vector products; see ``MarginKernel``. ``worst_case_margin_python``
is the same computation as a plain loop: the tests' reference and the
benchmark's baseline.

``rate`` (in the grid) defaults to 0, as in ``pricing.quote_option``: over a
shock horizon it moves "now" and "shocked" values alike.
"""

from __future__ import annotations

import gc
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from exchange.pricing import MIN_VOL_SQRT_T, bs_price_scalar, cdf_table

__all__ = [
    "STOCK",
    "CALL",
    "PUT",
    "Leg",
    "LegArrays",
    "ShockGrid",
    "Scenario",
    "MarginResult",
    "MarginDecision",
    "MarginKernel",
    "shock_grid",
    "worst_case_margin",
    "worst_case_margin_python",
    "margin_check",
    "bench_margin",
    "random_legs",
]

STOCK, CALL, PUT = 0, 1, 2
REJECT_REASON = "worst_case_margin"

# Bound once: the kernel is call-overhead bound for small books.
_sqrt, _mul, _div, _add, _sub = np.sqrt, np.multiply, np.divide, np.add, np.subtract
_exp, _log, _recip, _max, _min = np.exp, np.log, np.reciprocal, np.maximum, np.minimum
_take, _matmul, _dot, _bincount = np.take, np.matmul, np.dot, np.bincount

_MAGIC = 1.5 * 2.0**52  # x + _MAGIC rounds x to an integer in the low mantissa bits
_MAGIC_BITS = int(np.array(_MAGIC).view(np.int64))


# --------------------------------------------------------------------- legs


@dataclass(frozen=True, slots=True)
class Leg:
    """One position or order leg at the boundary (Decimal or numbers).

    ``qty`` is signed (long > 0, short < 0) in contracts or shares; for stock
    and futures legs ``strike``, ``expiry_years`` and ``iv`` are ignored.
    """

    kind: int
    qty: Decimal | float | int
    spot: Decimal | float | int
    strike: Decimal | float | int = 0
    expiry_years: Decimal | float | int = 0
    iv: Decimal | float | int = 0
    half_spread: Decimal | float | int = 0
    multiplier: Decimal | float | int = 1
    underlying: str = ""


_FLOAT_FIELDS = ("qty", "spot", "strike", "expiry_years", "iv", "half_spread", "multiplier")


class _Options(NamedTuple):
    """The option legs only, as contiguous arrays: what Black-Scholes needs."""

    spot: np.ndarray
    expiry_years: np.ndarray
    iv: np.ndarray
    strike: np.ndarray
    w: np.ndarray        # qty * multiplier
    neg_w: np.ndarray
    key: np.ndarray      # underlying * 2 + is_put, for the naked-short base


@dataclass(frozen=True, eq=False)
class LegArrays:
    """A portfolio as numpy structure-of-arrays (float64; ``kind`` int8).

    Arrays are copied and made read-only, so a LegArrays is an immutable
    snapshot that can be handed to the shared executor. Derived private
    fields are computed once here from the same snapshot: weights that depend
    only on the legs' structure, and contiguous copies of the option legs so
    the margin kernel runs Black-Scholes on options only (stock and futures
    legs are linear and need no pricing).
    """

    kind: np.ndarray
    qty: np.ndarray
    spot: np.ndarray
    strike: np.ndarray
    expiry_years: np.ndarray
    iv: np.ndarray
    half_spread: np.ndarray
    multiplier: np.ndarray
    underlying: np.ndarray | None = None
    _w_lin: np.ndarray = field(init=False, repr=False)
    _abs_w: np.ndarray = field(init=False, repr=False)
    _opt: _Options = field(init=False, repr=False)
    _n_keys: int = field(init=False, repr=False)
    _any_short_option: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        kind = np.array(self.kind, dtype=np.int8, copy=True).reshape(-1)
        n = kind.shape[0]
        put(self, "kind", kind)
        for name in _FLOAT_FIELDS:
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"LegArrays.{name}: length {arr.shape[0]}, expected {n}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"LegArrays.{name}: values must be finite")
            put(self, name, arr)
        if self.underlying is None:
            und = np.arange(n, dtype=np.int64)
        else:
            und = np.array(self.underlying, dtype=np.int64, copy=True).reshape(-1)
            if und.shape[0] != n or (n and und.min() < 0):
                raise ValueError("LegArrays.underlying: one id >= 0 per leg")
        put(self, "underlying", und)

        if n and (kind.min() < STOCK or kind.max() > PUT):
            raise ValueError("LegArrays.kind: 0 (stock/future), 1 (call) or 2 (put)")
        option = kind != STOCK
        if np.any(self.spot <= 0):
            raise ValueError("LegArrays.spot: must be > 0")
        if np.any(self.multiplier <= 0) or np.any(self.half_spread < 0):
            raise ValueError("LegArrays: multiplier must be > 0, half_spread >= 0")
        if np.any(option & ((self.strike <= 0) | (self.expiry_years < 0) | (self.iv < 0))):
            raise ValueError("LegArrays: options need strike > 0, expiry_years >= 0, iv >= 0")

        w = self.qty * self.multiplier
        lin = np.where(kind == STOCK, 1.0, np.where(kind == PUT, -1.0, 0.0))
        put(self, "_w_lin", w * lin)   # stock legs, and the -S term of put parity
        put(self, "_abs_w", np.abs(w))
        sel = np.flatnonzero(option)
        w_opt = w[sel]
        key = und[sel] * 2 + (kind[sel] == PUT)
        opt = _Options(
            spot=self.spot[sel], expiry_years=self.expiry_years[sel], iv=self.iv[sel],
            strike=self.strike[sel], w=w_opt, neg_w=-w_opt, key=key,
        )
        put(self, "_opt", opt)
        put(self, "_n_keys", int(key.max()) + 1 if len(key) else 0)
        put(self, "_any_short_option", bool(np.any(w_opt < 0)))
        for arr in (kind, und, self._w_lin, self._abs_w, *opt,
                    *(getattr(self, name) for name in _FLOAT_FIELDS)):
            arr.setflags(write=False)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def from_legs(cls, legs: Iterable[Leg], underlying_ids: dict[str, int] | None = None) -> LegArrays:
        """Build from boundary ``Leg`` objects (Decimal-friendly).

        Legs with the same non-empty ``underlying`` name share an id (so a long
        option can cover a short one); unnamed legs each get their own id.
        Pass ``underlying_ids`` to keep ids stable across calls.
        """
        legs = list(legs)
        ids = {} if underlying_ids is None else underlying_ids
        und = []
        for leg in legs:
            if leg.underlying:
                und.append(ids.setdefault(leg.underlying, len(ids)))
            else:
                und.append(-1)
        next_id = max(ids.values(), default=-1) + 1
        for i, u in enumerate(und):
            if u < 0:
                und[i], next_id = next_id, next_id + 1
        cols = {name: [float(getattr(leg, name)) for leg in legs] for name in _FLOAT_FIELDS}
        return cls(kind=[int(leg.kind) for leg in legs], underlying=und, **cols)

    @classmethod
    def empty(cls) -> LegArrays:
        z = np.zeros(0)
        return cls(kind=np.zeros(0, np.int8), qty=z, spot=z, strike=z, expiry_years=z,
                   iv=z, half_spread=z, multiplier=z)

    def concat(self, other: LegArrays) -> LegArrays:
        """Portfolio + group. Underlying ids must come from one numbering."""
        return LegArrays(
            kind=np.concatenate([self.kind, other.kind]),
            underlying=np.concatenate([self.underlying, other.underlying]),
            **{name: np.concatenate([getattr(self, name), getattr(other, name)])
               for name in _FLOAT_FIELDS},
        )


# --------------------------------------------------------------------- grid


class Scenario(NamedTuple):
    index: int
    price_shock: float
    iv_shock: float
    spread_multiplier: float


def _floats(values, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"ShockGrid.{name}: need at least one finite value")
    return out


@dataclass(frozen=True)
class ShockGrid:
    """Scenario axes plus the two model parameters of a margin run.

    Scenario ``i`` is (price_shocks[a], iv_shocks[b], spread_multipliers[c])
    with ``i = (a * len(iv) + b) * len(spread) + c``. IV shocks are relative
    (+0.30 means iv * 1.30).
    """

    price_shocks: tuple[float, ...] = (-0.03, 0.0, 0.03)
    iv_shocks: tuple[float, ...] = (0.0, 0.30, 0.50)
    spread_multipliers: tuple[float, ...] = (1.0, 1.5, 2.0)
    rate: float = 0.0
    naked_short_rate: float = 0.10

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "price_shocks", _floats(self.price_shocks, "price_shocks"))
        put(self, "iv_shocks", _floats(self.iv_shocks, "iv_shocks"))
        put(self, "spread_multipliers", _floats(self.spread_multipliers, "spread_multipliers"))
        put(self, "rate", float(self.rate))
        put(self, "naked_short_rate", float(self.naked_short_rate))
        if min(self.price_shocks) <= -1 or min(self.iv_shocks) <= -1:
            raise ValueError("ShockGrid: price and iv shocks must be > -100 %")
        if min(self.spread_multipliers) < 0 or self.naked_short_rate < 0:
            raise ValueError("ShockGrid: spread multipliers and naked_short_rate must be >= 0")
        if not math.isfinite(self.rate) or not math.isfinite(self.naked_short_rate):
            raise ValueError("ShockGrid: rate and naked_short_rate must be finite")

    @property
    def size(self) -> int:
        return len(self.price_shocks) * len(self.iv_shocks) * len(self.spread_multipliers)

    def scenario(self, index: int) -> Scenario:
        n_iv, n_sp = len(self.iv_shocks), len(self.spread_multipliers)
        if not 0 <= index < self.size:
            raise IndexError(f"scenario {index} outside 0..{self.size - 1}")
        a, rest = divmod(index, n_iv * n_sp)
        b, c = divmod(rest, n_sp)
        return Scenario(index, self.price_shocks[a], self.iv_shocks[b], self.spread_multipliers[c])

    def scenarios(self) -> list[Scenario]:
        return [self.scenario(i) for i in range(self.size)]


def shock_grid(price_shocks: Sequence[float] = (-0.03, 0.0, 0.03),
               iv_shocks: Sequence[float] = (0.0, 0.30, 0.50),
               spread_multipliers: Sequence[float] = (1.0, 1.5, 2.0),
               rate: float = 0.0, naked_short_rate: float = 0.10) -> ShockGrid:
    """The rule-6 grid (3 x 3 x 3 = 27 scenarios); every axis configurable."""
    return ShockGrid(tuple(price_shocks), tuple(iv_shocks), tuple(spread_multipliers),
                     rate, naked_short_rate)


DEFAULT_GRID = ShockGrid()


# ------------------------------------------------------------------- kernel


class MarginResult(NamedTuple):
    worst: float
    per_scenario: np.ndarray
    worst_index: int


class MarginKernel:
    """Vectorized worst-case margin for one grid, with preallocated buffers.

    Not thread-safe (the buffers are reused): use one per thread, as
    ``worst_case_margin`` does. Nothing is cached between calls except
    buffers and grid constants: every call revalues all legs from the
    LegArrays it is given (which carries only weights derived from the legs'
    structure at construction, never market-dependent results).

    Layout: every big array is (d1|d2, price shock, iv shock, leg) with legs
    last, so each ufunc runs over long contiguous rows. N(d) uses the exp-free
    ``cdf_table``: ``u = d / step`` is rounded to its table node with the
    1.5 * 2**52 trick (two passes, no float->int cast), one complex gather
    fetches (intercept, slope), and the weighted sum over legs of
    ``intercept + slope * u`` is done by BLAS: one pass forms ``slope * u``,
    then one matrix-vector product sums it and another sums the intercepts
    straight from the gathered pairs (weights ``[a, 0, a, 0, ...]``).
    """

    def __init__(self, grid: ShockGrid = DEFAULT_GRID) -> None:
        self.grid = grid
        table = cdf_table()
        self._coef = table.coef
        inv_h = table.inv_step
        self._magic = _MAGIC + table.offset  # rounding and table offset in one add

        # Always price the unshocked point; add 0 to an axis that lacks it.
        prices = list(grid.price_shocks) + ([] if 0.0 in grid.price_shocks else [0.0])
        vols = list(grid.iv_shocks) + ([] if 0.0 in grid.iv_shocks else [0.0])
        n_p, n_v = len(prices), len(vols)
        self._np, self._nv = n_p, n_v
        self._ln_p = np.log1p(np.array(prices))[:, None]
        one_v = 1.0 + np.array(vols)
        # In table units: row 0 turns 1/vst into 1/(vst (1+v)), row 1 turns vst
        # into vst (1+v) / 2.
        self._wh_scale = np.stack([inv_h / one_v, 0.5 * inv_h * one_v])[:, :, None]

        # neg_pnl = M @ vec; vec = [sum a N (2 x pv, intercept part),
        # sum a N (2 x pv, slope part), linear term]; row r = p * n_v + v.
        pv = n_p * n_v
        zero = prices.index(0.0) * n_v + vols.index(0.0)
        m = np.zeros((pv, 4 * pv + 1))
        for r in range(pv):
            p = prices[r // n_v]
            for part in (0, 2 * pv):
                m[r, part + r] -= 1.0 + p        # (1+p) S N(d1)
                m[r, part + pv + r] -= 1.0       # - Kd N(d2)
                m[r, part + zero] += 1.0
                m[r, part + pv + zero] += 1.0
            m[r, -1] -= p
        rows = [prices.index(p) * n_v + vols.index(v)
                for p in grid.price_shocks for v in grid.iv_shocks]
        self._m = np.ascontiguousarray(m[rows])
        self._n_out = n_out = len(rows)
        # per = E @ [max(neg_pnl, 0) (n_out), spread cost, sum of net short notional]
        n_sp = len(grid.spread_multipliers)
        e = np.zeros((n_out * n_sp, n_out + 2))
        for r in range(n_out):
            for c, mult in enumerate(grid.spread_multipliers):
                e[r * n_sp + c, r] = 1.0
                e[r * n_sp + c, n_out] = mult
                e[r * n_sp + c, n_out + 1] = -grid.naked_short_rate
        self._e = e
        self._tail = np.zeros(n_out + 2)
        self._tail_loss = self._tail[:n_out]
        self._vec = np.zeros(4 * pv + 1)
        self._cap = -1

    def _ensure(self, n: int) -> None:
        """(Re)allocate buffers and cache every view the hot path uses."""
        n_p, n_v = self._np, self._nv
        pv = n_p * n_v
        self._cap = n
        leg = np.empty((4, n))           # kd, x0, then th = [1/vst, vst]
        x = np.empty((n_p, n))
        wh = np.empty((2, n_v, n))
        u = np.empty((2, n_p, n_v, n))   # d1, d2 in table units; then slope * u
        r = np.empty((2, n_p, n_v, n))   # magic-rounded u; its bits become the index
        g = np.empty((2, n_p, n_v, n), dtype=np.complex128)
        wa = np.zeros((2, 2 * n, 1))     # [a, 0, a, 0, ...]: picks the intercepts
        a = wa[:, 0::2, :]               # weights: w*S for N(d1), -w*Kd for N(d2)
        vec = self._vec
        self._bufs = (
            leg[0], leg[1], leg[2], leg[3], leg[2:4][:, None, :],
            x, x[:, None, :], wh, wh[0][None], wh[1],
            u, u[0], u[1], u.reshape(2, pv, n),
            r, r.view(np.int64), g, g.imag, g.view(np.float64).reshape(2, pv, 2 * n),
            wa, a, a[0, :, 0], a[1, :, 0],
            vec[: 2 * pv].reshape(2, pv, 1), vec[2 * pv: 4 * pv].reshape(2, pv, 1),
        )

    def evaluate(self, legs: LegArrays) -> MarginResult:
        """Revalue every leg under every (price, iv) shock; see the class doc."""
        grid = self.grid
        opt = legs._opt
        n = opt.spot.shape[0]  # option legs; stock legs only enter linearly
        if n != self._cap:
            self._ensure(n)
        (kd, x0, inv_vst, vst, th_b, x, x_b, wh, w_b, h, u, u0, u1, u_flat,
         r, idx, g, g_slope, g_pairs, wa, a, a0, a1, sum_slope, sum_icept) = self._bufs
        spot, t = opt.spot, opt.expiry_years
        # Positional ``out`` arguments where numpy allows: this path is bound
        # by per-call overhead for small books.

        # Per leg: total vol (floored, so no 0/0), discounted strike, log-moneyness.
        _sqrt(t, vst)
        _mul(opt.iv, vst, vst)
        _max(vst, MIN_VOL_SQRT_T, out=vst)
        if grid.rate:
            _mul(t, -grid.rate, kd)
            _exp(kd, kd)
            _mul(kd, opt.strike, kd)
        else:
            kd = opt.strike
        _div(spot, kd, x0)
        _log(x0, x0)

        # Per (shock, leg), in table units: ln(S(1+p)/Kd), 1/(vst(1+v)), vst(1+v)/2.
        _add(x0, self._ln_p, x)
        _recip(vst, inv_vst)
        _mul(th_b, self._wh_scale, wh)

        # d1 = x/v + v/2, d2 = x/v - v/2 for every (p, v); u[1] holds x/v first.
        _mul(x_b, w_b, u1)
        _add(u1, h, u0)
        _sub(u1, h, u1)

        # N(d) = intercept + slope * u from the nearest table node.
        _add(u, self._magic, r)
        _sub(idx, _MAGIC_BITS, idx)
        _take(self._coef, idx, None, g, "clip")
        _mul(g_slope, u, u)

        # Sums over legs, weights qty*mult*S (N(d1)) and -qty*mult*Kd (N(d2)).
        _mul(opt.w, spot, a0)
        _mul(opt.neg_w, kd, a1)
        _matmul(u_flat, a, sum_slope)
        _matmul(g_pairs, wa, sum_icept)
        vec = self._vec
        vec[-1] = _dot(legs._w_lin, legs.spot)  # stock legs, put parity: linear in p

        tail, loss = self._tail, self._tail_loss
        _matmul(self._m, vec, loss)
        _max(loss, 0.0, out=loss)
        tail[-2] = _dot(legs._abs_w, legs.half_spread)
        if legs._any_short_option:
            net = _bincount(opt.key, a0, legs._n_keys)
            tail[-1] = _min(net, 0.0, out=net).sum()
        else:
            tail[-1] = 0.0
        per = self._e @ tail
        k = int(per.argmax())
        return MarginResult(float(per[k]), per, k)


_local = threading.local()


def _kernel(grid: ShockGrid) -> MarginKernel:
    # Keyed by identity first: hashing the frozen grid costs a microsecond.
    kernels = getattr(_local, "kernels", None)
    if kernels is None:
        kernels = _local.kernels = {}
    entry = kernels.get(id(grid))
    if entry is not None and entry[0] is grid:
        return entry[1]
    if len(kernels) >= 8:  # bounded: grids are configuration, not data
        kernels.clear()
    kernel = next((k for g, k in kernels.values() if g == grid), None) or MarginKernel(grid)
    kernels[id(grid)] = (grid, kernel)
    return kernel


def worst_case_margin(legs: LegArrays, grid: ShockGrid | None = None) -> MarginResult:
    """(worst margin, per-scenario margins, worst scenario index), numpy.

    Thread-safe: each thread gets its own kernel (buffers) per grid.
    """
    return _kernel(grid or DEFAULT_GRID).evaluate(legs)


def worst_case_margin_python(legs: LegArrays, grid: ShockGrid | None = None) -> MarginResult:
    """The same computation as a plain loop over scenarios and legs.

    Reference for the tests and baseline for the benchmark: ``math`` only,
    one Black-Scholes call per leg per scenario, exactly as a first
    implementation would be written.
    """
    grid = grid or DEFAULT_GRID
    kind = legs.kind.tolist()
    qty, spot, strike = legs.qty.tolist(), legs.spot.tolist(), legs.strike.tolist()
    expiry, iv, half_spread = legs.expiry_years.tolist(), legs.iv.tolist(), legs.half_spread.tolist()
    mult, und = legs.multiplier.tolist(), legs.underlying.tolist()
    rate, n = grid.rate, len(kind)

    now = []
    spread_cost = 0.0
    short_notional: dict[tuple[int, int], float] = {}
    for i in range(n):
        if kind[i] == STOCK:
            now.append(spot[i])
        else:
            now.append(bs_price_scalar(kind[i] == CALL, spot[i], strike[i], expiry[i], iv[i], rate))
            key = (und[i], kind[i])
            short_notional[key] = short_notional.get(key, 0.0) + qty[i] * mult[i] * spot[i]
        spread_cost += abs(qty[i] * mult[i]) * half_spread[i]
    base = grid.naked_short_rate * sum(max(-v, 0.0) for v in short_notional.values())

    per = []
    for p in grid.price_shocks:
        for v in grid.iv_shocks:
            for m in grid.spread_multipliers:
                pnl = 0.0
                for i in range(n):
                    s = spot[i] * (1.0 + p)
                    if kind[i] == STOCK:
                        value = s
                    else:
                        value = bs_price_scalar(kind[i] == CALL, s, strike[i], expiry[i],
                                                iv[i] * (1.0 + v), rate)
                    pnl += qty[i] * mult[i] * (value - now[i])
                per.append(max(-pnl, 0.0) + m * spread_cost + base)
    k = max(range(len(per)), key=per.__getitem__)
    return MarginResult(per[k], np.array(per), k)


# -------------------------------------------------------------------- check


@dataclass(frozen=True, slots=True)
class MarginDecision:
    """Outcome of the pre-submission margin check (Decimal at the boundary)."""

    ok: bool
    worst: Decimal
    limit_value: Decimal
    scenario: Scenario

    @property
    def reason(self) -> str | None:
        return None if self.ok else REJECT_REASON


def _as_leg_arrays(legs) -> LegArrays:
    if isinstance(legs, LegArrays):
        return legs
    return LegArrays.from_legs(legs)


def _money(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(Decimal("0.000001"))


def margin_check(portfolio_legs, new_group_legs, available_margin, limit=Decimal("0.90"),
                 grid: ShockGrid | None = None) -> MarginDecision:
    """Rule 6: reject a group whose worst-case margin exceeds ``limit`` x available.

    Accepts LegArrays (ids from one numbering) or sequences of ``Leg`` (then
    portfolio and group are numbered together, so a group leg can cover a
    portfolio leg on the same underlying).
    """
    if isinstance(portfolio_legs, LegArrays) or isinstance(new_group_legs, LegArrays):
        legs = _as_leg_arrays(portfolio_legs).concat(_as_leg_arrays(new_group_legs))
    else:
        legs = LegArrays.from_legs([*portfolio_legs, *new_group_legs])
    return check_legs(legs, available_margin, limit, grid)[0]


def check_legs(legs: LegArrays, available_margin, limit=Decimal("0.90"),
               grid: ShockGrid | None = None) -> tuple[MarginDecision, MarginResult | None]:
    """:func:`margin_check` on legs already combined, with the grid's result
    (None for no legs) for callers that report per-scenario figures too."""
    grid = grid or DEFAULT_GRID
    available = Decimal(str(available_margin))
    limit_value = Decimal(str(limit)) * available
    if len(legs) == 0:
        return MarginDecision(True, Decimal(0), limit_value, grid.scenario(0)), None
    result = worst_case_margin(legs, grid)
    worst = _money(result.worst)
    decision = MarginDecision(worst <= limit_value, worst, limit_value,
                              grid.scenario(result.worst_index))
    return decision, result


# -------------------------------------------------------------------- bench


def random_legs(n_legs: int, seed: int = 7, n_underlyings: int = 20) -> LegArrays:
    """A realistic-looking book for tests and the benchmark: 10 % stock legs,
    the rest calls and puts near the money, 1 day to 1 year, long and short."""
    rng = np.random.default_rng(seed)
    und = rng.integers(0, n_underlyings, n_legs)
    spot_u = rng.uniform(20.0, 500.0, n_underlyings)
    kind = rng.choice([STOCK, CALL, PUT], size=n_legs, p=[0.1, 0.45, 0.45])
    spot = spot_u[und]
    return LegArrays(
        kind=kind,
        qty=rng.integers(1, 20, n_legs) * rng.choice([-1.0, 1.0], n_legs),
        spot=spot,
        strike=np.round(spot * rng.uniform(0.8, 1.2, n_legs), 1),
        expiry_years=rng.uniform(1 / 365, 1.0, n_legs),
        iv=rng.uniform(0.1, 0.8, n_legs),
        half_spread=spot * rng.uniform(0.0002, 0.002, n_legs),
        multiplier=np.where(kind == STOCK, 1.0, 100.0),
        underlying=und,
    )


def _median_us(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0


def bench_margin(n_legs: int = 1000, repeats: int = 2000, loop_repeats: int = 3,
                 seed: int = 7, grid: ShockGrid | None = None) -> dict:
    """Median microseconds per evaluation, numpy kernel vs plain loop.

    Both run on the same ``random_legs`` book (10 % stock legs) in the same
    process, on the default grid unless one is given. The kernel is timed
    through ``worst_case_margin`` exactly as callers use it; GC is paused
    while timing, as ``timeit`` does.
    """
    legs = random_legs(n_legs, seed)
    grid = grid or DEFAULT_GRID
    worst_case_margin(legs, grid)  # build the CDF table and buffers first
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        grid_us = _median_us(lambda: worst_case_margin(legs, grid), repeats)
        loop_us = _median_us(lambda: worst_case_margin_python(legs, grid), max(1, loop_repeats))
    finally:
        if was_enabled:
            gc.enable()
    return {
        "margin_grid_us": round(grid_us, 2),
        "margin_python_loop_us": round(loop_us, 1),
        "margin_speedup": round(loop_us / grid_us, 1),
    }
