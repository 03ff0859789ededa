"""``run --resume`` (DESIGN section 8, rules 10 and 15; issue 6): refused
where it cannot be sound, and a real process SIGKILLed and resumed against
a WebSocket exchange that outlives it."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

from exchange.events_log import read_events
from app import invariants
from trading.store import Store
from trading.audit import read_audit

ROOT = Path(__file__).resolve().parent.parent


# -- resume from the command line ----------------------------------------------------------------


def test_resume_refuses_a_run_on_the_embedded_exchange(life, tmp_path: Path, capsys) -> None:
    from main import main as cli

    lf = life()
    lf.quote()
    lf.signal("buy", 1)
    lf.advance(1)
    lf.stop()
    assert cli(["run", "--resume", str(lf.run_dir)]) == 2
    err = capsys.readouterr().err
    assert "embedded simulated exchange" in err and "--exchange ws://" in err
    assert cli(["run", "--resume", str(tmp_path / "nothing-here")]) == 2
    assert "no store" in capsys.readouterr().err
    assert cli(["run", "--resume", str(lf.run_dir), "--out", str(tmp_path / "elsewhere"),
                "--exchange", "ws://127.0.0.1:9"]) == 2
    assert "--out" in capsys.readouterr().err


# -- (vii) a real process, SIGKILLed at seeded random moments, resumed ------------------------

REAL_CONFIG = """\
risk: {max_volatility: "1", max_loss_per_trade: "100000", block_duplicate_positions: false}
strategy: {name: demo, params: {warmup: 20, entry_z: 1.0, cooldown_s: 0.2, stop_pct: 0.4}}
control: {enabled: false}
"""


def _count(events_path: Path, kind: str) -> int:
    if not events_path.exists():
        return 0
    return sum(1 for e in read_events(events_path) if e["kind"] == kind)


def test_sigkill_and_resume_against_a_websocket_exchange(tmp_path: Path) -> None:
    """``run`` trades at a WebSocket exchange that outlives it; it is SIGKILLed
    twice at seeded random moments after it traded and resumed each time with
    ``run --resume``. From the exchange's own events.jsonl: no client order id
    accepted twice, every accepted id approved once; at the end the resumed
    run's positions are the exchange's."""
    from exchange.feed import RandomWalkFeed
    from exchange.ws_server import run_server

    rng = random.Random(6)
    symbols = ["BTCUSDT", "ETHUSDT"]
    server = run_server(port=0, out_dir=tmp_path / "exchange", feed_interval_s=0.02,
                        feed=RandomWalkFeed(symbols, seed=6, size=D("100")))
    events = tmp_path / "exchange" / "events.jsonl"
    cfg = tmp_path / "real.yaml"
    cfg.write_text(REAL_CONFIG, encoding="utf-8")
    out = tmp_path / "run"
    common = ["--config", str(cfg), "--symbols", ",".join(symbols)]
    try:
        first = [sys.executable, str(ROOT / "main.py"), "run", *common, "--exchange", server.url,
                 "--duration", "120", "--out", str(out)]
        resume = [sys.executable, str(ROOT / "main.py"), "run", *common, "--resume", str(out)]
        cmd = first
        for kill in range(2):
            with open(tmp_path / f"proc{kill}.log", "w") as log:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
                # After a few fills, right after the next order reached the
                # exchange (its reports are then on the wire, its status
                # maybe not yet stored), plus a seeded random few ms.
                fills, orders = _count(events, "order_filled"), _count(events, "order_submitted")
                deadline = time.monotonic() + 60
                while (_count(events, "order_filled") < fills + 3
                       or _count(events, "order_submitted") <= orders + 3):
                    assert proc.poll() is None, (tmp_path / f"proc{kill}.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "the run did not trade within 60 s"
                    time.sleep(0.001)
                time.sleep(rng.uniform(0.0, 0.004))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            cmd = [*resume, "--duration", "60"]
        done = subprocess.run([*resume, "--duration", "2"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        exchange_positions = server.call(lambda: server.engine.positions()).result(5)
    finally:
        server.stop()
    evs = read_events(events)
    acks = Counter(e["client_order_id"] for e in evs if e["kind"] == "order_acked")
    assert acks and [c for c, n in acks.items() if n > 1] == []
    audit = list(read_audit(out / "audit.jsonl"))
    approved = Counter(r["client_order_id"] for r in audit
                       if r["kind"] == "risk_decision" and r["approved"])
    assert all(approved[c] == 1 for c in acks), [c for c in acks if approved[c] != 1]
    assert invariants.netting(evs) == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["invariant_violations"] == []
    assert {s: q for s, q in summary["positions"].items() if q != "0"} == \
        {s: str(q) for s, q in exchange_positions.items() if q != 0}
    info = json.loads((out / "run.json").read_text())
    assert info["exchange_url"] == server.url and len(info["resumed_at"]) == 2
    # The run directory holds the exchange's record of the whole run (DESIGN
    # section 8), the killed parts included: copied from the first start's mark.
    mark = info["exchange_events_mark"]["seq"]
    copied = read_events(out / "events.jsonl")
    assert copied and copied[0]["seq"] == mark + 1
    assert copied == [e for e in evs if mark < e["seq"] <= copied[-1]["seq"]]
    assert {e["client_order_id"] for e in copied if e["kind"] == "order_acked"} == set(acks)
    # Every order the store knows ended settled: none left as an unsent intent
    # or a submission nobody answered (they block netting forever).
    store = Store.open(out)
    try:
        snap = store.read_all()
    finally:
        store.close()
    statuses = {coid: snap["meta"].get(f"order_status|{coid}", rec.get("status"))
                for coid, rec in snap["orders"].items()}
    assert statuses and [c for c, st in statuses.items() if st in ("intent", "submitted")] == []
