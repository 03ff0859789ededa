"""Client order ids from durably reserved counter blocks (rule 15).

The coordinator must never wait for a disk write per order, yet an id it
handed out before a crash must never be handed out again after it. Blocks
of ids are reserved ahead of need, through the persistence actor
(``Reserve``, ``actors.persistence``) or straight on a store when no actor
runs (tools, tests), and used only once the reservation is on disk.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any
from collections.abc import Callable

from loguru import logger

from messages.persistence import Durable, PersistenceError, Reserve
from runtime.dispatcher import managed_blocking
from trading.store import Store


class IdsUnavailable(TimeoutError):
    """No reserved id was available in time (the persistence actor is slow or down)."""


class IdAllocator:
    """Unique, increasing, restart-stable ids from durably reserved blocks.

    Blocks of ``block`` counter values are reserved through the persistence
    actor (``Reserve``) and only used once the reservation is on disk, so an
    id handed out before a crash is never handed out again after it. The
    next block is requested when fewer than ``low_water`` ids remain, so
    :meth:`try_next` almost never finds the pool empty. Thread-safe.

    Ids unused at a crash are skipped (gaps), never reused. ``prefix`` should
    make ids unique at the broker across stores (e.g. include the account).
    """

    def __init__(self, send: Callable[[str, int, Future[Any]], Any], counter: str, *,
                 prefix: str = "", block: int = 1024, low_water: int | None = None,
                 on_refill: Callable[[], None] | None = None) -> None:
        if block < 1:
            raise ValueError("IdAllocator block must be >= 1")
        self._send = send
        self.counter = counter
        self.prefix = prefix
        self.block = block
        self.low_water = block // 2 if low_water is None else low_water
        self.on_refill = on_refill
        self._cond = threading.Condition(threading.Lock())
        self._blocks: deque[tuple[int, int]] = deque()
        self._next = 0
        self._stop = 0
        self._pending = False
        self.last_error: BaseException | None = None
        self.issued = 0

    @classmethod
    def via_actor(cls, tell: Callable[[str, Any], bool], counter: str, *,
                  target: str = "persistence", **kw: Any) -> IdAllocator:
        """Reserve through the persistence actor; ``tell`` is ``ctx.tell`` or ``system.tell``."""
        def send(name: str, n: int, fut: Future[Any]) -> None:
            if not tell(target, Reserve(name, n, ack=fut)):
                raise PersistenceError(f"cannot reach {target!r} to reserve ids")
        return cls(send, counter, **kw)

    @classmethod
    def via_store(cls, store: Store, counter: str, **kw: Any) -> IdAllocator:
        """Reserve directly in the store: only when no persistence actor runs."""
        def send(name: str, n: int, fut: Future[Any]) -> None:
            fut.set_result(Durable(ok=True, result=store.reserve(name, n)))
        return cls(send, counter, **kw)

    # -- handing out ----------------------------------------------------------------

    def try_next(self) -> str | None:
        """The next id, or None if no reserved id is left (a refill is on its way)."""
        with self._cond:
            value = self._take()
            refill = self._claim_refill()
        if refill:
            self._request()
        return None if value is None else f"{self.prefix}{value}"

    def next_id(self, timeout: float = 10.0) -> str:
        """The next id, waiting up to ``timeout`` for a refill. Not for handlers
        but the coordinator's, where the wait is rare (a whole block behind) and
        managed: the dispatcher runs the other pooled actors meanwhile."""
        got = self.try_next()
        if got is not None:
            return got
        with managed_blocking():
            return self._wait_for_id(time.monotonic() + timeout, timeout)

    def _wait_for_id(self, deadline: float, timeout: float) -> str:
        while True:
            got = self.try_next()
            if got is not None:
                return got
            with self._cond:
                while not self._blocks and self._next >= self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise IdsUnavailable(
                            f"no {self.counter} id reserved within {timeout}s "
                            f"(last error: {self.last_error!r})")
                    if not self._pending:
                        # The last refill failed: pause briefly, then ask again.
                        self._cond.wait(min(left, 0.05))
                        break
                    self._cond.wait(left)

    def next(self, timeout: float = 5.0) -> str:
        """:meth:`next_id` by the name the coordinator calls. Returns at once
        unless the persistence actor is a whole block behind; then waits."""
        return self.next_id(timeout)

    def start(self, timeout: float = 10.0) -> IdAllocator:
        """Reserve the first block and wait until it is durable (startup only)."""
        with self._cond:
            claim = not self._pending and not self._blocks and self._next >= self._stop
            if claim:
                self._pending = True
        if claim:
            self._request()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._blocks and self._next >= self._stop:
                left = deadline - time.monotonic()
                if left <= 0 or not self._pending:
                    raise IdsUnavailable(f"could not reserve {self.counter} ids: "
                                         f"{self.last_error!r}")
                self._cond.wait(left)
        return self

    @property
    def available(self) -> int:
        with self._cond:
            return self._remaining()

    # -- mechanics (call under the lock unless said otherwise) -------------------------

    def _remaining(self) -> int:
        return (self._stop - self._next) + sum(b - a for a, b in self._blocks)

    def _take(self) -> int | None:
        if self._next >= self._stop:
            if not self._blocks:
                return None
            self._next, self._stop = self._blocks.popleft()
        value = self._next
        self._next += 1
        self.issued += 1
        return value

    def _claim_refill(self) -> bool:
        if self._pending or self._remaining() >= max(1, self.low_water):
            return False
        self._pending = True
        return True

    def _request(self) -> None:
        """Send one reservation (outside the lock: the reply may land at once)."""
        fut: Future[Any] = Future()
        fut.add_done_callback(self._landed)
        try:
            self._send(self.counter, self.block, fut)
        except Exception as exc:  # noqa: BLE001 - reported through the future
            if not fut.done():
                fut.set_exception(exc)

    def _landed(self, fut: Future[Any]) -> None:
        exc = fut.exception()
        with self._cond:
            self._pending = False
            if exc is None:
                result = fut.result()
                start, stop = result.result if isinstance(result, Durable) else result
                self._blocks.append((start, stop))
            else:
                self.last_error = exc
            self._cond.notify_all()
        if exc is not None:
            logger.error("id reservation for {} failed: {!r}", self.counter, exc)
        elif self.on_refill is not None:
            try:
                self.on_refill()
            except Exception:  # noqa: BLE001
                logger.exception("IdAllocator on_refill hook failed")
