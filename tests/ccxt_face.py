"""Test helpers: the Binance face on loopback and a ccxt adapter pointed at it.

The face is the simulated engine behind Binance's REST and WebSocket API
(exchange/binance_face); the adapter is the real ccxt library talking to it
over real sockets. Waiting here is waiting for I/O with a deadline (events
arriving on the sink), never a sleep standing in for an actor.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from exchange.binance_face.auth import DEFAULT_KEYS
from exchange.binance_face.server import BinanceFaceServer
from exchange.binance_face.urls import ccxt_urls
from exchange.ccxt_venue.adapter import CcxtVenueAdapter
from exchange.ccxt_venue.settings import VenueSettings
from messages import Quote, utc_now
from messages.exchange import StreamStatus

KEY = DEFAULT_KEYS[0]


def settings_for(face: BinanceFaceServer, **over: Any) -> VenueSettings:
    base: dict[str, Any] = {"api_key": KEY.key, "api_secret": KEY.secret, "testnet": True,
                            "urls": ccxt_urls(face.host, face.port), "account": KEY.account,
                            "timeout_ms": 3000, "open_timeout_s": 5.0}
    base.update(over)
    return VenueSettings(**base)


class Events:
    """The adapter's sink: everything it reported, in order, waitable."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        self.seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.q.put(event)

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        for ev in self.seen:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout}s; saw "
                                     f"{[type(e).__name__ for e in self.seen][-30:]}")
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(ev)
            if pred(ev):
                return ev

    def drain(self, quiet_s: float = 0.3) -> list[Any]:
        """Everything that arrives until ``quiet_s`` passes without an event."""
        while True:
            try:
                self.seen.append(self.q.get(timeout=quiet_s))
            except queue.Empty:
                return self.seen

    def of(self, cls: type, **match: Any) -> list[Any]:
        return [e for e in self.seen if isinstance(e, cls)
                and all(getattr(e, k) == v for k, v in match.items())]


def quote(face: BinanceFaceServer, symbol: str, bid: str, ask: str, size: str = "1000") -> None:
    face.push(Quote(symbol, Decimal(bid), Decimal(ask), utc_now(), Decimal(size), Decimal(size)))


@contextmanager
def face_server(tmp: Path, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
                **kw: Any) -> Iterator[BinanceFaceServer]:
    face = BinanceFaceServer(symbols=list(symbols), out_dir=tmp, **kw)
    face.start()
    try:
        for sym in symbols:
            quote(face, sym, "100.0", "100.1")
        yield face
    finally:
        face.stop()


@contextmanager
def connected_adapter(face: BinanceFaceServer, **over: Any
                      ) -> Iterator[tuple[CcxtVenueAdapter, Events]]:
    events = Events()
    adapter = CcxtVenueAdapter(settings_for(face, **over), events)
    adapter.connect()
    try:
        st = events.wait_for(lambda e: isinstance(e, StreamStatus), timeout=15)
        assert st.connected, st.reason
        yield adapter, events
    finally:
        adapter.close()


def events_jsonl(tmp: Path) -> list[dict[str, Any]]:
    import json

    path = tmp / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venue_config(tmp: Path, face: BinanceFaceServer, layer: dict[str, Any] | None = None) -> Path:
    """A config layer whose binanceusdm venue is the face on loopback."""
    import yaml

    body = {"venues": {"binanceusdm": {"base_url": f"http://127.0.0.1:{face.port}"}},
            **(layer or {})}
    path = tmp / "venue.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def venue_command(tmp: Path, face: BinanceFaceServer, *args: str, key: str = KEY.key,
                  secret: str = KEY.secret, layer: dict[str, Any] | None = None
                  ) -> tuple[list[str], dict[str, str]]:
    """``main.py run --config <the face's venue layer> ARGS`` and its environment
    (the key and secret in the variables the venue entry names)."""
    import os
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "TW_BINANCE_API_KEY": key,
           "TW_BINANCE_API_SECRET": secret}
    cmd = [sys.executable, str(REPO / "main.py"), "run",
           "--config", str(venue_config(tmp, face, layer)), *args]
    return cmd, env


def run_venue(tmp: Path, face: BinanceFaceServer, *, key: str, secret: str, duration: float,
              symbols: str = "BTCUSDT,ETHUSDT", control_port: int | None = None,
              extra: tuple[str, ...] = (), during: Callable[[], None] | None = None,
              layer: dict[str, Any] | None = None, timeout: float = 120.0
              ) -> tuple[int, str, Path]:
    """``main.py run --venue binanceusdm`` as a subprocess against ``face``.

    ``during`` runs (in this process) while the run is going, e.g. to read its
    control endpoint. Returns (exit code, output, run directory)."""
    import subprocess

    out = tmp / "run"
    cmd, env = venue_command(tmp, face, "--venue", "binanceusdm", "--symbols", symbols,
                             "--duration", str(duration), "--out", str(out),
                             "--control", f"127.0.0.1:{control_port}" if control_port else "off",
                             *extra, key=key, secret=secret, layer=layer)
    proc = subprocess.Popen(cmd, env=env, cwd=str(tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        if during is not None:
            during()
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, output, out
