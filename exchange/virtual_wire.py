"""A venue over loopback inside a virtual-time run: the work on the wire counted.

A scenario run moves virtual time only when the actor system is quiescent.
When the runtime talks to the simulated exchange through a real client
library over sockets (ccxt and the Binance face), part of the work is
outside every mailbox: a request on its way, a stream frame written and
not yet read, a venue timer's effect hopping onto the face's loop. Two
pieces make that work visible to the harness, without the exchange
importing the runtime (layering: exchange/ is a leaf):

* :class:`WireLedger` counts it. The adapter adds one per command, connect
  and follow-up task until it has told the runtime what came of it; the face
  adds one per stream frame until the client has handled it (a WebSocket
  ping after the frames: its pong comes back only once the client's
  receive loop has handled every frame before it), and one per aborted
  stream until the adapter has reported the stream down. The harness binds
  the ledger to the live actor system (``ActorSystem.outstanding_add``); a
  crash unbinds it, so what the dead runtime left on the wire is never
  counted against its successor (each count carries the binding's
  generation).
* :class:`VirtualTiming` puts the face's delays (latency, partial-fill
  intervals, cancel delays, stall durations) on the scenario's virtual
  clock: a delay is a timer the harness fires when virtual time reaches it
  (``timer_sources`` of the actor system), never a wall-time sleep. A
  request the face holds for a virtual delay is *parked*: its count (the
  adapter task's token, sent along in a request header) is lent back while it
  waits, so time can advance to the timer, and taken again, synchronously,
  when the timer wakes it.

What stays on wall time, on purpose: request signatures (ccxt stamps
``timestamp`` with the wall clock and the face checks ``recvWindow``
against the wall clock), listen-key validity and keep-alive, request-weight
windows and Retry-After holds. They belong to the transport, not to the
market, and virtual time stands still while a request is out, so a scenario
is never refused for the time its own requests took.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

class WireLedger:
    """Work in flight between the runtime and a venue; thread-safe.

    Two kinds of count. Plain counts (``add``/``done``, tagged with the
    binding's generation): a stream frame, a venue timer's hop, a dropped
    stream. Held tokens (``hold``/``release``): one per adapter task, which the
    face may *lend* back while it parks that task's request for a virtual
    delay and *reclaim* when the delay is over; a token released while lent
    (the client gave up on the request) is not reclaimed, so the two sides
    can finish in either order without the count going wrong.
    """

    HEADER = "X-TW-Wire"  # the request header that carries a token to the face

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sink: Callable[[int], None] | None = None
        self._gen = 0
        self._count = 0
        #: drops of a stream the adapter has not reported yet
        self._downs = 0
        self._tokens: dict[int, bool] = {}  # token -> lent
        self._next_token = itertools.count(1)
        #: changes refused because the count would have gone below zero (a bug if not 0)
        self.underflows = 0

    @property
    def gen(self) -> int:
        return self._gen

    @property
    def count(self) -> int:
        return self._count

    def bind(self, sink: Callable[[int], None]) -> None:
        """A new runtime life: its outstanding counter gets every later change."""
        self._rebind(sink)

    def unbind(self) -> None:
        """The runtime died: what is on the wire now is nobody's to wait for."""
        self._rebind(None)

    def _rebind(self, sink: Callable[[int], None] | None) -> None:
        with self._lock:
            self._gen += 1
            self._sink, self._count, self._downs = sink, 0, 0
            self._tokens.clear()

    def add(self, n: int = 1, gen: int | None = None) -> int:
        """Count ``n`` more (of binding ``gen``, default the current one); returns the gen."""
        with self._lock:
            return self._adjust(n, gen)

    def done(self, n: int = 1, gen: int | None = None) -> int:
        with self._lock:
            return self._adjust(-n, gen)

    def _adjust(self, delta: int, gen: int | None) -> int:
        """(lock held) Change the count; the sink hears of it."""
        current = self._gen
        if delta == 0 or (gen is not None and gen != current):
            return current
        if self._count + delta < 0:
            self.underflows += 1
            logger.error("wire ledger: {} would go below zero ({}); ignored", delta, self._count)
            delta = -self._count
        self._count += delta
        if self._sink is not None and delta:
            self._sink(delta)
        return current

    # -- tokens of adapter tasks ------------------------------------------------------

    def hold(self) -> int:
        with self._lock:
            token = next(self._next_token)
            self._tokens[token] = False
            self._adjust(1, None)
            return token

    def release(self, token: int) -> None:
        with self._lock:
            lent = self._tokens.pop(token, None)
            if lent is False:
                self._adjust(-1, None)

    def lend(self, token: int | None) -> bool:
        """The face parks this token's request: its count is lent back (False:
        not a token of this life, nothing lent)."""
        with self._lock:
            if token is None or self._tokens.get(token) is not False:
                return False
            self._tokens[token] = True
            self._adjust(-1, None)
            return True

    def reclaim(self, token: int) -> None:
        """The parked request goes on: counted again (unless its task has ended)."""
        with self._lock:
            if self._tokens.get(token) is True:
                self._tokens[token] = False
                self._adjust(1, None)

    # -- a dropped stream ---------------------------------------------------------------

    def expect_down(self) -> None:
        """The face aborted the client's streams: count until the adapter says so."""
        with self._lock:
            self._downs += 1
            self._adjust(1, None)

    def down_reported(self) -> None:
        """The adapter reported its stream down (releases one expected drop, if any)."""
        with self._lock:
            if self._downs > 0:
                self._downs -= 1
                self._adjust(-1, None)


def token_of(header: str | None) -> int | None:
    """The ledger token a request carries (``WireLedger.HEADER``), or None."""
    try:
        return int(header) if header else None
    except ValueError:
        return None


class VirtualTiming:
    """The face's delays on a virtual clock, fired by the harness.

    ``call_later``, ``park`` and ``resolve`` run on the face's loop;
    ``next_due`` and ``fire_due`` on the harness's thread (the actor
    system's ``run_until``, or the scenario runner while the runtime is down).
    """

    virtual = True

    def __init__(self, monotonic: Callable[[], float], ledger: WireLedger) -> None:
        self._monotonic = monotonic
        self.ledger = ledger
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._parked: dict[asyncio.Future[Any], int] = {}
        self.fired = 0

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- the face's loop ---------------------------------------------------------------

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the face's loop once virtual time has moved ``delay_s`` on
        (at once, still counted, for no delay)."""
        if delay_s <= 0:
            self.ledger.add(1)
            asyncio.get_running_loop().call_soon(self._run, fn, self.ledger.gen)
            return
        with self._lock:
            heapq.heappush(self._heap, (self._monotonic() + delay_s, next(self._seq), fn))

    async def sleep(self, delay_s: float, *, token: int | None) -> None:
        if delay_s <= 0:
            return
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.call_later(delay_s, lambda: self.resolve(fut, None))
        await self.park(fut, None, token=token)

    async def park(self, fut: asyncio.Future[Any], timeout_s: float | None, *,
                   token: int | None) -> Any:
        """Wait for ``fut`` (set through :meth:`resolve`) with the count of the
        request waiting for it (its ledger ``token``) lent back meanwhile;
        TimeoutError after ``timeout_s`` of virtual time."""
        if token is not None and self.ledger.lend(token):
            self._parked[fut] = token
        if timeout_s is not None:
            self.call_later(timeout_s, lambda: self.resolve(
                fut, None, TimeoutError(f"no answer within {timeout_s:g}s (virtual)")))
        try:
            return await fut
        finally:
            lent = self._parked.pop(fut, None)
            if lent is not None:  # canceled, never woken: counted again
                self.ledger.reclaim(lent)

    def resolve(self, fut: asyncio.Future[Any], value: Any,
                exc: BaseException | None = None) -> None:
        """Wake a parked waiter: its count is taken again before anything else runs."""
        if fut.done():
            return
        lent = self._parked.pop(fut, None)
        if lent is not None:
            self.ledger.reclaim(lent)
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

    def _run(self, fn: Callable[[], None], gen: int) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - a venue timer must never kill the loop
            logger.exception("virtual timing: a venue timer failed")
        finally:
            self.ledger.done(1, gen)

    # -- the harness's thread -------------------------------------------------------------

    def next_due(self) -> float | None:
        with self._lock:
            return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._heap)

    def fire_due(self, now: float) -> int:
        """Hand every timer due at ``now`` to the face's loop, counted until run."""
        due: list[Callable[[], None]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap)[2])
        loop = self._loop
        if loop is None:
            if due:
                logger.error("virtual timing: {} venue timer(s) due with no face loop", len(due))
            return 0
        for fn in due:
            gen = self.ledger.add(1)
            self.fired += 1
            try:
                loop.call_soon_threadsafe(self._run, fn, gen)
            except RuntimeError:  # the face stopped: nobody to run it
                self.ledger.done(1, gen)
        return len(due)


class WallTiming:
    """The face's delays on its own loop's (wall) clock: a server for real clients."""

    virtual = False
    ledger: WireLedger | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        if delay_s <= 0:
            loop.call_soon(fn)
        else:
            loop.call_later(delay_s, fn)

    async def sleep(self, delay_s: float, *, token: int | None) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def park(self, fut: asyncio.Future[Any], timeout_s: float | None, *,
                   token: int | None) -> Any:
        return await asyncio.wait_for(fut, timeout_s)

    def resolve(self, fut: asyncio.Future[Any], value: Any,
                exc: BaseException | None = None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
