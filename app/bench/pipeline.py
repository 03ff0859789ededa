"""End-to-end benchmarks of the whole tree (DESIGN section 10).

Everything runs on the live clock with real threads, through the same
:class:`~app.launcher.Runtime` wiring as ``main.py run``: persistence
(LMDB, every intent synced before the order leaves), alerts, the in-process
simulated exchange, gateway, reconnect, reconciler, coordinator (risk gate,
audit) and one ``symbol-<SYM>`` actor per symbol.

Figures, each keyed by symbol count ("10", "100", "1000"), one runtime per count:

* ``tick_to_order_p50_us`` / ``_p99_us`` (``_max_us``, ``_samples``): a quote
  told to the venue (t0, ``perf_counter_ns`` just before the tell) -> the
  ``SubmitOrder`` it caused reaches the venue. Quotes are paced at 5,000
  events/s in total. Path: venue -> gateway -> symbol actor -> features
  (shared executor) -> strategy -> Signal -> coordinator (gate, audit) ->
  persistence (durable write-ahead intent) -> coordinator -> gateway -> venue.
  The first half second (ring and cache warm-up) is left out.
* ``tick_to_signal_p50_us`` / ``_p99_us``: the same t0 -> the Signal's handler
  starting at the coordinator; the rest of tick_to_order is the order path.
* ``paced_events_per_s`` (the rate achieved) and ``paced_drain_ms``: how long
  the tree needed after the last paced quote to go quiescent. More than a few
  ms means it did not keep up with 5,000 events/s, and the latencies above
  are queueing (they then grow with the length of the run).
* ``max_events_per_s``: quotes pushed as fast as one producer can tell them;
  events / time until the whole tree is quiescent again (every quote through
  venue, gateway and coordinator; the orders they caused durable and filled).
  Symbol actors conflate quotes when behind (by design), so the share of
  quotes they actually computed on is reported too
  (``max_events_symbol_seen_pct``).
* ``threads`` / ``rss_mb``: ``threading.active_count()`` and VmRSS, highest
  seen while the paced and the flood phases run; ``actors`` (one thread each)
  and ``threads_other`` = threads - actors - executor workers. The quotes the
  bench generates up front are not the runtime's: the RSS they add is measured
  when they are built (``rss_bench_data_mb``) and subtracted.
* ``gate_rejected``: signals the risk gate refused (0 expected, see below).

Plus ``order_path_us``: mean wall time per order of ``order_path_orders``
Signals told straight to the coordinator, ``order_path_window`` in flight at
once: gate -> audit -> durable intent -> exchange fill -> position updated at
the coordinator. And, as context for the figures of this run:
``lmdb_sync_commit_us`` / ``_p99_us`` (one single-record synced LMDB commit, the
floor under every durable intent) and ``loadavg_1m_at_start`` (other load on the machine).

The instrumented tree (probe, bench strategy, coordinator and venue
subclasses) is ``app.bench.rig``.

The simulated network latency of the venue (``exchange.latency_ms``) is set
to 0: this measures the runtime, not a simulated wire. Risk limits are raised
(rate limit, sizes, volatility, spread, duplicate check off, hedging account)
so that every signal becomes an order; rejections are counted and reported.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from datetime import datetime, UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from messages.enums import Side
from messages.orders import Signal
from messages.types import Price, Quantity, Symbol
from app.bench.rig import (PROBE, STRATEGY, Peak, period_of, rss_mb, start_runtime,
                               wait_quiescent)

PACED_RATE = 5_000          # market events/s in total, across all symbols
ORDERS_PER_S = 200          # target signal rate in the paced phase, all symbols together
_PERF = time.perf_counter_ns
ORDER_WINDOW = 100          # order_path: signals in flight at once


# -- tick to order, paced ------------------------------------------------------------------------


def _market_events(symbols: list[str], seconds: float, seed: int = 7) -> list[Any]:
    """Quotes for ``symbols`` at PACED_RATE in total, stamped from now (UTC)."""
    from exchange.synthetic import SyntheticMarket

    market = SyntheticMarket(symbols, seed=seed, tick_interval_s=len(symbols) / PACED_RATE,
                             bar_interval_s=None, jump_rate_per_s=0.0,
                             quote_size=1_000_000, start=datetime.now(UTC))
    return list(market.events(seconds))


def _paced(rt: Any, events: list[Any], period_s: float, peak: Peak) -> dict[str, Any]:
    """Tell ``events`` to the venue on their market-time schedule; returns latencies (us)."""
    keys: list[tuple[str, int] | None] = []
    seen: set[tuple[str, int]] = set()
    for _t, q in events:
        key = (q.symbol, period_of(q.symbol, q.ts.timestamp(), period_s))
        keys.append(None if key in seen else key)
        seen.add(key)
    venue = rt.system.address("venue")
    tell, perf, start_ns = venue.tell, time.perf_counter, PROBE.start_ns
    next_sample = 0.0
    t_start_ns = _PERF()
    t_start = t_start_ns / 1e9
    for (t, q), probe in zip(events, keys, strict=True):
        due = t_start + t
        now = perf()
        if due > now:
            time.sleep(due - now)  # never spin: a spinning producer holds the GIL
        if probe is not None:
            start_ns[probe] = _PERF()
        tell(q)
        if t >= next_sample:
            peak.sample()
            next_sample = t + 0.25
    sent_at = perf()
    sent_s = sent_at - t_start
    drain_s = wait_quiescent(rt, 120) - sent_at
    # The first moments fill the rings and the caches: not the steady state.
    warm_ns = t_start_ns + int(min(0.5, 0.2 * sent_s) * 1e9)

    def us(samples: list[tuple[int, int]]) -> np.ndarray:
        return np.array([(a - t0) / 1e3 for t0, a in samples if t0 >= warm_ns])

    return {"order_us": us(PROBE.samples), "signal_us": us(PROBE.signal_samples),
            "sent_s": sent_s, "drain_s": drain_s, "events": len(events)}


# -- flood ---------------------------------------------------------------------------------------


def _flood(rt: Any, events: list[Any], peak: Peak) -> dict[str, Any]:
    system = rt.system
    symbol_cells = [c for c in system.directory.cells() if c.name.startswith("symbol-")]
    quotes_before = sum(c.info.get("quotes", 0) for c in symbol_cells)
    computed_before = sum(c.info.get("computations", 0) for c in symbol_cells)
    conflated_before = sum(c.mailbox.conflated for c in symbol_cells)
    tell = system.address("venue").tell
    peak.sample()
    t0 = time.perf_counter()
    for i, (_t, q) in enumerate(events):
        tell(q)
        if i % 5000 == 0:
            peak.sample()
    sent = time.perf_counter()
    peak.sample()
    done = wait_quiescent(rt, 300)
    peak.sample()
    n = len(events)
    seen = sum(c.info.get("quotes", 0) for c in symbol_cells) - quotes_before
    conflated = sum(c.mailbox.conflated for c in symbol_cells) - conflated_before
    # quotes the strategy actually ran on (a conflated quote never reaches it)
    computed = sum(c.info.get("computations", 0) for c in symbol_cells) - computed_before
    return {"events_per_s": n / (done - t0), "tell_s": sent - t0, "drain_s": done - sent,
            "symbol_seen_pct": 100.0 * seen / n, "conflated": conflated,
            "processed_per_s": computed / (done - t0), "conflated_pct": 100.0 * conflated / n}


def _symbol_figures(rt: Any) -> dict[str, Any]:
    cells = [c for c in rt.system.directory.cells() if c.name.startswith("symbol-")]
    coord = rt.system.directory.get("coordinator").actor
    return {"actors": len(rt.system.directory.cells()),
            "threaded": sum(1 for c in rt.system.directory.cells()
                            if c.execution == "threaded" and c.state == "running"),
            "signals": sum(c.info.get("signals", 0) for c in cells),
            "rejected": dict(coord.ledger.rejected),
            "approved": coord.ledger.counts.get("approved", 0)}


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else math.nan


def at_symbols(n: int, *, paced_s: float, flood_events: int) -> dict[str, Any]:
    """Every per-symbol-count figure at ``n`` symbols, from one runtime."""
    from exchange.synthetic import make_symbols

    symbols = make_symbols(n)
    period_s = n / ORDERS_PER_S
    PROBE.reset()
    tmp = Path(tempfile.mkdtemp(prefix=f"tw-bench-pipe{n}-"))
    peak = Peak()
    rt = None
    try:
        t_boot = time.perf_counter()
        rt = start_runtime(symbols, tmp / "run", STRATEGY, {"period_s": period_s})
        boot_s = time.perf_counter() - t_boot
        flood_s = flood_events / PACED_RATE
        rss_before = rss_mb()
        events = _market_events(symbols, paced_s + flood_s)
        # The bench's own quotes are not the runtime's memory: measured, then subtracted.
        data_mb = max(0.0, rss_mb() - rss_before)
        paced_events = [e for e in events if e[0] < paced_s]
        flood_quotes = [e for e in events if e[0] >= paced_s]
        peak.sample()
        paced = _paced(rt, paced_events, period_s, peak)
        paced_orders = PROBE.orders_at_venue
        paced_figs = _symbol_figures(rt)
        flood = _flood(rt, flood_quotes, peak)
        figs = _symbol_figures(rt)
        lat, sig = paced["order_us"], paced["signal_us"]
        return {
            "p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": _pct(lat, 100),
            "samples": int(len(lat)),
            "signal_p50": _pct(sig, 50), "signal_p99": _pct(sig, 99),
            "paced_orders": paced_orders,
            "paced_signals": paced_figs["signals"],
            "paced_rate": paced["events"] / paced["sent_s"],
            "paced_drain_s": paced["drain_s"],
            "events_per_s": flood["events_per_s"],
            "flood": flood,
            "threads": peak.threads,
            "rss_mb": peak.rss - data_mb,
            "rss_bench_data_mb": data_mb,
            "actors": figs["actors"],
            "threaded_actors": figs["threaded"],
            "dispatcher_threads": rt.system.dispatcher.threads,
            "executor_workers": rt.system.executor.workers,
            "rejected": figs["rejected"],
            "boot_s": boot_s,
        }
    finally:
        if rt is not None:
            rt.stop(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


# -- order path ------------------------------------------------------------------------------------


def order_path_us(n_orders: int, n_symbols: int = 10) -> dict[str, Any]:
    """Mean wall time per order, signal to position updated, ORDER_WINDOW in flight."""
    from exchange.synthetic import make_symbols
    from messages.market import Quote

    symbols = make_symbols(n_symbols, prefix="OP")
    PROBE.reset()
    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-orderpath-"))
    rt = None
    try:
        rt = start_runtime(symbols, tmp / "run", "none", {})
        now = datetime.now(UTC)
        for s in symbols:  # a book to fill against, and the coordinator's market view
            rt.system.tell("venue", Quote(Symbol(s), Price(Decimal("100.00")), Price(Decimal("100.01")),
                                          now, Quantity(Decimal(1_000_000)),
                                          Quantity(Decimal(1_000_000))))
        wait_quiescent(rt, 30)
        coord = rt.system.address("coordinator")
        signals = [Signal(Symbol(symbols[i % n_symbols]), Side.BUY if (i // n_symbols) % 2 == 0
                          else Side.SELL, Quantity(Decimal(1)), now, strategy="bench")
                   for i in range(n_orders)]
        t0 = time.perf_counter()
        for i in range(0, n_orders, ORDER_WINDOW):
            batch = signals[i:i + ORDER_WINDOW]
            PROBE.fills_reached.clear()
            PROBE.fill_target = PROBE.fills + len(batch)
            for sig in batch:
                coord.tell(sig)
            if not PROBE.fills_reached.wait(60):
                raise TimeoutError(f"order path: fills stuck at {PROBE.fills}")
        elapsed = time.perf_counter() - t0
        c = rt.system.directory.get("coordinator").actor
        return {"order_path_us": elapsed / n_orders * 1e6, "orders": n_orders,
                "fills": PROBE.fills, "rejected": dict(c.ledger.rejected)}
    finally:
        if rt is not None:
            rt.stop(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


# -- context: the disk ----------------------------------------------------------------------------


def lmdb_sync_commit_us(n: int = 200) -> tuple[float, float]:
    """p50 and p99 time of one single-record LMDB transaction committed and synced,
    as the persistence actor does when idle: the floor under every durable order
    intent, and so under ``tick_to_order`` (the p99 says whether a 1 ms goal is
    reachable at all on this disk)."""
    from trading.store import Store, key_bytes, pack_value

    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-fsync-"))
    store = Store.open(tmp)
    try:
        value = pack_value({"qty": "1", "price": "100.25", "side": "buy"})
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            store.apply([("put", "orders", key_bytes(f"o{i:06d}"), value)])
            times.append(time.perf_counter() - t0)
        us = np.array(times) * 1e6
        return float(np.percentile(us, 50)), float(np.percentile(us, 99))
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


# -- the section ---------------------------------------------------------------------------------

#: symbol count -> (seconds paced at PACED_RATE, events in the flood)
QUICK_PLAN = {10: (1.5, 15_000), 100: (1.5, 10_000), 1000: (1.5, 5_000)}
FULL_PLAN = {10: (6.0, 100_000), 100: (6.0, 100_000), 1000: (6.0, 20_000)}
PER_N_KEYS = ("tick_to_order_p50_us", "tick_to_order_p99_us", "tick_to_order_max_us",
              "tick_to_order_samples", "tick_to_signal_p50_us", "tick_to_signal_p99_us",
              "paced_events_per_s", "paced_drain_ms", "max_events_per_s",
              "max_events_symbol_seen_pct", "processed_events_per_s",
              "processed_conflated_pct", "threads", "actors", "threaded_actors",
              "threads_other", "rss_mb",
              "rss_bench_data_mb", "gate_rejected")


def run(quick: bool) -> dict[str, Any]:
    import os

    sync_p50, sync_p99 = lmdb_sync_commit_us()
    out: dict[str, Any] = {"loadavg_1m_at_start": round(os.getloadavg()[0], 2),
                           "lmdb_sync_commit_us": round(sync_p50, 1),
                           "lmdb_sync_commit_p99_us": round(sync_p99, 1)}
    out.update({k: {} for k in PER_N_KEYS})
    for n, (paced_s, flood) in (QUICK_PLAN if quick else FULL_PLAN).items():
        t0 = time.perf_counter()
        r = at_symbols(n, paced_s=paced_s, flood_events=flood)
        k = str(n)
        out["tick_to_order_p50_us"][k] = round(r["p50"], 1)
        out["tick_to_order_p99_us"][k] = round(r["p99"], 1)
        out["tick_to_order_max_us"][k] = round(r["max"], 1)
        out["tick_to_order_samples"][k] = r["samples"]
        out["tick_to_signal_p50_us"][k] = round(r["signal_p50"], 1)
        out["tick_to_signal_p99_us"][k] = round(r["signal_p99"], 1)
        out["paced_events_per_s"][k] = round(r["paced_rate"])
        out["paced_drain_ms"][k] = round(r["paced_drain_s"] * 1e3, 1)
        out["max_events_per_s"][k] = round(r["events_per_s"])
        out["max_events_symbol_seen_pct"][k] = round(r["flood"]["symbol_seen_pct"], 1)
        out["threads"][k] = r["threads"]
        out["actors"][k] = r["actors"]
        out["processed_events_per_s"][k] = round(r["flood"]["processed_per_s"])
        out["processed_conflated_pct"][k] = round(r["flood"]["conflated_pct"], 1)
        out["threaded_actors"][k] = r["threaded_actors"]
        out["threads_other"][k] = (r["threads"] - r["threaded_actors"] - r["dispatcher_threads"]
                                   - r["executor_workers"])
        out["rss_mb"][k] = round(r["rss_mb"], 1)
        out["rss_bench_data_mb"][k] = round(r["rss_bench_data_mb"], 1)
        out["gate_rejected"][k] = sum(r["rejected"].values())
        print(f"    {n} symbols: p50 {r['p50']:.0f} us, p99 {r['p99']:.0f} us "
              f"({r['samples']} orders), max {r['events_per_s']:.0f} events/s "
              f"({r['flood']['processed_per_s']:.0f}/s processed), "
              f"{r['threads']} threads, {r['rss_mb']:.0f} MB, "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    n_orders = 2_000 if quick else 10_000
    op = order_path_us(n_orders)
    out["order_path_us"] = round(op["order_path_us"], 1)
    out["order_path_orders"] = op["orders"]
    out["order_path_window"] = ORDER_WINDOW
    return out
