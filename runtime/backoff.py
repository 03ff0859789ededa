"""Exponential backoff with jitter, shared by supervisors and reconnects.

Two jitter styles (AWS architecture blog, "Exponential Backoff And Jitter"):
``full`` draws uniformly from [0, cap]; ``equal`` keeps half the delay and
jitters the other half, so a restart is never immediate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.05
    max_s: float = 5.0
    jitter: str = "equal"  # "equal" | "full" | "none"

    def __post_init__(self) -> None:
        if not self.base_s > 0 or not self.max_s >= self.base_s:
            raise ValueError(f"backoff needs 0 < base_s <= max_s, got {self.base_s}, {self.max_s}")
        if self.jitter not in ("equal", "full", "none"):
            raise ValueError(f"backoff jitter must be equal, full or none, not {self.jitter!r}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay for attempt 1, 2, 3 ... (bounded by max_s)."""
        exp = min(max(attempt - 1, 0), 62)
        factor: int = 2 ** exp
        return min(self.max_s, self.base_s * factor)

    def delay(self, attempt: int, rng: random.Random) -> float:
        cap = self.ceiling(attempt)
        if self.jitter == "full":
            return rng.uniform(0.0, cap)
        if self.jitter == "equal":
            return cap / 2 + rng.uniform(0.0, cap / 2)
        return cap
