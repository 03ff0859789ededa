"""The instrumented tree the end-to-end benchmarks run (``app.bench.pipeline``,
``app.bench.hedge``): the whole runtime on the live clock, ready to trade.

Correlation without touching the production path: a bench strategy
(``bench_every``) emits one signal per symbol per ``period_s`` of market time
(the first quote it sees in a new period, alternating buy and sell) and notes
the period; a coordinator subclass maps the order id it assigns back to that
period; a venue subclass stamps ``SubmitOrder`` arrival. The latency is taken
from the FIRST quote of the period that was told to the venue, so a quote the
symbol actor skipped (conflation) counts against us, not for us.

Risk limits are raised (rate limit, sizes, volatility, spread, duplicate
check off, hedging account) so that every signal becomes an order, and the
venue's simulated network latency is 0: the benches measure the runtime, not
a simulated wire.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import zlib
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, ClassVar

from actors.coordinator import Coordinator
from actors.sim_venue import SimVenue
from trading.strategy import SignalIntent, Strategy, register_strategy
from messages.enums import Side
from messages.exchange import SubmitOrder
from messages.orders import Signal

STRATEGY = "bench_every"
_PERF = time.perf_counter_ns


# -- probe shared by the bench strategy, coordinator and venue ------------------------------


class _Probe:
    """Correlation tables; each written by one thread, read by another (GIL-atomic ops)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fired: dict[str, deque[int]] = defaultdict(deque)   # symbol -> periods signalled
        self.start_ns: dict[tuple[str, int], int] = {}       # (symbol, period) -> t0
        self.coid_start: dict[str, int] = {}                 # client order id -> t0
        self.samples: list[tuple[int, int]] = []             # (t0, arrival) at the venue
        self.signal_samples: list[tuple[int, int]] = []      # (t0, Signal at the coordinator)
        self.orders_at_venue = 0
        self.fills = 0
        self.fill_target = math.inf
        self.fills_reached = threading.Event()

    def on_fill(self) -> None:
        self.fills += 1
        if self.fills >= self.fill_target:
            self.fills_reached.set()


PROBE = _Probe()


def _offset(symbol: str) -> float:
    """A per-symbol phase in [0, 1), so symbols do not all signal at the same instant."""
    return zlib.crc32(symbol.encode()) / 2**32


def period_of(symbol: str, t: float, period_s: float) -> int:
    """The strategy's period index of a quote stamped ``t`` (epoch seconds)."""
    return math.floor(t / period_s + _offset(symbol))


class BenchEvery(Strategy):
    """Bench only: one signal per ``period_s`` of market time, buy and sell in turn."""

    name: ClassVar[str] = STRATEGY

    def __init__(self, period_s: float = 1.0, qty: int = 1) -> None:
        if not period_s > 0:
            raise ValueError(f"strategy {STRATEGY}: period_s must be > 0, got {period_s!r}")
        self.period_s = float(period_s)
        self.qty = qty
        self.warmup = 2
        self._last: int | None = None
        self._n = 0

    def on_data(self, market: Any, features: Any) -> list[SignalIntent]:
        p = period_of(market.symbol, float(market.quotes.t[-1]), self.period_s)
        if self._last is None or p <= self._last:
            if self._last is None:
                self._last = p  # the first period seen only starts the count
            return []
        self._last = p
        side = Side.BUY if self._n % 2 == 0 else Side.SELL
        self._n += 1
        PROBE.fired[market.symbol].append(p)  # before the Signal exists, so it is never late
        return [SignalIntent(side, self.qty)]


class BenchCoordinator(Coordinator):
    """The coordinator plus two dictionary writes per signal and a counter per fill."""

    def on_signal(self, sig: Signal) -> None:
        arrived = _PERF()
        fired = PROBE.fired.get(sig.symbol)
        period = fired.popleft() if fired else None
        t0 = PROBE.start_ns.get((sig.symbol, period)) if period is not None else None
        if t0 is not None:
            PROBE.signal_samples.append((t0, arrived))
        orders = self.ledger.orders.by_id
        before = len(orders)
        super().on_signal(sig)
        if t0 is not None and len(orders) > before:
            PROBE.coid_start[next(reversed(orders))] = t0

    def on_filled(self, ev: Any) -> None:
        super().on_filled(ev)
        PROBE.on_fill()


class BenchVenue(SimVenue):
    """The venue actor, stamping when each SubmitOrder reaches it."""

    def on_command(self, cmd: Any) -> None:
        if type(cmd) is SubmitOrder:
            arrived = _PERF()
            PROBE.orders_at_venue += 1
            t0 = PROBE.coid_start.pop(cmd.order.client_order_id, None)
            if t0 is not None:
                PROBE.samples.append((t0, arrived))
        super().on_command(cmd)


# -- the runtime under test ---------------------------------------------------------------------


def bench_config(symbols: list[str], strategy: str, params: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> Any:
    from config import load_config

    return load_config(overrides={
        **(extra or {}),
        "risk": {
            "max_position_size": "1000000", "max_order_size": "100", "min_order_size": "1",
            "max_spread_bps": "10000", "max_volatility": "1000",
            "max_volume_participation": "1", "max_loss_per_trade": "1000000",
            "max_position_concentration": "1", "max_daily_loss": "1000000000",
            "block_duplicate_positions": False, "position_staleness_s": 3600.0,
            "rate_limit": {"orders_per_s": "1000000", "burst": 1000000},
            "hedging_mode": {"default": True},
        },
        "exchange": {"latency_ms": 0, "latency_jitter_ms": 0, "limit_by_quote_size": False,
                     "account": "default"},
        "market": {"symbols": symbols[:5]},
        "strategy": {"name": strategy, "params": params},
    })


def start_runtime(symbols: list[str], run_dir: Path, strategy: str,
                   params: dict[str, Any], swap: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> Any:
    """The whole tree on the live clock, ready to trade, with the instrumented
    venue and coordinator (or the actor classes in ``swap``, by child name)."""
    from config import config_hash
    from runtime.clock import LiveClock
    from app.launcher import LaunchSpec, Runtime

    swaps: dict[str, Any] = swap if swap is not None else {
        "venue": BenchVenue, "coordinator": BenchCoordinator}

    class BenchRuntime(Runtime):
        def tree(self) -> Any:
            spec = super().tree()
            spec.children = [dataclasses.replace(c, actor=swaps[c.name]) if c.name in swaps else c
                             for c in spec.children]
            return spec

    register_strategy(BenchEvery)  # here, not at import: the registry stays as it was
    cfg = bench_config(symbols, strategy, params, extra)
    spec = LaunchSpec(cfg, run_dir, tuple(symbols), LiveClock(), run_id=run_dir.name,
                      config_hash=config_hash(cfg))
    rt = BenchRuntime(spec)
    try:
        rt.start(timeout=120)
        wait_ready(rt, 30)
    except BaseException:
        rt.stop(timeout=30)
        raise
    return rt


def wait_ready(rt: Any, timeout: float) -> None:
    """Until the coordinator would approve a risk-increasing order (recovered, stream
    up and resynced, positions fresh)."""
    deadline = time.monotonic() + timeout
    cell = rt.system.directory.get("coordinator")
    while time.monotonic() < deadline:
        c = cell.actor
        ledger = c.ledger if c is not None else None
        if (ledger is not None and not ledger.risk.gate.recovering
                and not ledger.stream_reconciling and ledger.sync.synced_at is not None):
            return
        time.sleep(0.01)
    raise TimeoutError("coordinator not ready to trade")


def wait_quiescent(rt: Any, timeout: float) -> float:
    """Poll (sleeping, never spinning) until no message waits or is handled anywhere;
    returns the perf_counter time it was first seen quiescent. A check walks every
    cell, so with 1,000 actors it polls less often, not to slow what it waits for."""
    system = rt.system
    poll_s = 0.001 if len(system.directory.names()) < 200 else 0.005
    deadline = time.monotonic() + timeout
    while not system.is_quiescent():
        if time.monotonic() > deadline:
            raise TimeoutError(f"tree not quiescent after {timeout}s")
        time.sleep(poll_s)
    return time.perf_counter()


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


class Peak:
    def __init__(self) -> None:
        self.threads = 0
        self.rss = 0.0

    def sample(self) -> None:
        self.threads = max(self.threads, threading.active_count())
        self.rss = max(self.rss, rss_mb())
