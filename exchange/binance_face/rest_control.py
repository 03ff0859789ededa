"""Simulator control endpoints under ``/_sim/`` (loopback tooling, never part
of Binance's API): inject a fault, push a quote, page the engine's events.

Served only when the server allows control. Bad input is answered 400 with
what was wrong (404 for an events query the engine refuses); it never
reaches the engine half-parsed. These paths are not ``/fapi/``: the door
charges them no weight and applies no venue fault to them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from exchange.binance_face.face import Face
from messages import ExchangeError, Quote
from messages.sim_events import EventsPage, QueryEvents
from messages.types import Price, Quantity, Symbol


class ControlEndpoints:
    def __init__(self, face: Face,
                 on_fault: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.face = face
        self.on_fault = on_fault

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/_sim/fault", self.sim_fault), web.post("/_sim/quote", self.sim_quote),
                web.get("/_sim/events", self.sim_events)]

    async def sim_fault(self, request: web.Request) -> web.Response:
        try:
            spec = json.loads(await request.text())
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object {engine: {...}, venue: {...}}")
            if self.on_fault is None:
                raise ValueError("this server takes no faults")
            self.on_fault(spec)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def sim_quote(self, request: web.Request) -> web.Response:
        try:
            q = json.loads(await request.text())
            quote = Quote(Symbol(q["symbol"]), Price(Decimal(str(q["bid"]))),
                          Price(Decimal(str(q["ask"]))), self.face.now(),
                          bid_size=Quantity(Decimal(str(q.get("bid_size", "0")))),
                          ask_size=Quantity(Decimal(str(q.get("ask_size", "0")))))
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return web.json_response({"error": f"bad quote: {exc!r}"}, status=400)
        self.face.route(self.face.engine.handle(quote, self.face.now()))
        return web.json_response({"ok": True})

    async def sim_events(self, request: web.Request) -> web.Response:
        """A page of the engine's events.jsonl, as ``QueryEvents`` gives the
        native protocol: ``?since_seq=&cursor=&limit=`` (limit 0: the mark
        only, with the positions held then), so a run against this face can
        copy the exchange's record into its run directory."""
        try:
            q = QueryEvents("http", since_seq=int(request.query.get("since_seq", 0)),
                            cursor=int(request.query.get("cursor", 0)),
                            limit=int(request.query.get("limit", 5000)))
        except ValueError as exc:
            return web.json_response({"error": f"bad query: {exc}"}, status=400)
        (emit,) = self.face.engine.query_events(q, self.face.now())
        page = emit.event
        if isinstance(page, ExchangeError):
            return web.json_response({"error": page.reason}, status=404)
        assert isinstance(page, EventsPage)
        return web.json_response({"lines": list(page.lines), "cursor": page.cursor,
                                  "last_seq": page.last_seq, "more": page.more,
                                  "positions": [[a, sym, str(qty)]
                                                for a, sym, qty in page.positions]})
