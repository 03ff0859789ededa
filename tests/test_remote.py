"""Remote actors (DESIGN sections 2 and 11) through a host on a thread of this
process: every message crosses the codec, the proxy's supervision, ordering,
mail-keeping and virtual time are the same as with a Ray placement (those
tests are in test_ray.py, marked ``ray``)."""

from __future__ import annotations

import pytest

from runtime import ChildSpec
from runtime.remote_placement import ThreadPlacement
from runtime.testing import VirtualHarness
from tests.remote_actors import Doubler, Later, Ping, Sink


def harness(placement=None, **kw):
    placement = placement or ThreadPlacement()
    h = VirtualHarness(ChildSpec("sink", Sink),
                       ChildSpec("doubler", Doubler, execution="remote"),
                       placement=placement, **kw).start()
    return h, placement


def test_a_remote_actor_answers_in_order_through_the_codec():
    h, _ = harness()
    try:
        for i in range(300):
            h.system.tell("doubler", Ping(i))
        h.settle()
        got = h.actor("sink").got
        assert [p.n for p in got] == [2 * i for i in range(300)]
        cell = h.cell("doubler")
        assert cell.execution == "remote" and cell.kind == "Doubler"
        info = h.snapshot()["actors"]
        doubler = next(a for a in info if a["name"] == "doubler")
        assert doubler["execution"] == "remote"
        assert doubler["info"]["seen"] == 300                 # the far side's own figures
        remote = doubler["info"]["remote"]
        assert remote["placement"] == "thread" and remote["node"]["pid"] > 0
        assert remote["batches"] < 300                        # mail waits and goes in batches
    finally:
        h.system.shutdown()


def test_a_handler_that_raises_far_away_is_a_supervised_crash_with_the_mail_kept():
    h, _ = harness()
    try:
        for n in (1, 2, -1, 3, 4):
            h.system.tell("doubler", Ping(n))
        h.settle()
        h.advance(10)  # the restart waits out its backoff
        got = h.actor("sink").got
        assert [p.n for p in got] == [2, 4, 6, 8]
        assert [p.by for p in got] == [1, 1, 2, 2]            # the rest by the new instance
        assert h.cell("doubler").restarts == 1
        dead = [m for m in h.dead_letters.messages() if isinstance(m, Ping)]
        assert dead == [Ping(-1)]
    finally:
        h.system.shutdown()


def test_a_dead_host_is_restarted_and_its_batch_is_delivered_once():
    placement = ThreadPlacement()
    h, _ = harness(placement)
    try:
        h.tell("doubler", Ping(1))
        placement.hosts["doubler"].kill()  # the far process dies
        for n in (2, 3):
            h.system.tell("doubler", Ping(n))
        h.settle()
        h.advance(10)
        got = h.actor("sink").got
        assert [p.n for p in got] == [2, 4, 6]                # nothing lost, nothing doubled
        assert [p.by for p in got] == [1, 2, 2]
        assert h.cell("doubler").restarts == 1
        assert h.cell("doubler").last_failure["error"].startswith("RemoteActorDied")
    finally:
        h.system.shutdown()


def test_far_side_timers_run_on_the_near_clock():
    h, _ = harness()
    try:
        h.tell("doubler", Later(5.0, 7))
        assert h.actor("sink").got == []
        h.advance(4.9)
        assert h.actor("sink").got == []
        h.advance(0.2)
        assert [p.n for p in h.actor("sink").got] == [7]
    finally:
        h.system.shutdown()


def test_remote_needs_a_placement():
    with pytest.raises(Exception, match="needs a placement"):
        VirtualHarness(ChildSpec("doubler", Doubler, execution="remote")).start()


def _audit_story(run_dir):
    """What the audit trail says, without ids and wall-clock stamps."""
    import json

    out = []
    for line in (run_dir / "audit.jsonl").read_text().splitlines():
        r = json.loads(line)
        inputs = r.get("inputs") or {}
        coid = r.get("client_order_id")  # <account>-<store id>-<n>: the store id is random
        out.append((r["kind"], r["reason"], r.get("approved"), coid and coid.rsplit("-", 1)[-1],
                    r["timestamp"], inputs.get("symbol"), inputs.get("side"), inputs.get("qty")))
    return out


@pytest.mark.parametrize("scenario", ["twenty_symbols.yaml", "crash_after_fill.yaml",
                                      "rapid_opposite_signals.yaml"])
def test_a_scenario_with_remote_symbol_actors_matches_the_local_run(tmp_path, scenario):
    """Symbol actors hosted remotely (through the codec, on host threads): the
    same positions, exchange positions and audit trail as the local run."""
    from pathlib import Path

    from app.scenario_runner import run_scenario

    src = Path(__file__).parent / "scenarios" / scenario
    remote_cfg = tmp_path / "remote.yaml"
    remote_cfg.write_text("runtime: {placement: {symbols: thread}}\n")
    local = run_scenario(src, tmp_path / "local")
    remote = run_scenario(src, tmp_path / "remote", config_path=str(remote_cfg))
    assert local.passed and remote.passed, (local.summary, remote.summary)
    for key in ("positions", "exchange_positions", "orders", "risk", "invariant_violations"):
        assert remote.summary[key] == local.summary[key], key
    assert _audit_story(remote.run_dir) == _audit_story(local.run_dir)


def test_inspect_says_where_each_actor_runs():
    from rich.console import Console

    from app.inspect_cli import actors_table

    h, _ = harness()
    try:
        h.tell("doubler", Ping(1))
        console = Console(record=True, width=250)
        console.print(actors_table(h.snapshot()))
        cells = [[c.strip() for c in line.split("│")] for line in console.export_text().splitlines()]
        rows = {c[1]: " ".join(c) for c in cells if len(c) > 2 and c[1] in ("sink", "doubler", "root")}
        assert "pooled (default)" in rows["sink"]
        assert "remote thread" in rows["doubler"] and "pid" in rows["doubler"]
        assert "threaded" in rows["root"]
        doubler = next(a for a in h.snapshot()["actors"] if a["name"] == "doubler")
        assert doubler["processed"] == 1  # mailbox figures count what the far side handled
    finally:
        h.system.shutdown()


def test_a_stop_is_honoured_while_a_batch_hangs_on_a_stuck_host():
    """A host that neither answers nor dies must not hold its actor past a
    supervisor's stop: the batch out is kept (here: a dead letter at shutdown)
    and the system is quiescent again."""
    from tests.remote_actors import HANG, Hang, Hanger

    HANG.clear()
    h = VirtualHarness(ChildSpec("sink", Sink), ChildSpec("hanger", Hanger, execution="remote"),
                       placement=ThreadPlacement()).start()
    try:
        h.system.tell("hanger", Hang(30.0))
        h.system.tell("hanger", Ping(1))
        with pytest.raises(Exception, match="not quiescent"):
            h.settle(0.5)                        # the batch is out: not quiescent
        h.system.tell("root", __import__("runtime.signals", fromlist=["TerminateChild"])
                      .TerminateChild("hanger"))
        h.settle(5)                              # the stop went through, nothing is out
        assert h.system.directory.get("hanger") is None
        kept = {type(m).__name__ for m in h.dead_letters.messages()}
        assert {"Hang", "Ping"} <= kept          # nothing silently dropped
    finally:
        HANG.set()
        h.system.shutdown()
