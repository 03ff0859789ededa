"""The worst-case margin grid as a plain loop: the reference the numpy kernel
(``trading.margin``) is tested against and the baseline its benchmark
(``app.bench.margin``) compares with. Kept apart so the rule's own module
holds only what the order-group gate runs."""

from __future__ import annotations

import numpy as np

from trading.margin import MarginResult
from trading.margin_grid import DEFAULT_GRID, ShockGrid
from trading.margin_legs import CALL, STOCK, LegArrays
from trading.pricing import bs_price_scalar

__all__ = ["worst_case_margin_python"]


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
    assert legs.underlying is not None  # LegArrays.__post_init__ fills it in
    mult, und = legs.multiplier.tolist(), legs.underlying.tolist()
    rate, n = grid.rate, len(kind)

    now = []
    spread_cost = 0.0
    short_notional: dict[tuple[int, int], float] = {}
    for i in range(n):
        if kind[i] == STOCK:
            now.append(spot[i])
        else:
            now.append(bs_price_scalar(kind[i] == CALL, spot=spot[i], strike=strike[i],
                                       expiry_years=expiry[i], vol=iv[i], rate=rate))
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
                        value = bs_price_scalar(kind[i] == CALL, spot=s, strike=strike[i],
                                                expiry_years=expiry[i], vol=iv[i] * (1.0 + v),
                                                rate=rate)
                    pnl += qty[i] * mult[i] * (value - now[i])
                per.append(max(-pnl, 0.0) + m * spread_cost + base)
    k = max(range(len(per)), key=per.__getitem__)
    return MarginResult(per[k], np.array(per), k)
