"""``run --resume`` (DESIGN section 8, rules 10 and 15): refused
where it cannot be sound, and a real process SIGKILLed and resumed against
a WebSocket exchange that outlives it."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

from exchange.events_log import read_events
from app import invariants
from tests.ws_runs import (ROOT, events_path, order_statuses, run_command, wait_until_traded,
                           ws_exchange)
from trading.audit import read_audit


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


def test_resume_refuses_another_exchange_account_or_venue(life, tmp_path: Path, capsys) -> None:
    """A run is continued only where it started: its store reconciled with
    another exchange, venue or account would take that one's positions."""
    from datetime import datetime

    from main import main as cli
    from app.resume import write_run_info

    lf = life()
    lf.quote()
    lf.signal("buy", 1)
    lf.advance(1)
    lf.stop()
    write_run_info(lf.run_dir, run_id="r", exchange_url="ws://127.0.0.1:9", symbols=["BTCUSDT"],
                   now=datetime.now(UTC), resumed=False, venue="sim", account="alpha")
    assert cli(["run", "--resume", str(lf.run_dir), "--exchange", "ws://127.0.0.1:10"]) == 2
    err = capsys.readouterr().err
    assert "ws://127.0.0.1:9" in err and "ws://127.0.0.1:10" in err
    for what, value, section in (("account", "beta", "{account: beta}"),
                                 ("venue", "othersim", "{account: alpha, venue: othersim}")):
        cfg = tmp_path / f"{what}.yaml"
        cfg.write_text(f"exchange: {section}\n", encoding="utf-8")
        assert cli(["run", "--resume", str(lf.run_dir), "--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        started = "alpha" if what == "account" else "sim"
        assert f"{what} {value!r}" in err and f"{what} {started!r}" in err, err
    info = json.loads((lf.run_dir / "run.json").read_text())
    assert "resumed_at" not in info  # nothing was started


# -- (vii) a real process, SIGKILLed at seeded random moments, resumed ------------------------

def test_sigkill_and_resume_against_a_websocket_exchange(tmp_path: Path) -> None:
    """``run`` trades at a WebSocket exchange that outlives it; it is SIGKILLed
    twice at seeded random moments after it traded and resumed each time with
    ``run --resume``. From the exchange's own events.jsonl: no client order id
    accepted twice, every accepted id approved once; at the end the resumed
    run's positions are the exchange's."""
    rng = random.Random(6)
    events = events_path(tmp_path)
    out = tmp_path / "run"
    with ws_exchange(tmp_path, seed=6) as server:
        first = run_command(tmp_path, "--exchange", server.url, "--duration", "120",
                            "--out", str(out))
        resume = run_command(tmp_path, "--resume", str(out))
        cmd = first
        for kill in range(2):
            log_path = tmp_path / f"proc{kill}.log"
            with open(log_path, "w") as log:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
                # After a few fills, right after the next order reached the
                # exchange (its reports are then on the wire, its status
                # maybe not yet stored), plus a seeded random few ms.
                wait_until_traded(proc, events, log_path)
                time.sleep(rng.uniform(0.0, 0.004))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            cmd = [*resume, "--duration", "60"]
        done = subprocess.run([*resume, "--duration", "2"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        exchange_positions = server.call(lambda: server.engine.positions()).result(5)
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
    statuses = order_statuses(out)
    assert statuses and [c for c, st in statuses.items() if st in ("intent", "submitted")] == []
