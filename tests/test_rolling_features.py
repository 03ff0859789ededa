"""The inline path's incremental features equal the batch kernel's, quote by quote.

``RollingFeatures`` replaces a dozen numpy calls per quote with O(1) updates;
these tests hold it to :func:`compute_features` on the same rings (relative
1e-9, the same NaNs, exact zeros on flat windows) through warm-up, wrap-around,
periodic re-summing, flat stretches, repeated timestamps, bars and small rings.
"""

from __future__ import annotations

import math
import random

import pytest

from trading.features import BAR_COLUMNS, QUOTE_COLUMNS, FeatureParams, Features, compute_features
from trading.ring_buffer import RingBuffer
from trading.rolling_features import RollingFeatures

FIELDS = ("n_quotes", "n_bars", "mid", "spread_bps", "volatility", "ma_fast", "ma_slow",
          "zscore", "adv")


def same(a: Features, b: Features, where: str) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), f"{where}: {name} {x} vs {y}"
        elif x == 0.0 or y == 0.0:
            assert x == y or abs(x - y) < 1e-12, f"{where}: {name} {x} vs {y}"
        else:
            assert x == pytest.approx(y, rel=1e-9, abs=1e-12), f"{where}: {name} {x} vs {y}"


def drive(quotes: int, *, ring: int, params: FeatureParams, seed: int,
          bars_every: int = 0) -> int:
    rng = random.Random(seed)
    qring, bring = RingBuffer(len(QUOTE_COLUMNS), ring), RingBuffer(len(BAR_COLUMNS), 16)
    rolling = RollingFeatures(params, ring)
    t, mid, checked = 1.7e9, 100.0, 0
    for i in range(quotes):
        phase = (i // 150) % 3
        if phase == 1:
            pass                               # a flat stretch: the same mid again
        else:
            mid = round(mid * math.exp(rng.gauss(0, 0.002)), 2)
        if rng.random() > 0.1:                 # sometimes the same timestamp again
            t += rng.choice((0.001, 0.2, 1.0))
        half = rng.choice((0.005, 0.01, 0.5))
        bs, asz = float(rng.randint(0, 1000)), float(rng.randint(1, 1000))
        row = (t, mid - half, mid + half, mid, bs, asz)
        qring.push(row)
        rolling.push(*row)
        if bars_every and i % bars_every == 0:
            bring.push((t, mid, mid + 1, mid - 1, mid, float(rng.randint(0, 50))))
        want = compute_features(qring.window(qring.count), bring.window(bring.count), params)
        got = rolling.features(qring.count, bring.window(bring.count))
        same(got, want, f"quote {i}")
        checked += 1
    return checked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rolling_features_equal_the_batch_kernel_through_wraps_and_flat_stretches(seed):
    assert drive(1_200, ring=512, params=FeatureParams(), seed=seed) == 1_200


def test_rolling_features_with_bars_and_a_ring_smaller_than_the_lookback():
    drive(600, ring=32, params=FeatureParams(), seed=5, bars_every=7)
    drive(600, ring=8, params=FeatureParams(vol_window=20, ma_fast=30, ma_slow=5, z_window=9),
          seed=6, bars_every=3)


def test_rolling_features_before_any_quote_and_on_a_flat_market():
    params = FeatureParams()
    rolling = RollingFeatures(params, 512)
    empty = rolling.features(0, RingBuffer(len(BAR_COLUMNS), 8).window(0))
    same(empty, compute_features(RingBuffer(6, 8).window(0), RingBuffer(6, 8).window(0)), "empty")
    qring = RingBuffer(len(QUOTE_COLUMNS), 512)
    # moves first (the sums hold rounding residue), then flat: exactly 0 like the batch kernel
    for i in range(400):
        mid = 100.0 + (i % 7) * 0.37 if i < 200 else 101.23
        row = (1.7e9 + i, mid - 0.01, mid + 0.01, mid, 5.0, 5.0)
        qring.push(row)
        rolling.push(*row)
    f = rolling.features(qring.count, RingBuffer(6, 8).window(0))
    assert f.zscore == 0.0 and f.volatility == 0.0 and f.ma_fast == 101.23
    same(f, compute_features(qring.window(qring.count), RingBuffer(6, 8).window(0), params), "flat")


def test_an_inline_ring_never_allocates_its_snapshot_area():
    ring = RingBuffer(len(QUOTE_COLUMNS), 512)
    for i in range(600):
        ring.push((float(i), 1.0, 2.0, 1.5, 1.0, 1.0))
        ring.window(ring.count)
        ring.columns(ring.count)
    assert ring.nbytes == ring.data.nbytes  # pushes and windows only: no scratch
    n = ring.snapshot()
    first = ring.scratch
    assert n == 512 and list(first[0, :3]) == [88.0, 89.0, 90.0]
    ring.push((600.0, 1.0, 2.0, 1.5, 1.0, 1.0))
    ring.snapshot()
    assert ring.scratch is first and first[0, -1] == 600.0  # allocated once, then reused
