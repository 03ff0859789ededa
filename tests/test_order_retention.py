"""Ended orders leave memory after a bounded window (rule 13): the
coordinator's order table (``trading.order_retention``) and the simulated
exchange's closed orders (``exchange.retention``), and a late report about an
order already dropped is handled safely (never booked silently, no crash)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from messages.orders import OrderFilled
from runtime.clock import EPOCH_DEFAULT
from tests.test_coordinator import BTC, rigs  # noqa: F401 (fixture)
from trading.order_retention import ENDED, EndedOrders, Retention
from trading.trust import IGNORED, UNKNOWN_ORDER

pytestmark = pytest.mark.timeout(60)

T0 = EPOCH_DEFAULT


def at(s: float) -> Any:
    return T0 + timedelta(seconds=s)


def end(index: EndedOrders, orders: dict[str, dict[str, Any]], coid: str, status: str,
        t: float, live: Any = ()) -> int:
    orders.setdefault(coid, {})["status"] = status
    return index.settle(orders, coid, at(t), live)


# -- trading.order_retention: the rule alone --------------------------------------------------


def test_at_most_keep_ended_orders_stay_the_oldest_go_first() -> None:
    index, orders = EndedOrders(Retention(keep=3, keep_s=3600)), {}
    for i in range(10):
        end(index, orders, f"c{i}", "filled", i)
    assert list(orders) == ["c7", "c8", "c9"] and len(index) == 3 and index.dropped == 7


def test_ended_orders_older_than_keep_s_are_dropped() -> None:
    index, orders = EndedOrders(Retention(keep=1000, keep_s=60)), {}
    for i in range(5):
        end(index, orders, f"c{i}", "canceled", 10 * i)   # ended at 0, 10, ..., 40 s
    end(index, orders, "c5", "rejected", 75)               # 60 s window: 0 and 10 are past
    assert sorted(orders) == ["c2", "c3", "c4", "c5"]


def test_open_and_in_flight_orders_are_never_dropped() -> None:
    index, orders = EndedOrders(Retention(keep=0, keep_s=0)), {}
    end(index, orders, "working", "acked", 0)
    end(index, orders, "odd", "some_future_status", 0)     # not known to be over: kept
    end(index, orders, "closing", "filled", 0, live={"closing"})   # still in flight: kept
    end(index, orders, "done", "expired", 1)
    assert sorted(orders) == ["closing", "odd", "working"]
    end(index, orders, "closing", "filled", 2)              # out of flight now: dropped
    assert sorted(orders) == ["odd", "working"]


def test_an_order_that_reopens_is_not_dropped_and_ends_again_later() -> None:
    index, orders = EndedOrders(Retention(keep=1000, keep_s=10)), {}
    end(index, orders, "c1", "canceled", 0)
    end(index, orders, "c1", "submitted", 5)               # resubmitted: open again
    end(index, orders, "c2", "filled", 20)                 # c1's old window has passed
    assert "c1" in orders
    end(index, orders, "c1", "filled", 25)
    end(index, orders, "c2", "filled", 32)                 # c2 re-ended at 32: kept
    assert sorted(orders) == ["c1", "c2"]
    end(index, orders, "c3", "filled", 36)                 # c1 ended at 25: past at 36
    assert sorted(orders) == ["c2", "c3"]


def test_orders_rebuilt_from_the_store_are_adopted_with_a_fresh_window() -> None:
    orders = {f"old{i}": {"status": s} for i, s in enumerate(sorted(ENDED))}
    orders["open"] = {"status": "acked"}
    index = EndedOrders(Retention(keep=1000, keep_s=30))
    end(index, orders, "new", "filled", 100)   # first change after the restart
    assert len(orders) == len(ENDED) + 2       # the rebuilt ones' window starts now
    end(index, orders, "new2", "filled", 131)
    assert sorted(orders) == ["new2", "open"]


def test_a_bad_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="retention"):
        Retention(keep=-1)
    with pytest.raises(ValueError, match="retention"):
        Retention(keep_s=float("nan"))


def test_the_config_bounds_the_retention() -> None:
    from config import ConfigError, load_config

    cfg = load_config()
    assert (cfg.runtime.retention.ended_orders, cfg.runtime.retention.ended_order_s) == (1000, 120.0)
    with pytest.raises(ConfigError, match="ended_order_s"):
        load_config(overrides={"runtime": {"retention": {"ended_order_s": -1}}})


# -- the coordinator: bounded table, late reports of dropped orders -------------------------


def _fill_some(rig: Any, n: int) -> None:
    """``n`` market orders that fill, alternately opening and closing one unit."""
    rig.quote()
    for i in range(n):
        rig.signal("buy" if i % 2 == 0 else "sell", 1)
        rig.advance(0.5)
    assert rig.reasons().count("approved") >= n, rig.reasons()


def test_the_coordinators_order_table_holds_at_most_the_bound(rigs) -> None:  # noqa: F811
    rig = rigs(config={"runtime": {"retention": {"ended_orders": 3, "ended_order_s": 3600}}})
    _fill_some(rig, 8)
    coord = rig.coordinator().ledger
    assert rig.coord["counts"]["fills"] == 8 and rig.position() == 0 == rig.exchange_position()
    assert len(coord.orders.by_id) == 3
    assert rig.coord["orders_by_status"] == {"filled": 8}   # the tally keeps every order
    # the fill ids of a dropped order go with it: a report about it is unknown now
    assert len(coord.book.fills) == 3 and all(
        e["fill_id"] in coord.book.fills
        for e in rig.events("order_filled") if e["client_order_id"] in coord.orders.by_id)


def test_ended_orders_leave_the_table_after_their_window(rigs) -> None:  # noqa: F811
    rig = rigs(config={"runtime": {"retention": {"ended_orders": 1000, "ended_order_s": 30}}})
    _fill_some(rig, 4)
    coord = rig.coordinator().ledger
    assert len(coord.orders.by_id) == 4
    rig.advance(31)
    _fill_some(rig, 1)   # the next status change drops those past the window
    assert len(coord.orders.by_id) == 1 and rig.position() == 1


def test_a_late_fill_of_a_dropped_order_is_never_booked_silently(rigs) -> None:  # noqa: F811
    """The duplicate of a fill already booked, and a fill the broker never
    made, both for an order dropped from memory: neither moves the book on
    its own (untrusted, counted, audited); the positions reconciliation
    keeps the book equal to the broker's, and no actor crashes."""
    rig = rigs(config={"runtime": {"retention": {"ended_orders": 1, "ended_order_s": 0}}})
    _fill_some(rig, 3)
    [first, *_] = [e for e in rig.events("order_filled")]
    coid = first["client_order_id"]
    assert coid not in rig.coordinator().ledger.orders.by_id
    replay = OrderFilled(coid, first["fill_id"], BTC, first["side"], D(first["qty"]),
                         D(first["price"]), D("0"), rig.clock.now(), account="default")
    forged = OrderFilled(coid, "late-F1", BTC, first["side"], D("4"), D(first["price"]),
                         D("0"), rig.clock.now(), account="default")
    rig.tell("gateway", replay)
    rig.tell("gateway", forged)
    rig.advance(2.0)
    c = rig.coord
    assert c["counts"]["unknown_order_fills"] == 2 and c["counts"]["fills"] == 3
    assert c["trust"][IGNORED] == {UNKNOWN_ORDER: 2}
    assert rig.rt.info("reconciler")["confirms"] >= 1   # the broker was asked for positions
    assert rig.position() == 1 == rig.exchange_position()
    assert all(cell.restarts == 0 for cell in rig.system.directory.cells())
    assert not rig.violations()


# -- the simulated exchange: closed orders' states, then their ids --------------------------


def _engine(tmp_path: Any, **settings: Any) -> Any:
    from exchange import SimulatedExchange
    from messages import Quote

    eng = SimulatedExchange(settings or None, strict=True, clock=lambda: T0)
    eng.start(tmp_path / "events.jsonl")
    eng.on_quote(Quote(BTC, D("100"), D("100.1"), T0), T0)
    return eng


def _order(coid: str, otype: str = "market", price: str | None = None) -> Any:
    from messages import OrderRequest, OrderType, Side

    return OrderRequest(coid, BTC, Side.BUY, OrderType(otype), D("1"), T0,
                        price=D(price) if price else None)


def _answers(eng: Any, command: Any) -> list[Any]:
    return [e.event for e in eng.handle(command, T0)]


def test_the_exchange_keeps_closed_states_then_ids_both_bounded(tmp_path: Any) -> None:
    from messages import CancelConfirmed, CancelOrder, CancelOutcome, OrderRejected, SubmitOrder

    eng = _engine(tmp_path, closed_orders=3, closed_order_ids=4)
    _answers(eng, SubmitOrder(_order("rest", "limit", price="90")))   # working: never dropped
    for i in range(10):
        _answers(eng, SubmitOrder(_order(f"f{i}")))
    try:
        assert sorted(eng.orders) == ["f7", "f8", "f9", "rest"]      # 3 closed states + working
        assert list(eng.table._retired) == ["f3", "f4", "f5", "f6"]         # then 4 final statuses
        assert eng.position(BTC) == 10
        # a retired id: still refused as a duplicate, a late cancel still answered
        [rej] = _answers(eng, SubmitOrder(_order("f5")))
        assert isinstance(rej, OrderRejected) and "(that order is filled)" in rej.reason
        [late] = _answers(eng, CancelOrder("f4", BTC, T0))
        assert isinstance(late, CancelConfirmed) and late.outcome is CancelOutcome.ALREADY_FILLED
        # a forgotten id is unknown (as at a real venue, past its window)
        [gone] = _answers(eng, CancelOrder("f0", BTC, T0))
        assert gone.outcome is CancelOutcome.UNKNOWN and eng.order("f0") is None
        assert eng.order("rest").is_working and eng.position(BTC) == 10
    finally:
        eng.stop()


def test_the_exchange_retention_settings_are_validated() -> None:
    from exchange import validate_spec

    with pytest.raises(ValueError, match="closed_orders"):
        validate_spec({"closed_orders": -1})
    with pytest.raises(ValueError, match="closed_order_ids"):
        validate_spec({"closed_order_ids": "many"})


def test_the_run_config_sets_the_embedded_exchanges_bounds() -> None:
    from config import ConfigError, load_config
    from config.sim_exchange import SimSettings

    default = SimSettings.from_spec(load_config().exchange.sim_settings())
    assert (default.fill_history, default.closed_orders, default.closed_order_ids) == (
        10_000, 10_000, 100_000)
    cfg = load_config(overrides={"exchange": {"closed_orders": 5, "closed_order_ids": 0}})
    sim = SimSettings.from_spec(cfg.exchange.sim_settings())
    assert (sim.closed_orders, sim.closed_order_ids) == (5, 0)
    with pytest.raises(ConfigError, match="closed_orders"):
        load_config(overrides={"exchange": {"closed_orders": -1}})
