"""``BinanceFaceServer``: the simulated exchange behind Binance's USDⓈ-M API.

One thread runs an asyncio loop with an aiohttp application that serves the
REST endpoints (:mod:`.rest`) and the WebSocket streams (:mod:`.streams`) on
one loopback port; the engine is touched only on that loop. Like
``ExchangeServer`` it keeps its engine while clients come and go, and a new
server on the same engine object carries on with the same state.

From other threads (tests, the CLI): ``inject(spec)`` applies an engine
fault (the scenario ``exchange:`` keys), ``venue_fault(spec)`` a venue fault
(:mod:`.venue_faults`), ``push(quote)`` feeds market data, ``call(fn)`` runs
anything on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from exchange.binance_face.auth import DEFAULT_KEYS, ApiKey
from exchange.binance_face.face import Face
from exchange.binance_face.markets import MarketSpec
from exchange.binance_face.rest import Rest
from exchange.binance_face.streams import Streams
from exchange.binance_face.weights import Limits
from exchange.engine import SimulatedExchange
from exchange.feed import RandomWalkFeed
from exchange.loop_server import EngineLoopServer
from exchange.virtual_wire import VirtualTiming, WallTiming
from messages import Bar, Quote


def default_markets(symbols: list[str] | tuple[str, ...]) -> dict[str, MarketSpec]:
    return {s: MarketSpec(s) for s in symbols}


class BinanceFaceServer(EngineLoopServer):
    thread_name = "tw-binance-face"
    what = "binance face"

    def __init__(self, engine: SimulatedExchange | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, out_dir: str | Path | None = None, config: Any = None,
                 clock: Callable[[], datetime] | None = None,
                 keys: tuple[ApiKey, ...] | list[ApiKey] = DEFAULT_KEYS,
                 symbols: list[str] | tuple[str, ...] | None = None,
                 markets: dict[str, MarketSpec] | None = None, allow_control: bool = True,
                 feed: RandomWalkFeed | None = None, feed_interval_s: float = 0.25,
                 limits: Limits | None = None,
                 timing: VirtualTiming | WallTiming | None = None) -> None:
        if engine is not None and config is not None:
            raise ValueError("BinanceFaceServer: give an engine or a config, not both")
        self.engine = engine or SimulatedExchange(config, clock=clock)
        if markets is None:
            names = symbols or self.engine.config.symbols or (feed.symbols if feed else None)
            if not names:
                raise ValueError("BinanceFaceServer: no symbols (give symbols, markets, a feed "
                                 "or an engine config with symbols)")
            markets = default_markets(list(names))
        #: the engine's delays: the loop's clock, or a scenario's virtual clock
        #: (exchange.virtual_wire; then the face also counts its stream frames)
        self.timing: VirtualTiming | WallTiming = timing or WallTiming()
        self.face = Face(self.engine, keys, markets, limits, timing=self.timing)
        self.rest = Rest(self.face, allow_control=allow_control, on_fault=self._apply_fault)
        self.streams = Streams(self.face)
        self.host, self.port = host, port
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.feed, self.feed_interval_s = feed, feed_interval_s
        self._init_loop()

    # -- lifecycle (any thread) --------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening_at(self) -> str:
        return self.base_url

    @property
    def stats(self) -> dict[str, int]:
        return {"requests": self.rest.door.requests, "stream_sessions": len(self.face.sessions),
                **{k: int(v) for k, v in self.engine.stats.items()}}

    def inject(self, spec: dict[str, Any], timeout: float = 5.0) -> None:
        """An engine fault (scenario ``exchange:`` keys); ValueError if bad."""
        self.call(self._apply_fault, {"engine": spec}).result(timeout)

    def venue_fault(self, spec: dict[str, Any], timeout: float = 5.0) -> None:
        """A venue fault (:mod:`exchange.binance_face.venue_faults`); ValueError if bad."""
        self.call(self._apply_fault, {"venue": spec}).result(timeout)

    def push(self, event: Quote | Bar, timeout: float = 5.0) -> None:
        self.call(lambda: self.face.route(self.engine.handle(event, self.engine.now()))) \
            .result(timeout)

    # -- the loop thread ---------------------------------------------------------------

    def _apply_fault(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - {"engine", "venue"}
        if unknown:
            raise ValueError(f"fault spec: unknown section(s) {sorted(unknown)}; "
                             "use {engine: {...}, venue: {...}}")
        venue = dict(spec.get("venue") or {})
        self.face.faults.validate(venue)
        if spec.get("engine"):
            self.face.route(self.engine.apply(spec["engine"], self.engine.now()))
        expire = venue.pop("expire_listen_keys", False)
        self.face.faults.apply(venue)
        if expire:
            self.streams.expire(self.face.listen_keys.expire_all())

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self.timing.bind_loop(asyncio.get_running_loop())
        app = web.Application(middlewares=[self.rest.door.middleware])
        app.add_routes(self.rest.routes() + self.streams.routes())
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port of port=0
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the site is started: its server is set
        self._ready.set()
        feed_task = asyncio.create_task(self._feed_loop()) if self.feed else None
        try:
            await self._stop_event.wait()
        finally:
            if feed_task is not None:
                feed_task.cancel()
            for sess in list(self.face.sessions):
                sess.abort()
            await runner.cleanup()

    async def _feed_loop(self) -> None:
        assert self.feed is not None
        while True:
            await asyncio.sleep(self.feed_interval_s)
            now = self.engine.now()
            for quote in self.feed.next_quotes(now):
                self.face.route(self.engine.handle(quote, now))


def run_face(host: str = "127.0.0.1", port: int = 0, out_dir: str | Path | None = None,
             **kwargs: Any) -> BinanceFaceServer:
    """Start a face in a background thread and return it (``.port``, ``.stop()``)."""
    server = BinanceFaceServer(host=host, port=port, out_dir=out_dir, **kwargs)
    server.start()
    return server
