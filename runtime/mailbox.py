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

A mailbox serves one of two kinds of actor. A *threaded* actor's own
thread blocks in :meth:`Mailbox.get`, woken through the ``SimpleQueue``. A
*pooled* actor has no thread: the mailbox is attached to a
:class:`~runtime.dispatcher.Dispatcher` and a ``put`` schedules the mailbox
on the dispatcher's run queue (at most once: the ``scheduled`` flag is
Akka's mailbox status), where a worker thread gives the actor a turn.

The market lane (``market_lane=True``, for actors on the order path that
also read market data: coordinator, stops, gateway): messages whose type is
``market_data`` (quotes, bars) wait in a second queue, and the actor takes
from it only when nothing else waits. An order, fill, ack or control message
is therefore never queued behind a burst of market data. Each lane keeps its
own order; a market-data message may be overtaken by a later order message
(never the other way round), which is the point.

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

#: message type -> (market lane, conflatable): both are class-level flags
#: (``ClassVar`` on ``messages.base.Message``), read once per type, not per put
_LANES: dict[type, tuple[bool, bool]] = {}


def _lanes_of(kind: type) -> tuple[bool, bool]:
    flags = _LANES.get(kind)
    if flags is None:
        flags = _LANES[kind] = (bool(getattr(kind, "market_data", False)),
                                bool(getattr(kind, "conflatable", False)))
    return flags


class _Slot:
    """A queue entry for a conflatable message; ``msg`` may be replaced."""

    __slots__ = ("key", "msg")

    def __init__(self, key: Any, msg: Any) -> None:
        self.key = key
        self.msg = msg


class _Empty:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


#: what :meth:`Mailbox.take` returns when nothing is waiting
EMPTY = _Empty()


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
        "name", "conflate", "market_lane", "_market", "_sorting", "_items", "_wake", "_slots",
        "_conflate_lock", "_activity",
        "processed", "high_water", "handling_s", "max_handling_s", "conflated", "busy",
        "dispatcher", "_runner", "_scheduled", "_sched_lock", "slow_handlers", "slowest",
        "__weakref__",
    )

    def __init__(self, name: str, *, conflate: bool = False, market_lane: bool = False,
                 activity: itertools.count[int] | None = None) -> None:
        self.name = name
        self.conflate = conflate
        self.market_lane = market_lane
        self._sorting = conflate or market_lane  # put must look at the message's type
        self._items: deque[tuple[float, Any]] = deque()  # (enqueued at, message or slot)
        #: the market lane (always a deque, empty unless ``market_lane``)
        self._market: deque[tuple[float, Any]] = deque()
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
        #: the dispatcher of a pooled actor (None: threaded)
        self.dispatcher: Any = None
        self._runner: Any = None
        self._scheduled = False
        self._sched_lock = threading.Lock()
        #: pooled handlers that ran past the dispatcher's bound, and the slowest seen
        self.slow_handlers = 0
        self.slowest: tuple[float, str] | None = None

    # -- producer side --------------------------------------------------------

    def put(self, item: Any) -> None:
        """Enqueue a message (or a pykka envelope). Thread-safe, never blocks."""
        lane = self._items
        if self._sorting:
            market, conflatable = _LANES.get(type(item)) or _lanes_of(type(item))
            if market and self.market_lane:
                lane = self._market
            if conflatable and self.conflate:
                try:
                    key = item.conflation_key()
                    hash(key)
                except Exception:  # noqa: BLE001 - malformed (e.g. a list for a symbol)
                    key = None  # queued as is: the receiver's handler rejects it, not the sender
                if key is not None:
                    self._put_conflated(item, key, lane)
                    return
        lane.append((_monotonic(), item))
        next(self._activity)
        if self.dispatcher is None:
            self._wake.put(None)
        else:
            self._notify()

    def _put_conflated(self, msg: Any, key: Any, lane: deque[tuple[float, Any]]) -> None:
        with self._conflate_lock:
            slot = self._slots.get(key)
            if slot is not None:
                slot.msg = msg
                self.conflated += 1
                next(self._activity)
                return
            slot = _Slot(key, msg)
            self._slots[key] = slot
            lane.append((_monotonic(), slot))
        next(self._activity)
        if self.dispatcher is None:
            self._wake.put(None)
        else:
            self._notify()

    def put_front(self, item: Any) -> None:
        """Put a control item ahead of everything waiting (used to stop now)."""
        self._items.appendleft((_monotonic(), item))
        next(self._activity)
        if self.dispatcher is None:
            self._wake.put(None)
        else:
            self._notify()

    # -- pooled actors --------------------------------------------------------

    def use_dispatcher(self, dispatcher: Any) -> None:
        """Serve a pooled actor from now on (set once, before its first instance)."""
        self.dispatcher = dispatcher

    def attach(self, runner: Any) -> None:
        """A pooled instance starts reading this mailbox: give it its first turn
        (its ``on_start`` runs there, then the messages that waited for it)."""
        with self._sched_lock:
            self._runner = runner
            if self._scheduled:
                return  # a turn is ending; it sees the new runner and requeues
            self._scheduled = True
        self.dispatcher.schedule(self)

    def detach(self, runner: Any) -> None:
        """The pooled instance ``runner`` ended; messages wait for the next one."""
        with self._sched_lock:
            if self._runner is runner:
                self._runner = None

    def _notify(self) -> None:
        # Fast path without the lock: a raised flag means a turn is queued or
        # running, and a turn re-checks the queue after lowering the flag (see
        # run_turn), so an item appended before this read cannot be stranded.
        if self._scheduled:
            return
        with self._sched_lock:
            if self._scheduled or self._runner is None:
                return
            self._scheduled = True
        self.dispatcher.schedule(self)

    def run_turn(self, throughput: int) -> None:
        """Dispatcher worker only: let the attached instance handle up to
        ``throughput`` messages, then requeue this mailbox if mail is left.
        The ``scheduled`` flag stays raised from the schedule to the end of the
        turn, so no two workers ever hold one actor's turn at once."""
        runner = self._runner
        if runner is not None:
            runner.pooled_turn(throughput)
        with self._sched_lock:
            runner = self._runner
            requeue = runner is not None and (
                bool(self._items or self._market) and runner.takes_mail() or runner.wants_turn())
            if not requeue:
                self._scheduled = False
        if requeue:
            self.dispatcher.schedule(self)
        elif runner is not None and (self._items or self._market) and runner.takes_mail():
            self._notify()  # an item put while the flag was still up

    def kick(self) -> None:
        """Give the attached pooled instance a turn though no mail came (it has
        work of its own: a remote answer to deliver)."""
        self._notify()

    def take(self) -> Any:
        """Pooled consumer: the next item, or :data:`EMPTY` (never blocks).
        ``busy`` is raised before the item leaves the queue, as in :meth:`get`."""
        self.busy = True
        item = self._pop()
        if item is EMPTY:
            self.busy = False
        return item

    def _pop(self) -> Any:
        """The next item (the main lane first, then the market lane), or EMPTY.
        Truth tests first: a raised IndexError costs more than a message's
        whole hand-off, and every pooled turn ends on an empty mailbox."""
        items, market = self._items, self._market
        depth = len(items) + len(market)
        try:
            if items:
                item = items.popleft()[1]
            elif market:
                item = market.popleft()[1]
            else:
                return EMPTY
        except IndexError:  # drained from another thread between the test and the pop
            return EMPTY
        if depth > self.high_water:
            self.high_water = depth
        if type(item) is _Slot:
            with self._conflate_lock:
                del self._slots[item.key]
                return item.msg
        return item

    def _popleft(self) -> Any:
        """The raw head of the main lane, else of the market lane, else EMPTY."""
        items, market = self._items, self._market
        try:
            if items:
                return items.popleft()[1]
            if market:
                return market.popleft()[1]
        except IndexError:  # drained from another thread between the test and the pop
            pass
        return EMPTY

    def take_first(self, kinds: tuple[type, ...]) -> Any:
        """Remove and return the first waiting item of one of ``kinds`` from the
        main lane (or EMPTY), leaving the rest in order: a remote actor whose
        batch is out takes a stop this way (its other mail waits)."""
        items = self._items
        for i, (_, item) in enumerate(items):
            if type(item) in kinds:
                del items[i]
                next(self._activity)
                return item
        return EMPTY

    def record_slow(self, seconds: float, what: str) -> None:
        self.slow_handlers += 1
        if self.slowest is None or seconds > self.slowest[0]:
            self.slowest = (seconds, what)

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
            item = self._pop()
            if item is not EMPTY:
                return item
            self.busy = False  # a stray wake-up left by drain(); nothing to take

    def wait_for_item(self, timeout: float) -> bool:
        """Consumer thread only: block up to ``timeout`` seconds until something
        is waiting; True if it is. Takes nothing: the wake-up token is put back
        for the next ``get``. (For a group commit that lingers for company.)"""
        if self._items or self._market:
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

    def handled(self, seconds: float) -> None:
        """:meth:`record_handled` then :meth:`done`, in one call (per message)."""
        self.processed += 1
        self.handling_s += seconds
        if seconds > self.max_handling_s:
            self.max_handling_s = seconds
        self.busy = False
        next(self._activity)

    # -- observers (any thread) -----------------------------------------------

    def __len__(self) -> int:
        return len(self._items) + len(self._market)

    @property
    def depth(self) -> int:
        return len(self._items) + len(self._market)

    def oldest_age_s(self) -> float:
        oldest = None
        for lane in (self._items, self._market):
            try:
                enqueued_at, _ = lane[0]
            except IndexError:
                continue
            if oldest is None or enqueued_at < oldest:
                oldest = enqueued_at
        return 0.0 if oldest is None else max(0.0, _monotonic() - oldest)

    def peek(self, n: int) -> list[Any]:
        """The first ``n`` waiting messages in the order they will be taken
        (a best-effort copy)."""
        out: list[Any] = []
        for lane in (self._items, self._market):
            for i in range(max(0, n - len(out))):
                try:
                    _, item = lane[i]
                except IndexError:
                    break
                out.append(item.msg if type(item) is _Slot else item)
        return out

    def drain(self) -> list[Any]:
        """Remove and return everything waiting (used for dead letters at the end)."""
        out = []
        while (item := self._popleft()) is not EMPTY:
            if self.dispatcher is None:
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
            "depth": len(self._items) + len(self._market),
            "high_water": self.high_water,
            "processed": processed,
            "oldest_age_s": round(self.oldest_age_s(), 6),
            "handling_ms_mean": round(1000 * self.handling_s / processed, 4) if processed else 0.0,
            "handling_ms_max": round(1000 * self.max_handling_s, 4),
            "conflated": self.conflated,
            "conflate": self.conflate,
            "market_lane": self.market_lane,
            "slow_handlers": self.slow_handlers,
            "slowest_handler": (None if self.slowest is None else
                                {"ms": round(1000 * self.slowest[0], 3),
                                 "message": self.slowest[1]}),
        }
