"""Percentiles of the last N samples, cheap enough to publish after every message.

Actors publish their latency figures in ``cell.info`` when idle. Computing
``np.percentile`` over a 10,000-sample window there cost ~200 us a time on
the actor's thread, holding the GIL the rest of the tree waits for. A window
that also keeps its samples sorted answers any percentile by indexing: an
insert and an eviction are a binary search plus a C-level memmove each.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import TYPE_CHECKING
from collections.abc import Sequence

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def percentile_of_sorted(ordered: Sequence[float] | npt.NDArray[np.float64], q: float) -> float:
    """``np.percentile(x, q)`` (its default, linear method) of an already sorted ``x``."""
    pos = q / 100 * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    a, b, t = float(ordered[lo]), float(ordered[hi]), pos - lo
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's lerp, both branches


class RollingSample:
    """The last ``size`` samples, in arrival order and sorted.

    ``count`` is every sample ever added, so a reader that remembers how many
    it has seen can tell the new ones even once the window is full.
    """

    __slots__ = ("recent", "_ordered", "count", "_version")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"RollingSample size must be >= 1, got {size}")
        self.recent: deque[float] = deque(maxlen=size)
        self._ordered: list[float] = []
        self.count = 0
        #: odd while ``add`` runs (a sequence lock for readers on other threads)
        self._version = 0

    def add(self, value: float) -> None:
        if value != value:  # NaN would sort anywhere and poison every percentile
            raise ValueError("RollingSample: NaN sample")
        self._version += 1
        if len(self.recent) == self.recent.maxlen:
            oldest = self.recent[0]
            del self._ordered[bisect.bisect_left(self._ordered, oldest)]
        self.recent.append(value)
        bisect.insort(self._ordered, value)
        self.count += 1
        self._version += 1

    def snapshot(self, tries: int = 3) -> tuple[int, tuple[float, ...]] | None:
        """``(count, recent samples)`` as of one moment, for a reader on another
        thread (the owner may be inside ``add``); None if it kept changing."""
        for _ in range(tries):
            before = self._version
            if before % 2 == 0:
                count, samples = self.count, tuple(self.recent)
                if self._version == before:
                    return count, samples
        return None

    def __len__(self) -> int:
        return len(self.recent)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile of the window (numpy's linear method); None when empty."""
        if not self._ordered:
            return None
        return percentile_of_sorted(self._ordered, q)
