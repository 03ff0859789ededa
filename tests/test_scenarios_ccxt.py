"""Every scenario file through the real ccxt library and the Binance face on loopback.

The same files as tests/test_scenarios.py, run with ``venue="binanceusdm"``
(``main.py scenario --venue binanceusdm``): the runtime trades through
``CcxtVenueAdapter`` and unmodified ccxt, over HTTP and WebSockets, against the
Binance-compatible face of the same simulated engine, on the scenario's
virtual clock (app.scenario_venue, exchange.virtual_wire). Each run must hold
its own ``expect`` block and every invariant checked from the face's
``events.jsonl``, with the runtime's positions compared to the venue's as read
through ccxt; crash/restart scenarios (the venue keeps working while the
runtime is down) and the stream drop scenario included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.scenario_runner import run_scenario
from app.summary import comparable
from main import main as cli

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.yaml"))
VENUE = "binanceusdm"
#: scenario files that cannot mean the same thing through a real venue, with the
#: reason (a named skip, never a silent one). Empty: every file involves the
#: exchange only through what the venue protocol carries (quotes and bars are
#: the venue's market data, ``exchange:`` entries are the simulated engine's
#: faults, which the face applies as the embedded venue does).
NOT_THROUGH_A_VENUE: dict[str, str] = {}
#: scenarios that must be among the files, so the ccxt path never quietly
#: loses its crash/resume and stream-fault coverage
MUST_RUN = {"crash_after_fill", "crash_before_fill_report", "crash_twice_during_recovery",
            "stop_fills_while_runtime_down", "group_resumed_after_crash",
            "missing_positions_fail_closed"}


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
            if line.strip()]


def test_the_crash_and_stream_fault_scenarios_are_among_the_files() -> None:
    stems = {p.stem for p in FILES}
    assert MUST_RUN <= stems, MUST_RUN - stems
    assert not MUST_RUN & set(NOT_THROUGH_A_VENUE)
    assert set(NOT_THROUGH_A_VENUE) <= stems, "a skip names a file that is gone"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_file_passes_through_ccxt(path: Path, tmp_path: Path) -> None:
    if path.stem in NOT_THROUGH_A_VENUE:
        pytest.skip(f"not through a venue: {NOT_THROUGH_A_VENUE[path.stem]}")
    result = run_scenario(path, tmp_path, venue=VENUE)
    s = result.summary
    assert s["invariant_violations"] == [], s["invariant_violations"]
    assert s["expect"]["passed"], s["expect"]["failures"]
    assert "positions_match" not in (s.get("not_run") or {}), s.get("not_run")
    assert s["exchange_positions"] is not None, "the venue's positions were read through ccxt"
    events = _events(result.run_dir)
    paths = {e.get("path") for e in events if e["kind"] == "client_connected"}
    assert "/private/ws" in paths, "the runtime's user-data stream was ccxt's, at the face"
    if s.get("crashes"):
        sessions = [e for e in events
                    if e["kind"] == "client_connected" and e.get("path") == "/private/ws"]
        assert len(sessions) > s["crashes"], "each restarted runtime reconnected through ccxt"


def test_a_stream_drop_reaches_ccxt_and_the_runtime_reconnects(tmp_path: Path) -> None:
    """The drop is the face's: ccxt's sockets are aborted, the adapter reports the
    stream down, the reconnect controller reconnects through ccxt (virtual backoff)."""
    result = run_scenario(SCENARIOS / "missing_positions_fail_closed.yaml", tmp_path, venue=VENUE)
    events = _events(result.run_dir)
    kinds = [e["kind"] for e in events]
    dropped = kinds.index("stream_dropped")
    assert "client_disconnected" in kinds[dropped:]
    reconnected = [e for e in events[dropped:] if e["kind"] == "client_connected"
                   and e.get("path") == "/private/ws"]
    assert reconnected and reconnected[0]["t"] > events[dropped]["t"], \
        "reconnected after the controller's (virtual) backoff"
    assert result.summary["risk"]["rejected"].get("positions_unavailable") == 1


def test_a_stall_holds_the_frames_until_virtual_time_ends_it(tmp_path: Path) -> None:
    """A stall (no scenario file has one) through ccxt: the fill report is held
    by the face while virtual time moves on to the stall's end, then delivered.
    At 3 s the buy is still pending for the runtime (its fill held), so the
    reduce-only sell is a netting conflict, on both paths; without the stall
    it would pass."""
    text = """\
        name: a stalled stream delays the fill report
        seed: 4
        exchange: {latency_ms: 5}
        symbols: [BTCUSDT]
        timeline:
          - at: 0s
            quote: {symbol: BTCUSDT, bid: "100.0", ask: "100.1"}
          - at: 1s
            exchange: {stall_stream: 3}
          - at: 1.5s
            signal: {symbol: BTCUSDT, side: buy, qty: "4"}
          - at: 3s
            signal: {symbol: BTCUSDT, side: sell, qty: "4", reduce_only: true}
          - at: 8s
            end: true
        expect:
          positions: {BTCUSDT: "4"}
          risk_rejected: {netting_conflict: 1}
          exchange_positions: {BTCUSDT: "4"}
          no_invariant_violations: true
        """
    import textwrap

    path = tmp_path / "stall.yaml"
    path.write_text(textwrap.dedent(text))
    native = run_scenario(path, tmp_path / "native")
    venue = run_scenario(path, tmp_path / "venue", venue=VENUE)
    for r in (native, venue):
        assert r.summary["expect"]["passed"], r.summary["expect"]["failures"]
        assert r.summary["invariant_violations"] == []
    assert venue.summary["positions"] == native.summary["positions"]


def _numbers(value: object) -> object:
    """Numbers as values: "0" and "0.00" are one (a figure of one virtual instant
    can be computed before or after a quote of the same instant, see README)."""
    from decimal import Decimal, InvalidOperation

    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return Decimal(value).normalize()
        except InvalidOperation:
            return value
    return value


def test_the_ccxt_path_is_repeatable(tmp_path: Path) -> None:
    """Same file twice through ccxt: the same summary apart from times and ids."""
    path = SCENARIOS / "crash_after_fill.yaml"
    a = run_scenario(path, tmp_path / "a", venue=VENUE).summary
    b = run_scenario(path, tmp_path / "b", venue=VENUE).summary
    assert _numbers(comparable(a)) == _numbers(comparable(b))


def test_cli_switch_runs_a_scenario_through_ccxt(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert cli(["scenario", "--venue", VENUE, str(SCENARIOS / "unknown_symbol_rejected.yaml"),
                "--out", str(out)]) == 0
    events = _events(out / "unknown_symbol_rejected")
    assert any(e.get("path") == "/private/ws" for e in events)
    assert "1/1 scenarios passed" in capsys.readouterr().out


def test_an_unknown_scenario_venue_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["scenario", "--venue", "kraken", str(SCENARIOS / "unknown_symbol_rejected.yaml")])
    assert exc.value.code == 2
