"""runtime.rolling: the sorted window agrees with numpy on the last N samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.rolling import RollingSample, percentile_of_sorted

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=300), st.integers(1, 50),
       st.sampled_from([0, 1, 50, 90, 99, 99.9, 100]))
def test_percentile_matches_numpy_over_the_last_n(values, size, q) -> None:
    window = RollingSample(size)
    for v in values:
        window.add(v)
    last = values[-size:]
    assert len(window) == len(last) and window.count == len(values)
    assert list(window.recent) == last
    assert window.percentile(q) == pytest.approx(float(np.percentile(last, q)), rel=1e-12, abs=1e-9)


def test_eviction_removes_the_oldest_even_among_equal_values() -> None:
    window = RollingSample(3)
    for v in (5.0, 1.0, 5.0, 9.0, 9.0):
        window.add(v)
    assert list(window.recent) == [5.0, 9.0, 9.0]
    assert window.percentile(0) == 5.0 and window.percentile(100) == 9.0


def test_empty_window_has_no_percentile_and_bad_input_is_refused() -> None:
    assert RollingSample(4).percentile(99) is None
    with pytest.raises(ValueError, match="size"):
        RollingSample(0)
    window = RollingSample(4)
    window.add(1.0)
    with pytest.raises(ValueError, match="NaN"):
        window.add(math.nan)
    assert list(window.recent) == [1.0] and window.count == 1, "a refused sample changes nothing"


def test_percentile_of_sorted_is_numpys_linear_method() -> None:
    xs = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    for q in (0, 10, 25, 50, 75, 99, 100):
        assert percentile_of_sorted(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_snapshot_is_never_taken_halfway_through_an_add(monkeypatch) -> None:
    """A metrics scrape on another thread may land inside ``add``: after the new
    sample is in ``recent`` but before ``count`` moved. It must not read that
    state (it would fold the wrong samples), only a whole one."""
    import runtime.rolling as rolling

    window = RollingSample(3)
    window.add(1.0)
    seen_inside: list = []
    real_insort = rolling.bisect.insort

    def insort_and_look(ordered, value):  # runs in the middle of add()
        seen_inside.append(window.snapshot())
        real_insort(ordered, value)

    monkeypatch.setattr(rolling.bisect, "insort", insort_and_look)
    window.add(2.0)
    assert seen_inside == [None], "a half-done add must not be read"
    assert window.snapshot() == (2, (1.0, 2.0))
