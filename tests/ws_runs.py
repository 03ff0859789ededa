"""Helpers for tests that run ``main.py run`` as a real process against a
WebSocket exchange served from the test process (``exchange.ws_server``):
the exchange outlives the runs, as ``main.py exchange`` does."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from exchange.events_log import read_events

ROOT = Path(__file__).resolve().parent.parent

#: a market that trades within a second or two of 20 ms quotes; no control endpoint
REAL_CONFIG = """\
risk: {max_volatility: "1", max_loss_per_trade: "100000", block_duplicate_positions: false}
strategy: {name: demo, params: {warmup: 20, entry_z: 1.0, cooldown_s: 0.2, stop_pct: 0.4}}
control: {enabled: false}
"""
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@contextmanager
def ws_exchange(tmp_path: Path, seed: int, symbols: tuple[str, ...] = SYMBOLS) -> Iterator[Any]:
    """A WebSocket exchange with its own 20 ms random-walk feed, stopped at the end."""
    from exchange.feed import RandomWalkFeed
    from exchange.ws_server import run_server

    server = run_server(port=0, out_dir=tmp_path / "exchange", feed_interval_s=0.02,
                        feed=RandomWalkFeed(list(symbols), seed=seed, size=D("100")))
    try:
        yield server
    finally:
        server.stop()


def events_path(tmp_path: Path) -> Path:
    return tmp_path / "exchange" / "events.jsonl"


def run_command(tmp_path: Path, *args: str, symbols: tuple[str, ...] = SYMBOLS) -> list[str]:
    """``main.py run`` with REAL_CONFIG and the symbols, plus ``args``."""
    cfg = tmp_path / "real.yaml"
    if not cfg.exists():
        cfg.write_text(REAL_CONFIG, encoding="utf-8")
    return [sys.executable, str(ROOT / "main.py"), "run", "--config", str(cfg),
            "--symbols", ",".join(symbols), *args]


def count(path: Path, kind: str) -> int:
    """Records of ``kind`` in an exchange's events.jsonl so far (0 before it exists)."""
    if not path.exists():
        return 0
    return sum(1 for e in read_events(path) if e["kind"] == kind)


def wait_until_traded(proc: subprocess.Popen, events: Path, log: Path, *, fills: int = 3,
                      orders: int = 3, timeout_s: float = 60.0) -> None:
    """Return right after the run made ``fills`` more fills and sent more than
    ``orders`` more orders than when called (its reports then on the wire)."""
    f0, o0 = count(events, "order_filled"), count(events, "order_submitted")
    deadline = time.monotonic() + timeout_s
    while count(events, "order_filled") < f0 + fills or count(events, "order_submitted") <= o0 + orders:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the run did not trade within {timeout_s:g} s"
        time.sleep(0.001)


def order_statuses(run_dir: Path) -> dict[str, str]:
    """Every order the run's store knows -> its last stored status."""
    from trading.store import Store

    store = Store.open(run_dir)
    try:
        snap = store.read_all()
    finally:
        store.close()
    return {coid: snap["meta"].get(f"order_status|{coid}", rec.get("status"))
            for coid, rec in snap["orders"].items()}
