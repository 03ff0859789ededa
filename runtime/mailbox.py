"""The instrumented mailbox every Tradewarden actor reads from.

pykka's default inbox is a ``queue.Queue`` (a Python-level lock and two
conditions per operation). This mailbox stores items in a ``deque`` and uses
a C-level ``SimpleQueue`` only as a wake-up channel, which keeps ``tell``
cheap while letting introspection peek at waiting messages and measure the
age of the oldest one.

The mailbox outlives the actor instance that reads it: when an actor crashes,
its waiting messages stay here and the restarted instance reads them in
order. That is how "messages for an actor that is restarting are held, not
dropped" is implemented.

Conflation (market data only): when a conflatable message arrives while an
older one with the same key is still waiting, the waiting one is replaced in
place, so the queue holds at most one entry per key and the consumer sees the
latest value. Messages whose type is not conflatable are never touched.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any

_monotonic = time.monotonic


class _Slot:
    """A queue entry for a conflatable message; ``msg`` may be replaced."""

    __slots__ = ("key", "msg")

    def __init__(self, key: Any, msg: Any) -> None:
        self.key = key
        self.msg = msg


class StopNow:
    """Control item put at the front of a mailbox: stop before the next message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "shutdown") -> None:
        self.reason = reason


class Mailbox:
    """A FIFO of ``(enqueued_at, item)`` pairs plus figures for introspection.

    ``put``/``put_front`` may be called from any thread; ``get`` only from the
    owning actor's thread. Figures written only by the consumer (processed,
    high-water mark, handling time) need no lock.
    """

    __slots__ = (
        "name", "conflate", "_items", "_wake", "_slots", "_conflate_lock", "_activity",
        "processed", "high_water", "handling_s", "max_handling_s", "conflated", "busy",
        "__weakref__",
    )

    def __init__(self, name: str, *, conflate: bool = False,
                 activity: itertools.count[int] | None = None) -> None:
        self.name = name
        self.conflate = conflate
        self._items: deque[tuple[float, Any]] = deque()  # (enqueued at, message or slot)
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._slots: dict[Any, _Slot] = {}
        self._conflate_lock = threading.Lock()
        self._activity = activity if activity is not None else itertools.count()
        self.busy = False
        self.processed = 0
        self.high_water = 0
        self.handling_s = 0.0
        self.max_handling_s = 0.0
        self.conflated = 0

    # -- producer side --------------------------------------------------------

    def put(self, item: Any) -> None:
        """Enqueue a message (or a pykka envelope). Thread-safe, never blocks."""
        if self.conflate and getattr(item, "conflatable", False):
            try:
                key = item.conflation_key()
                hash(key)
            except Exception:  # noqa: BLE001 - malformed (e.g. a list for a symbol)
                key = None  # queued as is: the receiver's handler rejects it, not the sender
            if key is not None:
                self._put_conflated(item, key)
                return
        self._items.append((_monotonic(), item))
        next(self._activity)
        self._wake.put(None)

    def _put_conflated(self, msg: Any, key: Any) -> None:
        with self._conflate_lock:
            slot = self._slots.get(key)
            if slot is not None:
                slot.msg = msg
                self.conflated += 1
                next(self._activity)
                return
            slot = _Slot(key, msg)
            self._slots[key] = slot
            self._items.append((_monotonic(), slot))
        next(self._activity)
        self._wake.put(None)

    def put_front(self, item: Any) -> None:
        """Put a control item ahead of everything waiting (used to stop now)."""
        self._items.appendleft((_monotonic(), item))
        next(self._activity)
        self._wake.put(None)

    # -- consumer side --------------------------------------------------------

    def get(self) -> Any:
        """Block until an item is available and return it (consumer thread only).

        ``busy`` is raised before the item leaves the queue, so an observer
        checking for quiescence always sees the item either waiting or in hand.
        The caller lowers it (``done``) when the item has been handled.
        """
        while True:
            self._wake.get()
            self.busy = True
            depth = len(self._items)
            try:
                _, item = self._items.popleft()
                break
            except IndexError:  # a stray wake-up left by drain(); nothing to take
                self.busy = False
        if depth > self.high_water:
            self.high_water = depth
        if type(item) is _Slot:
            with self._conflate_lock:
                del self._slots[item.key]
                return item.msg
        return item

    def wait_for_item(self, timeout: float) -> bool:
        """Consumer thread only: block up to ``timeout`` seconds until something
        is waiting; True if it is. Takes nothing: the wake-up token is put back
        for the next ``get``. (For a group commit that lingers for company.)"""
        if self._items:
            return True
        try:
            self._wake.get(timeout=timeout)
        except Empty:
            return False
        self._wake.put(None)
        return True

    def done(self) -> None:
        """The item taken by ``get`` has been handled (or abandoned)."""
        self.busy = False
        next(self._activity)

    def record_handled(self, seconds: float) -> None:
        self.processed += 1
        self.handling_s += seconds
        if seconds > self.max_handling_s:
            self.max_handling_s = seconds

    # -- observers (any thread) -----------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def depth(self) -> int:
        return len(self._items)

    def oldest_age_s(self) -> float:
        try:
            enqueued_at, _ = self._items[0]
        except IndexError:
            return 0.0
        return max(0.0, _monotonic() - enqueued_at)

    def peek(self, n: int) -> list[Any]:
        """The first ``n`` waiting messages, oldest first (a best-effort copy)."""
        out: list[Any] = []
        for i in range(max(0, n)):
            try:
                _, item = self._items[i]
            except IndexError:
                break
            out.append(item.msg if type(item) is _Slot else item)
        return out

    def drain(self) -> list[Any]:
        """Remove and return everything waiting (used for dead letters at the end)."""
        out = []
        while True:
            try:
                _, item = self._items.popleft()
            except IndexError:
                break
            try:
                self._wake.get_nowait()
            except Exception:  # noqa: BLE001 - tokens and items may be out of step mid-put
                pass
            if type(item) is _Slot:
                with self._conflate_lock:
                    self._slots.pop(item.key, None)
                item = item.msg
            out.append(item)
        return out

    def figures(self) -> dict[str, Any]:
        processed = self.processed
        return {
            "depth": len(self._items),
            "high_water": self.high_water,
            "processed": processed,
            "oldest_age_s": round(self.oldest_age_s(), 6),
            "handling_ms_mean": round(1000 * self.handling_s / processed, 4) if processed else 0.0,
            "handling_ms_max": round(1000 * self.max_handling_s, 4),
            "conflated": self.conflated,
            "conflate": self.conflate,
        }
