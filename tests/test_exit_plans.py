"""Exit plans: take-profit, trailing stop and time limit beside the stop-loss,
one contingent group in the stop manager (``actors.stops``).

Through the real tree in virtual time against the in-process exchange, whose
``events.jsonl`` is the truth about what reached the broker. The scenario
files ``tests/scenarios/exit_*.yaml`` and
``crash_between_take_profit_fill_and_stop_cancel.yaml`` run the stories end to
end; these tests pin the mechanisms: the gate's netting with protection,
one-updates-other resizing, the trailing stop's throttle, learning from the
position, and restart safety.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from messages.enums import OrderPurpose, Side
from messages.orders import ExitPlan, Signal
from tests.virtual_runtime import VirtualRuntime
from trading.audit import read_audit
from trading.positions import InFlight, PositionBook

D = Decimal
SYM = "BTCUSDT"
KEY = ("default", "sim", SYM)
CALM = {"risk": {"max_volatility": "1"}}


def _enter(vr: VirtualRuntime, qty: str = "10", **plan: Any) -> None:
    vr.quote(SYM, "100.0", "100.1")
    vr.at(1)
    stop = plan.pop("stop_loss", None)
    vr.tell("coordinator", Signal(SYM, Side.BUY, D(qty), vr.clock.now(),
                                  stop_loss=D(stop) if stop else None,
                                  exits=ExitPlan(**plan) if plan else None))


def _sell(vr: VirtualRuntime, qty: str, reduce_only: bool = True) -> None:
    vr.tell("coordinator", Signal(SYM, Side.SELL, D(qty), vr.clock.now(), reduce_only=reduce_only))


def _plan_audit(vr: VirtualRuntime, reason: str | None = None) -> list[dict]:
    return [r for r in read_audit(vr.run_dir / "audit.jsonl")
            if r["kind"] == "exit_plan" and (reason is None or r["reason"] == reason)]


# -- the gate: protection does not count against the position's own exit ----------------


def _protected_book() -> PositionBook:
    book = PositionBook()
    book.apply_fill("e1", "f1", Side.BUY, D(10), D(100), D(0), KEY)
    book.add_inflight(InFlight("sl", KEY, Side.SELL, D(10), OrderPurpose.STOP, True, owner="stops"))
    book.add_inflight(InFlight("tp", KEY, Side.SELL, D(10), OrderPurpose.STOP, True, owner="stops"))
    return book


def test_a_reducing_exit_passes_beside_the_protection_but_not_twice() -> None:
    book = _protected_book()
    assert book.guaranteed_reduce(KEY, Side.SELL, D(10))
    assert not book.netting_conflict(KEY, Side.SELL, D(10))
    book.add_inflight(InFlight("x1", KEY, Side.SELL, D(10), OrderPurpose.ENTRY, True))
    # rule 2: a second exit of the same 10 could make the key short
    assert not book.guaranteed_reduce(KEY, Side.SELL, D(1))
    assert book.netting_conflict(KEY, Side.SELL, D(10))
    assert not book.guaranteed_reduce(KEY, Side.SELL, D(11))


def test_an_order_that_is_not_reduce_only_is_not_protection() -> None:
    book = PositionBook()
    book.apply_fill("e1", "f1", Side.BUY, D(10), D(100), D(0), KEY)
    book.add_inflight(InFlight("s", KEY, Side.SELL, D(10), OrderPurpose.STOP, False, owner="x"))
    assert not book.guaranteed_reduce(KEY, Side.SELL, D(10))
    book.add_inflight(InFlight("h", KEY, Side.SELL, D(10), OrderPurpose.HEDGE, True))
    assert not book.guaranteed_reduce(KEY, Side.SELL, D(1))


def test_two_rapid_opposite_signals_still_cannot_both_pass_with_protection(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 50}, config=CALM) as vr:
        _enter(vr, stop_loss="95", take_profit="110")
        vr.at(2)
        assert vr.info("coordinator")["rejected"] == {}
        vr.system.tell("coordinator", Signal(SYM, Side.SELL, D(10), vr.clock.now()))
        vr.system.tell("coordinator", Signal(SYM, Side.SELL, D(10), vr.clock.now()))
        vr.system.wait_quiescent()
        assert vr.info("coordinator")["rejected"] == {"netting_conflict": 1}
        vr.at(10)
        assert vr.exchange_position(SYM) == 0
        assert vr.filled_qty(side="sell") == D(10)


# -- the contingent group ------------------------------------------------------------------


def test_take_profit_rests_beside_the_stop_reduce_only_for_the_same_quantity(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        _enter(vr, stop_loss="95", take_profit="105")
        vr.at(2)
        [sl] = vr.orders(order_type="stop_limit")
        [tp] = vr.orders(order_type="limit")
        assert sl["qty"] == tp["qty"] == "10" and sl["reduce_only"] and tp["reduce_only"]
        assert tp["price"] == "105" and tp["side"] == "sell"
        assert vr.info("coordinator")["rejected"] == {}
        [created] = _plan_audit(vr, "plan_created")
        assert created["inputs"]["take_profit"] == "105" and created["symbol"] == SYM


def test_a_partial_take_profit_resizes_the_stop_after_its_cancel_is_confirmed(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5, "cancel_ack_delay_ms": 1000},
                        config=CALM) as vr:
        _enter(vr, stop_loss="95", take_profit="105")
        vr.at(2)
        [tp] = vr.orders(order_type="limit")
        vr.fault(fill_resting={"client_order_id": tp["client_order_id"], "qty": "4"})
        vr.at(2.5)
        [old_sl] = vr.orders(order_type="stop_limit")
        [cancel] = vr.events("cancel_requested")
        assert cancel["client_order_id"] == old_sl["client_order_id"]
        vr.at(10)
        sls = vr.orders(order_type="stop_limit")
        assert [o["qty"] for o in sls] == ["10", "6"], "the stop is re-posted for what is open"
        [canceled] = vr.events("order_canceled")
        assert sls[1]["seq"] > canceled["seq"], "re-posted before the cancel was confirmed"
        assert vr.info("stops")["counts"]["resizes"] == 1
        vr.quote(SYM, "94.9", "95.0")
        vr.at(20)
        assert vr.exchange_position(SYM) == 0 and vr.filled_qty(side="sell") == D(10)
        assert len(vr.events("cancel_requested")) == 2  # the resize and the take-profit's OCO


# -- trailing stop: ratchets in the position's favour only, never churns ----------------------


def test_trailing_level_moves_at_most_once_per_interval_and_step(tmp_path) -> None:
    cfg = {**CALM, "stops": {"trailing_interval_s": 2.0, "trailing_step_bps": "50"}}
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=cfg) as vr:
        _enter(vr, trailing_distance=D(5))
        bid = D("100.0")
        for i in range(40):  # 40 rising quotes in 4 s
            vr.at(1.1 + i * 0.1)
            bid += D("0.1")
            vr.quote(SYM, str(bid), str(bid + D("0.1")))
        vr.at(5.5)
        ratchets = _plan_audit(vr, "trail_ratcheted")
        assert len(ratchets) == 2, "one move per 2 s interval at most (at ~3 s and ~5 s)"
        for r in ratchets:
            assert D(r["inputs"]["trail_level"]) - D(r["inputs"]["old"]) >= D(r["inputs"]["old"]) * D("0.005")
        level = D(vr.info("stops")["stops"][next(iter(vr.info("stops")["stops"]))]["trail_level"])
        vr.at(6)
        vr.quote(SYM, str(level + D("0.5")), str(level + D("0.6")))  # a dip above the level
        vr.at(9)
        row = next(iter(vr.info("stops")["stops"].values()))
        assert D(row["trail_level"]) == level, "the level never moves against the position"
        assert vr.orders(side="sell") == [], "no order at the exchange for a trailing stop"
        vr.quote(SYM, str(level - D("0.1")), str(level))
        vr.at(12)
        assert vr.exchange_position(SYM) == 0
        assert vr.info("stops")["exits"]["trailing"] == 1


def test_a_short_position_trails_downwards(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        vr.quote(SYM, "100.0", "100.1")
        vr.at(1)
        vr.tell("coordinator", Signal(SYM, Side.SELL, D(5), vr.clock.now(),
                                      exits=ExitPlan(trailing_percent=D(1))))
        for t, bid in ((3, "98.0"), (5, "96.0"), (7, "97.5")):
            vr.at(t)
            vr.quote(SYM, bid, str(D(bid) + D("0.1")))
        vr.at(8)
        # best ask 96.1 -> level 97.061; the ask 97.6 crosses it
        assert vr.exchange_position(SYM) == 0
        [buy] = vr.orders(side="buy", order_type="market")
        assert buy["reduce_only"] is True and buy["qty"] == "5"


# -- learning from the position (no retries against a flat position) --------------------------


def test_a_position_zeroed_at_the_exchange_ends_the_plan_without_retry_loops(tmp_path) -> None:
    """A fresh exchange (the position zeroed behind the runtime's back): the
    stop's exit is refused there (reduce-only, nothing to reduce). The plan
    retries with backoff and alerts once, and stops for good when the 12 s
    poll tells the coordinator the position is flat (PositionChanged)."""
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}) as vr:
        _enter(vr, stop_loss="95")
        vr.at(2)
        vr.fault(set_position={"symbol": SYM, "qty": "0"})
        vr.quote(SYM, "94.9", "95.0")
        vr.at(40)
        stops = vr.info("stops")
        assert stops["active"] == 0 and stops["exits"]["external"] == 1
        refused = stops["counts"].get("exit_orders_refused", 0)
        assert 1 <= refused <= 5, f"{refused} refusals: the plan must learn from the position"
        submitted = len(vr.orders(side="sell"))
        vr.at(80)
        assert len(vr.orders(side="sell")) == submitted, "an ended plan sent more exits"
        assert stops["counts"]["refusal_alerts"] == 1, "one alert per plan, not per retry"
        assert len(_plan_audit(vr, "released")) == 1
        assert vr.exchange_position(SYM) == 0


def test_a_refused_exit_reporting_a_flat_position_is_not_retried(tmp_path) -> None:
    """The gate refuses the time-limit exit because the book is already flat
    (a plan with no resting order is not in the coordinator's protected keys
    after a coordinator restart): the refusal carries the position, the plan
    releases and ends instead of retrying."""
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        _enter(vr, time_limit_s=5.0)
        vr.at(2)
        vr.system.directory.get("coordinator").actor.ledger.protected_keys.clear()
        _sell(vr, "10")  # the strategy's exit; the plan does not hear of it
        vr.at(3)
        assert vr.exchange_position(SYM) == 0
        assert vr.info("stops")["active"] == 1
        vr.at(30)
        stops = vr.info("stops")
        assert stops["active"] == 0
        assert stops["counts"].get("exit_orders_refused", 0) == 0
        assert vr.info("coordinator")["rejected"] == {"netting_conflict": 1}
        assert len(vr.orders(side="sell")) == 1


# -- a strategy's own exit ---------------------------------------------------------------------


def test_a_partial_strategy_exit_shrinks_the_protection_to_the_rest(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        _enter(vr, stop_loss="95", take_profit="110")
        vr.at(2)
        _sell(vr, "4", reduce_only=False)  # reduces: approved, sent reduce-only
        vr.at(5)
        assert vr.info("coordinator")["rejected"] == {}
        [exit_order] = vr.orders(side="sell", order_type="market")
        assert exit_order["reduce_only"] is True
        assert [o["qty"] for o in vr.orders(order_type="stop_limit")] == ["10", "6"]
        assert [o["qty"] for o in vr.orders(order_type="limit")] == ["10", "6"]
        vr.quote(SYM, "94.9", "95.0")
        vr.at(15)
        assert vr.exchange_position(SYM) == 0
        assert vr.filled_qty(side="sell") == D(10)


# -- restart safety ------------------------------------------------------------------------


def test_a_restarted_manager_keeps_the_trailing_level_and_the_time_limit(tmp_path) -> None:
    from tests.test_stops import _crash_stops

    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        _enter(vr, trailing_distance=D(2), time_limit_s=20.0)
        vr.at(3)
        vr.quote(SYM, "104.0", "104.1")
        vr.at(4)
        before = next(iter(vr.info("stops")["stops"].values()))
        assert before["trail_level"] == "102"
        _crash_stops(vr)
        after = next(iter(vr.info("stops")["stops"].values()))
        assert after["trail_level"] == "102" and after["deadline"] == before["deadline"]
        vr.at(20.5)
        assert vr.exchange_position(SYM) == 10
        vr.at(22)
        assert vr.exchange_position(SYM) == 0
        assert vr.info("stops")["exits"]["time_limit"] == 1
        assert len(vr.orders(side="sell")) == 1


@pytest.mark.parametrize("field,value", [("trailing_percent", D(100)),
                                         ("time_limit_s", -1.0), ("take_profit", D(0))])
def test_a_bad_plan_is_refused_where_it_is_built(field: str, value: Any) -> None:
    from messages.base import MessageError

    with pytest.raises(MessageError, match=field):
        ExitPlan(**{field: value})
    with pytest.raises(MessageError, match="at least one"):
        ExitPlan()


# -- order group legs ------------------------------------------------------------------------


def test_an_order_group_leg_carries_an_exit_plan(tmp_path) -> None:
    from messages.control import SubmitGroup

    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        vr.quote(SYM, "100.0", "100.1")
        vr.at(1)
        vr.tell("groups", SubmitGroup({"kind": "single", "id": "g1", "symbol": SYM, "side": "buy",
                                       "qty": "4", "exits": {"stop_loss": "95",
                                                             "take_profit": "104"}},
                                      vr.clock.now()))
        vr.at(3)
        assert [o["qty"] for o in vr.orders(order_type="stop_limit")] == ["4"]
        assert [o["price"] for o in vr.orders(order_type="limit")] == ["104"]
        vr.quote(SYM, "104.5", "104.6")
        vr.at(6)
        assert vr.exchange_position(SYM) == 0
        assert vr.info("stops")["exits"]["take_profit"] == 1


def test_a_bad_leg_exit_plan_is_refused_naming_the_field() -> None:
    from trading.group_spec import GroupSpecError, parse_group

    with pytest.raises(GroupSpecError, match=r"legs\[0\]\.exits\.take_prophet"):
        parse_group({"id": "g", "legs": [{"symbol": SYM, "side": "buy", "qty": "1",
                               "exits": {"take_prophet": "1"}}]})
    with pytest.raises(GroupSpecError, match="exits: ExitPlan: needs at least one"):
        parse_group({"id": "g", "kind": "single", "symbol": SYM, "side": "buy", "qty": "1", "exits": {}})
    spec = parse_group({"id": "g", "kind": "single", "symbol": SYM, "side": "buy", "qty": "1",
                        "exits": {"time_limit_s": 30}})
    assert spec.legs[0].exit_plan == ExitPlan(time_limit_s=30.0)
    assert parse_group(spec.as_dict()).legs[0].exits == {"time_limit_s": 30.0}


def test_a_fresh_exchange_that_zeroed_the_position_ends_the_plans_without_retries(tmp_path) -> None:
    """The exchange comes back empty (wiped): no position, no working orders.
    The broker-wins correction waits for a confirming answer, so an exit may
    reach the empty exchange first and be refused (not reducing): the plan
    then waits for the position instead of retrying on a backoff, alerts once,
    and ends when the correction tells it the position is flat."""
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}, config=CALM) as vr:
        _enter(vr, stop_loss="95", take_profit="105")
        vr.at(3)
        vr.fault(restart={"wipe": True})
        vr.at(20)
        vr.quote(SYM, "94.9", "95.0")
        vr.at(50)
        stops = vr.info("stops")
        assert stops["active"] == 0 and stops["exits"]["external"] == 1
        assert stops["counts"].get("exit_orders_refused", 0) <= 2
        assert stops["counts"].get("refusal_alerts", 0) <= 1
        sent = len(vr.orders(side="sell"))
        assert sent <= 4
        vr.at(120)
        assert len(vr.orders(side="sell")) == sent, "an ended plan sent more exits"
        assert vr.exchange_position(SYM) == 0
        assert D(vr.info("coordinator")["positions"].get(SYM, "0")) == 0


# -- configuration -------------------------------------------------------------------------


def test_plan_defaults_and_per_symbol_overrides_apply_to_entries_with_a_plan(tmp_path) -> None:
    cfg = {**CALM, "stops": {"take_profit_bps": "100",
                             "per_symbol": {SYM: {"time_limit_s": 4.0}},
                             }}
    with VirtualRuntime(tmp_path / "run", symbols=(SYM, "ETHUSDT"), exchange={"latency_ms": 5},
                        config=cfg) as vr:
        vr.quote("ETHUSDT", "50.0", "50.1")
        _enter(vr, stop_loss="95")
        vr.tell("coordinator", Signal("ETHUSDT", Side.BUY, D(2), vr.clock.now()))  # no plan
        assert vr.info("coordinator")["rejected"] == {}
        vr.at(2)
        [tp] = vr.orders(order_type="limit")
        assert tp["symbol"] == SYM and D(tp["price"]) == D("101.101")  # 100.1 + 1 %
        assert vr.orders(symbol="ETHUSDT", side="sell") == []
        vr.at(8)
        assert vr.exchange_position(SYM) == 0 and vr.exchange_position("ETHUSDT") == 2
        assert vr.info("stops")["exits"]["time_limit"] == 1


def test_exit_plan_settings_are_validated_naming_the_key() -> None:
    from config import load_config
    from config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"stops\.per_symbol\.BTCUSDT\.trailing_percent"):
        load_config(overrides={"stops": {"per_symbol": {SYM: {"trailing_percent": "150"}}}})
    with pytest.raises(ConfigError, match=r"stops\.per_symbol\.BTCUSDT\.stop_price"):
        load_config(overrides={"stops": {"per_symbol": {SYM: {"stop_price": "1"}}}})
    with pytest.raises(ConfigError, match=r"stops\.trailing_interval_s"):
        load_config(overrides={"stops": {"trailing_interval_s": -1}})


def test_a_partial_stop_fill_resizes_the_take_profit(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5, "cancel_ack_delay_ms": 500},
                        config=CALM) as vr:
        _enter(vr, stop_loss="95", take_profit="105")
        vr.at(2)
        vr.quote(SYM, "94.0", "94.1")  # through the stop and its bound: the SL-limit rests
        vr.at(2.5)
        [sl] = vr.orders(order_type="stop_limit")
        vr.fault(fill_resting={"client_order_id": sl["client_order_id"], "qty": "4"})
        vr.at(3.5)
        assert [o["qty"] for o in vr.orders(order_type="limit")] == ["10", "6"]
        [canceled] = vr.events("order_canceled")
        assert vr.orders(order_type="limit")[1]["seq"] > canceled["seq"]
        vr.at(20)
        assert vr.exchange_position(SYM) == 0 and vr.filled_qty(side="sell") == D(10)
        assert vr.info("stops")["stop_exits"] == {"limit": 0, "market_fallback": 1}
