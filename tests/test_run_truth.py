"""A run tells the truth (rule 18, DESIGN section 8): the positions check runs
in every mode or says it did not; a halted runtime ends the run at once with
the cause in summary.json and exit code 3."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from tests.ws_runs import ROOT, events_path, run_command, wait_until_traded, ws_exchange


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def test_a_websocket_run_compares_its_positions_with_the_exchanges(tmp_path: Path) -> None:
    """In ws mode the exchange's positions are asked for at the end through the
    adapter protocol (a fresh connection): both sides are in the summary and
    the comparison ran."""
    out = tmp_path / "run"
    with ws_exchange(tmp_path, seed=3) as server:
        log = tmp_path / "run.out"
        with open(log, "w") as fh:
            proc = subprocess.Popen(run_command(tmp_path, "--exchange", server.url,
                                                "--duration", "4", "--out", str(out)),
                                    cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
            wait_until_traded(proc, events_path(tmp_path), log, fills=2, orders=1)
            assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
        at_exchange = server.call(lambda: server.engine.positions("default")).result(5)
    summary = _summary(out)
    assert summary["exchange_positions"] is not None
    assert {s: D(q) for s, q in summary["exchange_positions"].items() if D(q) != 0} == \
        {s: q for s, q in at_exchange.items() if q != 0}
    assert at_exchange, "the run should have left a position to compare"
    assert summary["checks"]["positions_match"] == "held"
    assert summary["checks_not_run"] == {}
    assert summary["invariant_violations"] == []


def test_an_exchange_gone_at_the_end_is_a_check_not_run_never_held(tmp_path: Path) -> None:
    """The exchange dies before the run ends: its positions cannot be read and
    its record cannot be copied. The summary says which checks did not run and
    why, the table says NOT RUN, and the exit code is 1, not 0."""
    out = tmp_path / "run"
    with ws_exchange(tmp_path, seed=4) as server:
        proc = subprocess.Popen(run_command(tmp_path, "--exchange", server.url, "--duration", "4",
                                            "--out", str(out)),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        deadline = time.monotonic() + 60
        while not (out / "run.json").exists() or "exchange_events_mark" not in \
                (out / "run.json").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        server.stop()
        stdout, _ = proc.communicate(timeout=90)
    assert proc.returncode == 1, stdout[-3000:]
    summary = _summary(out)
    assert summary["exchange_positions"] is None
    not_run = summary["checks_not_run"]
    assert set(not_run) == {"positions_match", "single_door", "netting",
                            "unique_client_order_ids", "group_leg_order"}
    assert "could not be read" in not_run["positions_match"]
    assert summary["checks"]["positions_match"] == "not_run"
    assert "NOT RUN" in stdout and "all held" not in stdout


def test_an_embedded_run_reads_the_exchange_through_the_adapter_protocol(tmp_path: Path) -> None:
    """The embedded engine is asked the same question (``DirectAdapter``), so
    a scenario's summary carries the comparison as having run."""
    from app.scenario_runner import run_scenario

    result = run_scenario(ROOT / "tests/scenarios/circuit_breaker_trip.yaml", tmp_path)
    assert result.summary["checks"]["positions_match"] == "held"
    assert result.summary["exchange_positions"] is not None
    assert result.exit_code == 0


HALT_CONFIG = """\
market: {tick_interval_ms: 20}
control: {enabled: false}
runtime: {supervisor: {intensity: 1, period_s: 60}, restart_backoff: {base_s: 0.01, max_s: 0.02}}
"""


@pytest.mark.timeout(120)
def test_a_halted_runtime_stops_the_run_at_once_and_exits_3(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The root supervisor gives up (the coordinator crash-loops past its
    restart intensity): the run stops within a second or so instead of
    trading on to its duration, writes summary.json with the cause and exits
    3; its table says HALTED."""
    from main import main as cli
    from app.launcher import Runtime
    from tests.recovery_life import poison_quote

    started: list[Runtime] = []
    real_start = Runtime.start

    def start(self: Runtime, timeout: float = 30.0) -> Runtime:
        started.append(self)  # only to reach the running tree from the test
        return real_start(self, timeout)

    monkeypatch.setattr(Runtime, "start", start)

    def crash_loop() -> None:
        deadline = time.monotonic() + 60
        while not started or started[0].system is None or \
                not started[0].info("coordinator").get("trading_state"):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        system = started[0].system
        for _ in range(3):
            system.tell("coordinator", poison_quote(system.clock.now()))
            time.sleep(0.3)

    cfg = tmp_path / "halt.yaml"
    cfg.write_text(HALT_CONFIG, encoding="utf-8")
    out = tmp_path / "run"
    helper = threading.Thread(target=crash_loop, daemon=True)
    helper.start()
    t0 = time.monotonic()
    code = cli(["run", "--config", str(cfg), "--duration", "120", "--out", str(out)])
    took = time.monotonic() - t0
    helper.join(5)
    assert code == 3
    assert took < 60, f"the halted run went on for {took:.0f}s"
    summary = _summary(out)
    assert "root supervisor failed" in summary["halted"]["reason"]
    assert summary["kill_switch"]["trips"] >= 1
    assert summary["checks"]["positions_match"] in ("held", "violated")
