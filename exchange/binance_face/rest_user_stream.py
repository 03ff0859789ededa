"""Listen-key endpoints (``/fapi/v1/listenKey``): create, keep alive, close.

Binance's USER_STREAM security: the API key only, no signature (the door's
:meth:`~exchange.binance_face.rest_door.Door.api_key`). One listen key per
API key (:class:`~exchange.binance_face.listen_keys.ListenKeys` holds them);
closing it also closes the stream sessions opened on it.
"""

from __future__ import annotations

from aiohttp import web

from exchange.binance_face.face import Face
from exchange.binance_face.rest_door import Door


class UserStreamEndpoints:
    def __init__(self, face: Face, door: Door) -> None:
        self.face = face
        self.door = door

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/fapi/v1/listenKey", self.listen_key_create),
            web.put("/fapi/v1/listenKey", self.listen_key_keepalive),
            web.delete("/fapi/v1/listenKey", self.listen_key_close),
        ]

    async def listen_key_create(self, request: web.Request) -> web.Response:
        owner = self.door.api_key(request)
        return web.json_response({"listenKey": self.face.listen_keys.create(owner)})

    async def listen_key_keepalive(self, request: web.Request) -> web.Response:
        owner = self.door.api_key(request)
        return web.json_response({"listenKey": self.face.listen_keys.keepalive(owner)})

    async def listen_key_close(self, request: web.Request) -> web.Response:
        owner = self.door.api_key(request)
        gone = set(self.face.listen_keys.close(owner))
        for sess in list(self.face.sessions):
            if sess.listen_key in gone:
                await sess.ws.close()
        return web.json_response({})
