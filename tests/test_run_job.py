"""``main.py run`` end to end, as a user runs it: a real process on the live
clock, the embedded exchange, the run directory and its summary (DESIGN
section 8); SIGINT stops it in order with exit code 0 (rule 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from exchange.events_log import read_events
from trading.audit import read_audit

ROOT = Path(__file__).resolve().parent.parent
#: ticks every 20 ms so the demo strategy warms up (60 quotes) within a second; stops
#: 0.1 % away trigger within seconds; a demo group step every 0.5 s runs the whole
#: drill cycle (fill, close, rollback, handoff to the hedger) in a few seconds
FAST_MARKET = ("market: {tick_interval_ms: 20, bar_interval_s: 0.5}\n"
               "risk: {max_volatility: \"1\"}\n"
               "strategy: {params: {stop_pct: 0.001}}\n"
               "demo: {groups: {every_s: 0.5}}\n")
SUMMARY_KEYS = {"schema_version", "run_id", "started_at", "ended_at", "market_events", "signals",
                "orders", "risk", "hedges", "groups", "stop_exits", "exits", "positions",
                "exchange_positions", "restarts", "invariant_violations", "pnl"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *args]


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST_MARKET, encoding="utf-8")
    return cfg


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One short ``main.py run`` (5 s of the fast market), read by several tests."""
    tmp = tmp_path_factory.mktemp("fast-run")
    out = tmp / "run"
    proc = subprocess.run(_cli("run", "--config", str(_config(tmp)), "--duration", "5",
                               "--drills", "--out", str(out)),
                          cwd=ROOT, capture_output=True, text=True, timeout=90)
    return out, proc


def test_run_writes_a_complete_run_directory(fast_run: tuple[Path, Any]) -> None:
    out, proc = fast_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("summary.json", "events.jsonl", "audit.jsonl", "store", "run.log"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["invariant_violations"] == []
    # every check ran: none is reported held without having run (rule 18)
    assert summary["checks_not_run"] == {}
    assert set(summary["checks"].values()) == {"held"}
    assert summary["market_events"] > 500
    assert summary["signals"] > 0, "the demo strategy should have traded in 4 s of 20 ms ticks"
    # positions equal the exchange's, symbol by symbol
    assert {s: q for s, q in summary["positions"].items() if q != "0"} == \
        {s: q for s, q in summary["exchange_positions"].items() if q != "0"}
    # one audit record per decision, and every order at the exchange was approved
    decisions = [r for r in read_audit(out / "audit.jsonl") if r["kind"] == "risk_decision"]
    assert len(decisions) == summary["risk"]["approved"] + sum(summary["risk"]["rejected"].values())
    assert sum(1 for r in decisions if r.get("source") == "signal") == summary["signals"]
    approved = {r["client_order_id"] for r in decisions if r["approved"]}
    submitted = {e["client_order_id"] for e in read_events(out / "events.jsonl")
                 if e["kind"] == "order_submitted"}
    assert submitted and submitted <= approved
    assert summary["orders"]["submitted"] == len(submitted)
    assert "Tradewarden run" in proc.stdout and "invariants" in proc.stdout


def test_run_exercises_groups_hedges_and_stops_and_counts_them(
        fast_run: tuple[Path, Any]) -> None:
    """The demo run's drills (a pair that fills and is closed, one whose
    short leg the exchange rejects, one whose unwinds fail too) and the strategy's
    stops all happen, summary.json counts them, and rule 6's leg order held."""
    out, proc = fast_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["invariant_violations"] == []
    groups = summary["groups"]
    assert groups["filled"] >= 1 and groups["rolled_back"] >= 1 and groups["failed"] >= 1, groups
    assert groups["submitted"] == sum(groups[k] for k in ("filled", "rolled_back", "failed",
                                                          "rejected", "open"))
    assert summary["hedges"] >= 1, "the handoff drill's residue should have been hedged"
    assert sum(summary["stop_exits"].values()) >= 1
    # the demo pair ends flat: every drill was closed, unwound or hedged
    assert {s: summary["positions"].get(s, "0") for s in ("ADAUSDT", "DOTUSDT")} == \
        {"ADAUSDT": "0", "DOTUSDT": "0"}
    # the exchange's own record says which group each leg belonged to
    legs = [e for e in read_events(out / "events.jsonl")
            if e["kind"] == "order_submitted" and e.get("group_id")]
    assert {e["group_id"] for e in legs} >= {"demo-1", "demo-2", "demo-3", "demo-4"}
    assert "order groups" in proc.stdout
    # asked for with --drills, announced, and their alerts say they are drills
    assert "DRILLS" in proc.stdout and "handoff" in proc.stdout
    log = (out / "run.log").read_text()
    assert "DRILL: order group could not unwind" in log
    assert "could not unwind" not in log.replace("DRILL: order group could not unwind", "")


def test_sigint_stops_in_order_with_exit_code_zero(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli("run", "--config", str(_config(tmp_path)), "--duration", "120",
                                 "--out", str(out)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = out / "run.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the process, not an actor: poll its log
            if log.exists() and "actor system" in log.read_text() and "started" in log.read_text():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("run did not start within 30 s")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted_by"] == "SIGINT"
    assert summary["invariant_violations"] == []
    text = (out / "run.log").read_text()
    # reverse start order: the market feed stops first, persistence last
    assert text.index("actor system") < text.rindex("stopped")
    assert "still running after shutdown" not in text


def test_bad_config_value_is_named_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  max_order_size: \"-5\"\n", encoding="utf-8")
    proc = subprocess.run(_cli("run", "--config", str(bad), "--out", str(tmp_path / "r")),
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert proc.returncode == 2
    assert "bad.yaml:2" in proc.stderr and "max_order_size" in proc.stderr


def test_audit_command_filters_by_reason(tmp_path: Path) -> None:
    from app.scenario_runner import run_scenario

    result = run_scenario(ROOT / "tests" / "scenarios" / "rate_limit_burst.yaml", tmp_path)
    proc = subprocess.run(_cli("audit", str(result.run_dir), "--reason", "rate_limited", "--json"),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and {r["reason"] for r in rows} == {"rate_limited"}
    table = subprocess.run(_cli("audit", str(result.run_dir), "--symbol", "AAAUSD"),
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "AAAUSD" in table.stdout and "approved" in table.stdout
