"""Benchmark of the worst-case margin grid (DESIGN.md section 10).

``margin_grid_us`` is one ``worst_case_margin`` call on a 1,000-leg book
(27 scenarios), ``margin_python_loop_us`` the plain-loop reference on the
same book in the same process. Both time the evaluation of a LegArrays that
already exists, which is the kernel's share of a group check: the order-group
gate builds one LegArrays (portfolio + group) per check and evaluates it once
(``trading.group_margin``), so building it is not part of either number.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import numpy as np

from trading.margin import (CALL, DEFAULT_GRID, PUT, STOCK, LegArrays, ShockGrid,
                             worst_case_margin)
from trading.margin_reference import worst_case_margin_python

__all__ = ["random_legs", "bench_margin"]


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


def _median_us(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0


def bench_margin(n_legs: int = 1000, repeats: int = 2000, loop_repeats: int = 3,
                 seed: int = 7, grid: ShockGrid | None = None) -> dict[str, float]:
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
