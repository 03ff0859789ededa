"""The adapter's streams: the connection (user-data stream, listen key and its
keep-alive) and the market streams (book ticker per subscribed symbol).

A connection is: markets loaded (once), a fresh listen key, the user-data
stream open (``StreamStatus(connected=True)``). Market data streams open per
``Subscribe``; a new connection starts with none, so the gateway's restore
after a reconnect subscribes each symbol exactly once. The first close or
error of a stream of the current connection reports it down once
(``StreamStatus(connected=False)``, and the wire ledger told in a scenario);
reports of a superseded connection (an older generation, ``gen()``) are
dropped. The adapter PUTs the listen key every ``listen_key_keepalive_s``.

Stream reports become protocol events through ``events``; a report that
cannot be read is counted (``bad_frames``) and reported, never kills the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loguru import logger

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.errors import Kind, classify
from exchange.ccxt_venue.settings import VenueSettings
from exchange.ccxt_venue.tasks import CostProbe
from exchange.ccxt_venue.venue_calls import VenueCalls
from exchange.virtual_wire import WireLedger
from messages import ExchangeError, StreamStatus
from messages.exchange import Subscribe, Unsubscribe


@dataclass
class Conn:
    gen: int
    up: bool = False
    down_reported: bool = False
    opened: asyncio.Event | None = None


class Streams:
    def __init__(self, settings: VenueSettings, calls: VenueCalls, tracker: ev.OrderTracker,
                 symbols: set[str], probe: CostProbe, *,
                 make_exchange: Callable[[], Any], listener: Any, gen: Callable[[], int],
                 wire: WireLedger | None, now: Callable[[], datetime],
                 emit: Callable[[Any], None], spawn: Callable[..., asyncio.Task[Any]],
                 counts: Counter[str], name: str) -> None:
        self.settings = settings
        self.calls = calls
        self.tracker = tracker
        #: symbols traded or subscribed (the fills query pages these); shared
        self.symbols = symbols
        self.probe = probe
        #: makes the ccxt object; ``listener`` gets its stream hooks
        self._make_exchange = make_exchange
        self._listener = listener
        self._gen = gen
        self.wire = wire
        self._now = now
        self._emit = emit
        self._spawn = spawn
        self.counts = counts
        self.name = name
        self.conn: Conn | None = None
        self.bad_frames = 0
        self._quote_tasks: dict[str, asyncio.Task[Any]] = {}
        #: subscription answers of the market streams seen (for the wired Subscribe)
        self._replies = 0
        self._reply_seen: asyncio.Event | None = None

    @property
    def connected(self) -> bool:
        conn = self.conn
        return conn is not None and conn.up and conn.gen == self._gen()

    # -- the connection ---------------------------------------------------------------

    async def open(self, gen: int) -> None:
        old = self.conn
        if old is not None:
            await self.drop_streams()
        conn = self.conn = Conn(gen, opened=asyncio.Event())
        calls = self.calls
        try:
            if calls.ex is None:
                calls.ex = self._make_exchange()
                calls.ex.listener = self._listener
            if not calls.markets_loaded:
                await calls.ex.load_markets()
                calls.markets_loaded = True
            calls.ex.forget_listen_key()  # a new session: a new (or re-extended) listen key
            self._spawn(self._user_stream(conn), counted=False)
            assert conn.opened is not None
            await asyncio.wait_for(conn.opened.wait(), self.settings.open_timeout_s)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - any failure is one status event
            if gen == self._gen():
                self._down(conn, f"connect failed: {classify(exc).reason()}")
            return
        if gen != self._gen() or conn.down_reported:
            return
        conn.up = True
        self.counts["connects"] += 1
        self._spawn(self._keepalive(conn), counted=False)
        self._status(True, "connected")

    async def _keepalive(self, conn: Conn) -> None:
        """PUT the listen key every ``listen_key_keepalive_s`` while this session
        lives. ccxt schedules one keep-alive and re-arms it only when it finds
        its own subscription in a client table it reads wrongly (ccxt 4.5:
        ``safe_dict`` over Client objects), so after the first PUT the key
        would lapse at 60 minutes and the stream die; the adapter keeps it."""
        try:
            while conn.gen == self._gen() and not conn.down_reported:
                await asyncio.sleep(self.settings.listen_key_keepalive_s)
                if conn.gen != self._gen() or conn.down_reported:
                    return
                await self.calls.budget_wait(1)
                try:
                    await self.calls.ex.fapiPrivatePutListenKey()
                    self.counts["listen_key_keepalives"] += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    c = classify(exc)
                    if c.venue_code == -1125 or c.kind is Kind.NOT_FOUND:
                        self._down(conn, f"listen key lost: {c.detail}")
                        return
                    self.calls.trouble(c, ref=None)
                    logger.warning("{}: listen key keep-alive failed: {}", self.name, c.detail)
        except asyncio.CancelledError:
            return

    async def _user_stream(self, conn: Conn) -> None:
        """Keeps ccxt's user-data subscription open; its end is the stream's end."""
        try:
            while True:
                await self.calls.ex.watch_orders()
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            self._down(conn, f"user-data stream: {type(exc).__name__}: {exc}"[:300])

    async def _quotes(self, conn: Conn, symbol: str, unified: str) -> None:
        try:
            while True:
                await self.calls.ex.watch_bids_asks([unified])
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            self._down(conn, f"market stream {symbol}: {type(exc).__name__}: {exc}"[:300])

    def _down(self, conn: Conn, reason: str) -> None:
        if conn.down_reported or conn.gen != self._gen():
            return
        conn.down_reported = True
        conn.up = False
        if conn.opened is not None:
            conn.opened.set()
        self._spawn(self.drop_streams())
        self._status(False, reason)
        if self.wire is not None:
            self.wire.down_reported()

    async def drop_streams(self) -> None:
        for task in list(self._quote_tasks.values()):
            task.cancel()
        self._quote_tasks.clear()
        ex = self.calls.ex
        if ex is not None and getattr(ex, "clients", None):
            try:
                await ex.close_ws_clients()
            except Exception as exc:  # noqa: BLE001 - closing dead sockets may fail
                logger.debug("{}: closing stream clients: {!r}", self.name, exc)

    def _status(self, connected: bool, reason: str) -> None:
        if not connected:
            logger.info("{}: stream down: {}", self.name, reason)
        self._emit(StreamStatus(connected, reason, self._now()))

    # -- hooks of HookedBinanceUsdm (through the adapter, on the loop thread) ----------

    def on_ws_connected(self, url: str) -> None:
        conn = self.conn
        ex = self.calls.ex
        key = ex.listen_key() if ex is not None else None
        if conn is not None and key and key in url and conn.opened is not None:
            conn.opened.set()

    def on_ws_closed(self, url: str, error: Any) -> None:
        conn = self.conn
        if conn is not None and conn.up:
            self._down(conn, f"stream closed: {error!r}"[:300])

    def on_stream_message(self, kind: str, message: dict[str, Any]) -> None:
        if self.probe.keep:
            t0 = time.thread_time_ns()
            self._on_stream_message(kind, message)
            self.probe.stream_ns.append(time.thread_time_ns() - t0)
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
                conn = self.conn
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

    def on_stream_reply(self, message: dict[str, Any]) -> None:
        """A market stream's answer to a (un)subscription."""
        self._replies += 1
        if self._reply_seen is not None:
            self._reply_seen.set()

    # -- market streams -------------------------------------------------------------------

    async def subscribe(self, msg: Subscribe) -> None:
        conn = self.conn
        if conn is None or not conn.up:
            return
        opened = 0
        for sym in msg.symbols:
            self.symbols.add(sym)
            if sym in self._quote_tasks:
                continue
            unified = self.calls.unified(sym)
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

    async def unsubscribe(self, msg: Unsubscribe) -> None:
        for sym in msg.symbols:
            task = self._quote_tasks.pop(sym, None)
            if task is None:
                continue
            task.cancel()
            unified = self.calls.unified(sym)
            try:
                await self.calls.ex.un_watch_bids_asks([unified])
            except Exception as exc:  # noqa: BLE001 - the task is gone either way
                logger.debug("{}: unwatch {}: {!r}", self.name, sym, exc)

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
