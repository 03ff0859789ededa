"""The one shared, bounded executor for CPU work (rule 13: no pool per symbol).

Work is submitted by an actor; the result comes back to that actor as a
``TaskDone`` message, so the actor never waits on a future inside a handler.
Exceptions raised by tasks are counted, logged and delivered (rule 17).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from loguru import logger

from runtime.signals import TaskDone

if TYPE_CHECKING:
    from runtime.system import ActorSystem


class SharedExecutor:
    def __init__(self, system: ActorSystem, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"executor workers must be >= 1, got {workers}")
        self.workers = workers
        self._system = system
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.in_flight = 0
        self.submitted = 0
        self.failed = 0
        self.errors: deque = deque(maxlen=100)

    def _ensure_pool(self) -> ThreadPoolExecutor:
        # Created on first use, never at import or construction (rule 14).
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tw-exec")
        return self._pool

    def submit(self, fn: Callable[..., Any], *args: Any, reply_to: str | None = None,
               tag: Any = None) -> Future:
        with self._lock:
            pool = self._ensure_pool()
            self.in_flight += 1
            self.submitted += 1
        try:
            future = pool.submit(fn, *args)
        except BaseException:
            with self._lock:
                self.in_flight -= 1
            raise
        future.add_done_callback(lambda f: self._done(f, fn, reply_to, tag))
        return future

    def _done(self, future: Future, fn: Callable, reply_to: str | None, tag: Any) -> None:
        try:
            error = future.exception()
            result = None if error is not None else future.result()
            if error is not None:
                with self._lock:
                    self.failed += 1
                    self.errors.append(f"{getattr(fn, '__name__', fn)!s}: {type(error).__name__}: {error}")
                logger.opt(exception=error).error("executor task {} (tag {!r}) failed",
                                                  getattr(fn, "__name__", fn), tag)
            if reply_to is not None:
                self._system.tell(reply_to, TaskDone(tag, result, error))
        finally:
            with self._lock:
                self.in_flight -= 1
            self._system.poke()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"workers": self.workers, "in_flight": self.in_flight,
                    "submitted": self.submitted, "failed": self.failed,
                    "recent_errors": list(self.errors)[-5:]}

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
