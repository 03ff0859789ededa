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

In a scenario through the Binance face (``wire``: exchange.virtual_wire) every
command, connect and follow-up task is counted on the wire ledger until its
outcome has reached the sink, so virtual time never moves while one is out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from collections.abc import AsyncIterator, Awaitable, Callable

from loguru import logger

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.client import WIRE_TOKEN
from exchange.ccxt_venue.errors import Classified, Kind, classify, retry_after_s
from exchange.ccxt_venue.ids import ClientIdError, venue_client_id
from exchange.ccxt_venue.orders import order_call
from exchange.ccxt_venue.settings import VenueSettings
from exchange.ccxt_venue.weights import RequestBudget
from exchange.loop_client import LoopThreadClient
from exchange.protocol import Sink, refusal, safe_sink
from exchange.virtual_wire import WireLedger
from messages import (CancelConfirmed, CancelOrder, ExchangeError, Message, OrderRejected,
                      StreamStatus, utc_now)
from messages.enums import CancelOutcome
from messages.exchange import (QueryBalances, QueryFills, QueryOpenOrders, QueryPositions,
                               Subscribe, SubmitOrder, Unsubscribe)
from messages.types import ClientOrderId, Quantity, Symbol

#: weights of Binance USDⓈ-M endpoints the adapter calls (exchange docs)
W_ORDER, W_QUERY_ORDER, W_OPEN_ALL, W_POSITIONS, W_BALANCE, W_TRADES = 1, 1, 40, 5, 5, 5
#: a request refused by the local budget waits at most this long before the
#: adapter gives up on it (queries and cancels; orders are refused at once)
MAX_BUDGET_WAIT_S = 120.0
#: lookups of an order whose create answer was lost: first delays, then every MAX
LOOKUP_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
LOOKUP_MAX_DELAY_S = 10.0
#: margin past the request's recvWindow before "not found" is final
RECV_WINDOW_MARGIN_MS = 2000
CANCEL_ATTEMPTS = 6
#: an order older than this when it reaches the adapter is a resubmission
#: (recovery after a crash or a reconnect): the venue is asked first
RESUBMIT_AGE = timedelta(seconds=10)
DEFAULT_BAN_S = 60.0
DEFAULT_429_S = 1.0


@dataclass
class _Conn:
    gen: int
    up: bool = False
    down_reported: bool = False
    opened: asyncio.Event | None = None


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
        #: subscription answers of the market streams seen (for the wired Subscribe)
        self._replies = 0
        self._reply_seen: asyncio.Event | None = None
        #: connect() hops to the loop thread not yet taken over (a wired run)
        self._connect_hops: deque[int] = deque()
        self._sink = sink
        self.name = name
        self.clock = clock
        self._factory = exchange_factory or _default_factory
        self.budget = RequestBudget(clock)
        self.tracker = ev.OrderTracker()
        self.counts: Counter[str] = Counter()
        self.bad_frames = 0
        self.refused = 0
        #: adapter CPU time per order outside the wire (ns), for the bench
        self.overhead_ns: list[int] = []
        #: time spent on each stream report (the other half of an order's cost)
        self.stream_ns: list[int] = []
        self.keep_overhead = False
        self._init_loop_thread()
        self._conn: _Conn | None = None
        self.ex: Any = None
        self.markets_loaded = False
        self._quote_tasks: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: coid -> [lock, holders and waiters]; present only while someone needs it
        self._order_locks: dict[str, list[Any]] = {}
        self._fill_cursors: dict[int, dict[str, int]] = {}
        self._next_cursor = 1
        self._symbols: set[str] = set()
        #: an order made before this adapter existed is a resubmission (a resumed
        #: or restarted runtime resends what it never heard of): asked first
        self.born = self._now()

    # -- protocol ------------------------------------------------------------------

    def set_sink(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.up and conn.gen == self._gen

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
        hop = self._count()
        try:
            loop.call_soon_threadsafe(self._dispatch, self._gen, command, hop)
        except RuntimeError:
            self._uncount(hop)
            self._refuse(command, "adapter closed")

    # -- loop thread: connection ---------------------------------------------------------

    def _start_connection(self, gen: int) -> None:
        hop = self._connect_hops.popleft() if self._connect_hops else None
        try:
            if gen == self._gen:
                self._spawn(self._open(gen))
        finally:
            self._uncount(hop)

    async def _open(self, gen: int) -> None:
        old = self._conn
        if old is not None:
            await self._drop_streams()
        conn = self._conn = _Conn(gen, opened=asyncio.Event())
        try:
            if self.ex is None:
                self.ex = self._factory(self.settings)
                self.ex.listener = self
            if not self.markets_loaded:
                await self.ex.load_markets()
                self.markets_loaded = True
            self.ex.forget_listen_key()  # a new session: a new (or re-extended) listen key
            self._spawn(self._user_stream(conn), counted=False)
            assert conn.opened is not None
            await asyncio.wait_for(conn.opened.wait(), self.settings.open_timeout_s)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - any failure is one status event
            if gen == self._gen:
                self._down(conn, f"connect failed: {classify(exc).reason()}")
            return
        if gen != self._gen or conn.down_reported:
            return
        conn.up = True
        self.counts["connects"] += 1
        self._spawn(self._keepalive(conn), counted=False)
        self._status(True, "connected")

    async def _keepalive(self, conn: _Conn) -> None:
        """PUT the listen key every ``listen_key_keepalive_s`` while this session
        lives. ccxt schedules one keep-alive and re-arms it only when it finds
        its own subscription in a client table it reads wrongly (ccxt 4.5:
        ``safe_dict`` over Client objects), so after the first PUT the key
        would lapse at 60 minutes and the stream die; the adapter keeps it."""
        try:
            while conn.gen == self._gen and not conn.down_reported:
                await asyncio.sleep(self.settings.listen_key_keepalive_s)
                if conn.gen != self._gen or conn.down_reported:
                    return
                await self._budget_wait(1)
                try:
                    await self.ex.fapiPrivatePutListenKey()
                    self.counts["listen_key_keepalives"] += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    c = classify(exc)
                    if c.venue_code == -1125 or c.kind is Kind.NOT_FOUND:
                        self._down(conn, f"listen key lost: {c.detail}")
                        return
                    self._venue_trouble(c, ref=None)
                    logger.warning("{}: listen key keep-alive failed: {}", self.name, c.detail)
        except asyncio.CancelledError:
            return

    async def _user_stream(self, conn: _Conn) -> None:
        """Keeps ccxt's user-data subscription open; its end is the stream's end."""
        try:
            while True:
                await self.ex.watch_orders()
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            self._down(conn, f"user-data stream: {type(exc).__name__}: {exc}"[:300])

    async def _quotes(self, conn: _Conn, symbol: str, unified: str) -> None:
        try:
            while True:
                await self.ex.watch_bids_asks([unified])
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            self._down(conn, f"market stream {symbol}: {type(exc).__name__}: {exc}"[:300])

    def _down(self, conn: _Conn, reason: str) -> None:
        if conn.down_reported or conn.gen != self._gen:
            return
        conn.down_reported = True
        conn.up = False
        if conn.opened is not None:
            conn.opened.set()
        self._spawn(self._drop_streams())
        self._status(False, reason)
        if self.wire is not None:
            self.wire.down_reported()

    async def _drop_streams(self) -> None:
        for task in list(self._quote_tasks.values()):
            task.cancel()
        self._quote_tasks.clear()
        ex = self.ex
        if ex is not None and getattr(ex, "clients", None):
            try:
                await ex.close_ws_clients()
            except Exception as exc:  # noqa: BLE001 - closing dead sockets may fail
                logger.debug("{}: closing stream clients: {!r}", self.name, exc)

    # hooks called by HookedBinanceUsdm on the loop thread ------------------------------

    def on_ws_connected(self, url: str) -> None:
        conn = self._conn
        key = self.ex.listen_key() if self.ex is not None else None
        if conn is not None and key and key in url and conn.opened is not None:
            conn.opened.set()

    def on_ws_closed(self, url: str, error: Any) -> None:
        conn = self._conn
        if conn is not None and conn.up:
            self._down(conn, f"stream closed: {error!r}"[:300])

    def on_stream_message(self, kind: str, message: dict[str, Any]) -> None:
        if self.keep_overhead:
            t0 = time.thread_time_ns()
            self._on_stream_message(kind, message)
            self.stream_ns.append(time.thread_time_ns() - t0)
        else:
            self._on_stream_message(kind, message)

    def _on_stream_message(self, kind: str, message: dict[str, Any]) -> None:
        now = self._now()
        try:
            if kind == "order":
                out = ev.order_update(message.get("o"), self.tracker, self.settings.account,
                                      message.get("T") or message.get("E"))
            elif kind == "algo":
                out = ev.algo_update(message.get("o"), self.tracker,
                                     message.get("T") or message.get("E"))
            elif kind == "book":
                out = [ev.book_ticker(message, now)]
            elif kind == "ignore":
                return
            else:  # listen key expired: this session is over
                conn = self._conn
                if conn is not None:
                    self._down(conn, "listen key expired")
                return
        except (ev.ParseError, Exception) as exc:  # noqa: BLE001 - a bad report never kills the loop
            self.bad_frames += 1
            logger.warning("{}: unreadable {} report: {}", self.name, kind, exc)
            self._emit(ev.bad_report(kind, exc, now))
            return
        for event in out:
            self._emit(event)

    # -- loop thread: commands ------------------------------------------------------------

    def _dispatch(self, gen: int, command: Any, hop: int | None = None) -> None:
        try:
            self._dispatch_now(gen, command)
        finally:
            self._uncount(hop)

    def _dispatch_now(self, gen: int, command: Any) -> None:
        if gen != self._gen or not self.connected:
            self._refuse(command, "connection closed before the command was sent")
            return
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            self._emit(ExchangeError(code="bad_command", ts=self._now(),
                                     reason=f"{type(command).__name__} is not a venue command"))
            return
        self._spawn(handler(self, command))

    async def _submit(self, cmd: SubmitOrder) -> None:
        t0 = time.thread_time_ns()  # CPU time of this thread: a busy host's preemption excluded
        req = cmd.order
        coid = req.client_order_id
        unified = self._unified(req.symbol)
        if unified is None:
            self._reject(req, f"unknown_symbol: {req.symbol} is not listed at the venue")
            return
        try:
            call = order_call(req, unified, hedge_mode=self.settings.hedge_mode)
        except (ClientIdError, ValueError) as exc:
            self._reject(req, f"bad_order: {exc}")
            return
        wait = self.budget.wait_s(W_ORDER, order=True)
        if wait > 0:
            self.budget.refused += 1
            self._reject(req, f"rate_limited: venue request budget exhausted "
                              f"({self.budget.hold_reason or 'weight window'}); retry in {wait:.1f}s")
            return
        self.budget.take(W_ORDER, order=True)
        self._symbols.add(req.symbol)
        known = self.tracker.get(coid)
        self.tracker.track(coid, req.symbol, algo=call.algo)
        async with self._order_turn(coid):
            if (known is not None or req.ts < self.born or self._now() - req.ts > RESUBMIT_AGE) \
                    and await self._already_placed(req, call.algo):
                return
            sent_ms = self._venue_ms()
            spent = time.thread_time_ns() - t0
            try:
                answer = await self.ex.create_order(call.symbol, call.type, call.side, call.amount,
                                                    call.price, dict(call.params))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is classified
                self._note_headers()
                await self._submit_failed(req, call.algo, classify(exc), sent_ms)
                return
            t1 = time.thread_time_ns()
            self._note_headers()
            self.counts["orders_sent"] += 1
            events = ev.rest_order_events(_info(answer), self.tracker, coid, req.symbol,
                                          self._now(), algo=call.algo)
            for event in events:
                self._emit(event)
            if self.keep_overhead:
                self.overhead_ns.append(spent + time.thread_time_ns() - t1)

    async def _already_placed(self, req: Any, algo: bool) -> bool:
        """A resubmission (the id was sent before, the order is older than this
        adapter or than ``RESUBMIT_AGE``: recovery after a crash, however soon
        the runtime came back): does the venue have it? Binance
        keeps client ids unique among *open* orders only, so a filled or
        canceled order's id would be accepted again and the order doubled.
        Found: ``duplicate_client_order_id`` (the original stands; the protocol's
        meaning) and nothing is sent. Not found: it goes out."""
        info, c = await self._lookup(req.client_order_id, req.symbol, algo)
        if info is None and algo and c is not None and c.kind is Kind.NOT_FOUND:
            info, c = await self._lookup(req.client_order_id, req.symbol, False)
        if info is None:
            if c is not None and c.kind is not Kind.NOT_FOUND:
                self._venue_trouble(c, ref=req.client_order_id)
                self._reject(req, f"unknown_outcome_check_failed: could not ask the venue "
                                  f"whether {req.client_order_id} exists ({c.detail}); not sent")
                return True
            return False
        self.counts["resubmissions_found"] += 1
        self._emit(OrderRejected(req.client_order_id, req.symbol,
                                 f"duplicate_client_order_id: the venue has this order "
                                 f"({ev.order_status(info)}); not sent again", self._now()))
        return True

    async def _submit_failed(self, req: Any, algo: bool, c: Classified, sent_ms: int) -> None:
        coid = req.client_order_id
        self.counts[f"submit_{c.kind.value}"] += 1
        if c.kind is Kind.UNKNOWN:
            logger.warning("{}: order {} outcome unknown ({}); looking it up by its client id",
                           self.name, coid, c.detail)
            self._emit(ExchangeError(code="unknown_outcome", ts=self._now(), ref=coid,
                                     reason=f"create_order {coid}: {c.detail}; the order stays in "
                                            f"flight until the venue is asked by its client id"))
            self._spawn(self._resolve_unknown(req, algo, sent_ms))
            return
        self._venue_trouble(c, ref=coid)
        if c.kind is Kind.NOT_FOUND:
            c = Classified(Kind.REJECTED, "venue_rejected", c.venue_code, c.detail)
        if c.code == "duplicate_client_order_id":
            # about this request only: the original order with this id stands
            self._emit(OrderRejected(coid, req.symbol, c.reason(), self._now()))
            return
        if self.tracker.end(coid, req.symbol):
            self._emit(OrderRejected(coid, req.symbol, c.reason(), self._now()))

    async def _resolve_unknown(self, req: Any, algo: bool, sent_ms: int) -> None:
        """Ask the venue about an order whose create answer never came, until it says."""
        coid = req.client_order_id
        deadline_ms = sent_ms + self.settings.recv_window_ms + RECV_WINDOW_MARGIN_MS
        attempt = 0
        while True:
            delay = LOOKUP_DELAYS_S[attempt] if attempt < len(LOOKUP_DELAYS_S) else LOOKUP_MAX_DELAY_S
            attempt += 1
            await asyncio.sleep(max(delay, self.budget.wait_s(W_QUERY_ORDER)))
            t = self.tracker.get(coid)
            if t is not None and (t.acked or t.ended):
                self.counts["unknown_resolved_by_stream"] += 1
                return  # the stream already told
            info, c = await self._lookup(coid, req.symbol, algo)
            if info is not None:
                self.counts["unknown_resolved_found"] += 1
                logger.info("{}: order {} whose answer was lost is at the venue ({})", self.name,
                            coid, ev.order_status(info))
                for event in ev.rest_order_events(info, self.tracker, coid, req.symbol,
                                                  self._now(), algo=algo):
                    self._emit(event)
                return
            if c is not None and c.kind is Kind.NOT_FOUND and self._venue_ms() > deadline_ms:
                self.counts["unknown_resolved_not_placed"] += 1
                if self.tracker.end(coid, req.symbol):
                    self._emit(OrderRejected(
                        coid, req.symbol, "not_placed: the venue has no order with this client id "
                        "and the request's recvWindow has passed, so it can no longer be accepted",
                        self._now()))
                return
            if c is not None and c.kind is not Kind.NOT_FOUND:
                self._venue_trouble(c, ref=coid)

    async def _lookup(self, coid: str, symbol: str, algo: bool
                      ) -> tuple[dict[str, Any] | None, Classified | None]:
        """The venue's record of ``coid`` (raw), or the classified failure."""
        unified = self._unified(symbol)
        vid = venue_client_id(coid)
        params: dict[str, Any] = ({"clientAlgoId": vid, "trigger": True} if algo
                                  else {"origClientOrderId": vid})
        self.budget.take(W_QUERY_ORDER)
        try:
            answer = await self.ex.fetch_order(None, unified, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._note_headers()
            return None, classify(exc)
        return _info(answer), None

    async def _cancel(self, cmd: CancelOrder) -> None:
        coid, symbol = cmd.client_order_id, cmd.symbol
        async with self._order_turn(coid):  # never ahead of this order's own submit
            await self._cancel_locked(coid, symbol)

    async def _cancel_locked(self, coid: str, symbol: str) -> None:
        unified = self._unified(symbol)
        tracked = self.tracker.get(coid)
        algo = tracked.algo if tracked is not None else False
        try:
            vid = venue_client_id(coid)
        except ClientIdError:
            self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.UNKNOWN, Quantity(ev.ZERO), self._now()))
            return
        # an order this adapter never sent (a runtime restarted): the venue may hold
        # it on the plain or, untriggered, on the conditional (algo) endpoints
        tried_algo = algo
        for attempt in range(CANCEL_ATTEMPTS):
            if not await self._budget_wait(1):
                break
            params: dict[str, Any] = ({"clientAlgoId": vid, "trigger": True} if algo
                                      else {"origClientOrderId": vid})
            try:
                answer = await self.ex.cancel_order(None, unified, params)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self._note_headers()
                c = classify(exc)
                self.counts[f"cancel_{c.kind.value}"] += 1
                if c.kind is Kind.NOT_FOUND or c.kind is Kind.REJECTED:
                    if algo and c.kind is Kind.NOT_FOUND and attempt == 0:
                        algo = False  # maybe it triggered: its matching-engine order carries it
                        continue
                    if tracked is None and not tried_algo and c.kind is Kind.NOT_FOUND:
                        algo = tried_algo = True  # maybe a conditional order not yet triggered
                        continue
                    if await self._settle_cancel(coid, symbol, tracked):
                        return
                    continue
                self._venue_trouble(c, ref=coid)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
                continue
            self._note_headers()
            self.counts["cancels_sent"] += 1
            for event in ev.rest_order_events(_info(answer), self.tracker, coid, symbol,
                                              self._now(), algo=algo):
                self._emit(event)
            return
        self._emit(ExchangeError(code="cancel_failed", ts=self._now(), ref=coid,
                                 reason=f"cancel of {coid} not confirmed after {CANCEL_ATTEMPTS} "
                                        "attempts; the reconciliation poll will settle it"))

    async def _settle_cancel(self, coid: str, symbol: str, tracked: ev.Tracked | None) -> bool:
        """The venue refused the cancel: what became of the order? True if answered."""
        algo = tracked.algo if tracked is not None else False
        info, c = await self._lookup(coid, symbol, algo)
        if info is None and c is not None and c.kind is Kind.NOT_FOUND \
                and (algo or tracked is None):  # the other endpoint (see _cancel_locked)
            info, c = await self._lookup(coid, symbol, not algo)
        now = self._now()
        if info is None:
            if c is not None and c.kind is Kind.NOT_FOUND:
                self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.UNKNOWN, Quantity(ev.ZERO), now))
                return True
            if c is not None:
                self._venue_trouble(c, ref=coid)
            return False
        status = ev.order_status(info)
        if status in ("FILLED", "FINISHED") and _executed(info) >= _orig(info):
            self.tracker.end(coid, symbol)
            self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.ALREADY_FILLED, Quantity(ev.ZERO), now))
            return True
        if status in ("CANCELED", "EXPIRED", "REJECTED", "FINISHED", "FILLED"):
            if self.tracker.end(coid, symbol):
                leaves = max(_orig(info) - _executed(info), ev.ZERO)
                self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.CANCELED, Quantity(leaves), now))
            return True
        return False  # still working: try the cancel again

    async def _query_positions(self, q: QueryPositions) -> None:
        from exchange.ccxt_venue.queries import positions_snapshot

        if not await self._budget_wait(W_POSITIONS):
            self._query_failed(q, "request budget exhausted")
            return
        try:
            raw = await self.ex.fetch_positions()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._query_error(q, exc)
            return
        self._emit(positions_snapshot([_info(p) for p in raw], q.request_id, q.account, self._now()))

    async def _query_open_orders(self, q: QueryOpenOrders) -> None:
        from exchange.ccxt_venue.queries import open_orders_snapshot

        if not await self._budget_wait(W_OPEN_ALL + 1):
            self._query_failed(q, "request budget exhausted")
            return
        try:
            regular = await self.ex.fetch_open_orders()
            algo = await self.ex.fetch_open_orders(None, None, None, {"trigger": True})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._query_error(q, exc)
            return
        snap = open_orders_snapshot([_info(o) for o in regular], [_info(o) for o in algo],
                                    self.tracker, q.request_id, q.account, self._now())
        self._emit(snap)

    async def _query_balances(self, q: QueryBalances) -> None:
        from exchange.ccxt_venue.queries import balance_snapshot

        if not await self._budget_wait(W_BALANCE):
            self._query_failed(q, "request budget exhausted")
            return
        try:
            raw = await self.ex.fetch_balance()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._query_error(q, exc)
            return
        self._emit(balance_snapshot(_info(raw), q.request_id, q.account, self._now()))

    async def _query_fills(self, q: QueryFills) -> None:
        from exchange.ccxt_venue.queries import FillPager

        start = self._fill_cursors.get(q.since_cursor, {}) if q.since_cursor else {}
        pager = FillPager(self, q.account)
        try:
            fills, next_ids, more = await pager.page(sorted(self._symbols), dict(start), q.limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._query_error(q, exc)
            return
        cursor = self.new_cursor()
        self._fill_cursors[cursor] = next_ids
        while len(self._fill_cursors) > 64:  # bounded: old cursors start over (dedup by fill id)
            self._fill_cursors.pop(next(iter(self._fill_cursors)))
        from messages.exchange import FillsSnapshot

        self._emit(FillsSnapshot(q.request_id, q.account, tuple(fills), cursor, self._now(),
                                 more=more))

    async def _subscribe(self, msg: Subscribe) -> None:
        conn = self._conn
        if conn is None or not conn.up:
            return
        opened = 0
        for sym in msg.symbols:
            self._symbols.add(sym)
            if sym in self._quote_tasks:
                continue
            unified = self._unified(sym)
            if unified is None:
                self._emit(ExchangeError(code="unknown_symbol", ts=self._now(), ref=sym,
                                         reason=f"{sym} is not listed at the venue"))
                continue
            self._quote_tasks[sym] = self._spawn(self._quotes(conn, sym, unified),
                                                 counted=False)
            self.counts["subscribes"] += 1
            opened += 1
        if opened and self.wire is not None:
            await self._subscribed(opened)

    async def _unsubscribe(self, msg: Unsubscribe) -> None:
        for sym in msg.symbols:
            task = self._quote_tasks.pop(sym, None)
            if task is None:
                continue
            task.cancel()
            unified = self._unified(sym)
            try:
                await self.ex.un_watch_bids_asks([unified])
            except Exception as exc:  # noqa: BLE001 - the task is gone either way
                logger.debug("{}: unwatch {}: {!r}", self.name, sym, exc)

    _HANDLERS: dict[type, Callable[[Any, Any], Awaitable[None]]] = {
        SubmitOrder: _submit, CancelOrder: _cancel, QueryPositions: _query_positions,
        QueryOpenOrders: _query_open_orders, QueryBalances: _query_balances,
        QueryFills: _query_fills, Subscribe: _subscribe, Unsubscribe: _unsubscribe,
    }

    # -- helpers ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _order_turn(self, coid: str) -> AsyncIterator[None]:
        """One command about an order at a time, in the order they came; the
        entry lives only while a command holds or waits for it (rule 13).

        Wired run: a command waiting for its turn lends its count back (the
        turn's holder may be a request the venue holds for a virtual delay,
        which only moving time ends), and the holder hands it back as it
        leaves, before the lock passes on, so the count never drops between."""
        entry = self._order_locks.get(coid)
        if entry is None:
            entry = self._order_locks[coid] = [asyncio.Lock(), 0, deque()]
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
            if entry[1] == 0 and self._order_locks.get(coid) is entry:
                del self._order_locks[coid]

    def new_cursor(self) -> int:
        """A fills cursor above every one handed out before, by this adapter or
        an earlier one (the reconciler keeps the highest it saw): a cursor this
        instance does not know starts the paging over, and one below the
        reconciler's would make it ask for an unknown cursor forever."""
        self._next_cursor = max(self._next_cursor + 1, time.time_ns() // 1000)
        return self._next_cursor

    def _venue_trouble(self, c: Classified, ref: str | None) -> None:
        """Rate limit, ban, clock skew, auth: hold, resync, and tell the runtime."""
        if c.kind is Kind.RATE_LIMITED:
            hold = retry_after_s(self._headers(), DEFAULT_429_S)
            self.budget.hold(hold, "HTTP 429 rate limited")
            self._emit(ExchangeError(code="rate_limited", ts=self._now(), ref=ref,
                                     retry_after_s=hold, reason=f"venue rate limit hit; no request for {hold:g}s "
                                            f"(Retry-After): {c.detail}"))
        elif c.kind is Kind.BANNED:
            hold = retry_after_s(self._headers(), DEFAULT_BAN_S)
            self.budget.hold(hold, "HTTP 418 IP banned")
            self._emit(ExchangeError(code="ip_banned", ts=self._now(), ref=ref,
                                     retry_after_s=hold, reason=f"venue banned this IP; no request for {hold:g}s "
                                            f"(Retry-After): {c.detail}"))
        elif c.kind is Kind.CLOCK_SKEW:
            self._emit(ExchangeError(code="clock_skew", ts=self._now(), ref=ref,
                                     reason=f"request timestamp outside the venue's recvWindow; "
                                            f"clock offset measured again: {c.detail}"))
            self._spawn(self._resync_time())
        elif c.kind is Kind.AUTH:
            self._emit(ExchangeError(code="auth", ts=self._now(), ref=ref,
                                     reason=f"the venue refused the API key: {c.detail}"))

    async def _resync_time(self) -> None:
        try:
            offset = await self.ex.load_time_difference()
            self.counts["time_resyncs"] += 1
            logger.warning("{}: clock offset to the venue measured again: {} ms", self.name, offset)
        except Exception as exc:  # noqa: BLE001
            logger.error("{}: could not measure the clock offset: {!r}", self.name, exc)

    async def _budget_wait(self, weight: int) -> bool:
        waited = 0.0
        while True:
            wait = self.budget.wait_s(weight)
            if wait <= 0:
                return self.budget.take(weight)
            if waited + wait > MAX_BUDGET_WAIT_S:
                return False
            await asyncio.sleep(wait)
            waited += wait

    def _query_error(self, q: Any, exc: BaseException) -> None:
        self._note_headers()
        c = classify(exc)
        self._venue_trouble(c, ref=q.request_id)
        self._query_failed(q, c.reason())

    def _query_failed(self, q: Any, detail: str) -> None:
        self.counts["query_failed"] += 1
        self._emit(ExchangeError(code="query_failed", ts=self._now(), ref=q.request_id,
                                 reason=f"{type(q).__name__}: {detail}"[:300]))

    def _headers(self) -> Any:
        return getattr(self.ex, "last_response_headers", None)

    def _note_headers(self) -> None:
        self.budget.note_used(self._headers())

    def record_ms(self) -> int:
        """Now on the clock the venue keeps its records in (trade and order times),
        for look-back windows: the runtime's clock (live: this host's, the venue's
        give or take its offset; a scenario: the simulated venue's virtual time).
        Request timestamps are the transport's and use :meth:`_venue_ms`."""
        return int(self._now().timestamp() * 1000)

    def _venue_ms(self) -> int:
        ex = self.ex
        diff = 0
        if ex is not None:
            try:
                diff = int(ex.options.get("timeDifference") or 0)
            except (TypeError, ValueError):
                diff = 0
        return int(time.time() * 1000) - diff

    def _unified(self, symbol: str) -> str | None:
        ex = self.ex
        markets = getattr(ex, "markets_by_id", None) or {}
        found = markets.get(symbol)
        if not found:
            return None
        market = found[0] if isinstance(found, list) else found
        return str(market["symbol"])

    def _spawn(self, coro: Awaitable[Any], *, counted: bool = True) -> asyncio.Task[Any]:
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

    def _count(self) -> int | None:
        return self.wire.add(1) if self.wire is not None else None

    def _uncount(self, gen: int | None) -> None:
        if gen is not None and self.wire is not None:
            self.wire.done(1, gen)

    def on_stream_reply(self, message: dict[str, Any]) -> None:
        """A market stream's answer to a (un)subscription (hook of HookedBinanceUsdm)."""
        self._replies += 1
        if self._reply_seen is not None:
            self._reply_seen.set()

    async def _subscribed(self, n: int) -> None:
        """Wired run: the Subscribe is done once the venue has answered its ``n``
        subscriptions (so a quote sent after it reaches the runtime, as on the
        in-process venue); a venue that never answers is waited for no longer
        than a connect."""
        want = self._replies + n
        seen = self._reply_seen = self._reply_seen or asyncio.Event()
        deadline = time.monotonic() + self.settings.open_timeout_s
        while self._replies < want and time.monotonic() < deadline:
            seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.wait(), max(deadline - time.monotonic(), 0.0))
        if self._replies < want:
            logger.warning("{}: {} market subscription(s) not answered within {}s", self.name,
                           want - self._replies, self.settings.open_timeout_s)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.counts["task_failures"] += 1
            logger.opt(exception=exc).error("{}: adapter task failed", self.name)
            self._emit(ExchangeError(code="internal", ts=self._now(),
                                     reason=f"adapter task failed: {exc!r}"[:300]))

    def _reject(self, req: Any, reason: str) -> None:
        self.counts["refused_before_sending"] += 1
        self.tracker.end(req.client_order_id, req.symbol)
        self._emit(OrderRejected(req.client_order_id, req.symbol, reason, self._now()))

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

    def _status(self, connected: bool, reason: str) -> None:
        if not connected:
            logger.info("{}: stream down: {}", self.name, reason)
        self._emit(StreamStatus(connected, reason, self._now()))

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        me = asyncio.current_task()
        for task in [t for t in asyncio.all_tasks(loop) if t is not me]:
            task.cancel()
        await asyncio.gather(*[t for t in asyncio.all_tasks(loop) if t is not me],
                             return_exceptions=True)
        ex, self.ex = self.ex, None
        self._conn = None
        self.markets_loaded = False  # a new connect() makes a new ccxt object
        if ex is not None:
            try:
                await asyncio.wait_for(ex.close(), 5.0)
            except Exception as exc:  # noqa: BLE001
                logger.debug("{}: closing ccxt: {!r}", self.name, exc)
        loop.stop()

    def figures(self) -> dict[str, Any]:
        return {"connected": self.connected, "counts": dict(self.counts),
                "budget": self.budget.figures(), "bad_frames": self.bad_frames,
                "tracked_orders": len(self.tracker.orders)}


async def _carrying(token: int, coro: Awaitable[Any]) -> Any:
    """Run ``coro`` with its requests carrying the wire-ledger ``token`` (the
    face parks a request against it: exchange.virtual_wire)."""
    WIRE_TOKEN.set(token)
    return await coro


def _info(obj: Any) -> dict[str, Any]:
    """The venue's raw answer inside a ccxt structure (or the dict itself)."""
    if isinstance(obj, dict):
        info = obj.get("info")
        return info if isinstance(info, dict) else obj
    return {}


def _orig(info: dict[str, Any]) -> Any:
    return ev.dec(info.get("origQty") or info.get("quantity") or "0", "origQty")


def _executed(info: dict[str, Any]) -> Any:
    return ev.dec(info.get("executedQty") or info.get("aq") or "0", "executedQty")


def _default_factory(settings: VenueSettings) -> Any:
    from exchange.ccxt_venue.client import make_exchange

    return make_exchange(api_key=settings.api_key, api_secret=settings.api_secret,
                         testnet=settings.testnet, urls=settings.urls,
                         recv_window_ms=settings.recv_window_ms, timeout_ms=settings.timeout_ms,
                         options=settings.options,
                         enable_rate_limit=settings.client_throttle,
                         close_wait_ms=settings.close_wait_ms)
