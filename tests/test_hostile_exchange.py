"""Rule 18 over real loopback sockets: two accounts on one exchange, and a
hostile proxy between a runtime and the exchange.

Both tests run the WebSocket exchange server in the test process and whole
runtimes (``app.launcher.Runtime``) on the live clock against it, so the
account binding, the codec, the adapter, the gateway, the coordinator and
the reconciler are all the real ones. Waiting is for observable conditions
with a deadline (``wait_for``), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve

from app.launcher import LaunchSpec, Runtime
from config import config_hash, load_config
from exchange.ws_server import ExchangeServer
from messages.codec import decode, encode
from messages.connectivity import ReconnectNow
from messages.exchange import OpenOrdersSnapshot, SubmitOrder
from messages.market import Quote
from messages.enums import CancelOutcome, OrderType, Side
from messages.orders import (CancelConfirmed, OrderAcked, OrderFilled, OrderRejected,
                             OrderRequest, PositionSnapshot, Signal)
from runtime.clock import LiveClock

pytestmark = pytest.mark.timeout(120)

BTC, ETH = "BTCUSDT", "ETHUSDT"
DEEP = D("1000000")
ABSURD = D("9E+999999")


def utc() -> datetime:
    return datetime.now(UTC)


def wait_for(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        done.wait(0.02)


def start_runtime(run_dir: Path, url: str, account: str) -> Runtime:
    cfg = load_config(overrides={"strategy": {"name": "none"},
                                 "exchange": {"account": account, "url": url},
                                 "demo": {"groups": {"enabled": False}},
                                 "control": {"enabled": False}})
    spec = LaunchSpec(cfg, run_dir, (BTC, ETH), LiveClock(), run_id=f"run-{account}",
                      config_hash=config_hash(cfg), exchange_url=url)
    rt = Runtime(spec).start()
    wait_for(lambda: not rt.info("coordinator")["recovering"]
             and not rt.info("gateway")["stream_reconciling"], f"{account} ready")
    return rt


def book(rt: Runtime) -> dict[str, D]:
    return {s: D(q) for s, q in rt.info("coordinator")["positions"].items() if D(q) != 0}


def venue_positions(server: ExchangeServer, account: str) -> dict[str, D]:
    got = server.call(lambda: server.engine.positions(account)).result(5)
    return {s: q for s, q in got.items() if q != 0}


def restarts(rt: Runtime) -> int:
    return sum(cell.restarts for cell in rt.system.directory.cells())


def signal(rt: Runtime, side: str, qty: str, symbol: str = BTC) -> None:
    rt.system.tell("coordinator", Signal(symbol, Side(side), D(qty), utc(),
                                         account=rt.account))


@pytest.fixture
def exchange(tmp_path: Path):
    server = ExchangeServer(out_dir=tmp_path / "exchange",
                            config={"latency_ms": 0, "taker_fee_bps": 2})
    server.start()
    for sym, bid in ((BTC, "100"), (ETH, "50")):
        server.push(Quote(sym, D(bid), D(bid) + D("0.1"), utc(), bid_size=DEEP, ask_size=DEEP))
    yield server
    server.stop()


@pytest.fixture
def runtimes():
    made: list[Runtime] = []
    yield made
    for rt in made:
        rt.stop()


# -- two accounts on one exchange ------------------------------------------------------


def test_two_accounts_on_one_exchange_each_book_only_their_own(exchange, runtimes,
                                                               tmp_path: Path) -> None:
    """Before: the exchange sent every order event to every session, and each
    coordinator booked the other's fills under the other's account, so its
    positions (by symbol) and its daily PnL mixed both runs."""
    alpha = start_runtime(tmp_path / "alpha", exchange.url, "alpha")
    runtimes.append(alpha)
    beta = start_runtime(tmp_path / "beta", exchange.url, "beta")
    runtimes.append(beta)
    signal(alpha, "buy", "3")
    signal(beta, "sell", "2")
    signal(beta, "buy", "4", ETH)
    wait_for(lambda: book(alpha) == venue_positions(exchange, "alpha") == {BTC: D("3")},
             "alpha's long")
    wait_for(lambda: book(beta) == venue_positions(exchange, "beta")
             == {BTC: D("-2"), ETH: D("4")}, "beta's positions")
    a, b = alpha.info("coordinator"), beta.info("coordinator")
    assert a["counts"]["fills"] == 1 and b["counts"]["fills"] == 2
    assert "unknown_order_events" not in a["counts"] and "unknown_order_events" not in b["counts"]
    # the PnL of each is its own (each paid its own taker fee, nothing of the other's)
    bps = D("2") / D("10000")
    assert D(a["pnl"]["realized"]) == -(D("3") * D("100.1") * bps)
    assert D(b["pnl"]["realized"]) == -(D("2") * D("100") + D("4") * D("50.1")) * bps
    # the exchange's record: each account's fills went to its own session only
    sent = exchange.stats
    assert sent["connections"] >= 2 and restarts(alpha) == restarts(beta) == 0
    for rt in (alpha, beta):
        assert rt.info("gateway")["trust"]["ignored"] == {}


# -- a hostile proxy -----------------------------------------------------------------


class HostileProxy:
    """A WebSocket proxy on loopback between one runtime and the exchange.

    Frames are passed through both ways. ``inject`` sends, in a seeded
    order, a bounded number of hostile frames of each kind to the runtime,
    interleaved with the exchange's own frames through one writer task (so
    frames never interleave mid-send). Fills the exchange sent are kept, so
    ``duplicate`` frames replay real fills."""

    def __init__(self, upstream: str, seed: int) -> None:
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.fills: list[bytes] = []
        self.injected: Counter = Counter()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._to_client: asyncio.Queue | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> HostileProxy:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="hostile-proxy", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, max_size=None, compression=None) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            srv.close(close_connections=True)

    async def _handler(self, client: ServerConnection) -> None:
        path = client.request.path if client.request is not None else "/"
        async with ws_connect(self.upstream + path, max_size=None, compression=None) as up:
            out: asyncio.Queue = asyncio.Queue()
            self._to_client = out

            async def downstream() -> None:
                async for frame in up:
                    if isinstance(frame, bytes) and isinstance(_decoded(frame), OrderFilled):
                        self.fills.append(frame)
                    await out.put(frame)

            async def writer() -> None:
                while True:
                    await client.send(await out.get())

            async def upstream() -> None:
                async for frame in client:
                    await up.send(frame)

            tasks = [asyncio.ensure_future(t()) for t in (downstream, writer, upstream)]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()

    def inject(self, plan: dict[str, int], account: str, coid: str) -> None:
        """Queue ``plan[kind]`` hostile frames of each kind, shuffled by the seed."""
        kinds = [k for k, n in plan.items() for _ in range(n)]
        self.rng.shuffle(kinds)
        frames = [self._frame(kind, i, account, coid) for i, kind in enumerate(kinds)]
        self.injected.update(kinds)
        done = threading.Event()

        def put() -> None:
            assert self._to_client is not None, "no client connected"
            for frame in frames:
                self._to_client.put_nowait(frame)
            done.set()

        assert self._loop is not None
        self._loop.call_soon_threadsafe(put)
        assert done.wait(5)

    def _frame(self, kind: str, i: int, account: str, coid: str) -> bytes | str:
        rng, now = self.rng, utc()
        if kind == "garbage":
            choice = rng.randrange(4)
            if choice == 0:
                return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            if choice == 1:
                return "not msgpack at all"                     # a text frame
            if choice == 2:
                return b"\x82\xa1t\xabOrderFilled\xa1f\x80"     # a fill with no fields
            return b"\x93\x01\x02"                               # msgpack, but no message
        if kind == "wrong_type":
            return encode(rng.choice([
                Signal(BTC, Side.BUY, D("5"), now, account=account),
                SubmitOrder(OrderRequest(f"x-{i}", BTC, Side.SELL, OrderType.MARKET, D("1"), now)),
                ReconnectNow(0)]))
        if kind == "absurd":
            return encode(rng.choice([
                Quote(BTC, ABSURD, ABSURD, now),
                Quote(ETH, D("50"), D("1E+20"), now),
                OrderFilled(coid, f"evil-F{i}", BTC, Side.BUY, D("1"), ABSURD, D("0"), now,
                            account=account),
                PositionSnapshot(account, ((BTC, ABSURD),), now, request_id=f"rec-{i}")]))
        if kind == "foreign":
            return encode(rng.choice([
                OrderFilled(f"beta-zz-{i}", f"beta-F{i}", BTC, Side.SELL, D("7"), D("100"),
                            D("0"), now, account="beta"),
                PositionSnapshot("beta", ((BTC, D("-7")),), now, request_id=f"rec-{i}"),
                OpenOrdersSnapshot(f"rec-{i}", "beta", (), now)]))
        if kind == "duplicate":
            return rng.choice(self.fills)
        if kind == "unsolicited":
            return encode(PositionSnapshot(account, () if rng.random() < 0.5 else ((ETH, D("9")),),
                                           now, request_id=rng.choice([None, f"forged-{i}"])))
        if kind == "unknown_order":
            coid = f"{account}-forged-{i}"
            return encode(rng.choice([
                OrderFilled(coid, f"forged-F{i}", BTC, Side.BUY, D("11"), D("100"), D("0"), now,
                            account=account),
                OrderAcked(coid, f"X-{i}", BTC, now),
                OrderRejected(coid, BTC, "forged", now),
                CancelConfirmed(coid, BTC, CancelOutcome.CANCELED, D("1"), now)]))
        raise ValueError(kind)


def _decoded(frame: bytes) -> Any:
    try:
        return decode(frame)
    except Exception:  # noqa: BLE001 - the proxy only peeks
        return None


@pytest.mark.parametrize("seed", [1813, 7, 42])
def test_a_hostile_exchange_proxy_is_counted_frame_by_frame(exchange, runtimes, tmp_path: Path,
                                                            seed: int) -> None:
    """Every injected frame is rejected or ignored, and counted as such, the
    runtime never crash-loops, and its positions equal the exchange's.
    Before: the absurd quote crash-looped the coordinator until the root
    halted, a foreign fill and a forged fill were booked, and an unsolicited
    empty snapshot zeroed the book."""
    proxy = HostileProxy(exchange.url, seed=seed).start()
    try:
        rt = start_runtime(tmp_path / "alpha", proxy.url, "alpha")
        runtimes.append(rt)
        signal(rt, "buy", "3")
        signal(rt, "sell", "1", ETH)
        wait_for(lambda: len(proxy.fills) >= 2 and book(rt) == {BTC: D("3"), ETH: D("-1")},
                 "the first fills")
        coid = decode(proxy.fills[0]).client_order_id
        plan = {"garbage": 12, "wrong_type": 9, "absurd": 10, "foreign": 8, "duplicate": 7,
                "unsolicited": 8, "unknown_order": 5}
        proxy.inject(plan, "alpha", coid)
        gw_seen = lambda: rt.info("gateway")  # noqa: E731

        def counted() -> dict[str, int]:
            g, c, r = gw_seen(), rt.info("coordinator"), rt.info("reconciler")
            return {"garbage": g["bad_frames"],
                    "wrong_type": g["trust"]["rejected"].get("wrong_type", 0),
                    "absurd": g["trust"]["rejected"].get("out_of_range", 0),
                    "foreign": g["trust"]["ignored"].get("foreign_account", 0),
                    "duplicate": c["counts"].get("duplicate_fills", 0),
                    "unsolicited": r["trust"]["ignored"].get("unsolicited_answer", 0),
                    "unknown_order": c["trust"]["ignored"].get("unknown_order", 0)}

        wait_for(lambda: counted() == plan, f"every injected frame counted (want {plan})")
        # the runtime still trades, and its book is the exchange's
        signal(rt, "sell", "1")
        wait_for(lambda: book(rt) == venue_positions(exchange, "alpha") == {BTC: D("2"),
                                                                          ETH: D("-1")},
                 "positions equal to the exchange's")
        assert counted() == plan == dict(proxy.injected)
        assert restarts(rt) == 0
        coord = rt.info("coordinator")
        assert coord["trading_state"] == "ACTIVE" and coord["unconfirmed_divergences"] == 0
        assert coord["counts"]["fills"] == 3
    finally:
        proxy.stop()
