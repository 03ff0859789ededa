"""The one shared, bounded executor for CPU work (rule 13: no pool per symbol).

Work is submitted by an actor; the result comes back to that actor as a
``TaskDone`` message, so the actor never waits on a future inside a handler.
Exceptions raised by tasks are counted, logged and delivered (rule 17).

Why not ``concurrent.futures.ThreadPoolExecutor``: its ``submit`` takes two
Python locks (one of them process-wide) and builds a Future with a Condition.
Under load, with a hundred symbol actors submitting and the workers
finishing, those locks are contended; a thread that blocks on one gives up
the GIL and then queues for it again behind every runnable thread. Measured
at 100 symbols and 5,000 quotes/s, one ``submit`` took 60 ms on average.
Here ``submit`` is a single C-level ``SimpleQueue.put`` (never blocks, never
releases the GIL) and the figures are lock-free counters.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from loguru import logger

from runtime.signals import TaskDone

if TYPE_CHECKING:
    from runtime.system import ActorSystem

_STOP = object()


class SharedExecutor:
    """``workers`` threads (started on first use, rule 14) reading one queue."""

    def __init__(self, system: ActorSystem, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"executor workers must be >= 1, got {workers}")
        self.workers = workers
        self._system = system
        self._queue: SimpleQueue[Any] = SimpleQueue()  # (fn, args, reply_to, tag) or _STOP
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._closing = False
        # next() on an itertools.count is atomic under the GIL; a counter read
        # is the value the next call would return.
        self._submitted = itertools.count()
        self._completed = itertools.count()
        self._failed = itertools.count()
        self.errors: deque[str] = deque(maxlen=100)

    @staticmethod
    def _value(counter: itertools.count[int]) -> int:
        # itertools.count's repr is "count(N)": reading it does not advance it.
        return int(repr(counter)[6:-1])

    @property
    def submitted(self) -> int:
        return self._value(self._submitted)

    @property
    def failed(self) -> int:
        return self._value(self._failed)

    @property
    def in_flight(self) -> int:
        """Tasks queued or running. Completed is read first, so a task finishing
        between the two reads is still counted: never under, which is what a
        quiescence check needs."""
        done = self._value(self._completed)
        return self._value(self._submitted) - done

    def _ensure_started(self) -> None:
        if self._threads:
            return
        with self._start_lock:  # first use only
            if self._threads:
                return
            threads = [threading.Thread(target=self._worker, name=f"tw-exec-{i}", daemon=True)
                       for i in range(self.workers)]
            for t in threads:
                t.start()
            self._threads = threads

    def submit(self, fn: Callable[..., Any], *args: Any, reply_to: str | None = None,
               tag: Any = None) -> None:
        """Queue ``fn(*args)``; its TaskDone goes to ``reply_to`` (if any)."""
        if self._closing:
            raise RuntimeError("the executor is shut down; no new work is taken")
        self._ensure_started()
        next(self._submitted)
        self._queue.put((fn, args, reply_to, tag))

    def _worker(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            fn, args, reply_to, tag = item
            try:
                if not self._closing:
                    self._run(fn, args, reply_to, tag)
            finally:
                # After the TaskDone is in the actor's mailbox (which moves the
                # system's activity counter), so quiescence never sees a gap.
                next(self._completed)
                self._system.poke()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], reply_to: str | None, tag: Any) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - delivered to the submitter, rule 17
            error = exc
            next(self._failed)
            self.errors.append(f"{getattr(fn, '__name__', fn)!s}: {type(exc).__name__}: {exc}")
            logger.opt(exception=exc).error("executor task {} (tag {!r}) failed",
                                            getattr(fn, "__name__", fn), tag)
        if reply_to is not None:
            self._system.tell(reply_to, TaskDone(tag, result, error))

    def snapshot(self) -> dict[str, Any]:
        return {"workers": self.workers, "in_flight": self.in_flight,
                "submitted": self.submitted, "failed": self.failed,
                "recent_errors": list(self.errors)[-5:]}

    def shutdown(self) -> None:
        """Drop what is still queued (its actors are stopped) and join the workers."""
        self._closing = True
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for t in threads:
            t.join(30)
            if t.is_alive():
                logger.error("executor worker {} did not stop within 30 s", t.name)
