"""``hedge_lag_p99_ms``: exposure detected -> hedge order at the exchange, live time.

The whole tree runs on the live clock (the pipeline bench's risk limits, so
the gate approves every hedge). For each of ``n`` symbols one
``HedgeRequest`` is told to the hedger, paced ``gap_s`` apart; the first
request for a symbol goes out at once (rule 7: only the ones after it wait
for the coalescing window), so the lag is hedger -> coordinator gate ->
durable intent -> gateway -> exchange. A venue subclass stamps the moment
each hedge's ``SubmitOrder`` arrives; the request's stamp is taken just
before the tell.
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from actors.sim_venue import SimVenue
from messages.enums import OrderPurpose
from messages.exchange import SubmitOrder
from messages.types import Price, Quantity, Symbol

_ARRIVED: dict[str, int] = {}


class _HedgeStampingVenue(SimVenue):
    def on_command(self, cmd: Any) -> None:
        if type(cmd) is SubmitOrder and cmd.order.purpose is OrderPurpose.HEDGE:
            _ARRIVED.setdefault(cmd.order.symbol, time.perf_counter_ns())
        super().on_command(cmd)


def hedge_lag(n: int = 100, gap_s: float = 0.01) -> dict[str, Any]:
    from exchange.synthetic import make_symbols
    from messages.control import HedgeRequest
    from messages.market import Quote
    from app.bench.rig import start_runtime

    symbols = make_symbols(n, prefix="HDG")
    _ARRIVED.clear()
    with tempfile.TemporaryDirectory(prefix="tw-bench-hedge-") as tmp:
        rt = start_runtime(symbols, Path(tmp) / "run", "none", {},
                            swap={"venue": _HedgeStampingVenue})
        try:
            system = rt.system
            clock = system.clock
            big = Quantity(Decimal("1000000"))
            for s in symbols:
                system.tell("venue", Quote(Symbol(s), Price(Decimal("100")), Price(Decimal("100.01")),
                                           clock.now(),
                                           bid_size=big, ask_size=big))
            system.wait_quiescent(30)
            sent: dict[str, int] = {}
            for s in symbols:
                sent[s] = time.perf_counter_ns()
                system.tell("hedger", HedgeRequest(s, Decimal("-5"), "default", clock.now(),
                                                   source="bench"))
                time.sleep(gap_s)  # pacing the requests, not waiting for an actor
            deadline = time.monotonic() + 30
            while len(_ARRIVED) < n and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            rt.stop(timeout=30)
    lags = np.array([(_ARRIVED[s] - sent[s]) / 1e6 for s in symbols if s in _ARRIVED])
    if lags.size == 0:
        raise RuntimeError("no hedge reached the exchange")
    return {"hedge_lag_p50_ms": round(float(np.percentile(lags, 50)), 3),
            "hedge_lag_p99_ms": round(float(np.percentile(lags, 99)), 3),
            "hedge_lag_samples": int(lags.size)}


def margin(quick: bool) -> dict[str, Any]:
    from app.bench.margin import bench_margin

    return bench_margin(repeats=500 if quick else 2000, loop_repeats=1 if quick else 3)


def run(quick: bool) -> dict[str, Any]:
    out = margin(quick)
    out.update(hedge_lag(50 if quick else 200))
    return out
