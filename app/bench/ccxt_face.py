"""ccxt against the Binance face on loopback: ``ccxt_roundtrip_p50_us``,
``ccxt_roundtrip_p99_us`` and ``ccxt_orders_per_s``.

The face runs in its own process (as ``main.py exchange --protocol
binanceusdm`` would, so it does not share the client's GIL) with its
events.jsonl; the client is the unmodified ``ccxt.async_support.binanceusdm``
pointed at it. A round trip is ``create_order`` from the call to its return:
ccxt builds and signs the request, the face checks the signature, the engine
accepts the order, the answer comes back and ccxt parses it (submit -> ack).
Latency is measured paced (``rate`` orders/s, one at a time); throughput with
``concurrency`` orders in flight. Limit orders rest below the market so every
answer is an ack and nothing fills.

:func:`face_process` is reusable (the adapter's overhead bench starts the
same child process).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.exchange import end_child

KEY, SECRET = "bench-key", "bench-secret"

_SERVER = """
import sys
from decimal import Decimal
from loguru import logger
logger.remove()
from exchange.binance_face.auth import ApiKey
from exchange.binance_face.server import run_face
from exchange.binance_face.weights import Limits
from messages import Quote, utc_now
srv = run_face(port=0, out_dir=sys.argv[1], symbols=["BTCUSDT"],
               config={"quote_currency": "USDT", "symbols": ["BTCUSDT"], "latency_ms": 0,
                       "fee_bps": 0},  # the path alone: no latency, no fees
               keys=[ApiKey(sys.argv[2], sys.argv[3], "bench")],
               limits=Limits(None, None, None))  # measured: the path, not the venue's limits
srv.push(Quote("BTCUSDT", Decimal("100"), Decimal("100.1"), utc_now()))
print(srv.port, flush=True)
sys.stdin.read()  # runs until the parent closes our stdin
srv.stop()
"""


@contextmanager
def face_process(out_dir: str, key: str = KEY, secret: str = SECRET) -> Iterator[int]:
    """A Binance face in a child process quoting BTCUSDT 100/100.1; yields its port."""
    root = str(Path(__file__).resolve().parents[2])
    path = [root, os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, out_dir, key, secret],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.strip().isdigit():
            raise RuntimeError(f"binance face process did not start (said {line!r})")
        yield int(line)
    finally:
        end_child(proc)


async def _measure(port: int, n: int, rate: float, concurrency: int) -> tuple[list[float], float]:
    import ccxt.async_support as ccxt_async

    from exchange.binance_face import CCXT_OPTIONS, apply_urls

    ex: Any = ccxt_async.binanceusdm({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False,
                                      "options": dict(CCXT_OPTIONS)})
    apply_urls(ex, "127.0.0.1", port)
    seq = iter(range(10**9))

    async def one() -> float:
        coid = f"bench-{next(seq)}"
        t0 = time.perf_counter()
        await ex.create_order("BTC/USDT:USDT", "limit", "buy", 1, 90,
                              {"newClientOrderId": coid})
        return time.perf_counter() - t0

    try:
        await ex.load_markets()
        for _ in range(50):  # warm-up: connection pool, code paths
            await one()
        lat: list[float] = []
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            lat.append(await one())
        sem = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with sem:
                await one()

        t0 = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(n)))
        return lat, n / (time.perf_counter() - t0)
    finally:
        await ex.close()


def run(quick: bool, rate: float = 200.0, concurrency: int = 16) -> dict[str, Any]:
    n = 400 if quick else 2_000
    with tempfile.TemporaryDirectory(prefix="tw-bench-ccxt-") as tmp, face_process(tmp) as port:
        lat, per_s = asyncio.run(_measure(port, n, rate, concurrency))
    us = np.array(lat) * 1e6
    return {
        "ccxt_roundtrip_p50_us": round(float(np.percentile(us, 50)), 1),
        "ccxt_roundtrip_p99_us": round(float(np.percentile(us, 99)), 1),
        "ccxt_orders_per_s": round(per_s),
    }
