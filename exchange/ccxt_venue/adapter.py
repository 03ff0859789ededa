"""CcxtVenueAdapter: the broker adapter protocol over ccxt (Binance USDⓈ-M).

Same contract as ``WsClientAdapter`` (exchange/protocol.py): one thread of
its own runs an asyncio loop (started by the first ``connect()``, ended by
``close()``; nothing at construction, rule 14; ``exchange.loop_client``); ``send`` hands the command
to that loop and returns; every answer and stream report reaches the sink
on the loop thread; the adapter never retries a connection by itself.

A connection is: markets loaded (once), a fresh listen key, the user-data
stream open (``StreamStatus(connected=True)``). Market data streams open per
``Subscribe``; a new connection starts with none, so the gateway's restore
after a reconnect subscribes each symbol exactly once. The first close or
error of a stream of the current connection reports it down once; ccxt keeps
the listen key alive (PUT every ``listenKeyRefreshRate``) while it runs.

Commands run as tasks, concurrently, except that the commands about one
order run in order (a cancel never overtakes its order's submit). What each
outcome becomes is in ``errors`` and ``events``; the rules that matter:

* an order the venue refused is ``OrderRejected`` with a reason code;
* an order whose answer did not come (timeout, dropped connection, 5xx)
  stays in flight: ``ExchangeError(unknown_outcome)`` and a lookup by its
  client order id until the venue says (found: acked; not found once the
  request's recvWindow has passed, so the venue can no longer accept it:
  ``OrderRejected(not_placed)``). It is never resent under another id;
* 429 / 418: the Retry-After hold stops every request (orders refused before
  they leave, cancels and queries wait), ``ExchangeError(rate_limited |
  ip_banned)`` tells the coordinator (circuit breaker, alert);
* -1021: the clock offset is measured again (``load_time_difference``) and
  ``ExchangeError(clock_skew)`` raised;
* a cancel of an order the venue does not know is answered after looking
  the order up: ``already_filled``, ``canceled`` or ``unknown``.

The adapter owns its parts and hands each only what it needs: ``VenueCalls``
(``venue_calls``: the ccxt object, request budget, error mapping),
``LoopTasks`` and ``OrderTurns`` (``tasks``), ``Streams`` (``streams``:
connection, user data, market streams), ``OrderCommands``
(``order_commands``: submit, cancel, lookups) and ``SnapshotQueries``
(``queries``). The adapter itself is the protocol face: ``connect``/``send``/
``close``, the dispatch of commands on the loop thread, and the hooks ccxt
calls (handed to the streams).

In a scenario through the Binance face (``wire``: exchange.virtual_wire) every
command, connect and follow-up task is counted on the wire ledger until its
outcome has reached the sink, so virtual time never moves while one is out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from loguru import logger

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.order_commands import OrderCommands
from exchange.ccxt_venue.queries import SnapshotQueries
from exchange.ccxt_venue.settings import VenueSettings
from exchange.ccxt_venue.streams import Streams
from exchange.ccxt_venue.tasks import CostProbe, LoopTasks, OrderTurns
from exchange.ccxt_venue.venue_calls import VenueCalls
from exchange.ccxt_venue.weights import RequestBudget
from exchange.loop_client import LoopThreadClient
from exchange.protocol import Sink, refusal, safe_sink
from exchange.virtual_wire import WireLedger
from messages import CancelOrder, ExchangeError, Message, utc_now
from messages.exchange import (QueryBalances, QueryFills, QueryOpenOrders, QueryPositions,
                               Subscribe, SubmitOrder, Unsubscribe)


class CcxtVenueAdapter(LoopThreadClient):
    close_timeout_s = 10.0

    def __init__(self, settings: VenueSettings, sink: Sink | None = None, *,
                 exchange_factory: Callable[[VenueSettings], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "ccxt",
                 now: Callable[[], datetime] = utc_now, wire: WireLedger | None = None
                 ) -> None:
        self.settings = settings
        #: the runtime's clock: event times and the age of a resubmitted order
        self._now = now
        #: a scenario run's ``exchange.virtual_wire.WireLedger``: every command,
        #: connect and follow-up is counted there until its outcome is told (None: live)
        self.wire = wire
        #: connect() hops to the loop thread not yet taken over (a wired run)
        self._connect_hops: deque[int] = deque()
        self._sink = sink
        self.name = name
        self.clock = clock
        factory = exchange_factory or _default_factory
        self.tracker = ev.OrderTracker()
        self.counts: Counter[str] = Counter()
        self.refused = 0
        self.probe = CostProbe()
        self._init_loop_thread()
        self.tasks = LoopTasks(wire, now=now, emit=self._emit, counts=self.counts, name=name)
        spawn = self.tasks.spawn
        self.calls = VenueCalls(clock=clock, now=now, emit=self._emit, spawn=spawn,
                                counts=self.counts, name=name)
        #: symbols traded or subscribed (the fills query pages these)
        symbols: set[str] = set()
        self.turns = OrderTurns(wire)
        self.streams = Streams(settings, self.calls, self.tracker, symbols, self.probe,
                               make_exchange=lambda: factory(settings), listener=self,
                               gen=lambda: self._gen, wire=wire, now=now, emit=self._emit,
                               spawn=spawn, counts=self.counts, name=name)
        self.orders = OrderCommands(settings, self.calls, self.tracker, self.turns, symbols,
                                    self.probe, now=now, emit=self._emit, spawn=spawn,
                                    counts=self.counts, name=name)
        self.queries = SnapshotQueries(self.calls, self.tracker, symbols, now=now,
                                       emit=self._emit, counts=self.counts)
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            SubmitOrder: self.orders.submit, CancelOrder: self.orders.cancel,
            QueryPositions: self.queries.positions, QueryOpenOrders: self.queries.open_orders,
            QueryBalances: self.queries.balances, QueryFills: self.queries.fills,
            Subscribe: self.streams.subscribe, Unsubscribe: self.streams.unsubscribe,
        }

    # -- figures and parts the runtime and tests read -------------------------------------

    @property
    def budget(self) -> RequestBudget:
        return self.calls.budget

    @property
    def ex(self) -> Any:
        """The ccxt exchange object (None before the first connect and after close)."""
        return self.calls.ex

    @property
    def born(self) -> datetime:
        return self.orders.born

    @property
    def bad_frames(self) -> int:
        return self.streams.bad_frames

    @property
    def keep_overhead(self) -> bool:
        return self.probe.keep

    @keep_overhead.setter
    def keep_overhead(self, keep: bool) -> None:
        self.probe.keep = keep

    @property
    def overhead_ns(self) -> list[int]:
        """Adapter CPU time per order outside the wire (ns), for the bench."""
        return self.probe.order_ns

    @property
    def stream_ns(self) -> list[int]:
        """Time spent on each stream report (the other half of an order's cost)."""
        return self.probe.stream_ns

    def record_ms(self) -> int:
        return self.calls.record_ms()

    def new_cursor(self) -> int:
        return self.queries.new_cursor()

    def figures(self) -> dict[str, Any]:
        return {"connected": self.connected, "counts": dict(self.counts),
                "budget": self.budget.figures(), "bad_frames": self.bad_frames,
                "tracked_orders": len(self.tracker.orders)}

    # -- protocol ------------------------------------------------------------------

    def set_sink(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def connected(self) -> bool:
        return self.streams.connected

    def connect(self) -> None:
        """As the loop-thread client's, with the hop to the loop thread counted in a
        wired run until the connection task has taken over."""
        if self.wire is not None:
            self._connect_hops.append(self.wire.add(1))
        super().connect()

    def send(self, command: Message) -> None:
        loop = self._loop
        if loop is None or not self.connected:
            self._refuse(command, "not connected to the venue")
            return
        hop = self.tasks.count()
        try:
            loop.call_soon_threadsafe(self._dispatch, self._gen, command, hop)
        except RuntimeError:
            self.tasks.uncount(hop)
            self._refuse(command, "adapter closed")

    # -- loop thread ---------------------------------------------------------------------

    def _start_connection(self, gen: int) -> None:
        hop = self._connect_hops.popleft() if self._connect_hops else None
        try:
            if gen == self._gen:
                self.tasks.spawn(self.streams.open(gen))
        finally:
            self.tasks.uncount(hop)

    def _dispatch(self, gen: int, command: Any, hop: int | None = None) -> None:
        try:
            self._dispatch_now(gen, command)
        finally:
            self.tasks.uncount(hop)

    def _dispatch_now(self, gen: int, command: Any) -> None:
        if gen != self._gen or not self.connected:
            self._refuse(command, "connection closed before the command was sent")
            return
        handler = self._handlers.get(type(command))
        if handler is None:
            self._emit(ExchangeError(code="bad_command", ts=self._now(),
                                     reason=f"{type(command).__name__} is not a venue command"))
            return
        self.tasks.spawn(handler(command))

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        me = asyncio.current_task()
        for task in [t for t in asyncio.all_tasks(loop) if t is not me]:
            task.cancel()
        await asyncio.gather(*[t for t in asyncio.all_tasks(loop) if t is not me],
                             return_exceptions=True)
        calls = self.calls
        ex, calls.ex = calls.ex, None
        self.streams.conn = None
        calls.markets_loaded = False  # a new connect() makes a new ccxt object
        if ex is not None:
            try:
                await asyncio.wait_for(ex.close(), 5.0)
            except Exception as exc:  # noqa: BLE001
                logger.debug("{}: closing ccxt: {!r}", self.name, exc)
        loop.stop()

    # hooks called by HookedBinanceUsdm on the loop thread (the streams' business) ------

    def on_ws_connected(self, url: str) -> None:
        self.streams.on_ws_connected(url)

    def on_ws_closed(self, url: str, error: Any) -> None:
        self.streams.on_ws_closed(url, error)

    def on_stream_message(self, kind: str, message: dict[str, Any]) -> None:
        self.streams.on_stream_message(kind, message)

    def on_stream_reply(self, message: dict[str, Any]) -> None:
        """A market stream's answer to a (un)subscription."""
        self.streams.on_stream_reply(message)

    # -- to the runtime -------------------------------------------------------------------

    def _emit(self, event: Any) -> None:
        safe_sink(self._sink, event, where=self.name)

    def _refuse(self, command: Any, detail: str) -> None:
        self.refused += 1
        if isinstance(command, Message):
            event = refusal(command, "not_connected", detail)
        else:
            event = ExchangeError(code="bad_command", reason=f"not a message: {command!r}"[:200],
                                  ts=self._now())
        self._emit(event)


def _default_factory(settings: VenueSettings) -> Any:
    from exchange.ccxt_venue.client import make_exchange

    return make_exchange(api_key=settings.api_key, api_secret=settings.api_secret,
                         testnet=settings.testnet, urls=settings.urls,
                         recv_window_ms=settings.recv_window_ms, timeout_ms=settings.timeout_ms,
                         options=settings.options,
                         enable_rate_limit=settings.client_throttle,
                         close_wait_ms=settings.close_wait_ms)
