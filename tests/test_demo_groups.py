"""The demo order-group driver (``actors.demo_groups``) in virtual time.

The whole tree as ``run`` builds it (synthetic market, embedded exchange, the
demo pair added with no strategy on it), on a virtual clock: the drill cycle
does what its names say, every step goes through the gate, the pair ends
flat, and two runs of the same seed are the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.demo_groups import drill_faults, last_submitted, pair_sides
from config import config_hash, load_config
from exchange.events_log import read_events
from exchange.synthetic import SyntheticMarket
from runtime.clock import EPOCH_DEFAULT, VirtualClock
from app.invariants import check_all
from app.launcher import LaunchSpec, Runtime, demo_plan
from app.summary import group_figures
from trading.audit import read_audit

PAIR = ("ADAUSDT", "DOTUSDT")


def _run(run_dir: Path, seed: int, seconds: float = 14.0) -> dict[str, Any]:
    cfg = load_config(overrides={"strategy": {"name": "none"}, "market": {"seed": seed},
                                 "demo": {"groups": {"enabled": True, "every_s": 1.0}}})
    symbols, demo = demo_plan(cfg)
    clock = VirtualClock(EPOCH_DEFAULT)
    market = SyntheticMarket(symbols, seed=seed, start=EPOCH_DEFAULT)
    spec = LaunchSpec(cfg, run_dir, symbols, clock, run_id=run_dir.name,
                      config_hash=config_hash(cfg), seed=seed, market=market,
                      market_duration_s=seconds, demo_groups=demo)
    rt = Runtime(spec).start()
    try:
        rt.system.run_until(seconds + 3)  # the last group settles after the feed ends
        coordinator = rt.info("coordinator")
        exchange_positions = rt.exchange_positions()
        driver = rt.info("demo-groups")
    finally:
        rt.stop()
    audit = list(read_audit(run_dir / "audit.jsonl"))
    events = read_events(run_dir / "events.jsonl")
    group_of = {e["client_order_id"]: e["group_id"] for e in events
                if e["kind"] == "order_submitted"}
    return {
        "steps": [(r["group_id"], r["reason"], r["state"]) for r in audit
                  if r["kind"] == "group_decision"],
        "orders": [(e["symbol"], e["side"], e["qty"], group_of.get(e["client_order_id"]),
                    e["kind"]) for e in events
                   if e["kind"] in ("order_submitted", "order_rejected", "order_filled")],
        "hedges": [r["inputs"]["symbol"] for r in audit if r["kind"] == "risk_decision"
                   and r["approved"] and r["inputs"]["purpose"] == "hedge"],
        "groups": group_figures(audit),
        "positions": {s: coordinator["positions"].get(s, "0") for s in PAIR},
        "exchange_positions": {s: str(exchange_positions.get(s, 0)) for s in PAIR},
        "violations": check_all(events=events, audit=audit,
                                positions=coordinator["positions"],
                                exchange_positions=exchange_positions,
                                hedging_accounts=frozenset(), fail_closed=True, dead_letters=[]),
        "driver": driver,
    }


def test_the_drill_cycle_fills_closes_rolls_back_and_hands_over(tmp_path: Path) -> None:
    got = _run(tmp_path / "a", seed=42)
    assert got["violations"] == []
    final = {}
    for gid, reason, state in got["steps"]:
        final[gid] = (reason, state)
    # fill, close, rollback, handoff, then the cycle again
    assert final["demo-1"] == ("filled", "filled")
    assert final["demo-2"] == ("filled", "filled")          # the close of demo-1
    assert final["demo-3"] == ("unwound", "rolled_back")
    assert final["demo-4"] == ("residue_to_hedger", "failed")
    assert final["demo-5"] == ("filled", "filled")
    assert got["groups"]["rejected"] == 0 and got["groups"]["failed"] >= 1
    # the handoff's long leg went to the hedger, which sold it through the gate
    long_sym, _short = pair_sides(42, 4, PAIR)
    assert got["hedges"][0] == long_sym
    # every drill was closed, unwound or hedged: the pair is flat on both sides
    assert got["positions"] == got["exchange_positions"] == {s: "0" for s in PAIR}
    rejected = [(sym, side, gid) for sym, side, _q, gid, kind in got["orders"]
                if kind == "order_rejected"]
    assert rejected[:4] == [(pair_sides(42, 3, PAIR)[1], "sell", "demo-3"),
                            (pair_sides(42, 4, PAIR)[1], "sell", "demo-4"),
                            (long_sym, "sell", "demo-4"), (long_sym, "sell", "demo-4")]
    assert got["driver"]["counts"]["drill_handoff"] >= 1


def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a", seed=7), _run(tmp_path / "b", seed=7)
    for key in ("steps", "orders", "hedges", "groups"):
        assert a[key] == b[key], key
    assert a["violations"] == []


def test_pair_sides_and_faults_are_fixed_by_the_seed() -> None:
    sides = [pair_sides(42, n, PAIR) for n in range(1, 21)]
    assert sides == [pair_sides(42, n, PAIR) for n in range(1, 21)]
    assert {s[0] for s in sides} == set(PAIR), "both symbols get to be the long leg"
    assert sides != [pair_sides(43, n, PAIR) for n in range(1, 21)]
    assert drill_faults("fill", "demo-1", "A", "B", 2) == []
    assert drill_faults("rollback", "demo-1", "A", "B", 2) == [
        {"group_id": "demo-1", "symbol": "B", "side": "sell", "count": 1}]
    assert drill_faults("handoff", "demo-1", "A", "B", 2)[1] == {
        "group_id": "demo-1", "symbol": "A", "side": "sell", "count": 2}


def test_a_restarted_driver_continues_after_the_last_group_in_the_store() -> None:
    snapshot = {"groups": {"group|demo-3": {}, "group|demo-12": {}, "group|demo-x": {},
                           "group|other-40": {}}, "meta": {"group|demo-99": {}}}
    assert last_submitted(snapshot, 5, "demo-5") == (12, "demo-12")
    assert last_submitted(snapshot, 20, "demo-20") == (20, "demo-20")  # the counter is ahead
    assert last_submitted({}, 0, None) == (0, None)
