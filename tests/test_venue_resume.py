"""``run --resume DIR`` of a run that traded at a venue through ccxt.

A real ``main.py run --venue binanceusdm`` process trades, with the real
ccxt, at the simulated engine behind Binance's API on loopback (the face
outlives the run, as a venue does). It is SIGKILLed with one order in
flight (on the book, its create answer lost and its stream reports late)
and resumed with ``run --resume DIR --venue binanceusdm``. From the
engine's own events.jsonl, the store and the audit trail: the in-flight
order was found at the venue by its client order id (never sent again,
never called rejected), no order was accepted twice, the resumed run's
positions are the venue's and every invariant holds.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app import invariants
from exchange.events_log import read_events
from tests.ccxt_face import venue_command
from tests.test_ccxt_runtime import TRADE_LAYER, _face
from tests.ws_runs import count, order_statuses, wait_until_traded
from trading.audit import read_audit

pytestmark = pytest.mark.timeout(300)
SYMBOLS = "BTCUSDT,ETHUSDT"


def _wait(pred: object, what: str, timeout: float = 30.0) -> None:
    """Wait for the face's record (a file another process's orders write to)."""
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]  # pred is a callable here
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sigkill_and_resume_at_the_venue(tmp_path: Path) -> None:
    face = _face(tmp_path)
    events = tmp_path / "face" / "events.jsonl"
    out = tmp_path / "run"
    try:
        first, env = venue_command(tmp_path, face, "--venue", "binanceusdm", "--symbols",
                                   SYMBOLS, "--duration", "120", "--out", str(out),
                                   "--control", "off", layer=TRADE_LAYER)
        log_path = tmp_path / "first.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(first, env=env, cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                wait_until_traded(proc, events, log_path, timeout_s=90)
                # the next order reaches the book, but the run never hears of it:
                # its HTTP answer hangs and its stream reports are seconds late
                face.inject({"latency_ms": 4000})
                face.venue_fault({"lose_create_answer": {"count": 1, "mode": "hang",
                                                         "hang_s": 20}})
                _wait(lambda: count(events, "answer_lost") >= 1, "an order in flight")
            finally:
                proc.kill()
                proc.wait(timeout=10)
        face.inject({"latency_ms": 0})  # the venue carries on at its usual pace
        lost = [e for e in read_events(events) if e["kind"] == "answer_lost"][0]["client_order_id"]
        resume, env = venue_command(tmp_path, face, "--resume", str(out), "--venue",
                                    "binanceusdm", "--symbols", SYMBOLS, "--duration", "6",
                                    "--control", "off", layer=TRADE_LAYER)
        done = subprocess.run(resume, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
        venue_positions = {s: q for s, q in face.call(
            lambda: face.engine.positions("default")).result(5).items() if q != 0}
    finally:
        face.stop()

    evs = [e for e in read_events(events) if e.get("account") in (None, "default")]
    # the order in flight at the kill went out once, under its own id, and was
    # found at the venue: the store holds its outcome, not "submitted"
    assert [e["client_order_id"] for e in evs if e["kind"] == "order_submitted"].count(lost) == 1
    statuses = order_statuses(out)
    assert lost in statuses and statuses[lost] not in ("intent", "submitted", "rejected"), \
        statuses.get(lost)
    assert [c for c, st in statuses.items() if st in ("intent", "submitted")] == []
    # ... and what the store says of it is what the venue did with it
    at_venue = [e["kind"] for e in evs if e.get("client_order_id") == lost
                and e["kind"] in ("order_filled", "order_canceled", "order_expired")]
    if at_venue:
        assert statuses[lost] == {"order_filled": "filled", "order_canceled": "canceled",
                                  "order_expired": "expired"}[at_venue[-1]], (statuses[lost],
                                                                              at_venue)
    # the resumed run settled it with the venue: reconciliation (a fill or an
    # ack taken from the venue's record) or a cancel of it by its client id
    resumed_at = json.loads((out / "run.json").read_text())["resumed_at"][0]
    audit = list(read_audit(out / "audit.jsonl"))
    found = {r["kind"] for r in audit if r.get("client_order_id") == lost
             and r["timestamp"] >= resumed_at}
    found |= {e["kind"] for e in evs if e.get("client_order_id") == lost
              and e["kind"] == "cancel_requested" and e["t"] >= resumed_at}
    assert {"synthesized_fill", "synthesized_ack", "resubmitted", "cancel_requested"} & found, \
        found
    # no client order id accepted twice; every accepted one approved once (rule 1)
    acks = Counter(e["client_order_id"] for e in evs if e["kind"] == "order_acked")
    assert acks and [c for c, n in acks.items() if n > 1] == []
    approved = Counter(r["client_order_id"] for r in audit
                       if r["kind"] == "risk_decision" and r["approved"])
    assert all(approved[c] == 1 for c in acks), [c for c in acks if approved[c] != 1]
    assert invariants.netting(evs) == []
    # the resumed run's verdict covers the whole run; broker and runtime agree
    summary = json.loads((out / "summary.json").read_text())
    assert summary["invariant_violations"] == [] and summary["checks_not_run"] == {}, summary
    held = {s: Decimal(q) for s, q in summary["positions"].items() if Decimal(q) != 0}
    assert held == {s: Decimal(q) for s, q in summary["exchange_positions"].items()
                    if Decimal(q) != 0}
    # the venue's own record says the same: replaying its fills, the runtime's
    # positions are the venue's at some moment after the run's last order left
    # (a protective stop stays at the venue after the run and may fill before
    # the venue is read here, so "now" alone would be a race)
    assert held in _positions_after_last_submission(evs), (held, venue_positions)
    info = json.loads((out / "run.json").read_text())
    assert info["ccxt_venue"]["name"] == "binanceusdm" and len(info["resumed_at"]) == 1
    copied = read_events(out / "events.jsonl")  # the venue's record of the whole run
    assert lost in {e.get("client_order_id") for e in copied if e["kind"] == "order_submitted"}


def _positions_after_last_submission(evs: list[dict[str, Any]]) -> list[dict[str, Decimal]]:
    """Each position the venue's fills went through, from the run's last
    ``order_submitted`` on (flat symbols left out)."""
    pos: dict[str, Decimal] = {}
    seen: set[str] = set()
    states: list[dict[str, Decimal]] = []
    last_submit = max(i for i, e in enumerate(evs) if e["kind"] == "order_submitted")
    for i, e in enumerate(evs):
        if e["kind"] == "order_filled" and e["fill_id"] not in seen:
            seen.add(e["fill_id"])
            qty = Decimal(str(e["qty"]))
            pos[e["symbol"]] = pos.get(e["symbol"], Decimal(0)) + (qty if e["side"] == "buy"
                                                                   else -qty)
        if i >= last_submit:
            states.append({s: q for s, q in pos.items() if q != 0})
    return states


# -- resume refuses another place than the run started at ------------------------------------


def _venue_run_dir(life: object, started: dict[str, object]) -> Path:
    """A stopped run's directory whose run.json says it traded at ``started``."""
    from datetime import UTC, datetime

    from app.resume import read_run_info, save_run_info, write_run_info

    lf = life()  # type: ignore[operator]  # the conftest fixture's factory
    lf.quote()
    lf.signal("buy", 1)
    lf.advance(1)
    lf.stop()
    write_run_info(lf.run_dir, run_id="r", exchange_url=None, symbols=["BTCUSDT"],
                   now=datetime.now(UTC), resumed=False, account="default")
    info = read_run_info(lf.run_dir)
    info["ccxt_venue"] = started
    save_run_info(lf.run_dir, info)
    return Path(lf.run_dir)


def test_venue_resume_refuses_another_exchange_venue_or_account(
        life: object, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A venue run continues at the venue entry it started at, which must
    still resolve to the same exchange, endpoint, mode and account; each
    refusal names what the run started with and what was asked (exit 2)."""
    from exchange.binance_face.auth import DEFAULT_KEYS
    from main import main as cli
    from tests.ccxt_face import face_server, venue_config

    key = DEFAULT_KEYS[0]
    monkeypatch.setenv("TW_BINANCE_API_KEY", key.key)
    monkeypatch.setenv("TW_BINANCE_API_SECRET", key.secret)
    with face_server(tmp_path / "face") as face:
        here = f"http://127.0.0.1:{face.port}"
        started = {"name": "binanceusdm", "exchange_id": "binanceusdm", "mode": "testnet",
                   "base_url": here, "account": "default"}
        run_dir = _venue_run_dir(life, started)
        cfg = str(venue_config(tmp_path, face))

        def refused(*args: str) -> str:
            assert cli(["run", "--resume", str(run_dir), "--config", cfg, "--control", "off",
                        "--symbols", "BTCUSDT", *args]) == 2
            return capsys.readouterr().err

        err = refused("--exchange", "ws://127.0.0.1:9")
        assert "ws://127.0.0.1:9" in err and "venue 'binanceusdm'" in err, err
        err = refused("--venue", "otherusdm")
        assert "venue 'otherusdm'" in err and "venue 'binanceusdm'" in err, err
        beta = tmp_path / "beta.yaml"
        beta.write_text(f"venues: {{binanceusdm: {{base_url: '{here}'}}}}\n"
                        "exchange: {account: beta}\n", encoding="utf-8")
        assert cli(["run", "--resume", str(run_dir), "--config", str(beta),
                    "--control", "off", "--symbols", "BTCUSDT"]) == 2
        err = capsys.readouterr().err
        assert "account 'beta'" in err and "account 'default'" in err, err
        # the same entry name, now resolving elsewhere: another endpoint, a live venue
        for key_, then in (("base_url", "http://127.0.0.1:9"), ("mode", "live")):
            info = json.loads((run_dir / "run.json").read_text())
            info["ccxt_venue"] = {**started, key_: then}
            (run_dir / "run.json").write_text(json.dumps(info))
            err = refused("--venue", "binanceusdm")
            now = here if key_ == "base_url" else "testnet"
            assert repr(then) in err and repr(now) in err, err
    info = json.loads((run_dir / "run.json").read_text())
    assert "resumed_at" not in info  # nothing was started


def test_native_run_refuses_a_venue_resume(life: object, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    from app.resume import write_run_info
    from main import main as cli

    lf = life()  # type: ignore[operator]  # the conftest fixture's factory
    lf.stop()
    write_run_info(lf.run_dir, run_id="r", exchange_url="ws://127.0.0.1:9", symbols=["BTCUSDT"],
                   now=datetime.now(UTC), resumed=False)
    assert cli(["run", "--resume", str(lf.run_dir), "--venue", "binanceusdm"]) == 2
    err = capsys.readouterr().err
    assert "venue 'binanceusdm'" in err and "ws://127.0.0.1:9" in err, err
