"""Each safety invariant fires on hand-made records that break its rule and
stays quiet on good ones (app/invariants.py, DESIGN section 5).

The records have the shapes the checks read in a real run: exchange events as
``exchange.events_log`` writes them, audit records as ``trading.audit`` writes
them, dead letters as ``DeadLetters.snapshot()`` lists them.
"""

from __future__ import annotations

from decimal import Decimal as D
from itertools import count

import pytest

from app import invariants as inv

_seq = count(1)


def ev(kind: str, coid: str | None = None, **kw) -> dict:
    rec = {"seq": next(_seq), "t": "2026-01-05T14:30:00+00:00", "kind": kind,
           "client_order_id": coid, "symbol": kw.pop("symbol", "BTCUSDT"), "side": None,
           "qty": None, "price": None, "fill_id": None}
    rec.update(kw)
    return rec


def fill(coid: str, side: str, qty: str, fill_id: str, **kw) -> dict:
    return ev("order_filled", coid, side=side, qty=qty, price="100", fill_id=fill_id, **kw)


def decision(coid: str | None, approved: bool = True, *, reducing: bool = False,
             reason: str | None = None, **inputs) -> dict:
    base = {"symbol": "BTCUSDT", "side": "buy", "qty": "1", "trading_state": "ACTIVE",
            "positions_fresh": True}
    base.update(inputs)
    return {"schema_version": 1, "event_id": f"e-{next(_seq)}", "kind": "risk_decision",
            "reason": reason or ("approved" if approved else "max_order_size"),
            "approved": approved, "client_order_id": coid, "risk_reducing": reducing,
            "inputs": base}


def kill(on: bool) -> dict:
    return {"kind": "kill_switch", "reason": "engaged" if on else "released", "inputs": {}}


def rules(found: list[dict]) -> list[str]:
    return [v["rule"] for v in found]


# -- rule 1: single door ---------------------------------------------------------------------


def test_single_door_quiet_when_every_order_was_approved_once() -> None:
    events = [ev("order_submitted", "a-1"), ev("order_acked", "a-1"), ev("order_submitted", "a-2")]
    audit = [decision("a-1"), decision(None, approved=False), decision("a-2"), kill(True)]
    assert inv.single_door(events, audit) == []


def test_single_door_fires_on_an_order_that_bypassed_the_gate() -> None:
    events = [ev("order_submitted", "a-1"), ev("order_submitted", "rogue")]
    found = inv.single_door(events, [decision("a-1")])
    assert rules(found) == ["single_door"] and found[0]["client_order_id"] == "rogue"


def test_single_door_does_not_count_a_rejected_decision_as_approval() -> None:
    events = [ev("order_submitted", "a-1")]
    found = inv.single_door(events, [decision("a-1", approved=False)])
    assert [v["client_order_id"] for v in found] == ["a-1"]


def test_single_door_fires_on_an_id_approved_twice() -> None:
    events = [ev("order_submitted", "a-1")]
    found = inv.single_door(events, [decision("a-1"), decision("a-1")])
    assert rules(found) == ["single_door"] and "approved 2 times" in found[0]["detail"]


# -- rule 2: netting -------------------------------------------------------------------------------


def test_netting_quiet_through_flat() -> None:
    events = [fill("o1", "buy", "10", "f1"), fill("o2", "sell", "10", "f2"),
              fill("o3", "sell", "4", "f3"), fill("o4", "buy", "4", "f4")]
    assert inv.netting(events) == []


def test_netting_fires_when_a_fill_flips_the_position() -> None:
    events = [fill("o1", "buy", "10", "f1"), fill("o2", "sell", "15", "f2")]
    found = inv.netting(events)
    assert rules(found) == ["netting"] and found[0]["symbol"] == "BTCUSDT"
    assert "from 10 to -5" in found[0]["detail"]


def test_netting_keeps_accounts_and_symbols_apart() -> None:
    # Merged into one book, each of the two sells would cross +10 to -5.
    events = [fill("o1", "buy", "10", "f1"), fill("o2", "sell", "15", "f2", symbol="ETHUSDT"),
              fill("o3", "sell", "15", "f3", account="other")]
    assert inv.netting(events) == []


def test_netting_allows_both_sides_for_a_hedging_account_only() -> None:
    events = [fill("o1", "buy", "10", "f1", account="hedge"),
              fill("o2", "sell", "15", "f2", account="hedge")]
    assert inv.netting(events, hedging_accounts=frozenset({"hedge"})) == []
    assert rules(inv.netting(events)) == ["netting"]


def test_netting_replays_from_the_positions_the_record_starts_at() -> None:
    """A run on an exchange that outlives runs starts where the last one left."""
    start = {("default", "BTCUSDT"): D("5")}
    held = [fill("o1", "sell", "3", "f1"), fill("o2", "buy", "4", "f2")]  # +5 -> +2 -> +6
    assert inv.netting(held, start=start) == []
    assert rules(inv.netting(held)) == ["netting"], "from flat this looks like -3 -> +1"
    flip = [fill("o3", "sell", "8", "f3")]  # +5 -> -3: a real flip
    found = inv.netting(flip, start=start)
    assert rules(found) == ["netting"] and "from 5 to -3" in found[0]["detail"]
    assert inv.netting(flip) == [], "from flat the flip goes unseen"


def test_netting_counts_a_replayed_fill_id_once() -> None:
    # Counted twice, the replay of f2 would take +4 to -2 (both sides).
    events = [fill("o1", "buy", "10", "f1"), fill("o2", "sell", "6", "f2"),
              fill("o2", "sell", "6", "f2")]
    assert inv.netting(events) == []
    events.append(fill("o3", "sell", "6", "f3"))  # a real fill does flip it
    assert rules(inv.netting(events)) == ["netting"]


# -- rule 15: unique acks ------------------------------------------------------------------------


def test_unique_orders_quiet_when_a_duplicate_resubmission_is_rejected() -> None:
    events = [ev("order_submitted", "a-1"), ev("order_acked", "a-1"), ev("order_submitted", "a-1"),
              ev("order_rejected", "a-1", reason="duplicate_client_order_id: ..."),
              ev("order_acked", "a-2")]
    assert inv.unique_orders(events) == []


def test_unique_orders_fires_on_an_id_accepted_twice() -> None:
    events = [ev("order_acked", "a-1"), ev("order_acked", "a-2"), ev("order_acked", "a-1")]
    found = inv.unique_orders(events)
    assert rules(found) == ["unique_client_order_ids"] and found[0]["client_order_id"] == "a-1"


# -- positions -------------------------------------------------------------------------------------


def test_positions_match_quiet_on_equal_values_in_any_spelling() -> None:
    ours = {"BTCUSDT": "10", "ETHUSDT": "0", "SOLUSDT": D("-2.50")}
    broker = {"BTCUSDT": D("10.0"), "SOLUSDT": "-2.5"}
    assert inv.positions_match(ours, broker) == []


def test_positions_match_fires_per_symbol_that_differs() -> None:
    found = inv.positions_match({"BTCUSDT": "10", "ETHUSDT": "1"}, {"BTCUSDT": "9", "XRPUSDT": "3"})
    assert rules(found) == ["positions_match"] * 3
    assert [v["symbol"] for v in found] == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]


# -- rules 3 and 5 from the audit trail ------------------------------------------------------------


def test_gate_respected_quiet_on_a_clean_trail() -> None:
    audit = [decision("a-1"), kill(True), decision(None, approved=False, reason="kill_switch",
                                                   trading_state="HALTED"),
             decision("a-2", reducing=True, trading_state="HALTED"),  # exits pass while halted
             kill(False), decision("a-3"),
             decision(None, approved=False, reason="positions_unavailable", positions_fresh=False),
             decision("a-4", reducing=True, positions_fresh=False)]
    assert inv.gate_respected(audit) == []


def test_gate_respected_fires_on_an_entry_approved_after_the_kill_switch() -> None:
    audit = [decision("a-1"), kill(True), decision("a-2"), kill(False), decision("a-3")]
    found = inv.gate_respected(audit)
    assert [(v["rule"], v["client_order_id"]) for v in found] == [("kill_switch", "a-2")]


def test_gate_respected_fires_on_an_entry_approved_in_a_halted_state() -> None:
    found = inv.gate_respected([decision("a-1", trading_state="HALTED")])
    assert rules(found) == ["kill_switch"]


def test_gate_respected_fires_on_an_entry_approved_without_fresh_positions() -> None:
    audit = [decision("a-1", positions_fresh=False)]
    found = inv.gate_respected(audit)
    assert [(v["rule"], v["client_order_id"]) for v in found] == [("fail_closed", "a-1")]
    assert inv.gate_respected(audit, fail_closed=False) == []  # the explicit opt-out


# -- rule 6: leg order within a group ---------------------------------------------------------


def group_submitted(gid: str, *legs: tuple[str, str, str, int]) -> dict:
    """The group's ``submitted`` record: legs as (symbol, side, role, priority)."""
    return {"kind": "group_decision", "reason": "submitted", "state": "pending",
            "approved": None, "group_id": gid,
            "inputs": {"group_id": gid, "kind": "custom", "legs": [
                {"symbol": sym, "side": side, "qty": "10", "role": role, "priority": prio}
                for sym, side, role, prio in legs]}}


def leg_decision(coid: str, gid: str, leg: int, symbol: str, side: str,
                 kind: str = "leg") -> dict:
    rec = decision(coid, symbol=symbol, side=side,
                   purpose="rollback" if kind == "unwind" else "entry")
    rec["tag"] = f"{gid}|{leg + 2}|{kind}|{leg}|{side}|10"
    return rec


def sub(coid: str, symbol: str, side: str, group_id: str | None = None) -> dict:
    return ev("order_submitted", coid, symbol=symbol, side=side, qty="10", group_id=group_id)


PUT95, PUT100 = "SPY-20260220-P-95", "SPY-20260220-P-100"
SPREAD = ("bp", (PUT95, "buy", "protective", 0), (PUT100, "sell", "covered_short", 2))


def test_group_leg_order_quiet_when_protection_goes_first_and_unwinds_reverse() -> None:
    audit = [group_submitted(*SPREAD), leg_decision("g-1", "bp", 1, PUT95, "buy"),
             leg_decision("g-2", "bp", 0, PUT100, "sell"),
             leg_decision("g-3", "bp", 0, PUT100, "buy", kind="unwind"),
             leg_decision("g-4", "bp", 1, PUT95, "sell", kind="unwind"),
             group_submitted("pair", ("AAA", "buy", "long", 1), ("BBB", "sell", "short", 3)),
             leg_decision("p-1", "pair", 1, "AAA", "buy"),
             leg_decision("p-2", "pair", 0, "BBB", "sell")]
    events = [sub("g-1", PUT95, "buy", "bp"), sub("g-2", PUT100, "sell", "bp"),
              # the short is bought back before its protection is sold: unwinds are not judged
              sub("g-3", PUT100, "buy", "bp"), sub("g-4", PUT95, "sell", "bp"),
              sub("g-2", PUT100, "sell", "bp"),      # a resubmission after a crash: seen once
              sub("p-1", "AAA", "buy"), sub("p-2", "BBB", "sell"),   # no group_id: tags join
              sub("x-1", PUT100, "sell")]            # an order of no group
    assert inv.group_leg_order(events, audit) == []


def test_group_leg_order_fires_when_the_short_reaches_the_exchange_first() -> None:
    audit = [group_submitted(*SPREAD), leg_decision("g-1", "bp", 1, PUT95, "buy"),
             leg_decision("g-2", "bp", 0, PUT100, "sell")]
    found = inv.group_leg_order([sub("g-2", PUT100, "sell", "bp"),
                                 sub("g-1", PUT95, "buy", "bp")], audit)
    assert rules(found) == ["group_leg_order"]
    assert found[0]["group_id"] == "bp" and found[0]["client_order_id"] == "g-2"
    assert PUT95 in found[0]["detail"] and "protective" in found[0]["detail"]


def test_group_leg_order_fires_on_a_naked_short_whose_long_leg_never_went_out() -> None:
    audit = [group_submitted("pair", ("AAA", "buy", "long", 1), ("BBB", "sell", "short", 3)),
             leg_decision("p-2", "pair", 0, "BBB", "sell")]
    found = inv.group_leg_order([sub("p-2", "BBB", "sell", "pair")], audit)
    assert rules(found) == ["group_leg_order"] and "AAA (long)" in found[0]["detail"]


# -- dead letters ------------------------------------------------------------------------------


def dead(type_: str, reason: str, target: str = "gateway") -> dict:
    return {"at": 0.0, "target": target, "type": type_, "reason": reason, "summary": "..."}


def test_no_lost_orders_quiet_on_shutdown_leftovers_and_market_data() -> None:
    letters = [dead("Durable", "shutdown", "coordinator"), dead("Quote", "no such actor"),
               dead("dict", "unhandled", "coordinator")]
    assert inv.no_lost_orders(letters) == []


@pytest.mark.parametrize("type_", ["SubmitOrder", "OrderFilled", "Signal", "Put", "CancelOrder"])
def test_no_lost_orders_fires_on_order_flow_dropped_before_shutdown(type_: str) -> None:
    found = inv.no_lost_orders([dead(type_, "no such actor")])
    assert rules(found) == ["order_flow_dead_letter"] and found[0]["to"] == "gateway"


# -- all together ------------------------------------------------------------------------------


def test_check_all_gathers_every_rule_and_can_skip_the_position_comparison() -> None:
    events = [ev("order_submitted", "a-1"), ev("order_acked", "a-1"), ev("order_acked", "a-1"),
              fill("a-1", "buy", "10", "f1"), fill("x", "sell", "15", "f2"),
              ev("order_submitted", "rogue"), sub("p-2", "BBB", "sell", "pair")]
    audit = [kill(True), decision("a-1"), decision("p-2", symbol="BBB", side="sell"),
             group_submitted("pair", ("AAA", "buy", "long", 1), ("BBB", "sell", "short", 3))]
    kw = dict(events=events, audit=audit, positions={"BTCUSDT": "-5"}, hedging_accounts=frozenset(),
              fail_closed=True, dead_letters=[dead("SubmitOrder", "unhandled")])
    found = inv.check_all(exchange_positions={"BTCUSDT": "0"}, **kw)
    assert sorted(set(rules(found))) == ["group_leg_order", "kill_switch", "netting",
                                         "order_flow_dead_letter", "positions_match",
                                         "single_door", "unique_client_order_ids"]
    skipped = inv.check_all(exchange_positions=None, **kw)
    assert "positions_match" not in rules(skipped)
    good = inv.check_all(events=[ev("order_submitted", "a-1"), ev("order_acked", "a-1"),
                                 fill("a-1", "buy", "10", "f1")],
                         audit=[decision("a-1")], positions={"BTCUSDT": "10"},
                         exchange_positions={"BTCUSDT": "10"}, hedging_accounts=frozenset(),
                         fail_closed=True, dead_letters=[])
    assert good == []
