"""The dispatcher: many pooled actors multiplexed on a few threads.

Thread-per-actor under one GIL spends most of its time waking threads: every
hop between two actors is a futex, a context switch and a GIL hand-off. A
dispatcher (Akka's word; Erlang has schedulers) runs actors whose handlers
never block on a small fixed set of worker threads instead:

* each pooled actor keeps its own :class:`~runtime.mailbox.Mailbox`; a
  ``put`` schedules that mailbox on the dispatcher's run queue unless it is
  already scheduled, so an actor is in the queue at most once and is never
  handled by two workers at a time (serialized handling, as before);
* a worker takes a mailbox from the run queue and gives its actor a *turn*:
  at most ``throughput`` messages, then the mailbox goes to the back of the
  queue if mail is left, so no actor starves the others;
* a handler that runs longer than ``slow_handler_s`` stalls every actor
  behind it: it is counted on its mailbox and logged with the actor's name
  and the message type, so blocking code shows up instead of hiding;
* :func:`managed_blocking` is for the rare wait a pooled handler cannot
  avoid (a test harness holding an actor mid-handler): while it lasts the
  dispatcher runs one extra worker, so the other actors go on (the idea of
  Java's ``ForkJoinPool.ManagedBlocker``).

Actors that block on I/O (an fsync, an HTTP call, a socket) stay *threaded*:
one pykka thread each. Which kind an actor is lives in its class
(``Actor.execution``) or its child spec; the actor's code is the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any

from loguru import logger

_local = threading.local()


class Dispatcher:
    """A run queue of mailboxes and the worker threads that serve it."""

    def __init__(self, name: str = "default", *, threads: int = 1, throughput: int = 64,
                 slow_handler_s: float = 0.05) -> None:
        if threads < 1:
            raise ValueError(f"dispatcher {name}: threads must be >= 1, got {threads}")
        if throughput < 1:
            raise ValueError(f"dispatcher {name}: throughput must be >= 1, got {throughput}")
        if not slow_handler_s > 0:
            raise ValueError(f"dispatcher {name}: slow_handler_s must be > 0")
        self.name = name
        self.threads = threads
        self.throughput = throughput
        self.slow_handler_s = slow_handler_s
        self._runq: SimpleQueue[Any] = SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._started = False
        self._stopping = False
        #: turns given, workers added for managed blocking (figures)
        self.turns = 0
        self.compensating = 0
        self.slow_handlers = 0

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> Dispatcher:
        with self._lock:
            if self._started:
                return self
            self._started = True
            for i in range(self.threads):
                self._spawn(f"tw-dispatch-{self.name}-{i}", compensating=None)
        return self

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker after the turns already queued (idempotent)."""
        with self._lock:
            if not self._started or self._stopping:
                return
            self._stopping = True
            workers = list(self._workers)
        for _ in workers:
            self._runq.put(None)
        deadline = time.monotonic() + timeout
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                logger.error("dispatcher {}: worker {} did not stop within {}s",
                             self.name, t.name, timeout)

    def _spawn(self, name: str, compensating: threading.Event | None) -> None:
        t = threading.Thread(target=self._work, args=(compensating,), name=name, daemon=True)
        self._workers.append(t)
        t.start()

    # -- scheduling ---------------------------------------------------------------

    def schedule(self, mailbox: Any) -> None:
        """Queue ``mailbox`` for a turn (the mailbox guarantees at most once)."""
        self._runq.put(mailbox)

    def _work(self, compensating: threading.Event | None) -> None:
        _local.dispatcher = self
        runq = self._runq
        throughput = self.throughput
        try:
            while True:
                mailbox = runq.get()
                if mailbox is None:
                    return
                self.turns += 1
                try:
                    mailbox.run_turn(throughput)
                except BaseException:  # noqa: BLE001 - a worker must survive anything
                    logger.exception("dispatcher {}: a turn of {} raised", self.name,
                                     getattr(mailbox, "name", mailbox))
                if compensating is not None and compensating.is_set():
                    return  # the blocked worker is back: this extra one retires
        finally:
            _local.dispatcher = None
            with self._lock:
                current = threading.current_thread()
                if current in self._workers and compensating is not None:
                    self._workers.remove(current)

    def report_slow(self, actor: str, what: str, seconds: float, mailbox: Any) -> None:
        """A pooled handler ran past the bound: count it and say who stalled whom."""
        self.slow_handlers += 1
        mailbox.record_slow(seconds, what)
        n = mailbox.slow_handlers
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th... of one actor: bounded log lines
            logger.warning("pooled actor {} handled {} in {:.1f} ms (bound {:.1f} ms; {} so far): "
                           "a pooled handler must not block, it stalls every actor on dispatcher {}",
                           actor, what, 1000 * seconds, 1000 * self.slow_handler_s, n, self.name)

    # -- managed blocking -------------------------------------------------------------

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Run an extra worker while the calling worker waits (see module doc)."""
        done = threading.Event()
        with self._lock:
            if self._stopping:
                yield
                return
            self.compensating += 1
            self._spawn(f"tw-dispatch-{self.name}-extra{self.compensating}", compensating=done)
        try:
            yield
        finally:
            done.set()
            self._runq.put(_Nudge)  # wake an idle extra worker so it can retire

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "threads": self.threads, "throughput": self.throughput,
                "slow_handler_ms": round(1000 * self.slow_handler_s, 3),
                "workers": len(self._workers), "turns": self.turns,
                "slow_handlers": self.slow_handlers, "run_queue": self._runq.qsize()}


class _NudgeMailbox:
    """A run-queue entry with no actor: wakes a worker so it can re-check."""

    name = "nudge"

    def run_turn(self, throughput: int) -> None:
        return None


_Nudge = _NudgeMailbox()


def current_dispatcher() -> Dispatcher | None:
    """The dispatcher whose worker runs the calling thread, if any."""
    return getattr(_local, "dispatcher", None)


@contextmanager
def managed_blocking() -> Iterator[None]:
    """Wrap an unavoidable wait inside a handler: on a dispatcher worker, the
    dispatcher compensates with an extra worker meanwhile; elsewhere a no-op."""
    dispatcher = current_dispatcher()
    if dispatcher is None:
        yield
        return
    with dispatcher.blocking():
        yield

