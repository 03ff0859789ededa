"""Named scenario crash points (``app.crash_points``).

``tests/scenarios/crash_after_{intent,submit,fill}.yaml`` hold the safety
expectations (positions equal the exchange's, no invariant broken, no client
order id accepted twice) and run with every other scenario. These tests pin
down the mechanism itself: that the runtime dies exactly at the point, which
recovery path the restart takes from there (read from the audit trail and
the exchange's own events.jsonl), and how a scenario that names a point
wrongly or never reaches it is treated.
"""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path

import pytest

from config import ConfigError
from config.scenario_schema import CRASH_POINTS, CrashSpec
from exchange.events_log import read_events
from app.crash_points import POINTS, SERVICE, CrashPoints
from app.scenario_file import load_scenario
from app.scenario_runner import ScenarioError, ScenarioRun, run_scenario
from trading.audit import read_audit

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def _run(name: str, tmp_path: Path) -> tuple[dict, list[dict], list[dict]]:
    result = run_scenario(SCENARIOS / f"{name}.yaml", tmp_path)
    assert result.passed, (result.summary["expect"], result.summary["invariant_violations"])
    events = [e for e in read_events(result.run_dir / "events.jsonl")
              if e["kind"].startswith("order")]
    return result.summary, events, list(read_audit(result.run_dir / "audit.jsonl"))


def _kinds(audit: list[dict], coid: str) -> list[str]:
    return [r["kind"] for r in audit if r.get("client_order_id") == coid]


def test_the_schema_and_the_runtime_name_the_same_points() -> None:
    literal = typing.get_args(CrashSpec.model_fields["point"].annotation)[0]
    assert POINTS == CRASH_POINTS == typing.get_args(literal)


def test_after_intent_the_exchange_never_saw_it_and_the_restart_sends_it_once(tmp_path) -> None:
    summary, events, audit = _run("crash_after_intent", tmp_path)
    assert summary["crash_points"] == ["after_intent"] and summary["crashes"] == 1
    first = events[0]["client_order_id"]
    # Nothing reached the exchange before the restart at 3 s: the runtime died
    # with the intent durable and SubmitOrder unsent.
    assert events[0]["kind"] == "order_submitted" and events[0]["t"] >= "2026-01-05T14:30:03"
    assert [e["kind"] for e in events if e["client_order_id"] == first] == [
        "order_submitted", "order_acked", "order_filled"]
    assert _kinds(audit, first) == ["risk_decision", "resubmitted"]


def test_after_submit_the_order_is_found_at_the_exchange_not_sent_again(tmp_path) -> None:
    summary, events, audit = _run("crash_after_submit", tmp_path)
    assert summary["crash_points"] == ["after_submit"]
    first = events[0]["client_order_id"]
    assert events[0]["t"].startswith("2026-01-05T14:30:01")  # sent at the crash instant
    assert sum(1 for e in events if e["kind"] == "order_submitted"
               and e["client_order_id"] == first) == 1
    kinds = _kinds(audit, first)
    assert "resubmitted" not in kinds and "synthesized_fill" in kinds


def test_after_fill_the_missed_partial_fills_are_synthesized_once(tmp_path) -> None:
    summary, events, audit = _run("crash_after_fill", tmp_path)
    assert summary["crash_points"] == ["after_fill"]
    first = events[0]["client_order_id"]
    fills = [e for e in events if e["kind"] == "order_filled" and e["client_order_id"] == first]
    assert len(fills) == 3
    synthesized = [r["inputs"]["fill_id"] for r in audit
                   if r["kind"] == "synthesized_fill" and r["client_order_id"] == first]
    # the first fill was applied live (the crash came right after it); the other two
    # were booked at the exchange while their reports died with the runtime
    assert synthesized == [f["fill_id"] for f in fills[1:]]


def _scenario(tmp_path: Path, timeline: str) -> Path:
    path = tmp_path / "sc.yaml"
    path.write_text(textwrap.dedent("""\
        seed: 1
        symbols: [BTCUSDT]
        timeline:
          - at: 0s
            quote: {symbol: BTCUSDT, bid: "100.0", ask: "100.1"}
        """) + textwrap.indent(textwrap.dedent(timeline), "  "), encoding="utf-8")
    return path


def test_an_unknown_point_is_an_error_with_its_line(tmp_path) -> None:
    path = _scenario(tmp_path, """\
          - at: 1s
            crash: {point: after_lunch}
          - at: 2s
            restart: true
        """)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "sc.yaml:7" in text and "timeline[1].crash.point" in text and "after_intent" in text


UNREACHED = """\
  - at: 1s
    crash: {point: after_fill}
  - at: 3s
    restart: true
  - at: 4s
    end: true
"""


def test_a_point_never_reached_is_an_error_naming_both_lines(tmp_path) -> None:
    sc = load_scenario(_scenario(tmp_path, UNREACHED))
    (tmp_path / "run").mkdir()
    with pytest.raises(ScenarioError, match=r"sc\.yaml:8: .*after_fill armed on line 6 "
                                            r"was never reached"):
        ScenarioRun(sc, tmp_path / "run").run()


def test_a_lenient_run_crashes_at_the_restart_instead(tmp_path) -> None:
    sc = load_scenario(_scenario(tmp_path, UNREACHED))
    (tmp_path / "run").mkdir()
    result = ScenarioRun(sc, tmp_path / "run", strict_crash_points=False).run()
    assert result.passed and result.summary["crashes"] == 1
    assert result.summary["crash_points"] == []


def test_hook_is_inert_unless_armed_and_holds_only_the_armed_point() -> None:
    import threading

    points = CrashPoints()
    assert points("after_fill") is False           # nothing armed: go on
    points.arm("after_submit")
    assert points("after_intent") is False         # another point: go on
    result: list[bool] = []
    held = threading.Thread(target=lambda: result.append(points("after_submit", "x")))
    held.start()
    assert points.reached.wait(5)
    held.join(0.05)
    assert held.is_alive()                         # held at the point until released
    points.release()
    held.join(5)
    assert result == [True] and points.reached_point == "after_submit" and points.detail == "x"
    assert points("after_submit") is False         # one-shot
    with pytest.raises(ValueError):
        points.arm("after_lunch")


def test_production_runtimes_have_no_crash_points(tmp_path) -> None:
    from tests.recovery_life import Life

    lf = Life(tmp_path / "run").start(settle_s=0)
    try:
        assert SERVICE not in lf.system.services
    finally:
        lf.stop()


def test_a_crash_point_run_is_deterministic(tmp_path) -> None:
    from app.summary import comparable

    path = SCENARIOS / "crash_after_submit.yaml"
    a = run_scenario(path, tmp_path / "a").summary
    b = run_scenario(path, tmp_path / "b").summary
    assert comparable(a) == comparable(b)
