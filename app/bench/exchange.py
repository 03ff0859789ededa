"""Exchange benchmarks: the in-process matching engine's throughput and the
submit -> ack round trip over the loopback WebSocket.

``exchange_orders_per_s`` is the engine alone (``SimulatedExchange.handle``)
with no transport, the way the embedded exchange is driven in-process; the
same figure with ``events.jsonl`` written is reported next to it, because a
run always writes that file and it costs more than the matching itself.

``ws_roundtrip_p50_us``/``p99_us`` measure what a client of ``main.py
exchange`` sees: the exchange server runs in its own process (as it does in
use, and so it does not share the client's GIL), writes its events.jsonl,
and a ``WsClientAdapter`` sends market orders paced at a fixed rate; the
latency is from just before ``send()`` to the ``OrderAcked`` reaching the
adapter's sink.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from messages.types import ClientOrderId, Price, Quantity, Symbol

SYM = Symbol("BTCUSDT")
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _orders(n: int, prefix: str) -> list[Any]:
    """``n`` SubmitOrder messages, alternating buy/sell so the position stays
    flat: a market order, then a marketable limit, then a market order... Each
    one is accepted, acked and filled at the touch (the full order path)."""
    from messages import OrderRequest, OrderType, Side, SubmitOrder

    out = []
    limit = {Side.BUY: Price(Decimal("101")), Side.SELL: Price(Decimal("99"))}
    one = Quantity(Decimal("1"))
    for i in range(n):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        if i % 4 < 2:
            req = OrderRequest(ClientOrderId(f"{prefix}{i}"), SYM, side, OrderType.MARKET, one, T0)
        else:
            req = OrderRequest(ClientOrderId(f"{prefix}{i}"), SYM, side, OrderType.LIMIT, one, T0,
                               price=limit[side])
        out.append(SubmitOrder(req))
    return out


def exchange_orders_per_s(n: int, *, events_dir: str | None = None) -> float:
    """Orders/s through ``SimulatedExchange.handle`` (accept, ack, fill, book
    the position), events.jsonl written to ``events_dir`` if given.

    The SubmitOrder messages are built before the timed loop: constructing a
    validated OrderRequest costs about as much as matching it, and in the
    runtime the coordinator builds it, not the exchange.
    """
    from exchange.engine import SimulatedExchange
    from messages import Quote

    # no latency and no fees: the matching path alone, as these figures were first taken
    engine = SimulatedExchange({"latency_ms": 0, "fee_bps": 0}, clock=lambda: T0)
    engine.start(Path(events_dir) / "events.jsonl" if events_dir else None)
    try:
        engine.handle(Quote(SYM, Price(Decimal("100")), Price(Decimal("100.1")), T0), T0)
        msgs = _orders(n, "b")
        handle = engine.handle
        t0 = time.perf_counter()
        for msg in msgs:
            handle(msg, T0)
        rate = n / (time.perf_counter() - t0)
        if engine.stats["fills"] != n:
            raise RuntimeError(f"bench orders did not all fill ({engine.stats['fills']} of {n})")
        return rate
    finally:
        engine.stop()


_SERVER = """
import sys
from decimal import Decimal
from loguru import logger
logger.remove()
from exchange.ws_server import run_server
from messages import Quote, utc_now
# no latency and no fees: the round trip alone, as these figures were first taken
srv = run_server(port=0, out_dir=sys.argv[1], config={"latency_ms": 0, "fee_bps": 0})
srv.push(Quote("BTCUSDT", Decimal("100"), Decimal("100.1"), utc_now()))
print(srv.port, flush=True)
sys.stdin.read()  # runs until the parent closes our stdin
srv.stop()
"""


class _Acks:
    """The adapter's sink: the perf_counter time each ack arrived."""

    def __init__(self, expected: int) -> None:
        from messages import OrderAcked, OrderFilled, StreamStatus

        # (imported here, not per event: the sink runs inside the measured time)
        self._acked, self._filled, self._status = OrderAcked, OrderFilled, StreamStatus
        self.at: dict[str, float] = {}
        self.expected = expected
        self.done = threading.Event()
        self.up = threading.Event()
        self.other_errors: list[Any] = []

    def __call__(self, event: Any) -> None:
        kind = type(event)
        if kind is self._acked:
            self.at[event.client_order_id] = time.perf_counter()
            if len(self.at) >= self.expected:
                self.done.set()
        elif kind is self._status:
            if event.connected:
                self.up.set()
        elif kind is not self._filled:
            self.other_errors.append(event)


def ws_roundtrip_us(n: int, rate: float = 1_000.0) -> tuple[float, float]:
    """p50/p99 (us) of submit -> ack over the loopback WebSocket, paced at
    ``rate`` orders/s, against an exchange server in a child process."""
    from exchange.ws_client import WsClientAdapter

    with tempfile.TemporaryDirectory(prefix="tw-bench-ws-") as tmp:
        root = str(Path(__file__).resolve().parents[2])
        path = [root, os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
        proc = subprocess.Popen([sys.executable, "-c", _SERVER, tmp], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        adapter = None
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.strip().isdigit():
                raise RuntimeError(f"exchange server process did not start (said {line!r})")
            warmup = 200
            msgs = _orders(warmup + n, "w")
            acks = _Acks(warmup + n)
            adapter = WsClientAdapter(f"ws://127.0.0.1:{int(line)}", acks, name="bench-ws")
            adapter.connect()
            if not acks.up.wait(10):
                raise RuntimeError("could not connect to the exchange server")
            sent: dict[str, float] = {}
            interval = 1.0 / rate
            start = time.perf_counter()
            for i, msg in enumerate(msgs):
                due = start + i * interval
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)  # sleep, never spin: a spinning producer holds the GIL
                sent[msg.order.client_order_id] = time.perf_counter()
                adapter.send(msg)
            if not acks.done.wait(30):
                raise RuntimeError(f"only {len(acks.at)} of {len(msgs)} acks arrived "
                                   f"({acks.other_errors[:3]})")
            lat = np.array([acks.at[m.order.client_order_id] - sent[m.order.client_order_id]
                            for m in msgs[warmup:]]) * 1e6
            return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        finally:
            if adapter is not None:
                adapter.close()
            end_child(proc)


def run(quick: bool) -> dict[str, Any]:
    n_engine = 50_000 if quick else 200_000
    with tempfile.TemporaryDirectory(prefix="tw-bench-exchange-") as tmp:
        logged = exchange_orders_per_s(n_engine // 10, events_dir=tmp)
    p50, p99 = ws_roundtrip_us(1_000 if quick else 5_000)
    return {
        "exchange_orders_per_s": round(exchange_orders_per_s(n_engine)),
        "exchange_orders_per_s_with_events_log": round(logged),
        "ws_roundtrip_p50_us": round(p50, 1),
        "ws_roundtrip_p99_us": round(p99, 1),
    }


def end_child(proc: subprocess.Popen[Any]) -> None:
    """End a bench's server process: close its stdin (its signal to stop), wait,
    and kill it if it does not stop in time."""
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
