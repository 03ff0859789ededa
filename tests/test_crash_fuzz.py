"""Crash fuzz in WebSocket mode (rules 9, 10, 15; marked slow).

``main.py run --exchange ws://...`` is SIGKILLed again and again at seeded
random moments (right after an order or a fill reached the exchange, plus a
random few ms: acks, fills and store writes in flight) and resumed each time
with ``run --resume``. Judged from the exchange's own events.jsonl: no order
acknowledged twice, no fill booked twice (the runtime's positions are the
replay of the exchange's distinct fills, and its store holds each fill once),
and the summary's positions are the exchange's.

    python -m pytest -m slow tests/test_crash_fuzz.py
    TW_FUZZ_SEED=5 TW_FUZZ_KILLS=12 python -m pytest -m slow tests/test_crash_fuzz.py
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from decimal import Decimal as D
from pathlib import Path

import pytest

from exchange.events_log import read_events
from app import invariants
from trading.store import Store
from tests.ws_runs import ROOT, count, events_path, run_command, wait_until_traded, ws_exchange
from trading.audit import read_audit

SEED = int(os.environ.get("TW_FUZZ_SEED", "13"))
KILLS = int(os.environ.get("TW_FUZZ_KILLS", "6"))


@pytest.mark.slow
@pytest.mark.timeout(60 + 90 * KILLS)
def test_seeded_sigkills_in_websocket_mode_never_double_an_order_or_a_fill(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    events = events_path(tmp_path)
    out = tmp_path / "run"
    with ws_exchange(tmp_path, seed=SEED) as server:
        cmd = run_command(tmp_path, "--exchange", server.url, "--duration", "300",
                          "--out", str(out))
        for kill in range(KILLS):
            log_path = tmp_path / f"proc{kill}.log"
            with open(log_path, "w") as log:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
                # a seeded moment: after 1-4 more fills and 1-4 more orders, then 0-30 ms
                wait_until_traded(proc, events, log_path, fills=rng.randint(1, 4),
                                  orders=rng.randint(0, 3))
                time.sleep(rng.choice((0.0, rng.uniform(0.0, 0.005), rng.uniform(0.0, 0.03))))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            cmd = run_command(tmp_path, "--resume", str(out), "--duration", "300")
        done = subprocess.run(run_command(tmp_path, "--resume", str(out), "--duration", "3"),
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        at_exchange = server.call(lambda: server.engine.positions("default")).result(5)
    evs = read_events(events)
    assert count(events, "order_submitted") > KILLS
    # no order acknowledged twice; every acknowledged order approved once
    acks = Counter(e["client_order_id"] for e in evs if e["kind"] == "order_acked")
    assert acks and [c for c, n in acks.items() if n > 1] == []
    approved = Counter(r["client_order_id"] for r in read_audit(out / "audit.jsonl")
                       if r["kind"] == "risk_decision" and r["approved"])
    assert [c for c in acks if approved[c] != 1] == []
    assert invariants.netting(evs) == []
    # no fill booked twice: positions are the replay of the exchange's distinct fills ...
    fills = [e for e in evs if e["kind"] == "order_filled" and e.get("account") in (None, "default")]
    assert len({f["fill_id"] for f in fills}) == len(fills)
    replay: dict[str, D] = defaultdict(D)
    for f in fills:
        replay[f["symbol"]] += D(str(f["qty"])) * (1 if f["side"] == "buy" else -1)
    summary = json.loads((out / "summary.json").read_text())
    ours = {s: D(q) for s, q in summary["positions"].items() if D(q) != 0}
    assert ours == {s: q for s, q in replay.items() if q != 0}
    # ... and the store holds each of them once, none the exchange never made
    store = Store.open(out)
    try:
        stored = set(store.read_all()["fills"])
    finally:
        store.close()
    assert stored <= {f["fill_id"] for f in fills}
    # the summary's positions are the exchange's, and the run checked that itself
    assert ours == {s: q for s, q in at_exchange.items() if q != 0}
    assert {s: D(q) for s, q in summary["exchange_positions"].items() if D(q) != 0} == ours
    assert summary["checks"]["positions_match"] == "held"
    assert summary["invariant_violations"] == []
    info = json.loads((out / "run.json").read_text())
    assert len(info["resumed_at"]) == KILLS
