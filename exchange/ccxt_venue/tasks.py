"""The adapter's tasks on its loop, and their count on a scenario's wire ledger.

``LoopTasks`` spawns every task the adapter runs on its loop thread and keeps
them until they end. In a scenario through the Binance face (``wire``: an
``exchange.virtual_wire.WireLedger``) a counted task, and every hop to the loop
counted with ``count``/``uncount``, holds virtual time until its outcome has
reached the sink; the streams that live as long as the connection are not
counted. A task that fails is counted as ``task_failures`` and reported as
one ``ExchangeError(internal)``.

``OrderTurns`` runs the commands about one order one at a time, in the order
they came (a cancel never overtakes its order's submit); an order's entry
lives only while a command holds or waits for it (rule 13).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from loguru import logger

from exchange.ccxt_venue.client import WIRE_TOKEN
from exchange.virtual_wire import WireLedger
from messages import ExchangeError


class LoopTasks:
    def __init__(self, wire: WireLedger | None, *, now: Callable[[], datetime],
                 emit: Callable[[Any], None], counts: Counter[str], name: str) -> None:
        self.wire = wire
        self._tasks: set[asyncio.Task[Any]] = set()
        self._now = now
        self._emit = emit
        self._counts = counts
        self._name = name

    def spawn(self, coro: Awaitable[Any], *, counted: bool = True) -> asyncio.Task[Any]:
        """A task on the loop; ``counted`` (all but the streams that live as long as
        the connection) keeps a wired run from moving time on until it ended."""
        wire = self.wire if counted else None
        token = wire.hold() if wire is not None else 0
        task = asyncio.ensure_future(coro if wire is None else _carrying(token, coro))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)  # (its failure report first, then the count)
        if wire is not None:
            task.add_done_callback(lambda _t: wire.release(token))
        return task

    def count(self) -> int | None:
        return self.wire.add(1) if self.wire is not None else None

    def uncount(self, gen: int | None) -> None:
        if gen is not None and self.wire is not None:
            self.wire.done(1, gen)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._counts["task_failures"] += 1
            logger.opt(exception=exc).error("{}: adapter task failed", self._name)
            self._emit(ExchangeError(code="internal", ts=self._now(),
                                     reason=f"adapter task failed: {exc!r}"[:300]))


class OrderTurns:
    def __init__(self, wire: WireLedger | None) -> None:
        self.wire = wire
        #: coid -> [lock, holders and waiters, lent tokens]; present only while needed
        self.locks: dict[str, list[Any]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, coid: str) -> AsyncIterator[None]:
        """One command about an order at a time, in the order they came.

        Wired run: a command waiting for its turn lends its count back (the
        turn's holder may be a request the venue holds for a virtual delay,
        which only moving time ends), and the holder hands it back as it
        leaves, before the lock passes on, so the count never drops between."""
        entry = self.locks.get(coid)
        if entry is None:
            entry = self.locks[coid] = [asyncio.Lock(), 0, deque()]
        entry[1] += 1
        wire, token = self.wire, WIRE_TOKEN.get()
        lent = (wire is not None and token is not None and entry[0].locked()
                and wire.lend(token))
        if lent:
            entry[2].append(token)
        try:
            async with entry[0]:
                try:
                    yield
                finally:
                    if entry[2] and wire is not None:
                        wire.reclaim(entry[2].popleft())  # the next in turn counts again
        finally:
            entry[1] -= 1
            if lent and token in entry[2]:  # left without its turn (canceled)
                entry[2].remove(token)
            if entry[1] == 0 and self.locks.get(coid) is entry:
                del self.locks[coid]


async def _carrying(token: int, coro: Awaitable[Any]) -> Any:
    """Run ``coro`` with its requests carrying the wire-ledger ``token`` (the
    face parks a request against it: exchange.virtual_wire)."""
    WIRE_TOKEN.set(token)
    return await coro


class CostProbe:
    """The adapter's own CPU time (ns) per order outside the wire and per stream
    report, for the bench; kept only while ``keep`` is set."""

    def __init__(self) -> None:
        self.keep = False
        self.order_ns: list[int] = []
        self.stream_ns: list[int] = []
