"""Clocks. All timing in Tradewarden reads an injected clock.

``LiveClock`` is wall time. ``VirtualClock`` only moves when the actor
system is quiescent and the timer service advances it to the next due
timer, which makes scenario runs and tests deterministic and fast.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, UTC

EPOCH_DEFAULT = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


class Clock:
    """Interface: ``now()`` is aware UTC, ``monotonic()`` is seconds."""

    is_virtual = False

    def now(self) -> datetime:  # pragma: no cover - interface
        raise NotImplementedError

    def monotonic(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class LiveClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class VirtualClock(Clock):
    """Time that moves only when told to (by the timer service's driver)."""

    is_virtual = True

    def __init__(self, start: datetime = EPOCH_DEFAULT) -> None:
        if start.tzinfo is None or start.utcoffset() != timedelta(0):
            raise ValueError("VirtualClock start must be timezone-aware UTC")
        self._start = start
        self._t = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._t)

    def monotonic(self) -> float:
        return self._t

    def advance_to(self, t: float) -> None:
        with self._lock:
            if t < self._t:
                raise ValueError(f"virtual time cannot go back ({t} < {self._t})")
            self._t = t
