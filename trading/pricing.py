"""Black-Scholes pricing for European options: vectorized, scalar and Decimal.

One model prices options everywhere: ``quote_option`` quotes one option
(Decimal in, Decimal out) and the margin shock grid (``trading.margin``)
revalues legs with the same formulas. Floats live only inside this
module's kernels; Decimal stays at the boundary.

Why no scipy: it is not a dependency. The normal CDF is Hart's (1968)
double-precision rational approximation as given by West (2005), which is
accurate to about 1e-15 absolute; the tests check it against ``math.erfc``.
The margin kernel needs something cheaper still (numpy has no vectorized
float64 ``exp`` on many CPUs), so ``cdf_table`` provides a piecewise-linear
table with a documented error bound that avoids ``exp`` entirely.

Conventions: no dividends; ``rate`` is the continuously compounded risk-free
rate; ``vega`` is per 1.00 of volatility (divide by 100 for one vol point);
``expiry_years`` of 0 means expiring now. When ``vol * sqrt(T)`` is below
``MIN_VOL_SQRT_T`` (expiry 0, or volatility ~0) the price is the discounted
intrinsic value ``max(S - K e^(-rT), 0)`` (calls) and delta is a step, so
nothing returns NaN.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: a float64 array (what every vectorized function here returns)
Floats = NDArray[np.float64]

__all__ = [
    "MIN_VOL_SQRT_T",
    "Greeks",
    "OptionQuote",
    "CdfTable",
    "norm_cdf",
    "norm_pdf",
    "norm_cdf_scalar",
    "bs_price",
    "bs_greeks",
    "bs_price_scalar",
    "quote_option",
    "cdf_table",
]

#: Below this total volatility the option is priced at (discounted) intrinsic.
MIN_VOL_SQRT_T = 1e-12

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Hart 5666 coefficients (West 2005, "Better approximations to cumulative
# normal functions"), highest degree first.
_HART_NUM = (3.52624965998911e-02, 0.700383064443688, 6.37396220353165,
             33.912866078383, 112.079291497871, 221.213596169931,
             220.206867912376)
_HART_DEN = (8.83883476483184e-02, 1.75566716318264, 16.064177579207,
             86.7807322029461, 296.564248779674, 637.333633378831,
             793.826512519948, 440.413735824752)
_HART_SPLIT = 7.07106781186547
_HART_ZERO = 37.0


def norm_pdf(x: ArrayLike) -> Floats:
    """Standard normal density, vectorized."""
    a = np.asarray(x, dtype=np.float64)
    out: Floats = _INV_SQRT_2PI * np.exp(-0.5 * a * a)
    return out


def norm_cdf(x: ArrayLike) -> Floats:
    """Standard normal CDF, vectorized, |error| < 1e-15 (Hart/West).

    Why this and not A&S 7.1.26: that one is only good to 1.5e-7, which shows
    up as cents on a large book; this costs a few more multiplies.
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    e = np.exp(-0.5 * a * a)
    num = np.full_like(a, _HART_NUM[0])
    for c in _HART_NUM[1:]:
        num = num * a + c
    den = np.full_like(a, _HART_DEN[0])
    for c in _HART_DEN[1:]:
        den = den * a + c
    body = e * num / den
    # Tail (|x| >= 7.07): continued fraction; values there are < 1e-12.
    t = a + 0.65
    for k in (4.0, 3.0, 2.0, 1.0):
        t = a + k / t
    tail = e / t / 2.506628274631
    lower = np.where(a < _HART_SPLIT, body, tail)
    lower = np.where(a > _HART_ZERO, 0.0, lower)
    return np.where(x > 0, 1.0 - lower, lower)


def norm_cdf_scalar(x: float) -> float:
    """Standard normal CDF for one float, via ``math.erfc`` (exact to ulps)."""
    return 0.5 * math.erfc(-x / _SQRT2)


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and first/second-order sensitivities, arrays of one shape."""

    price: Floats
    delta: Floats
    gamma: Floats
    vega: Floats


def _prepare(is_call: ArrayLike, *, spot: ArrayLike, strike: ArrayLike, expiry_years: ArrayLike,
             vol: ArrayLike, rate: ArrayLike) -> tuple[NDArray[np.bool_], Floats, Floats,
                                                       Floats, Floats, Floats]:
    arrays = np.broadcast_arrays(
        np.asarray(is_call, dtype=bool),
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(expiry_years, dtype=np.float64),
        np.asarray(vol, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
    )
    call, s, k, t, v, r = arrays
    if np.any(s <= 0) or np.any(k <= 0):
        raise ValueError("spot and strike must be > 0")
    if np.any(t < 0) or np.any(v < 0):
        raise ValueError("expiry_years and vol must be >= 0")
    return call, s, k, t, v, r


def bs_greeks(is_call: ArrayLike, *, spot: ArrayLike, strike: ArrayLike, expiry_years: ArrayLike,
              vol: ArrayLike, rate: ArrayLike = 0.0) -> Greeks:
    """Black-Scholes price, delta, gamma and vega; all inputs broadcast.

    Degenerate options (``vol * sqrt(T) < MIN_VOL_SQRT_T``) get discounted
    intrinsic value, a step delta (0.5 exactly at the forward), and zero
    gamma and vega, instead of 0/0.
    """
    call, s, k, t, v, r = _prepare(is_call, spot=spot, strike=strike, expiry_years=expiry_years,
                                   vol=vol, rate=rate)
    sqrt_t = np.sqrt(t)
    vst = v * sqrt_t
    live = vst >= MIN_VOL_SQRT_T
    safe = np.where(live, vst, 1.0)
    kd = k * np.exp(-r * t)
    d1 = (np.log(s / kd) + 0.5 * safe * safe) / safe
    d2 = d1 - safe
    n1 = norm_cdf(d1)
    call_px = s * n1 - kd * norm_cdf(d2)
    pdf1 = norm_pdf(d1)

    intrinsic = np.maximum(s - kd, 0.0)
    step = np.where(s > kd, 1.0, np.where(s < kd, 0.0, 0.5))
    call_px = np.where(live, call_px, intrinsic)
    call_delta = np.where(live, n1, step)
    gamma = np.where(live, pdf1 / (s * safe), 0.0)
    vega = np.where(live, s * pdf1 * sqrt_t, 0.0)

    # Put-call parity: P = C - S + K e^(-rT); delta_P = delta_C - 1.
    price = np.where(call, call_px, call_px - s + kd)
    delta = np.where(call, call_delta, call_delta - 1.0)
    return Greeks(price=price, delta=delta, gamma=gamma, vega=vega)


def bs_price(is_call: ArrayLike, *, spot: ArrayLike, strike: ArrayLike, expiry_years: ArrayLike,
             vol: ArrayLike, rate: ArrayLike = 0.0) -> Floats:
    """Black-Scholes price only (see ``bs_greeks`` for conventions)."""
    return bs_greeks(is_call, spot=spot, strike=strike, expiry_years=expiry_years, vol=vol,
                     rate=rate).price


def bs_price_scalar(is_call: bool, *, spot: float, strike: float,
                    expiry_years: float, vol: float, rate: float = 0.0) -> float:
    """One option's Black-Scholes price with the ``math`` module only.

    Used by the Decimal wrapper and by the plain-loop reference of the margin
    grid; same conventions and degenerate-case rule as ``bs_greeks``.
    """
    kd = strike * math.exp(-rate * expiry_years)
    vst = vol * math.sqrt(expiry_years)
    if vst < MIN_VOL_SQRT_T:
        call_px = max(spot - kd, 0.0)
    else:
        d1 = math.log(spot / kd) / vst + 0.5 * vst
        call_px = spot * norm_cdf_scalar(d1) - kd * norm_cdf_scalar(d1 - vst)
    return call_px if is_call else call_px - spot + kd


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """Model value of one option, in Decimal for the exchange and the books."""

    price: Decimal
    delta: Decimal
    gamma: Decimal
    vega: Decimal


def _to_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float)):
        raise TypeError(f"{name} must be Decimal, int or float, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _to_decimal(value: float, places: int) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal(1).scaleb(-places))


def quote_option(is_call: bool, *, spot: Decimal, strike: Decimal, expiry_years: Decimal | float,
                 vol: Decimal | float, rate: Decimal | float = Decimal(0),
                 places: int = 8) -> OptionQuote:
    """Decimal-in, Decimal-out Black-Scholes quote for the simulated exchange.

    Floats are used only inside; every output is quantized to ``places``
    decimal places so that quotes are stable, comparable Decimals.
    """
    g = bs_greeks(
        bool(is_call),
        spot=_to_float(spot, "spot"),
        strike=_to_float(strike, "strike"),
        expiry_years=_to_float(expiry_years, "expiry_years"),
        vol=_to_float(vol, "vol"),
        rate=_to_float(rate, "rate"),
    )
    return OptionQuote(
        price=_to_decimal(float(g.price), places),
        delta=_to_decimal(float(g.delta), places),
        gamma=_to_decimal(float(g.gamma), places),
        vega=_to_decimal(float(g.vega), places),
    )


@dataclass(frozen=True, slots=True, eq=False)
class CdfTable:
    """Piecewise-linear normal CDF without ``exp``, for hot numpy kernels.

    With ``u = x / step`` and ``j = clip(round(u) + offset, 0, len - 1)``:
    ``N(x) ~= coef.real[j] + coef.imag[j] * u``. Each entry is the minimax
    line over its cell, so ``|error| <= max_error`` (about
    ``N''max * step**2 / 16``: 2.4e-9 at the default step; below ``N(-limit)``
    outside the table). Intercept and slope share one complex entry so that a
    kernel needs a single gather per lookup.
    """

    step: float
    limit: float
    offset: int
    coef: NDArray[np.complex128]

    @property
    def inv_step(self) -> float:
        return 1.0 / self.step

    @property
    def max_error(self) -> float:
        """A bound on the absolute error, for tests and documentation."""
        curvature = _INV_SQRT_2PI * math.exp(-0.5)  # max |N''|, at x = +-1
        return curvature * self.step**2 / 16.0 * 1.05 + norm_cdf_scalar(-self.limit)

    def __call__(self, x: ArrayLike) -> Floats:
        """Reference lookup (not the fast path: kernels inline it)."""
        u = np.asarray(x, dtype=np.float64) / self.step
        j = np.clip(np.rint(u) + self.offset, 0, len(self.coef) - 1).astype(np.intp)
        c = self.coef[j]
        out: Floats = c.real + c.imag * np.where(np.isfinite(u), u, 0.0)
        return out


@functools.lru_cache(maxsize=4)
def cdf_table(step: float = 4e-4, limit: float = 6.5) -> CdfTable:
    """Build (once, lazily: no work at import) the linear CDF table."""
    if not (0.0 < step <= 0.1) or not (1.0 <= limit <= 40.0):
        raise ValueError("cdf_table needs 0 < step <= 0.1 and 1 <= limit <= 40")
    offset = int(round(limit / step))
    j = np.arange(2 * offset + 1, dtype=np.float64) - offset  # node position in u
    mid = j * step
    lo = norm_cdf(mid - 0.5 * step)
    hi = norm_cdf(mid + 0.5 * step)
    chord_mid = 0.5 * (lo + hi)
    # Minimax line of a convex or concave arc: the chord moved half-way to the arc.
    value_mid = chord_mid + 0.5 * (norm_cdf(mid) - chord_mid)
    slope_u = hi - lo  # per unit of u (= per step in x)
    alpha = value_mid - slope_u * j
    alpha[0], slope_u[0] = 0.0, 0.0
    alpha[-1], slope_u[-1] = 1.0, 0.0
    coef = alpha + 1j * slope_u
    coef.setflags(write=False)
    return CdfTable(step=float(step), limit=float(limit), offset=offset, coef=coef)
