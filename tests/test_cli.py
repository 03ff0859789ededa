"""The command line as a new user meets it: one run per directory, messages
instead of tracebacks, exit code 2 for bad input (DESIGN section 8), and an
audit trail whose sequence numbers never repeat and whose hash chain shows
tampering."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from datetime import datetime, UTC
from pathlib import Path

import pytest

from app.cli_args import parse_duration, parse_symbols
from trading.audit import AuditLog, read_audit, verify_audit

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


#: what CI gives a command: no terminal, no COLUMNS
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=ENV)


# -- one run per directory ------------------------------------------------------------------


def test_a_non_empty_out_is_refused_without_touching_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "audit.jsonl").write_text("kept\n", encoding="utf-8")
    proc = _cli("run", "--duration", "1", "--control", "off", "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not empty" in proc.stderr and f"--resume {out}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["audit.jsonl"]
    assert (out / "audit.jsonl").read_text(encoding="utf-8") == "kept\n"


def test_an_unknown_strategy_is_named_with_the_known_ones_and_leaves_no_directory(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli("run", "--strategy", "foo", "--duration", "1", "--control", "off",
                "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown strategy 'foo'" in proc.stderr and "demo" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_run_symbols_mean_exactly_those_and_the_drill_pair_is_free(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli("run", "--symbols", "adausdt", "--duration", "1s", "--control", "off",
                "--out", str(out), timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["symbols"] == ["ADAUSDT"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["symbols"] == ["ADAUSDT"] and summary["groups"]["submitted"] == 0
    assert "DRILL" not in proc.stdout
    # not a terminal: lines are not wrapped at 80 columns mid-phrase
    banner = next(line for line in proc.stdout.splitlines() if "Tradewarden" in line)
    assert "ADAUSDT, 1s, strategy demo, exchange embedded simulator" in banner
    assert any("no signal before 60 quotes per symbol (its warmup): about 6s" in line
               for line in proc.stdout.splitlines())


@pytest.mark.parametrize("args, needle", [
    (("run", "--symbols", ""), "--symbols: no symbols given"),
    (("run", "--symbols", " , "), "--symbols: no symbols given"),
    (("run", "--duration", "5x"), "--duration: '5x' is not a duration"),
    (("run", "--duration", "0"), "more than zero"),
])
def test_bad_options_are_usage_errors(args: tuple[str, ...], needle: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_durations_and_symbol_lists_parse() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "1.5m", "5m", "2h", " 30S ")] == \
        [90.0, 90.0, 90.0, 300.0, 7200.0, 30.0]
    assert parse_symbols("btcusdt, ETHUSDT") == ["BTCUSDT", "ETHUSDT"]
    for bad in ("", "A,A", "BTC USDT"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_symbols(bad)


def test_exchange_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _cli("exchange", "--port", str(port), "--out", str(tmp_path / "ex"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_the_built_in_strategies() -> None:
    proc = _cli("run", "--help")
    assert proc.returncode == 0
    assert "built-in strategies" in proc.stdout
    for name in ("demo", "none"):
        assert f"\n  {name} " in proc.stdout


# -- the audit trail: sequence and hash chain -----------------------------------------------


def _write(path: Path, n: int, run_id: str = "r") -> None:
    log = AuditLog(path, run_id=run_id, app_version="t", config_hash="h")
    for i in range(n):
        log.record(kind="risk_decision", reason="approved", ts=T0, approved=True,
                   inputs={"symbol": "BTCUSDT", "side": "buy", "qty": str(i + 1)})
    log.close()


def test_audit_seq_continues_across_writers_and_the_chain_holds(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    _write(path, 2, run_id="r-resumed")  # a resumed run or a restarted runtime
    seqs = [r["seq"] for r in read_audit(path)]
    assert seqs == [1, 2, 3, 4, 5]
    assert verify_audit(path) == (5, None)


def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 2)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"seq": 3, "half a rec')  # the crash hit mid-write
    assert verify_audit(path) == (2, None)  # a torn tail is a crash, not tampering
    _write(path, 1)
    assert [r["seq"] for r in read_audit(path)] == [1, 2, 3]
    assert verify_audit(path) == (3, None)


@pytest.mark.parametrize("tamper, line", [
    (lambda lines: lines.__setitem__(1, lines[1].replace('"qty":"2"', '"qty":"9"')), 3),
    (lambda lines: lines.pop(1), 2),
    (lambda lines: lines.insert(2, lines[2]), 4),
])
def test_audit_verify_names_the_first_broken_record(tmp_path: Path, tamper, line: int) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    lines = path.read_text(encoding="utf-8").splitlines()
    tamper(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    n, broken = verify_audit(path)
    assert broken is not None and broken.line == line and n == line - 1
    proc = _cli("audit", "verify", str(tmp_path))
    assert proc.returncode == 1 and f"broken at line {line}" in proc.stderr, proc.stderr
    ok = tmp_path / "ok"
    _write(ok / "audit.jsonl", 4)
    proc = _cli("audit", "verify", str(ok))
    assert proc.returncode == 0 and "4 record(s), hash chain intact" in proc.stdout


def test_a_scenario_restart_continues_the_audit_sequence(tmp_path: Path) -> None:
    from app.scenario_runner import run_scenario

    result = run_scenario(ROOT / "tests" / "scenarios" / "crash_after_fill.yaml", tmp_path)
    records = list(read_audit(result.run_dir / "audit.jsonl"))
    seqs = [r["seq"] for r in records]
    assert len(seqs) > 3 and seqs == list(range(1, len(seqs) + 1))
    assert verify_audit(result.run_dir / "audit.jsonl") == (len(seqs), None)


# -- the audit command ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def group_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.scenario_runner import run_scenario

    tmp = tmp_path_factory.mktemp("audit-cli")
    return run_scenario(ROOT / "tests" / "scenarios" / "group_credit_spread_rollback.yaml",
                        tmp).run_dir


def test_audit_table_shows_full_times_and_group_symbols(group_run: Path) -> None:
    proc = _cli("audit", str(group_run), "--symbol", "spy-20260220-p-95")
    assert proc.returncode == 0, proc.stderr
    assert "2026-01-05T14:30:02.000+00:00" in proc.stdout
    assert "SPY-20260220-P-95,SPY-20260220-P-100" in proc.stdout and "group bp1" in proc.stdout
    assert all(len(line) <= 200 for line in proc.stdout.splitlines())  # not wrapped at 80
    rows = [json.loads(x) for x in
            _cli("audit", str(group_run), "--symbol", "spy-20260220-p-95", "--json")
            .stdout.splitlines()]
    # every record of the group, including those that name no leg themselves
    assert {r["reason"] for r in rows} >= {"submitted", "approved", "leg_rejected"}


def test_audit_unknown_reason_lists_the_valid_ones(group_run: Path) -> None:
    proc = _cli("audit", str(group_run), "--reason", "nope")
    assert proc.returncode == 2
    assert "unknown --reason 'nope'" in proc.stderr
    assert "rate_limited" in proc.stderr and "leg_rejected" in proc.stderr


def test_audit_json_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    _write(tmp_path / "audit.jsonl", 20_000)  # far more than a pipe buffer holds
    proc = subprocess.run(f"{sys.executable} main.py audit {tmp_path} --json | head -1",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("\n") == 1 and json.loads(proc.stdout)["seq"] == 1
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr


# -- the kill switch in the summary ---------------------------------------------------------


def test_summary_tells_each_kill_switch_trip_and_its_release(tmp_path: Path) -> None:
    from rich.console import Console

    from app.scenario_runner import run_scenario
    from app.summary import print_summary

    s = run_scenario(ROOT / "tests" / "scenarios" / "kill_switch_survives_crash.yaml",
                     tmp_path).summary
    ks = s["kill_switch"]
    assert ks["state"] == "ACTIVE" and ks["trips"] == 1
    assert ks["history"] == [{"engaged_at": "2026-01-05T14:30:00.500000+00:00",
                              "reason": "manual: operator", "released_because": "operator",
                              "released_at": "2026-01-05T14:30:05+00:00"}]
    console = Console(record=True, width=200)
    print_summary(s, "t", console)
    text = console.export_text()
    assert ("kill switch   │ tripped 1x: at 2026-01-05T14:30:00.500000+00:00 (manual: operator), "
            "released at 2026-01-05T14:30:05+00:00") in text
    quiet = run_scenario(ROOT / "tests" / "scenarios" / "rate_limit_burst.yaml", tmp_path).summary
    console = Console(record=True, width=200)
    print_summary(quiet, "t", console)
    assert "kill switch   │ never tripped" in console.export_text()


def test_the_banner_says_why_the_first_seconds_have_no_signal() -> None:
    from config import load_config
    from app.run_console import warmup_note

    embedded = warmup_note(load_config(), 60)
    assert "no signal before 60 quotes per symbol" in embedded and "about 6s" in embedded
    ws = warmup_note(load_config(overrides={"exchange": {"url": "ws://127.0.0.1:9"}}), 60)
    assert "--tick-ms" in ws and "about 6s" in ws


def test_exchange_tick_ms_must_be_positive(tmp_path: Path) -> None:
    proc = _cli("exchange", "--port", "0", "--tick-ms", "0", "--out", str(tmp_path / "ex"))
    assert proc.returncode == 2 and "--tick-ms must be more than 0" in proc.stderr


# -- your own strategy (docs/strategies.md) -------------------------------------------------


def _doc_example() -> str:
    text = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    return next(block for block in text.split("```python\n")[1:]
                if "register_strategy" in block and "class Breakout" in block).split("```")[0]


def test_the_strategy_guide_example_runs_by_its_module_path(tmp_path: Path) -> None:
    """The guide's example, as written, trades in a real run: imported by
    package.module.ClassName, its parameters validated before anything starts."""
    (tmp_path / "my_strategies.py").write_text(_doc_example(), encoding="utf-8")
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("market: {tick_interval_ms: 20}\nrisk: {max_volatility: \"1\"}\n"
                   "strategy: {params: {lookback: 5}}\n", encoding="utf-8")
    env = {**ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "run", "--strategy",
                           "my_strategies.Breakout", "--config", str(cfg), "--duration", "3",
                           "--control", "off", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=90, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["signals"] > 0 and summary["orders"]["submitted"] > 0
    bad = subprocess.run([sys.executable, str(ROOT / "main.py"), "run", "--strategy",
                          "my_strategies.Breakout", "--config", str(cfg), "--control", "off",
                          "--out", str(tmp_path / "bad")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**env, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "cannot import my_strategies" in bad.stderr
    assert not (tmp_path / "bad").exists()


# -- the README --------------------------------------------------------------------------------


def test_readme_links_stay_inside_the_repository_and_its_figures_match() -> None:
    import re

    from config import load_config

    for doc in (ROOT / "README.md", ROOT / "docs" / "operations.md",
                ROOT / "docs" / "strategies.md"):
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
            assert path.exists(), f"{doc.name} links to a missing file: {target}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    symbols = load_config().market.symbols
    assert f"for five symbols ({', '.join(symbols)})" in readme and len(symbols) == 5
    for option in ("--port", "--out", "--symbols", "--seed", "--tick-ms", "--config"):
        assert option in readme.split("`python main.py exchange")[1].split("\n")[0], option


def test_a_run_whose_reader_goes_away_still_finishes_in_order(tmp_path: Path) -> None:
    """``run | head -1``: the closed pipe silences the console, never ends the run."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--duration", "2",
                             "--control", "off", "--out", str(out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as head does
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Tradewarden run" in first
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["invariant_violations"] == []
