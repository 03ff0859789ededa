"""Black-Scholes kernels and the worst-case margin grid (rule 6).

Speed is measured by the benchmark (``bench_margin``), never asserted here.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import warnings
from decimal import Decimal as D

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.margin import (
    CALL,
    PUT,
    STOCK,
    Leg,
    LegArrays,
    MarginKernel,
    ShockGrid,
    margin_check,
    shock_grid,
    worst_case_margin,
)
from trading.margin_reference import worst_case_margin_python
from app.bench.margin import bench_margin, random_legs
from trading.pricing import (
    MIN_VOL_SQRT_T,
    bs_greeks,
    bs_price,
    bs_price_scalar,
    cdf_table,
    norm_cdf,
    norm_cdf_scalar,
    quote_option,
)

# ------------------------------------------------------------------ pricing


def _exact_cdf(xs):
    return np.array([0.5 * math.erfc(-x / math.sqrt(2.0)) for x in xs])


def test_norm_cdf_matches_math_erf_elementwise():
    xs = np.concatenate([np.linspace(-40, 40, 20001), np.random.default_rng(1).normal(0, 3, 5000)])
    assert np.max(np.abs(norm_cdf(xs) - _exact_cdf(xs))) < 1e-14
    assert norm_cdf(0.0) == pytest.approx(0.5, abs=1e-16)
    assert norm_cdf_scalar(1.0) == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), abs=1e-16)


def test_cdf_table_error_is_within_its_bound_and_far_below_1e7():
    table = cdf_table()
    xs = np.concatenate([np.linspace(-12, 12, 240001), [-1e300, 1e300, 0.0]])
    err = np.max(np.abs(table(xs) - _exact_cdf(xs)))
    assert err <= table.max_error < 3e-9


def test_textbook_values():
    # Hull: S=100, K=100, T=1, r=5 %, sigma=20 %.
    assert float(bs_price(True, spot=100, strike=100, expiry_years=1, vol=0.2, rate=0.05)) == pytest.approx(10.4506, abs=5e-5)
    assert float(bs_price(False, spot=100, strike=100, expiry_years=1, vol=0.2, rate=0.05)) == pytest.approx(5.5735, abs=5e-5)
    g = bs_greeks(True, spot=100, strike=100, expiry_years=1, vol=0.2, rate=0.05)
    assert float(g.delta) == pytest.approx(0.6368, abs=5e-5)
    assert float(g.gamma) == pytest.approx(0.018762, abs=5e-6)
    assert float(g.vega) == pytest.approx(37.524, abs=5e-4)


def test_put_call_parity_vectorized():
    rng = np.random.default_rng(2)
    n = 2000
    s, k = rng.uniform(5, 500, n), rng.uniform(5, 500, n)
    t, v, r = rng.uniform(0, 3, n), rng.uniform(0, 2, n), rng.uniform(-0.01, 0.1, n)
    call, put = (bs_price(True, spot=s, strike=k, expiry_years=t, vol=v, rate=r),
                 bs_price(False, spot=s, strike=k, expiry_years=t, vol=v, rate=r))
    np.testing.assert_allclose(call - put, s - k * np.exp(-r * t), rtol=0, atol=1e-9 * s.max())
    assert np.all(call >= -1e-12) and np.all(put >= -1e-12)


def test_scalar_and_vectorized_prices_agree():
    rng = np.random.default_rng(3)
    for _ in range(300):
        is_call = bool(rng.integers(2))
        args = {"spot": rng.uniform(10, 200), "strike": rng.uniform(10, 200),
                "expiry_years": rng.uniform(0, 2), "vol": rng.uniform(0, 1.5),
                "rate": rng.uniform(0, 0.08)}
        assert bs_price_scalar(is_call, **args) == pytest.approx(float(bs_price(is_call, **args)),
                                                                rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize("spot,strike,t,vol,rate", [
    (100, 100, 1.0, 0.2, 0.05), (90, 110, 0.25, 0.35, 0.01), (120, 95, 0.05, 0.6, 0.0),
    (50, 50, 2.0, 0.1, 0.03),
])
def test_greeks_match_finite_differences(is_call, spot, strike, t, vol, rate):
    g = bs_greeks(is_call, spot=spot, strike=strike, expiry_years=t, vol=vol, rate=rate)
    h = spot * 1e-4

    def px(s=spot, v=vol):
        return float(bs_price(is_call, spot=s, strike=strike, expiry_years=t, vol=v, rate=rate))

    delta_fd = (px(spot + h) - px(spot - h)) / (2 * h)
    gamma_fd = (px(spot + h) - 2 * px() + px(spot - h)) / (h * h)
    vega_fd = (px(v=vol + 1e-5) - px(v=vol - 1e-5)) / 2e-5
    assert float(g.delta) == pytest.approx(delta_fd, abs=1e-6)
    assert float(g.gamma) == pytest.approx(gamma_fd, rel=1e-4, abs=1e-7)
    assert float(g.vega) == pytest.approx(vega_fd, rel=1e-6, abs=1e-6)


def test_expiry_zero_and_vol_zero_fall_back_to_intrinsic_without_nan():
    s = np.array([90.0, 100.0, 110.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid warnings
        for t, vol in [(0.0, 0.2), (1.0, 0.0), (1.0, 1e-300), (1e-30, 1e-30)]:
            call = bs_greeks(True, spot=s, strike=100.0, expiry_years=t, vol=vol, rate=0.0)
            put = bs_greeks(False, spot=s, strike=100.0, expiry_years=t, vol=vol, rate=0.0)
            for g in (call, put):
                for arr in (g.price, g.delta, g.gamma, g.vega):
                    assert np.all(np.isfinite(arr))
            np.testing.assert_allclose(call.price, [0.0, 0.0, 10.0], atol=1e-9)
            np.testing.assert_allclose(put.price, [10.0, 0.0, 0.0], atol=1e-9)
            np.testing.assert_array_equal(call.delta, [0.0, 0.5, 1.0])
            np.testing.assert_array_equal(put.delta, [-1.0, -0.5, 0.0])
            np.testing.assert_array_equal(call.gamma, [0.0, 0.0, 0.0])
    # Zero vol with a rate: discounted intrinsic, step at the forward.
    g = bs_greeks(True, spot=100.0, strike=100.0, expiry_years=1.0, vol=0.0, rate=0.05)
    assert float(g.price) == pytest.approx(100 - 100 * math.exp(-0.05))
    assert float(g.delta) == 1.0
    assert bs_price_scalar(True, spot=100.0, strike=100.0, expiry_years=0.0, vol=0.2) == 0.0
    assert bs_price_scalar(False, spot=90.0, strike=100.0, expiry_years=1.0,
                           vol=MIN_VOL_SQRT_T / 10) == pytest.approx(10.0)


def test_pricing_rejects_bad_inputs():
    with pytest.raises(ValueError):
        bs_price(True, spot=0.0, strike=100, expiry_years=1, vol=0.2)
    with pytest.raises(ValueError):
        bs_price(True, spot=100, strike=100, expiry_years=-1, vol=0.2)


def test_quote_option_is_decimal_in_decimal_out():
    q = quote_option(True, spot=D("100"), strike=D("100"), expiry_years=D("1"), vol=D("0.2"),
                     rate=D("0.05"))
    assert q.price == D("10.45058357")
    assert all(isinstance(v, D) for v in (q.price, q.delta, q.gamma, q.vega))
    put = quote_option(False, spot=D("100"), strike=D("100"), expiry_years=D("1"), vol=D("0.2"),
                       rate=D("0.05"))
    assert q.delta - put.delta == D("1.00000000")
    with pytest.raises(ValueError):
        quote_option(True, spot=D("NaN"), strike=D("100"), expiry_years=1, vol=0.2)
    with pytest.raises(TypeError):
        quote_option(True, spot="100", strike=D("100"), expiry_years=1, vol=0.2)


# ------------------------------------------------------------- numpy == loop


def _table_bound(legs):
    """What the exp-free CDF table can cost in value: each option is two CDFs
    times |qty x mult| x (spot or strike), revalued and compared with now."""
    eps = cdf_table().max_error
    opt = legs.kind != STOCK
    w = np.abs(legs.qty * legs.multiplier)[opt]
    return 2.0 * eps * float(np.sum(w * (1.03 * legs.spot[opt] + legs.strike[opt])))


def _assert_same(legs, grid=None, atol=1e-6):
    fast = worst_case_margin(legs, grid)
    slow = worst_case_margin_python(legs, grid)
    np.testing.assert_allclose(fast.per_scenario, slow.per_scenario, rtol=1e-6, atol=atol)
    assert fast.worst == pytest.approx(slow.worst, rel=1e-6, abs=atol)
    per = np.sort(slow.per_scenario)
    if len(per) < 2 or per[-1] - per[-2] > 2 * atol + 1e-6 * max(1.0, per[-1]):
        assert fast.worst_index == slow.worst_index  # unambiguous worst
    return fast


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 7), (2, 60), (3, 250)])
@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_numpy_grid_equals_python_loop_on_random_books(seed, n, rate):
    _assert_same(random_legs(n, seed=seed, n_underlyings=max(1, n // 5)), shock_grid(rate=rate))


def test_numpy_grid_equals_python_loop_on_a_custom_grid_without_zero_shocks():
    grid = shock_grid(price_shocks=(-0.1, -0.05, 0.02, 0.08), iv_shocks=(-0.2, 0.25),
                      spread_multipliers=(0.5, 3.0), rate=0.02, naked_short_rate=0.15)
    res = _assert_same(random_legs(80, seed=9), grid)
    assert res.per_scenario.shape == (16,)


def test_numpy_grid_equals_python_loop_with_degenerate_options():
    legs = LegArrays(
        kind=[CALL, PUT, CALL, PUT, STOCK],
        qty=[-3, 2, 5, -1, 40],
        spot=[100, 100, 100, 100, 100],
        strike=[100, 105, 95, 100, 0],
        expiry_years=[0.0, 0.0, 0.5, 1.0, 0],
        iv=[0.3, 0.2, 0.0, 1e-14, 0],
        half_spread=[0.1, 0.1, 0.1, 0.1, 0.01],
        multiplier=[100, 100, 100, 100, 1],
        underlying=[0, 0, 0, 0, 0],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = _assert_same(legs)
    assert np.all(np.isfinite(res.per_scenario))


def test_numpy_grid_equals_python_loop_for_expired_options_far_from_the_money():
    # Zero total volatility with the strike 15x spot puts d/step near -1.5 * 2**52,
    # where the table-rounding trick must still land on the right end of the table.
    for kind, expiry, iv in [(CALL, 0.0, 0.3), (PUT, 0.0, 0.3), (CALL, 0.5, 0.0), (PUT, 1e-20, 0.3)]:
        legs = LegArrays(kind=[kind], qty=[10], spot=[10], strike=[150], expiry_years=[expiry],
                         iv=[iv], half_spread=[0], multiplier=[100])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for grid in (shock_grid(), shock_grid(rate=0.05)):
                _assert_same(legs, grid)


@settings(max_examples=40, deadline=None)
@given(st.lists(
    st.tuples(
        st.sampled_from([STOCK, CALL, PUT]),
        st.integers(-20, 20).filter(bool),
        st.floats(5, 500),
        st.floats(0.5, 1.5),           # strike / spot
        st.floats(0, 2),               # expiry
        st.floats(0, 1.5),             # iv
        st.floats(0, 1),               # half spread
        st.integers(0, 2),             # underlying
    ),
    min_size=1, max_size=6,
))
def test_numpy_grid_equals_python_loop_property(rows):
    legs = LegArrays(
        kind=[r[0] for r in rows], qty=[r[1] for r in rows], spot=[r[2] for r in rows],
        strike=[r[2] * r[3] for r in rows], expiry_years=[r[4] for r in rows],
        iv=[r[5] for r in rows], half_spread=[r[6] for r in rows],
        multiplier=[1.0 if r[0] == STOCK else 100.0 for r in rows],
        underlying=[r[7] for r in rows],
    )
    # Tiny books can have margins far below their notional, so the bound that
    # matters is the table's error times notional, not 1e-6 of the margin.
    _assert_same(legs, shock_grid(rate=0.03), atol=1e-6 + _table_bound(legs))


# --------------------------------------------------------------- semantics


def _bear_call_spread():
    """Short the 102 call, long the 107 call, 30 days, spot 100, iv 25 %."""
    t, iv, hs = D("0.0822"), D("0.25"), D("0.05")
    return [
        Leg(CALL, -10, D("100"), D("102"), t, iv, hs, 100, "XYZ"),
        Leg(CALL, 10, D("100"), D("107"), t, iv, hs, 100, "XYZ"),
    ]


def test_credit_spread_passing_now_is_rejected_by_the_up_3pct_iv_50pct_scenario():
    spread, available = _bear_call_spread(), D("1000")
    now_only = shock_grid(price_shocks=(0.0,), iv_shocks=(0.0,), spread_multipliers=(1.0,))
    at_current = margin_check([], spread, available, grid=now_only)
    assert at_current.ok and at_current.worst == D("100.000000")  # closing cost only

    decision = margin_check([], spread, available)
    assert not decision.ok
    assert decision.reason == "worst_case_margin"
    assert decision.limit_value == D("900.00")
    assert decision.scenario.index == 26
    assert (decision.scenario.price_shock, decision.scenario.iv_shock,
            decision.scenario.spread_multiplier) == (0.03, 0.5, 2.0)
    assert decision.worst == D("1020.826255")
    # Even at the normal spread the +3 % / +50 % IV scenario alone breaks the limit.
    per = worst_case_margin(LegArrays.from_legs(spread)).per_scenario
    assert per[24] > 900 > per[9]
    assert int(np.argmax(per)) == 26


def test_protective_long_put_reduces_worst_case_margin():
    t, iv, hs = 0.1, 0.3, 0.05
    naked = [Leg(PUT, -10, 100, 98, t, iv, hs, 100, "ABC")]
    spread = naked + [Leg(PUT, 10, 100, 93, t, iv, hs, 100, "ABC")]
    naked_m = worst_case_margin(LegArrays.from_legs(naked)).worst
    spread_m = worst_case_margin(LegArrays.from_legs(spread)).worst
    assert spread_m < naked_m
    # The naked short pays the 10 % base (100 * 100 * 10 * 0.10 = 10,000); the spread does not.
    assert naked_m - spread_m > 10_000 - 2_000

    stock = [Leg(STOCK, 1000, 100, half_spread=0.01, underlying="ABC")]
    hedged = stock + [Leg(PUT, 10, 100, 100, t, iv, hs, 100, "ABC")]
    assert worst_case_margin(LegArrays.from_legs(hedged)).worst < \
        worst_case_margin(LegArrays.from_legs(stock)).worst


def test_naked_short_base_nets_by_underlying_and_type():
    grid = shock_grid(price_shocks=(0.0,), iv_shocks=(0.0,), spread_multipliers=(0.0,))
    short_call = Leg(CALL, -2, 50, 55, 0.5, 0.2, 0, 100, "A")

    def margin(legs):
        return worst_case_margin(LegArrays.from_legs(legs), grid).worst

    assert margin([short_call]) == pytest.approx(0.10 * 2 * 100 * 50)
    assert margin([short_call, Leg(CALL, 2, 50, 60, 0.5, 0.2, 0, 100, "A")]) == 0.0
    assert margin([short_call, Leg(PUT, 2, 50, 45, 0.5, 0.2, 0, 100, "A")]) > 0   # wrong type
    assert margin([short_call, Leg(CALL, 2, 80, 85, 0.5, 0.2, 0, 100, "B")]) > 0  # wrong name
    unnamed = [Leg(CALL, -2, 50, 55, 0.5, 0.2, 0, 100), Leg(CALL, 2, 50, 60, 0.5, 0.2, 0, 100)]
    assert margin(unnamed) == pytest.approx(0.10 * 2 * 100 * 50)  # no name: nothing covers


def test_scenario_order_and_linear_spread_axis():
    legs = random_legs(30, seed=4)
    grid = ShockGrid()
    per = worst_case_margin(legs, grid).per_scenario
    assert per.shape == (27,)
    spread_cost = float(np.sum(np.abs(legs.qty * legs.multiplier) * legs.half_spread))
    for i in range(0, 27, 3):
        assert grid.scenario(i).spread_multiplier == 1.0
        assert per[i + 2] - per[i] == pytest.approx(1.0 * spread_cost, rel=1e-9)
    assert grid.scenario(13) == (13, 0.0, 0.3, 1.5)


def test_margin_check_numbers_portfolio_and_group_together_and_uses_decimal():
    portfolio = [Leg(CALL, 10, D("100"), D("107"), D("0.0822"), D("0.25"), D("0.05"), 100, "XYZ")]
    group = [Leg(CALL, -10, D("100"), D("102"), D("0.0822"), D("0.25"), D("0.05"), 100, "XYZ")]
    together = margin_check(portfolio, group, D("5000"))
    alone = margin_check([], group, D("5000"))
    assert together.ok and not alone.ok  # the held 107 call covers the new short
    assert isinstance(together.worst, D) and isinstance(together.limit_value, D)
    assert together.limit_value == D("4500.00")
    arrays = margin_check(LegArrays.from_legs(portfolio), LegArrays.empty(), 5000)
    assert arrays.ok
    assert margin_check([], [], D("0")).ok


def test_empty_book_and_thread_safety():
    res = worst_case_margin(LegArrays.empty())
    assert res.worst == 0.0 and res.per_scenario.shape == (27,)

    legs = random_legs(300, seed=5)
    expected = worst_case_margin(legs).per_scenario
    bad = []

    def worker():
        for _ in range(20):
            if not np.array_equal(worst_case_margin(legs).per_scenario, expected):
                bad.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not bad


def test_stock_only_book_skips_black_scholes_and_matches_the_loop():
    legs = LegArrays(kind=[STOCK, STOCK], qty=[10, -5], spot=[100, 50], strike=[0, 0],
                     expiry_years=[0, 0], iv=[0, 0], half_spread=[0.01, 0.02],
                     multiplier=[1, 1])
    res = _assert_same(legs)
    # Worst: -3 % on the net long 750 of stock (22.5) plus twice the spread (0.4).
    assert res.worst == pytest.approx(22.9) and res.worst_index == 2


def test_kernel_reuses_buffers_across_sizes():
    kernel = MarginKernel(shock_grid(rate=0.01))
    for n, seed in [(50, 1), (5, 2), (50, 3), (1, 4)]:
        legs = random_legs(n, seed=seed)
        np.testing.assert_allclose(kernel.evaluate(legs).per_scenario,
                                   worst_case_margin_python(legs, kernel.grid).per_scenario,
                                   rtol=1e-6)


def test_leg_arrays_validate_and_are_immutable():
    good = dict(kind=[CALL], qty=[1], spot=[100], strike=[100], expiry_years=[1], iv=[0.2],
                half_spread=[0.1], multiplier=[100])
    legs = LegArrays(**good)
    with pytest.raises(ValueError):
        legs.spot[0] = 1.0
    for change in ({"kind": [3]}, {"spot": [0]}, {"strike": [0]}, {"iv": [-0.1]},
                   {"qty": [float("nan")]}, {"qty": [1, 2]}, {"multiplier": [0]}):
        with pytest.raises(ValueError):
            LegArrays(**{**good, **change})
    with pytest.raises(ValueError):
        ShockGrid(price_shocks=(-1.0,))
    with pytest.raises(ValueError):
        ShockGrid(spread_multipliers=())


def test_bench_margin_reports_the_benchmark_keys():
    out = bench_margin(n_legs=20, repeats=5, loop_repeats=1)
    assert {"margin_grid_us", "margin_python_loop_us"} <= out.keys()
    assert all(v > 0 for v in out.values())


def test_import_builds_nothing():
    code = ("import trading.margin, trading.pricing, threading;"
            "print(trading.pricing.cdf_table.cache_info().currsize, threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "1"]
