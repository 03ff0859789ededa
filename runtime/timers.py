"""One timer service for the whole system.

A timer delivers a message to a named actor when it is due. Actors never
sleep: a timeout, a debounce window, a poll or a backoff delay is a timer
plus a message. In live mode one thread waits for the next due timer; in
virtual mode there is no thread and the actor system's driver fires timers
when it has advanced the virtual clock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from loguru import logger

from runtime.clock import Clock

Deliver = Callable[[str, Any], object]  # its result (delivered or not) is ignored


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    target: str = field(compare=False)
    message: Any = field(compare=False)
    interval: float | None = field(compare=False, default=None)
    canceled: bool = field(compare=False, default=False)


class TimerService:
    def __init__(self, clock: Clock, deliver: Deliver) -> None:
        self._clock = clock
        self._deliver = deliver
        self._heap: list[_Timer] = []
        self._by_id: dict[int, _Timer] = {}
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.fired = 0

    # -- scheduling (any thread) ----------------------------------------------

    def schedule(self, delay_s: float, target: str, message: Any,
                 *, interval_s: float | None = None) -> int:
        """Deliver ``message`` to ``target`` after ``delay_s``; repeat every
        ``interval_s`` if given. Returns an id for :meth:`cancel`."""
        if delay_s < 0 or delay_s != delay_s:
            raise ValueError(f"timer delay must be >= 0, got {delay_s!r}")
        if interval_s is not None and not interval_s > 0:
            raise ValueError(f"timer interval must be > 0, got {interval_s!r}")
        with self._cond:
            seq = next(self._seq)
            timer = _Timer(self._clock.monotonic() + delay_s, seq, target, message, interval_s)
            heapq.heappush(self._heap, timer)
            self._by_id[seq] = timer
            # Only a new earliest timer changes how long the thread must sleep;
            # waking it for any other costs a thread hand-off on the caller's
            # path (the hedger schedules a window with every hedge it sends).
            if self._heap[0] is timer:
                self._cond.notify()
        return seq

    def cancel(self, timer_id: int | None) -> bool:
        if timer_id is None:
            return False
        with self._cond:
            timer = self._by_id.pop(timer_id, None)
            if timer is None:
                return False
            timer.canceled = True
            return True

    def pending(self) -> int:
        with self._cond:
            return len(self._by_id)

    def next_due(self) -> float | None:
        with self._cond:
            self._drop_canceled_head()
            return self._heap[0].due if self._heap else None

    def _drop_canceled_head(self) -> None:
        while self._heap and self._heap[0].canceled:
            heapq.heappop(self._heap)

    # -- firing ----------------------------------------------------------------

    def fire_due(self, now: float) -> int:
        """Deliver every timer due at or before ``now``; returns how many fired."""
        due: list[_Timer] = []
        with self._cond:
            while True:
                self._drop_canceled_head()
                if not self._heap or self._heap[0].due > now:
                    break
                timer = heapq.heappop(self._heap)
                due.append(timer)
                if timer.interval is not None:
                    nxt = _Timer(timer.due + timer.interval, timer.seq, timer.target,
                                 timer.message, timer.interval)
                    heapq.heappush(self._heap, nxt)
                    self._by_id[timer.seq] = nxt
                else:
                    self._by_id.pop(timer.seq, None)
        for timer in due:
            self.fired += 1
            try:
                self._deliver(timer.target, timer.message)
            except Exception:  # noqa: BLE001 - a bad delivery must not kill the timer thread
                logger.exception("timer {} for {} could not be delivered", timer.seq, timer.target)
        return len(due)

    # -- live mode thread ------------------------------------------------------

    def start(self) -> None:
        if self._clock.is_virtual or self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tw-timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._drop_canceled_head()
                if self._heap:
                    wait = self._heap[0].due - self._clock.monotonic()
                    if wait > 0:
                        self._cond.wait(timeout=wait)
                        continue
                else:
                    self._cond.wait()
                    continue
            self.fire_due(self._clock.monotonic())
