"""Every scenario under tests/scenarios/ runs, holds its expect block and every
invariant; the runner is deterministic; a crash/restart recovers from the store;
the command line exits non-zero when a scenario fails (DESIGN section 9)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from main import main as cli
from config import ConfigError
from app.scenario_runner import run_scenario
from app.summary import comparable

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_file_passes(path: Path, tmp_path: Path) -> None:
    result = run_scenario(path, tmp_path)
    s = result.summary
    assert s["invariant_violations"] == [], s["invariant_violations"]
    assert s["expect"]["passed"], s["expect"]["failures"]
    on_disk = json.loads((result.run_dir / "summary.json").read_text())
    assert on_disk["expect"] == s["expect"]
    for name in ("summary.json", "events.jsonl", "audit.jsonl", "store"):
        assert (result.run_dir / name).exists(), name


REQUIRED_SUMMARY_KEYS = {"schema_version", "run_id", "started_at", "ended_at", "market_events",
                         "signals", "orders", "risk", "hedges", "stop_exits", "positions",
                         "exchange_positions", "restarts", "invariant_violations", "pnl", "expect"}


def test_same_scenario_twice_gives_the_same_summary(tmp_path: Path) -> None:
    path = SCENARIOS / "circuit_breaker_trip.yaml"
    a = run_scenario(path, tmp_path / "a").summary
    b = run_scenario(path, tmp_path / "b").summary
    assert REQUIRED_SUMMARY_KEYS <= set(a)
    assert set(a["orders"]) == {"submitted", "filled", "partially_filled", "canceled", "rejected"}
    assert set(a["stop_exits"]) == {"limit", "market_fallback"}
    assert set(a["pnl"]) == {"realized", "unrealized"}
    assert comparable(a) == comparable(b)


def _write(tmp_path: Path, text: str, name: str = "sc.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_failed_expectation_is_reported_and_exit_code_is_non_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        name: wrong on purpose
        seed: 1
        symbols: [BTCUSDT]
        timeline:
          - at: 0s
            quote: {symbol: BTCUSDT, bid: "100.0", ask: "100.1"}
          - at: 1s
            signal: {symbol: BTCUSDT, side: buy, qty: "3"}
          - at: 2s
            end: true
        expect:
          positions: {BTCUSDT: "4"}
          risk_approved: 2
        """)
    result = run_scenario(path, tmp_path / "out")
    assert not result.passed
    assert result.summary["expect"]["failures"] == [
        "positions.BTCUSDT: expected 4, got 3", "risk_approved: expected 2, got 1"]
    assert cli(["scenario", str(path), "--out", str(tmp_path / "cli")]) == 1


def test_every_scenario_directory_holds_its_own_run_log(tmp_path: Path) -> None:
    """DESIGN section 8: every run directory holds the run log, scenario runs too
    (the command's combined run.log stays beside them)."""
    stems = ("unknown_symbol_rejected", "rate_limit_burst")
    out = tmp_path / "out"
    assert cli(["scenario", *(str(SCENARIOS / f"{n}.yaml") for n in stems),
                "--out", str(out)]) == 0
    names = [json.loads((out / n / "summary.json").read_text())["scenario"] for n in stems]
    for stem, name, other in zip(stems, names, names[::-1], strict=True):
        log = (out / stem / "run.log").read_text()
        assert f"scenario {name} (" in log and "expect passed" in log, stem
        assert f"scenario {other} (" not in log, f"{stem}'s run log has the other scenario"
    combined = (out / "run.log").read_text()
    assert all(f"scenario {n} (" in combined for n in names)


def test_malformed_scenario_names_file_line_and_key(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, """\
        name: typo
        seed: 1
        symbols: [BTCUSDT]
        timeline:
          - at: 0s
            quote: {symbol: BTCUSDT, bid: "100.0", ask: "100.1", colour: red}
        """)
    assert cli(["scenario", str(path), "--out", str(tmp_path / "out")]) == 2  # bad input
    out = capsys.readouterr().out
    assert "sc.yaml:6" in out and "colour" in out


def test_a_missing_scenario_file_is_bad_input_not_a_failed_expectation(
        tmp_path: Path, capsys) -> None:
    """DESIGN section 8: 2 for a bad input file, 1 only for a check that ran and failed."""
    missing = tmp_path / "nope.yaml"
    assert cli(["scenario", str(SCENARIOS / "rate_limit_burst.yaml"), str(missing),
                "--out", str(tmp_path / "out")]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing runs when an input is missing"


def test_crash_and_restart_recover_from_the_store(tmp_path: Path) -> None:
    """The runtime dies after a fill; the restarted one rebuilds its position
    from the store and the broker, and an exit closes exactly that position."""
    path = _write(tmp_path, """\
        name: crash after a fill
        seed: 9
        symbols: [BTCUSDT]
        timeline:
          - at: 0s
            quote: {symbol: BTCUSDT, bid: "100.0", ask: "100.1"}
          - at: 1s
            signal: {symbol: BTCUSDT, side: buy, qty: "7"}
          - at: 2s
            crash: true
          - at: 3s
            restart: true
          - at: 4s
            quote: {symbol: BTCUSDT, bid: "100.2", ask: "100.3"}
          - at: 5s
            signal: {symbol: BTCUSDT, side: sell, qty: "7", reduce_only: true}
          - at: 6s
            end: true
        expect:
          positions: {BTCUSDT: "0"}
          exchange_positions: {BTCUSDT: "0"}
          risk_approved: 2
          orders: {submitted: 2, filled: 2}
          no_invariant_violations: true
        """)
    result = run_scenario(path, tmp_path / "out")
    assert result.summary["crashes"] == 1
    assert result.passed, (result.summary["expect"], result.summary["invariant_violations"])


def test_crash_without_restart_is_refused_at_load(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        name: no restart
        seed: 1
        symbols: [BTCUSDT]
        timeline:
          - at: 1s
            crash: true
          - at: 2s
            signal: {symbol: BTCUSDT, side: buy, qty: "1"}
        """)
    with pytest.raises(ConfigError, match=r"sc\.yaml:5: timeline\[0\]\.crash: crash without a later restart"):
        run_scenario(path, tmp_path / "out")


def _threads_while_running(tmp_path: Path, n_symbols: int) -> tuple[int, int, int]:
    """(threads the runtime added, long-lived actors it runs, threaded ones among
    them) at ``n_symbols``."""
    import threading

    from config import config_hash, load_config
    from exchange.synthetic import make_symbols
    from runtime.clock import EPOCH_DEFAULT, VirtualClock
    from app.launcher import LaunchSpec, Runtime

    cfg = load_config(overrides={"strategy": {"name": "none"}})
    before = threading.active_count()
    rt = Runtime(LaunchSpec(cfg, tmp_path / f"n{n_symbols}", tuple(make_symbols(n_symbols)),
                            VirtualClock(EPOCH_DEFAULT), run_id="threads",
                            config_hash=config_hash(cfg))).start()
    try:
        rt.system.advance(2.0)
        added = threading.active_count() - before
        running = [c for c in rt.system.directory.cells() if c.state == "running"]
        threaded = sum(1 for c in running if c.execution == "threaded")
    finally:
        rt.stop()
    return added, len(running), threaded


def test_threads_grow_only_with_long_lived_actors(tmp_path: Path) -> None:
    """Rule 13: symbol actors are pooled, so going from 5 to 20 symbols adds
    15 actors and no thread; the threads are the threaded actors' plus a
    constant (dispatcher workers, executor workers, timers)."""
    added5, actors5, threaded5 = _threads_while_running(tmp_path, 5)
    added20, actors20, threaded20 = _threads_while_running(tmp_path, 20)
    assert actors20 - actors5 == 15
    assert threaded20 == threaded5
    assert added20 == added5, "pooled symbol actors must not add threads"
    assert added5 - threaded5 <= 5, "dispatcher and executor workers plus a small constant"


def test_the_exchange_works_while_the_runtime_is_down(tmp_path: Path) -> None:
    """Quotes between crash and restart reach the exchange: the resting stop fills
    while nobody is connected, and the restarted runtime books that fill once."""
    from exchange.events_log import read_events

    result = run_scenario(SCENARIOS / "stop_fills_while_runtime_down.yaml", tmp_path)
    s = result.summary
    assert s["expect"]["passed"], s["expect"]["failures"]
    assert s["entries_while_down"] == 2
    events = read_events(result.run_dir / "events.jsonl")
    down = next(i for i, e in enumerate(events) if e["kind"] == "client_disconnected")
    back = next(i for i, e in enumerate(events) if e["kind"] == "client_connected" and i > down)
    assert [e["kind"] for e in events[down:back]].count("order_filled") == 1
    assert s["orders"]["filled"] == 2 and s["stop_exits"]["limit"] == 1
