"""Client order ids from durably reserved counter blocks (rule 15).

The coordinator must never wait for a disk write per order, yet an id it
handed out before a crash must never be handed out again after it. Blocks
of ids are reserved ahead of need, through the persistence actor or straight
on a store when no actor runs (tools, tests), and used only once the
reservation is on disk.

Through the actor it is a request/reply in messages, no future inside:
``Reserve(counter, n, ack=Ack(reply_to, token))``, and persistence answers
``Durable(token, result=(start, stop))`` to ``reply_to``, whose handler gives
it to :meth:`IdAllocator.landed` (the coordinator: :meth:`IdAllocator.is_reply`
picks it out). An actor never waits for ids: :meth:`IdAllocator.ready` says
whether one is there (and asks for a block if none is on its way), and the
actor parks what needs an id until the reply lands.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any
from collections.abc import Callable

from loguru import logger

from messages.persistence import Ack, Durable, PersistenceError, Reserve
from trading.store import Store


class IdsUnavailable(TimeoutError):
    """No reserved id was available in time (the persistence actor is slow or down)."""


#: how long after a failed reservation the next one may be asked (a failing
#: store is not asked again for every intent that finds no id)
RETRY_AFTER_S = 0.2


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

    def __init__(self, send: Callable[[str, int, str], Any], counter: str, *,
                 prefix: str = "", block: int = 1024, low_water: int | None = None,
                 on_refill: Callable[[], None] | None = None) -> None:
        if block < 1:
            raise ValueError("IdAllocator block must be >= 1")
        self._send = send
        self.counter = counter
        #: the token of this allocator's reservations (``Durable.token`` of the reply)
        self.token = f"ids:{counter}"
        self.prefix = prefix
        self.block = block
        self.low_water = block // 2 if low_water is None else low_water
        self.on_refill = on_refill
        self._cond = threading.Condition(threading.Lock())
        self._blocks: deque[tuple[int, int]] = deque()
        self._next = 0
        self._stop = 0
        self._pending = False
        #: after a failed reservation, none is asked again before this (monotonic)
        self._retry_at = 0.0
        self.last_error: BaseException | str | None = None
        self.issued = 0

    @classmethod
    def via_actor(cls, tell: Callable[[str, Any], bool], counter: str, *, reply_to: str,
                  target: str = "persistence", **kw: Any) -> IdAllocator:
        """Reserve through the persistence actor; its replies go to the actor
        ``reply_to``, which hands them to :meth:`landed`. ``tell`` is
        ``ctx.tell`` or ``system.tell``."""
        def send(name: str, n: int, token: str) -> None:
            if not tell(target, Reserve(name, n, ack=Ack(reply_to, token))):
                raise PersistenceError(f"cannot reach {target!r} to reserve ids")
        return cls(send, counter, **kw)

    @classmethod
    def via_store(cls, store: Store, counter: str, **kw: Any) -> IdAllocator:
        """Reserve directly in the store: only when no persistence actor runs."""
        box: list[IdAllocator] = []

        def send(name: str, n: int, token: str) -> None:
            box[0].landed(Durable(token=token, ok=True, result=store.reserve(name, n)))
        allocator = cls(send, counter, **kw)
        box.append(allocator)
        return allocator

    # -- handing out ----------------------------------------------------------------

    def try_next(self) -> str | None:
        """The next id, or None if no reserved id is left (a refill is on its way)."""
        with self._cond:
            value = self._take()
            refill = self._claim_refill()
        if refill:
            self._request()
        return None if value is None else f"{self.prefix}{value}"

    def ready(self) -> bool:
        """Whether :meth:`try_next` has an id now. When not, a reservation is
        asked for unless one is on its way (or the last one failed less than
        ``RETRY_AFTER_S`` ago): the caller parks its work until the reply
        lands, and asks again later if it failed (never waits in a handler)."""
        with self._cond:
            if self._next < self._stop or self._blocks:
                return True
            claim = not self._pending and time.monotonic() >= self._retry_at
            if claim:
                self._pending = True
        if claim:
            self._request()
        return False

    def is_reply(self, msg: Any) -> bool:
        """Whether ``msg`` is persistence's answer to one of our reservations."""
        return type(msg) is Durable and msg.token == self.token

    def next_id(self, timeout: float = 10.0) -> str:
        """The next id, waiting up to ``timeout`` for a refill. For tools and
        tests on their own threads, never for a handler (``ready`` and park)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.try_next()
            if got is not None:
                return got
            self.ready()  # asks again if the last reservation failed
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
        if (self._pending or self._remaining() >= max(1, self.low_water)
                or time.monotonic() < self._retry_at):
            return False
        self._pending = True
        return True

    def _request(self) -> None:
        """Send one reservation (outside the lock: the reply may land at once)."""
        try:
            self._send(self.counter, self.block, self.token)
        except Exception as exc:  # noqa: BLE001 - reported like a failed reply
            self._failed(exc)

    def landed(self, reply: Durable) -> None:
        """Persistence's reply to a reservation (from the actor it was sent to)."""
        if not reply.ok:
            self._failed(reply.error)
            return
        start, stop = reply.result
        with self._cond:
            self._pending = False
            self._blocks.append((start, stop))
            self._cond.notify_all()
        if self.on_refill is not None:
            try:
                self.on_refill()
            except Exception:  # noqa: BLE001
                logger.exception("IdAllocator on_refill hook failed")

    def _failed(self, error: BaseException | str | None) -> None:
        with self._cond:
            self._pending = False
            self.last_error = error
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            self._cond.notify_all()
        logger.error("id reservation for {} failed: {!r}", self.counter, error)
