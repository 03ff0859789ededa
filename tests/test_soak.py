"""Soak: a long live run at 2,000 market events/s; memory and threads stay flat (rule 13).

Marked ``slow`` (excluded from the default run). Run it with::

    python -m pytest -m slow tests/test_soak.py            # 30 minutes
    TW_SOAK_S=120 python -m pytest -m slow tests/test_soak.py   # a shorter look

RSS and the thread count are sampled every ``SAMPLE_S`` seconds after a
warm-up (rings filled, LMDB map touched, executor started). The run passes
if the thread count never changes after warm-up and the RSS of the last
quarter of the run is within ``RSS_NOISE`` of the first quarter's: a leak of
even a few bytes per event would show as a steady climb over 3.6 million
events.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

SOAK_S = float(os.environ.get("TW_SOAK_S", "1800"))
WARMUP_S = min(60.0, SOAK_S / 4)
SAMPLE_S = 5.0
RSS_NOISE = 0.10
EVENTS_PER_S = 2000


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 600)
def test_long_run_keeps_memory_and_threads_flat(tmp_path: Path) -> None:
    from config import config_hash, load_config
    from exchange.synthetic import make_symbols, SyntheticMarket
    from runtime.clock import LiveClock
    from app.launcher import LaunchSpec, Runtime

    symbols = make_symbols(20)
    tick_s = len(symbols) / EVENTS_PER_S          # 20 symbols x 100 ticks/s = 2,000/s
    cfg = load_config(overrides={"control": {"enabled": False},
                                 "risk": {"rate_limit": {"orders_per_s": "50", "burst": 50}}})
    clock = LiveClock()
    market = SyntheticMarket(symbols, seed=11, tick_interval_s=tick_s, bar_interval_s=1.0,
                             start=clock.now())
    rt = Runtime(LaunchSpec(cfg, tmp_path / "soak", tuple(symbols), clock, run_id="soak",
                            config_hash=config_hash(cfg), market=market,
                            market_duration_s=SOAK_S)).start()
    samples: list[tuple[float, float, int]] = []
    try:
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < SOAK_S:
            time.sleep(SAMPLE_S)  # sampling wall time, not waiting for an actor
            if elapsed >= WARMUP_S:
                samples.append((elapsed, rss_mb(), threading.active_count()))
        events = rt.info("gateway").get("counts", {}).get("market_events", 0)
    finally:
        rt.stop()
    assert len(samples) >= 8, "soak too short to judge"
    assert events >= 0.8 * EVENTS_PER_S * SOAK_S, f"only {events} events arrived"
    threads = {n for _, _, n in samples}
    assert len(threads) == 1, f"thread count changed during the run: {sorted(threads)}"
    q = max(1, len(samples) // 4)
    first = sum(r for _, r, _ in samples[:q]) / q
    last = sum(r for _, r, _ in samples[-q:]) / q
    assert last <= first * (1 + RSS_NOISE), f"RSS grew from {first:.1f} MB to {last:.1f} MB"
