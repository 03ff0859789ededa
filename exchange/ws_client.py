"""WsClientAdapter: the broker adapter protocol over a WebSocket.

One background thread runs an asyncio loop for the adapter's lifetime
(started by the first ``connect()``, ended by ``close()``: no thread at
construction, rule 14; ``exchange.loop_client``, shared with the ccxt adapter). Everything the caller does is non-blocking:

* ``send(cmd)`` encodes in the caller's thread and hands the frame to the
  loop with ``call_soon_threadsafe``; one writer task per connection keeps
  frames in order. With no connection the command is answered at once on the
  sink with a refusal (``not_connected``), never silently dropped;
* ``connect()`` schedules a connection attempt and returns; the outcome is a
  ``StreamStatus`` on the sink. A connection error or a close reports
  ``StreamStatus(connected=False, reason)`` once and returns: no sleep and no
  retry here; the reconnect controller decides when to call ``connect()``
  again. Calling ``connect()`` while connected replaces the connection
  (watchdog reconnect) and the superseded one reports nothing.

Incoming frames are decoded and passed to the sink on the loop thread (the
sink must not block). A malformed frame is counted (``bad_frames``), logged,
and reported as ``ExchangeError(code="bad_frame")``; it never raises.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loguru import logger
from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import ConnectionClosed

from exchange.loop_client import LoopThreadClient
from exchange.protocol import Sink, refusal, safe_sink
from messages import ExchangeError, Message, StreamStatus, utc_now
from messages.codec import CodecError, decode, encode

MAX_FRAME = 1 << 20


class WsClientAdapter(LoopThreadClient):
    def __init__(self, url: str, sink: Sink | None = None, *, open_timeout: float = 5.0,
                 ping_interval: float | None = 20.0, name: str = "ws-adapter",
                 account: str | None = None) -> None:
        # The account is named when the session opens, as an API key names it
        # at a real venue: the exchange then sends this session that account's
        # order events only (DESIGN rule 18).
        self.url = with_account(url, account) if account else url
        self._sink = sink
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.name = name
        self.bad_frames = 0
        self.frames_in = 0
        self.frames_out = 0
        self.refused = 0
        self._init_loop_thread()
        self._ws: ClientConnection | None = None
        self._ws_gen = -1
        self._out: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    # -- protocol ------------------------------------------------------------------

    def set_sink(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ws_gen == self._gen

    def send(self, command: Message) -> None:
        """Queue ``command`` for the exchange; never blocks, never raises."""
        loop = self._loop
        gen = self._gen
        if loop is None or not self.connected:
            self._refuse(command, "not connected to the exchange")
            return
        try:
            data = encode(command)
        except CodecError as exc:
            self._refuse(command, f"cannot encode: {exc}", code="bad_command")
            return
        try:
            loop.call_soon_threadsafe(self._enqueue, gen, command, data)
        except RuntimeError:  # the loop closed under us
            self._refuse(command, "adapter closed")

    # -- loop thread -----------------------------------------------------------------

    def _start_connection(self, gen: int) -> None:
        if gen != self._gen:
            return
        old = self._task
        if old is not None and not old.done():
            old.cancel()  # superseded: reports nothing
        self._task = asyncio.ensure_future(self._run_connection(gen))

    async def _run_connection(self, gen: int) -> None:
        try:
            # compression=None: see ExchangeServer._main (small frames on loopback)
            ws = await ws_connect(self.url, open_timeout=self.open_timeout, max_size=MAX_FRAME,
                                  ping_interval=self.ping_interval, compression=None)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - any failure is one status event
            if gen == self._gen:
                self._status(False, f"connect failed: {type(exc).__name__}: {exc}")
            return
        if gen != self._gen:
            await ws.close()
            return
        out: asyncio.Queue = asyncio.Queue()
        self._ws, self._ws_gen, self._out = ws, gen, out
        writer = asyncio.ensure_future(self._writer(ws, out, gen))
        self._status(True, "connected")
        reason = None
        try:
            async for frame in ws:
                self._on_frame(frame)
            reason = f"closed by exchange (code {ws.close_code}: {ws.close_reason or '-'})"
        except ConnectionClosed as exc:
            reason = f"connection lost: {exc}"
        except asyncio.CancelledError:
            reason = None  # superseded or closed by us
        except Exception as exc:  # noqa: BLE001
            reason = f"stream error: {type(exc).__name__}: {exc}"
        finally:
            writer.cancel()
            if self._ws is ws:
                self._ws, self._out = None, None
            self._refuse_queued(out)
            if reason is None or gen != self._gen:
                await _quiet_close(ws)
        if reason is not None and gen == self._gen:
            self._status(False, reason)

    async def _writer(self, ws: ClientConnection, out: asyncio.Queue, gen: int) -> None:
        try:
            while True:
                command, data = await out.get()
                try:
                    await ws.send(data)
                    self.frames_out += 1
                except ConnectionClosed:
                    self._refuse(command, "connection closed before the command was sent")
        except asyncio.CancelledError:
            pass

    def _enqueue(self, gen: int, command: Any, data: bytes) -> None:
        out = self._out
        if out is None or self._ws_gen != gen or gen != self._gen:
            self._refuse(command, "not connected to the exchange")
            return
        out.put_nowait((command, data))

    def _refuse_queued(self, out: asyncio.Queue) -> None:
        while not out.empty():
            command, _ = out.get_nowait()
            self._refuse(command, "connection closed before the command was sent")

    def _on_frame(self, frame: Any) -> None:
        self.frames_in += 1
        if not isinstance(frame, (bytes, bytearray)):
            self._bad_frame("text frame from the exchange (expected msgpack binary)")
            return
        try:
            event = decode(frame)
        except CodecError as exc:
            self._bad_frame(str(exc))
            return
        safe_sink(self._sink, event, where=self.name)

    def _bad_frame(self, reason: str) -> None:
        self.bad_frames += 1
        n = self.bad_frames
        if n <= 20 or n % 1000 == 0:  # counted always, logged bounded (a flood is not a log)
            logger.warning("{}: bad frame from the exchange (#{}): {}", self.name, n, reason[:300])
        safe_sink(self._sink, ExchangeError(code="bad_frame", reason=reason, ts=utc_now()),
                  where=self.name)

    def _refuse(self, command: Any, detail: str, code: str = "not_connected") -> None:
        self.refused += 1
        if isinstance(command, Message):
            event = refusal(command, code, detail)
        else:
            event = ExchangeError(code="bad_command", reason=f"not a message: {command!r}"[:200],
                                  ts=utc_now())
        safe_sink(self._sink, event, where=self.name)

    def _status(self, connected: bool, reason: str) -> None:
        if not connected:
            logger.info("{}: stream down: {}", self.name, reason)
        safe_sink(self._sink, StreamStatus(connected, reason, utc_now()), where=self.name)

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel and await every task of this loop, close the socket, stop."""
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks(loop) if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ws = self._ws
        self._ws = None
        if ws is not None:
            await _quiet_close(ws)
        loop.stop()


def with_account(url: str, account: str) -> str:
    """``url`` with ``account=<account>`` in its query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "account"] + [("account", account)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query),
                       parts.fragment))


async def _quiet_close(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), 2.0)
    except Exception:  # noqa: BLE001 - closing a dead socket may fail; nothing to do
        pass
