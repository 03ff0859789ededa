"""WebSocket streams of the face: market streams and the user-data stream.

Paths, as ccxt's ``binanceusdm`` derives them from ``urls.api.ws.linear``
(``.../ws``): ``/public/ws/<n>`` and ``/market/ws/<n>`` (market streams,
subscribed with ``{"method": "SUBSCRIBE", "params": [...], "id": n}``),
``/private/ws?listenKey=K`` (user data); also Binance's classic forms
``/ws/<streams or listenKey>`` and ``/stream?streams=a/b`` (combined,
``{"stream", "data"}`` wrapped).

Market streams served: ``<symbol>@bookTicker``, ``@ticker`` and ``@miniTicker`` (the
engine's quotes; the current one is sent right after a subscription). User data: the account's
``ORDER_TRADE_UPDATE``, ``ALGO_UPDATE``, ``ACCOUNT_UPDATE`` and, when the key
expires, ``listenKeyExpired``. Each session has one writer task, so events
keep their order and the engine's latency; ``stall`` holds a session's
writer, ``drop`` aborts the socket without a close frame.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from loguru import logger

from exchange.binance_face import shapes
from exchange.virtual_wire import VirtualTiming, WallTiming, WireLedger

if TYPE_CHECKING:
    from exchange.binance_face.face import Face

MAX_HELD = 100_000
_ids = itertools.count(1)


class StreamSession:
    """One WebSocket client of the face: its subscriptions and its writer.

    With a virtual timing (a scenario run), each frame is counted on the
    timing's ledger from the moment it is queued until the client has
    handled it: after the frames it writes, the writer sends a ping carrying
    the number written so far, and the client's pong for it confirms every
    frame before (ccxt's receive loop handles frames and pings in order).
    Frames held by a stall are not counted (virtual time must move on to the
    stall's end); a stream that ends releases what it still counted.
    """

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, *,
                 account: str | None = None, listen_key: str | None = None,
                 combined: bool = False, timing: VirtualTiming | WallTiming | None = None
                 ) -> None:
        self.id = f"binance-{next(_ids)}"
        self.ws = ws
        self.transport = transport
        self.account = account
        self.listen_key = listen_key
        self.combined = combined
        self.timing: VirtualTiming | WallTiming = timing or WallTiming()
        self.ledger: WireLedger | None = self.timing.ledger
        self.subscriptions: set[str] = set()
        self.queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.writer: asyncio.Task[None] | None = None
        self.dropped = 0
        #: frames written / confirmed by the client's pong (virtual timing only)
        self.written = 0
        self.confirmed = 0
        self.in_hand = 0
        self.closing = False
        self.ended = False
        self._counted = 0
        self._counted_gen = -1
        self._progress = asyncio.Event()

    def wants(self, stream: str) -> bool:
        return stream in self.subscriptions

    def wrap(self, stream: str, text: str) -> str:
        return f'{{"stream":"{stream}","data":{text}}}' if self.combined else text

    def send(self, text: str, delay: float) -> None:
        if self.closing or self.ended:
            self.dropped += 1
            return
        if delay > 0 and self.timing.virtual:  # the engine's latency, in virtual time
            self.timing.call_later(delay, lambda: self.send(text, 0.0))
            return
        if self.queue.qsize() >= MAX_HELD:
            self.dropped += 1
            return
        self.queue.put_nowait((asyncio.get_running_loop().time() + delay, text))
        self._recount()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]  # the concrete transport has abort(); its declared type does not
        if self.writer is not None:
            self.writer.cancel()

    def drop(self) -> None:
        """The ``drop_stream`` fault. On wall time the socket is aborted at once; on
        virtual time first what was sent before the fault reaches the client (as
        on the in-process venue), frames a stall holds are lost, nothing new is
        queued, then the socket is aborted without a close frame."""
        if self.ledger is None:
            self.abort()
            return
        self.closing = True
        if not self.unstalled.is_set():
            while not self.queue.empty():
                self.queue.get_nowait()
                self.dropped += 1
        self._recount()
        asyncio.ensure_future(self._abort_when_flushed())

    async def _abort_when_flushed(self) -> None:
        while not self.ended and (self.queue.qsize() or self.in_hand
                                  or self.written > self.confirmed):
            self._progress.clear()
            await self._progress.wait()
        self.abort()

    def stall(self, duration_s: float | None) -> None:
        self.unstalled.clear()
        self._recount()
        if duration_s is not None:
            self.timing.call_later(duration_s, self.resume)

    def resume(self) -> None:
        self.unstalled.set()
        self._recount()

    def confirm(self, upto: int) -> None:
        """The client's pong: every frame up to ``upto`` has been handled."""
        if upto > self.confirmed:
            self.confirmed = min(upto, self.written)
            self._recount()

    def end(self) -> None:
        self.ended = True
        if self.writer is not None:
            self.writer.cancel()
        self._recount()

    def _recount(self) -> None:
        self._progress.set()
        ledger = self.ledger
        if ledger is None:
            return
        want = 0
        if not self.ended:
            want = self.written - self.confirmed
            if self.unstalled.is_set():
                want += self.queue.qsize() + self.in_hand
        if self._counted_gen != ledger.gen:  # a new runtime life: old counts were dropped
            self._counted, self._counted_gen = 0, ledger.gen
        delta = want - self._counted
        if delta:
            self._counted = want
            ledger.add(delta, self._counted_gen)

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        barrier = self.ledger is not None
        try:
            while True:
                due, text = await self.queue.get()
                self.in_hand = 1
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.unstalled.wait()
                await self.ws.send_str(text)
                self.written += 1
                self.in_hand = 0
                if barrier and (self.queue.empty() or not self.unstalled.is_set()):
                    await self.ws.ping(str(self.written).encode())
                self._recount()
        except (asyncio.CancelledError, ConnectionResetError, RuntimeError):
            pass


class Streams:
    def __init__(self, face: Face) -> None:
        self.face = face

    def routes(self) -> list[web.RouteDef]:
        h = self.handle
        return [web.get("/ws", h), web.get("/ws/{tail:.*}", h), web.get("/stream", h),
                web.get("/public/ws", h), web.get("/public/ws/{tail:.*}", h),
                web.get("/market/ws", h), web.get("/market/ws/{tail:.*}", h),
                web.get("/private/ws", h), web.get("/private/ws/{tail:.*}", h)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        face = self.face
        tail = request.match_info.get("tail", "")
        listen_key = request.query.get("listenKey")
        streams: list[str] = []
        if request.path.startswith("/stream"):
            streams = [s for s in request.query.get("streams", "").split("/") if s]
        elif tail and "@" in tail:
            streams = [s for s in tail.split("/") if s]
        elif tail and not tail.isdigit() and request.path.startswith("/ws/"):
            listen_key = tail
        account = None
        if listen_key is not None or request.path.startswith("/private"):
            owner = face.listen_keys.owner_of(listen_key or "")
            if owner is None:
                return web.json_response({"code": -1125, "msg": "This listenKey does not exist."},
                                         status=400)
            account = owner.account
        # counted frames need the client's pongs, so pings are answered here then
        barrier = face.timing.ledger is not None
        ws = web.WebSocketResponse(heartbeat=None, autoping=not barrier, max_msg_size=1 << 20)
        await ws.prepare(request)
        sess = StreamSession(ws, request.transport, account=account, listen_key=listen_key,
                             combined=request.path.startswith("/stream"), timing=face.timing)
        sess.writer = asyncio.create_task(sess.write_loop())
        face.sessions.add(sess)
        face.engine.log.append("client_connected", face.now(), client=request.remote,
                               session=sess.id, path=request.path, account=account)
        self._subscribe(sess, streams)
        reason = "closed"
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(sess, msg.data)
                elif msg.type == WSMsgType.PONG:
                    sess.confirm(_int(msg.data))
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    reason = f"connection error: {ws.exception()}"
                    break
        finally:
            face.sessions.discard(sess)
            sess.end()
            face.engine.log.append("client_disconnected", face.now(), client=request.remote,
                                   session=sess.id, path=request.path, reason=reason)
        return ws

    def _on_text(self, sess: StreamSession, data: str) -> None:
        try:
            req = json.loads(data)
            method, params, rid = req.get("method"), req.get("params", []), req.get("id")
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise ValueError("params must be a list of stream names")
        except (ValueError, AttributeError) as exc:
            sess.send(json.dumps({"error": {"code": 2, "msg": f"Invalid request: {exc}"},
                                  "id": None}), 0.0)
            return
        if method == "SUBSCRIBE":
            sess.send(json.dumps({"result": None, "id": rid}), 0.0)
            self._subscribe(sess, params)
        elif method == "UNSUBSCRIBE":
            sess.subscriptions.difference_update(params)
            sess.send(json.dumps({"result": None, "id": rid}), 0.0)
        elif method == "LIST_SUBSCRIPTIONS":
            sess.send(json.dumps({"result": sorted(sess.subscriptions), "id": rid}), 0.0)
        else:
            sess.send(json.dumps({"error": {"code": 1, "msg": f"Unknown method {method!r}"},
                                  "id": rid}), 0.0)

    def _subscribe(self, sess: StreamSession, streams: list[str]) -> None:
        face = self.face
        new = list(dict.fromkeys(s for s in streams if s not in sess.subscriptions))
        dup = [s for s in streams if s in sess.subscriptions]
        sess.subscriptions.update(new)
        face.engine.stats["subscriptions"] += len(new)
        face.engine.stats["duplicate_subscriptions"] += len(dup)
        if new or dup:  # (the native face's record: duplicates counted, never silent)
            face.engine.log.append("subscribed", face.now(), symbols=new, duplicates=dup,
                                   session=sess.id, client="binance-face")
        for stream in new:
            name, _, channel = stream.partition("@")
            if channel not in shapes.CHANNELS:
                logger.info("binance face: stream {} is accepted but never fed", stream)
                continue
            book = face.engine.books.get(name.upper())
            if book is None or book.bid is None or book.ask is None:
                continue
            event = shapes.market_event(channel, book.symbol, book.bid, book.bid_size, book.ask,
                                        book.ask_size, book.ts or face.now())
            sess.send(sess.wrap(stream, json.dumps(event)), 0.0)

    def expire(self, keys: list[str]) -> None:
        """Tell the streams of expired listen keys, then close them."""
        gone = set(keys)
        t = shapes.ms(self.face.now())
        for sess in list(self.face.sessions):
            if sess.listen_key in gone:
                sess.send(json.dumps({"e": "listenKeyExpired", "E": t,
                                      "listenKey": sess.listen_key}), 0.0)
                asyncio.get_running_loop().call_later(0.05, _close_soon, sess)


def _int(data: object) -> int:
    try:
        return int(data)  # type: ignore[call-overload]  # bytes of digits, or not
    except (TypeError, ValueError):
        return 0


def _close_soon(sess: StreamSession) -> None:
    asyncio.ensure_future(sess.ws.close(code=1000, message=b"listenKeyExpired"))
