"""Symbol actors on a local Ray instance (DESIGN section 11). Marked ``ray``:
excluded from the default run, run with ``python -m pytest -m ray`` (needs
``pip install -e '.[ray]'``). One Ray instance (2 CPUs, no dashboard, every
socket on loopback) serves the whole module."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

from runtime import ChildSpec  # noqa: E402
from runtime.ray_placement import RayPlacement, RayUnavailable  # noqa: E402
from runtime.testing import VirtualHarness  # noqa: E402
from tests.remote_actors import Doubler, Ping, Sink  # noqa: E402
from tests.test_remote import _audit_story  # noqa: E402

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture(scope="module")
def placement():
    try:
        pl = RayPlacement("auto", processes=2, num_cpus=2)
    except RayUnavailable as exc:  # a machine where Ray cannot start: said, not hidden
        pytest.skip(f"no local Ray instance here: {exc}")
    yield pl
    pl.close()


def doubler_on(placement):
    return VirtualHarness(ChildSpec("sink", Sink), ChildSpec("doubler", Doubler, execution="remote"),
                          placement=placement).start()


def test_a_ray_hosted_actor_answers_in_order_and_reports_its_node(placement):
    h = doubler_on(placement)
    try:
        for i in range(200):
            h.system.tell("doubler", Ping(i))
        h.settle(60)
        assert [p.n for p in h.actor("sink").got] == [2 * i for i in range(200)]
        node = h.cell("doubler").info["remote"]["node"]
        assert node["placement"] == "ray" and node["pid"] != os.getpid() and node["node_id"]
    finally:
        h.system.shutdown()


def test_killing_a_ray_host_process_restarts_the_actor_with_nothing_lost_or_doubled(placement):
    h = doubler_on(placement)
    try:
        for i in range(50):
            h.system.tell("doubler", Ping(i))
        h.settle(60)
        pid = h.cell("doubler").info["remote"]["node"]["pid"]
        os.kill(pid, signal.SIGKILL)              # the worker process dies mid-run
        for i in range(50, 80):
            h.system.tell("doubler", Ping(i))
        h.settle(120)
        h.advance(10)                             # the supervisor's restart backoff
        h.settle(120)
        got = h.actor("sink").got
        assert [p.n for p in got] == [2 * i for i in range(80)]   # no loss, no double
        assert h.cell("doubler").restarts == 1
        assert {p.by for p in got[50:]} == {2}
        assert h.cell("doubler").info["remote"]["node"]["pid"] != pid
    finally:
        h.system.shutdown()


@pytest.mark.parametrize("scenario", ["twenty_symbols.yaml", "crash_after_fill.yaml"])
def test_a_scenario_with_symbols_on_ray_matches_the_local_run(tmp_path, placement, scenario,
                                                               monkeypatch):
    """Same positions, exchange positions and audit trail as the local run."""
    from app import launcher
    from app.scenario_runner import run_scenario

    # one Ray instance for the module: each runtime gets it and does not close it
    monkeypatch.setattr(launcher, "make_placement", lambda cfg: placement)
    monkeypatch.setattr(placement, "close", lambda: None)
    ray_cfg = tmp_path / "ray.yaml"
    ray_cfg.write_text("runtime: {placement: {symbols: ray}}\n")
    local = run_scenario(SCENARIOS / scenario, tmp_path / "local")
    on_ray = run_scenario(SCENARIOS / scenario, tmp_path / "ray", config_path=str(ray_cfg))
    assert local.passed and on_ray.passed, on_ray.summary
    for key in ("positions", "exchange_positions", "orders", "risk", "invariant_violations"):
        assert on_ray.summary[key] == local.summary[key], key
    assert _audit_story(on_ray.run_dir) == _audit_story(local.run_dir)


def test_killing_a_symbol_actors_ray_worker_mid_run_loses_and_doubles_no_order(
        tmp_path, placement, monkeypatch):
    """The whole runtime with its symbol actors (and their strategy) on Ray:
    the host process of one symbol is killed mid-run; its actor restarts,
    the coordinator fails closed for that symbol meanwhile, and the exchange's
    own record shows every approved order exactly once and no invariant broken."""
    import json
    from decimal import Decimal

    from app import launcher
    from app.invariants import check_all
    from tests.virtual_runtime import VirtualRuntime

    monkeypatch.setattr(launcher, "make_placement", lambda cfg: placement)
    monkeypatch.setattr(placement, "close", lambda: None)
    symbols = ("AAAUSDT", "BBBUSDT")
    cfg = {"strategy": {"name": "tests.remote_actors.Flipper", "params": {"every": 3}},
           "runtime": {"placement": {"symbols": "ray"}},
           "risk": {"rate_limit": {"orders_per_s": "1000", "burst": 1000}}}
    with VirtualRuntime(tmp_path / "run", symbols, config=cfg) as vr:
        def quotes(n0: int, n1: int) -> None:
            for i in range(n0, n1):
                for s in symbols:
                    px = 100 + (i % 5) / 10
                    vr.quote(s, f"{px:.2f}", f"{px + 0.02:.2f}")
                vr.at(vr.now + 0.5)
                vr.system.wait_quiescent(60)

        quotes(0, 20)
        victim = vr.rt.system.directory.get("symbol-AAAUSDT")
        pid = victim.info["remote"]["node"]["pid"]
        os.kill(pid, signal.SIGKILL)
        quotes(20, 40)
        vr.at(vr.now + 20)
        vr.system.wait_quiescent(60)
        assert victim.restarts >= 1
        events = vr.events()
        audit = [json.loads(x) for x in (vr.run_dir / "audit.jsonl").read_text().splitlines()]
        positions = {k: Decimal(v) for k, v in vr.info("coordinator")["positions"].items()}
        exchange = {s: vr.exchange_position(s) for s in symbols}
        broken = check_all(events=events, audit=audit, positions=positions,
                           exchange_positions=exchange, hedging_accounts=frozenset(),
                           fail_closed=True, dead_letters=[])
        assert broken == []
        submitted = [e["client_order_id"] for e in events if e["kind"] == "order_submitted"]
        approved = [r["client_order_id"] for r in audit
                    if r["kind"] == "risk_decision" and r["approved"]]
        assert len(submitted) == len(set(submitted)) == len(approved) > 10
        assert sorted(submitted) == sorted(approved)
        kinds = [r["kind"] for r in audit]
        assert "symbol_actor_down" in kinds and "symbol_actor_up" in kinds
