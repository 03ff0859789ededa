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

if TYPE_CHECKING:
    from exchange.binance_face.face import Face

MAX_HELD = 100_000
_ids = itertools.count(1)


class StreamSession:
    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, *,
                 account: str | None = None, listen_key: str | None = None,
                 combined: bool = False) -> None:
        self.id = f"binance-{next(_ids)}"
        self.ws = ws
        self.transport = transport
        self.account = account
        self.listen_key = listen_key
        self.combined = combined
        self.subscriptions: set[str] = set()
        self.queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.writer: asyncio.Task[None] | None = None
        self.dropped = 0

    def wants(self, stream: str) -> bool:
        return stream in self.subscriptions

    def wrap(self, stream: str, text: str) -> str:
        return f'{{"stream":"{stream}","data":{text}}}' if self.combined else text

    def send(self, text: str, delay: float) -> None:
        if self.queue.qsize() >= MAX_HELD:
            self.dropped += 1
            return
        self.queue.put_nowait((asyncio.get_running_loop().time() + delay, text))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]  # the concrete transport has abort(); its declared type does not
        if self.writer is not None:
            self.writer.cancel()

    def stall(self, duration_s: float | None) -> None:
        self.unstalled.clear()
        if duration_s is not None:
            asyncio.get_running_loop().call_later(duration_s, self.unstalled.set)

    def resume(self) -> None:
        self.unstalled.set()

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, text = await self.queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.unstalled.wait()
                await self.ws.send_str(text)
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
        ws = web.WebSocketResponse(heartbeat=None, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        sess = StreamSession(ws, request.transport, account=account, listen_key=listen_key,
                             combined=request.path.startswith("/stream"))
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
                elif msg.type == WSMsgType.ERROR:
                    reason = f"connection error: {ws.exception()}"
                    break
        finally:
            face.sessions.discard(sess)
            if sess.writer is not None:
                sess.writer.cancel()
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


def _close_soon(sess: StreamSession) -> None:
    asyncio.ensure_future(sess.ws.close(code=1000, message=b"listenKeyExpired"))
