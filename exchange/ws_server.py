"""The simulated exchange behind a WebSocket server on loopback.

``python main.py exchange`` runs this; tests start it in a background thread
with ``run_server(port=0)``. It keeps its engine (orders, positions,
balances) while clients connect, die and reconnect, and a new server built
on the same engine object after a stop carries on with the same state on the
same port, which is how the reconnect path is tested over a real socket.

Wire: one msgpack frame per message (``messages.codec``), binary frames
only. A frame that does not decode is counted (``stats["bad_frames"]``),
logged, recorded in ``events.jsonl`` and answered with an ``ExchangeError``
(or an ``OrderRejected`` when the frame still shows which order it was); it
never ends the connection or the server.

Clients send commands (``SubmitOrder``, ``CancelOrder``, queries,
``Subscribe``/``Unsubscribe``). When ``allow_control`` (the default; it is a
simulator on loopback) they may also push market data (``Quote``, ``Bar``)
and faults (``ExchangeFault``). Latency is applied per event with the loop's
timer; each session has one writer task, so its stream stays in order.
``drop_stream`` aborts every connection (no close frame, like a network
failure); ``stall_stream`` keeps the sockets open and stops sending on the
connections present at that moment (a new connection, e.g. a watchdog
reconnect, is served normally).

Thread model: the engine is touched only by the server's loop thread. Use
``inject``/``push``/``call`` from other threads (never from the loop itself).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import msgpack
from loguru import logger
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from exchange.emit import ENGINE, REQUESTER, TRANSPORT, Emit, StreamAction
from exchange.loop_server import EngineLoopServer
from exchange.engine import SimulatedExchange
from exchange.feed import RandomWalkFeed
from exchange.session import MAX_HELD, Session, handle_subscription
from messages import (
    Bar,
    ExchangeError,
    ExchangeFault,
    OrderRejected,
    Quote,
    Subscribe,
    Unsubscribe,
    utc_now,
)
from messages.codec import EXT_MESSAGE, CodecError, decode, encode
from messages.exchange import COMMAND_TYPES
from messages.sim_events import QueryEvents
from messages.types import ClientOrderId, Symbol

MAX_FRAME = 1 << 20


class _WsSession(Session):
    def __init__(self, ws: ServerConnection, client: str, account: str | None = None) -> None:
        super().__init__(client, account)
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.writer: asyncio.Task | None = None


class ExchangeServer(EngineLoopServer):
    """One WebSocket server thread hosting a :class:`SimulatedExchange`."""

    thread_name = "tw-exchange-ws"
    what = "simulated exchange"

    def __init__(self, engine: SimulatedExchange | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, out_dir: str | Path | None = None,
                 config: Any = None, clock: Callable[[], datetime] | None = None,
                 allow_control: bool = True, feed: RandomWalkFeed | None = None,
                 feed_interval_s: float = 0.25) -> None:
        if engine is not None and config is not None:
            raise ValueError("ExchangeServer: give an engine or a config, not both")
        self.engine = engine or SimulatedExchange(config, clock=clock)
        self.host = host
        self.port = port
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.clock = clock or utc_now
        self.allow_control = allow_control
        self.feed = feed
        self.feed_interval_s = feed_interval_s
        self.stats: Counter = Counter()
        self.sessions: set[_WsSession] = set()
        self._init_loop()

    # -- lifecycle (any thread) ---------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def listening_at(self) -> str:
        return self.url

    def inject(self, spec: dict[str, Any], timeout: float = 5.0) -> None:
        """Apply a fault spec now; raises ValueError for a bad spec."""
        self.call(lambda: self._route(self.engine.apply(spec, self.clock()), None)).result(timeout)

    def push(self, event: Quote | Bar, timeout: float = 5.0) -> None:
        """Feed market data from another thread (tests, a market generator)."""
        self.call(lambda: self._route(self.engine.handle(event, self.clock()), None)).result(timeout)

    # -- the loop thread -----------------------------------------------------------

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        # No permessage-deflate (websockets offers it by default): frames are a
        # few hundred bytes of msgpack on loopback, where deflating costs CPU
        # on both ends of every frame and saves no time. (asyncio sets
        # TCP_NODELAY on the socket, so small frames are not held back either.)
        async with serve(self._handler, self.host, self.port, max_size=MAX_FRAME,
                         compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            feed_task = asyncio.create_task(self._feed_loop()) if self.feed else None
            await self._stop_event.wait()
            if feed_task is not None:
                feed_task.cancel()
            for sess in list(self.sessions):
                if sess.writer is not None:
                    sess.writer.cancel()
            server.close(close_connections=True)
            await server.wait_closed()

    async def _feed_loop(self) -> None:
        feed = self.feed
        assert feed is not None  # the loop is started only with a feed
        while True:
            await asyncio.sleep(self.feed_interval_s)
            now = self.clock()
            for quote in feed.next_quotes(now):
                self._route(self.engine.handle(quote, now), None)

    async def _handler(self, ws: ServerConnection) -> None:
        sess = _WsSession(ws, f"{ws.remote_address[0]}:{ws.remote_address[1]}",
                          account_of_path(ws.request.path if ws.request is not None else ""))
        self.sessions.add(sess)
        self.stats["connections"] += 1
        sess.writer = asyncio.create_task(self._writer(sess))
        self.engine.log.append("client_connected", self.clock(), client=sess.client,
                               session=sess.id, account=sess.account)
        reason = "closed"
        try:
            async for frame in ws:
                self._on_frame(sess, frame)
        except ConnectionClosed as exc:
            reason = f"connection lost: {exc}"
        finally:
            self.sessions.discard(sess)
            if sess.writer is not None:
                sess.writer.cancel()
            self.engine.log.append("client_disconnected", self.clock(), client=sess.client,
                                   session=sess.id, reason=reason)

    async def _writer(self, sess: _WsSession) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await sess.queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await sess.unstalled.wait()
                await sess.ws.send(data)
                self.stats["frames_out"] += 1
        except (ConnectionClosed, asyncio.CancelledError):
            pass

    # -- frames ------------------------------------------------------------------

    def _on_frame(self, sess: _WsSession, frame: Any) -> None:
        self.stats["frames_in"] += 1
        now = self.clock()
        if not isinstance(frame, (bytes, bytearray)):
            self._bad_frame(sess, "text frame: send binary msgpack frames", None, now)
            return
        try:
            msg = decode(frame)
        except CodecError as exc:
            self._bad_frame(sess, str(exc), frame, now)
            return
        try:
            kind = type(msg)
            if kind in (Subscribe, Unsubscribe):
                for event in handle_subscription(self.engine, sess, msg, now):
                    self._send(sess, self.engine.stream_delay(now), event)
            elif kind in COMMAND_TYPES:
                self._route(self.engine.handle(msg, now, account=sess.bind(msg)), sess)
            elif kind is QueryEvents:
                self._route(self.engine.handle(msg, now), sess)
            elif kind in (Quote, Bar, ExchangeFault) and self.allow_control:
                self._route(self.engine.handle(msg, now), sess)
            else:
                self.stats["bad_commands"] += 1
                self.engine.log.append("bad_command", now, reason=f"unexpected {kind.__name__}",
                                       session=sess.id)
                self._send(sess, 0.0, ExchangeError(
                    code="bad_command", reason=f"the exchange does not accept {kind.__name__}",
                    ts=now))
        except Exception as exc:  # noqa: BLE001 - the server outlives any bad message
            self.stats["internal_errors"] += 1
            logger.opt(exception=exc).error("exchange server failed on {}", type(msg).__name__)
            self._send(sess, 0.0, ExchangeError(code="internal", reason=repr(exc), ts=now))

    def _bad_frame(self, sess: _WsSession, reason: str, frame: bytes | bytearray | None,
                   now: datetime) -> None:
        self.stats["bad_frames"] += 1
        logger.warning("exchange: bad frame from {}: {}", sess.client, reason)
        coid, symbol = _salvage_order(frame) if frame is not None else (None, None)
        self.engine.log.append("bad_frame", now, client_order_id=coid, symbol=symbol,
                               reason=reason, session=sess.id)
        if coid is not None:
            self._send(sess, 0.0, OrderRejected(ClientOrderId(coid), Symbol(symbol or "?"),
                                                f"malformed_order: {reason}", now))
        else:
            self._send(sess, 0.0, ExchangeError(code="bad_frame", reason=reason, ts=now))

    # -- delivery ------------------------------------------------------------------

    def _route(self, emits: list[Emit], requester: _WsSession | None) -> None:
        loop = self._loop
        assert loop is not None, "routing happens on the server loop"
        for e in emits:
            if e.audience == ENGINE:
                loop.call_later(e.delay_s, self._on_timer, e.event)
            elif e.audience == TRANSPORT:
                self._stream_action(e.event)
            elif e.audience == REQUESTER:
                if requester is not None:
                    self._send(requester, e.delay_s, e.event)
            else:
                data = None
                for sess in self.sessions:
                    if sess.wants(e):
                        data = data or encode(e.event)
                        self._enqueue(sess, e.delay_s, data)

    def _on_timer(self, timer: Any) -> None:
        self._route(self.engine.handle(timer, self.clock()), None)

    def _send(self, sess: _WsSession, delay_s: float, event: Any) -> None:
        self._enqueue(sess, delay_s, encode(event))

    def _enqueue(self, sess: _WsSession, delay_s: float, data: bytes) -> None:
        if sess.queue.qsize() >= MAX_HELD:
            self.stats["frames_dropped"] += 1
            return
        assert self._loop is not None  # sessions exist only while the server runs
        sess.queue.put_nowait((self._loop.time() + delay_s, data))

    def _stream_action(self, action: StreamAction) -> None:
        if action.kind == "drop":
            for sess in list(self.sessions):
                self.stats["drops"] += 1
                transport = sess.ws.transport
                if transport is not None:
                    transport.abort()
        elif action.kind == "stall":
            for sess in self.sessions:
                sess.unstalled.clear()
            if action.duration_s is not None:
                stalled = list(self.sessions)
                assert self._loop is not None  # actions come only while the server runs
                self._loop.call_later(action.duration_s, self._unstall, stalled)
        elif action.kind == "resume":
            self._unstall(list(self.sessions))

    @staticmethod
    def _unstall(sessions: list[_WsSession]) -> None:
        for sess in sessions:
            sess.unstalled.set()


def account_of_path(path: str) -> str | None:
    """The account a client names when it connects (``ws://host:port/?account=alpha``),
    as an API key names one at a real venue; None when it names none."""
    values = parse_qs(urlsplit(path).query).get("account")
    if not values:
        return None
    account = values[-1].strip()
    return account[:128] if account else None


def _salvage_order(frame: bytes | bytearray) -> tuple[str | None, str | None]:
    """Read the client order id of a SubmitOrder frame that failed to decode
    (e.g. a NaN price), so the sender gets an OrderRejected for that order."""
    def hook(code: int, data: bytes) -> Any:
        if code == EXT_MESSAGE:  # a nested message: unpack it raw
            return msgpack.unpackb(data, ext_hook=hook, raw=False, strict_map_key=False)
        return None

    try:
        obj = msgpack.unpackb(frame, ext_hook=hook, raw=False, strict_map_key=False)
        if obj.get("t") != "SubmitOrder":
            return None, None
        order = obj["f"]["order"]["f"]
        coid, symbol = order.get("client_order_id"), order.get("symbol")
        if isinstance(coid, str) and coid:
            return coid, symbol if isinstance(symbol, str) else None
    except Exception:  # noqa: BLE001 - salvage is best effort on garbage
        pass
    return None, None


def run_server(host: str = "127.0.0.1", port: int = 0, out_dir: str | Path | None = None,
               **kwargs: Any) -> ExchangeServer:
    """Start an exchange server in a background thread and return it
    (``.port`` is the bound port, ``.stop()`` ends it)."""
    server = ExchangeServer(host=host, port=port, out_dir=out_dir, **kwargs)
    server.start()
    return server
