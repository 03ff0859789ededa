"""Worst-case margin over the shock grid (DESIGN.md rule 6).

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

Speed (the benchmark: 1,000 legs x 27 scenarios, target 100 us): spread
multipliers are linear, so Black-Scholes runs once per option leg on the 9
(price, iv) pairs, and never for stock legs; puts are calls plus a linear
parity term. ``log`` and ``sqrt`` run once per leg: every d/step of every
pair is a fixed linear combination of three per-leg numbers, so one BLAS
product forms all 18 rows at once. numpy has no vectorized float64 ``exp``
on AVX2-only CPUs (about 5 ns an element), so the normal CDF is the
exp-free ``pricing.cdf_table`` (error < 3e-9) and the sums over legs are
BLAS matrix-vector products; see ``MarginKernel``. At this size the kernel
is bound by memory passes and by numpy's per-call overhead, so it makes as
few calls as it can. ``trading.margin_reference.worst_case_margin_python``
is the same computation as a plain loop: the tests' reference and the
benchmark's baseline (the benchmark itself is ``app.bench.margin``).

The legs (``Leg``, ``LegArrays``) live in ``trading.margin_legs`` and the
scenarios (``ShockGrid``) in ``trading.margin_grid``; both are re-exported
here, the margin check's one entry point.

``rate`` (in the grid) defaults to 0, as in ``pricing.quote_option``: over a
shock horizon it moves "now" and "shocked" values alike.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from decimal import Decimal
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from trading.margin_grid import DEFAULT_GRID as DEFAULT_GRID
from trading.margin_grid import Scenario as Scenario
from trading.margin_grid import ShockGrid as ShockGrid
from trading.margin_grid import shock_grid as shock_grid
from trading.margin_legs import CALL as CALL
from trading.margin_legs import PUT as PUT
from trading.margin_legs import STOCK as STOCK
from trading.margin_legs import Leg as Leg
from trading.margin_legs import LegArrays as LegArrays
from trading.pricing import MIN_VOL_SQRT_T, cdf_table

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
    "margin_check",
]

REJECT_REASON = "worst_case_margin"

# Bound once: the kernel is call-overhead bound for small books.
_sqrt, _mul, _div, _add, _sub = np.sqrt, np.multiply, np.divide, np.add, np.subtract
_exp, _log, _recip, _max, _min = np.exp, np.log, np.reciprocal, np.maximum, np.minimum
_bincount = np.bincount

_MAGIC = 1.5 * 2.0**52  # x + _MAGIC rounds x to an integer in the low mantissa bits
_MAGIC_BITS = int(np.array(_MAGIC).view(np.int64))
# |log(S/K)| for any two positive finite doubles whose ratio is finite.
_MAX_LOG_MONEYNESS = 745.0


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

    Per option leg: ``vst = max(iv sqrt(T), floor)`` and ``x0 = log(S/Kd)``,
    the only ``sqrt`` and ``log``. Since ``log(S(1+p)/Kd) = x0 + log(1+p)``
    and the shocked total vol is ``vst (1+v)``, each d/step of each
    (d1|d2, p, v) is ``L[row] . [x0/vst, 1/vst, vst]`` with ``L`` a grid
    constant: one (18 x 3) @ (3 x legs) BLAS product gives all rows, legs
    last so every later pass is one contiguous array. N(d) uses the exp-free
    ``cdf_table``: ``u = d / step`` is rounded to its table node with the
    1.5 * 2**52 trick (two passes, no float->int cast), one complex gather
    (``ndarray.take``) fetches (intercept, slope), and the weighted sum over
    legs of ``intercept + slope * u`` is done by BLAS: one pass forms
    ``slope * u``, then one matrix-vector product per row block sums it and
    another sums the intercepts straight from the gathered pairs (weights
    ``[a, 0, a, 0, ...]``). Each numpy call costs 0.3-1 us whatever its
    size (about 17 us of a 1,000-leg evaluation), so everything the hot path
    touches (buffers, their views, bound ``dot``/``take`` methods, constants
    as 0-d arrays) is prepared once.

    ``vst`` is floored at ``self.floor`` (about 5e-10 on the default grid,
    rather than ``MIN_VOL_SQRT_T``) so that ``u`` stays above -1.5 * 2**52
    for any legs: below that, ``u + 1.5 * 2**52`` is negative and its bits
    point at the wrong end of the table (an expired call struck at 15x spot
    used to get N = 1). Below that total volatility an option is priced at
    ``vst = floor``, i.e. within ``0.4 * floor * S`` of intrinsic: far less
    than the table's own error.
    """

    def __init__(self, grid: ShockGrid = DEFAULT_GRID) -> None:
        self.grid = grid
        table = cdf_table()
        self._take = table.coef.take  # the method: np.take adds a Python-level hop
        inv_h = table.inv_step

        # Always price the unshocked point; add 0 to an axis that lacks it.
        prices = list(grid.price_shocks) + ([] if 0.0 in grid.price_shocks else [0.0])
        vols = list(grid.iv_shocks) + ([] if 0.0 in grid.iv_shocks else [0.0])
        n_p, n_v = len(prices), len(vols)
        self._np, self._nv = n_p, n_v
        pv = n_p * n_v

        # Row (k, p, v), k = 0 for d1 and 1 for d2, in table units:
        # (x0 + log(1+p)) / (vst (1+v) step) +- vst (1+v) / (2 step).
        lin = np.empty((2, n_p, n_v, 3))
        for a, p in enumerate(prices):
            ln_p = math.log1p(p)
            for b, v in enumerate(vols):
                c = inv_h / (1.0 + v)
                half = 0.5 * inv_h * (1.0 + v)
                lin[0, a, b] = (c, ln_p * c, half)
                lin[1, a, b] = (c, ln_p * c, -half)
        self._rows = lin.reshape(2 * pv, 3)
        self._rows_dot = self._rows.dot
        max_x = _MAX_LOG_MONEYNESS + max(abs(math.log1p(p)) for p in prices)
        self.floor = max(MIN_VOL_SQRT_T, max_x * inv_h / ((1.0 + min(vols)) * 0.5 * _MAGIC))

        # neg_pnl = M @ vec; vec = [sum a N (2 x pv, intercept part),
        # sum a N (2 x pv, slope part), linear term]; row r = p * n_v + v.
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
        self._m_dot = self._m.dot
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
        self._e_dot = e.dot
        self._tail = np.zeros(n_out + 2)
        self._tail_loss = self._tail[:n_out]
        self._vec = np.zeros(4 * pv + 1)
        # Constants as 0-d arrays: a Python scalar costs a conversion per call.
        self._floor = np.array(self.floor)
        self._magic = np.array(_MAGIC + table.offset)  # rounding and table offset in one add
        self._magic_bits = np.array(_MAGIC_BITS, dtype=np.int64)
        self._zero = np.array(0.0)
        self._neg_rate = np.array(-grid.rate)
        self._ones = np.ones(64)
        self._cap = -1

    def _ensure(self, n: int) -> None:
        """(Re)allocate buffers and cache every view the hot path uses."""
        pv = self._np * self._nv
        self._cap = n
        q = np.empty((3, n))             # x0/vst, 1/vst, vst
        u = np.empty((2, pv, n))         # d1, d2 in table units; then slope * u
        r = np.empty((2, pv, n))         # magic-rounded u; its bits become the index
        g = np.empty((2, pv, n), dtype=np.complex128)
        g_pairs = g.view(np.float64).reshape(2, pv, 2 * n)
        wa = np.zeros((2, n, 2))         # [a, 0] per leg: picks the intercepts
        a = wa[:, :, 0]                  # weights: w*S for N(d1), -w*Kd for N(d2)
        sk = np.empty((2, n))            # spot, discounted strike (rate != 0 only)
        vec = self._vec
        self._bufs = (
            q, q[0], q[1], q[2], u.reshape(2 * pv, n), u, u[0], u[1],
            r, r.view(np.int64), g, g.imag, g_pairs[0], g_pairs[1],
            a, a[0], a[1], wa[0].reshape(2 * n), wa[1].reshape(2 * n),
            vec[:pv], vec[pv:2 * pv], vec[2 * pv:3 * pv], vec[3 * pv:4 * pv],
            sk, sk[1], np.empty(n),
        )

    def evaluate(self, legs: LegArrays) -> MarginResult:
        """Revalue every leg under every (price, iv) shock; see the class doc."""
        opt = legs._opt
        n = opt.w.shape[0]  # option legs; stock legs only enter linearly
        if n != self._cap:
            self._ensure(n)
        (q, x, inv_vst, vst, u_rows, u, u0, u1, r, idx, g, g_slope, g0, g1,
         a, a0, a1, wa0, wa1, icept0, icept1, slope0, slope1, sk_buf, kd_buf, tmp) = self._bufs
        spot, t = opt.spot, opt.expiry_years
        # Positional ``out`` arguments where numpy allows: this path is bound
        # by per-call overhead.

        # Per leg: total vol (floored, see the class doc), discounted strike,
        # then q = [log(S/Kd)/vst, 1/vst, vst].
        _sqrt(t, vst)
        _mul(opt.iv, vst, vst)
        _max(vst, self._floor, out=vst)
        _recip(vst, inv_vst)
        if self.grid.rate:
            _mul(t, self._neg_rate, tmp)
            _exp(tmp, tmp)
            _mul(tmp, opt.strike, kd_buf)
            sk_buf[0] = spot
            sk, kd = sk_buf, kd_buf
        else:
            sk, kd = opt.sk, opt.strike
        _div(spot, kd, x)
        _log(x, x)
        _mul(x, inv_vst, x)

        # d / step for every (d1|d2, price shock, iv shock, leg): one BLAS product.
        self._rows_dot(q, u_rows)

        # N(d) = intercept + slope * u from the nearest table node.
        _add(u, self._magic, r)
        _sub(idx, self._magic_bits, idx)
        self._take(idx, None, g, "clip")
        _mul(g_slope, u, u)

        # Sums over legs, weights qty*mult*S (N(d1)) and -qty*mult*Kd (N(d2)).
        _mul(opt.w2, sk, a)
        u0.dot(a0, slope0)
        u1.dot(a1, slope1)
        g0.dot(wa0, icept0)
        g1.dot(wa1, icept1)
        vec = self._vec
        vec[-1] = legs._w_lin.dot(legs.spot)  # stock legs, put parity: linear in p

        tail, loss = self._tail, self._tail_loss
        self._m_dot(vec, loss)
        _max(loss, self._zero, out=loss)
        tail[-2] = legs._abs_w.dot(legs.half_spread)
        if legs._any_short_option:
            n_keys = legs._n_keys
            if n_keys > self._ones.shape[0]:
                self._ones = np.ones(2 * n_keys)
            net = _bincount(opt.key, a0, n_keys)
            tail[-1] = _min(net, self._zero, out=net).dot(self._ones[:n_keys])  # .sum() costs more
        else:
            tail[-1] = 0.0
        per = self._e_dot(tail)
        k = int(per.argmax())
        return MarginResult(float(per[k]), per, k)


_local = threading.local()


def _kernel(grid: ShockGrid) -> MarginKernel:
    # Keyed by identity first: hashing the frozen grid costs a microsecond.
    kernels: dict[int, tuple[ShockGrid, MarginKernel]] | None = getattr(_local, "kernels", None)
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


def _as_leg_arrays(legs: LegArrays | Iterable[Leg]) -> LegArrays:
    if isinstance(legs, LegArrays):
        return legs
    return LegArrays.from_legs(legs)


def _money(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(Decimal("0.000001"))


def margin_check(portfolio_legs: LegArrays | Iterable[Leg], new_group_legs: LegArrays | Iterable[Leg],
                 available_margin: Decimal | float, limit: Decimal = Decimal("0.90"),
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


def check_legs(legs: LegArrays, available_margin: Decimal | float, limit: Decimal = Decimal("0.90"),
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
