"""Recovery of the order owners as functions of the store: ``rebuild_stops`` and
``rebuild_group`` (and the shared record readers of ``trading.owned_orders``).

Each test writes records the way the actors do (the owner's own record, the
coordinator's order, fill and status records) into a real LMDB store, reads
it back with ``Store.read_all()`` and checks what the rebuild makes of it: no
actor runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from messages.enums import OrderPurpose, OrderType, Side
from messages.orders import OrderFilled, OrderRequest
from messages.persistence import StoreDb
from trading.group_rebuild import KEY_PREFIX as GROUP_PREFIX
from trading.group_rebuild import adopt_orders as adopt_group_orders
from trading.group_rebuild import rebuild_group
from trading.group_spec import parse_group
from trading.group_state import LEG, SUBMITTING, UNWIND, Group, GroupOrder, PendingIntent, make_tag
from trading.owned_orders import owned_orders, records_with_prefix
from trading.recovery import order_status_key
from trading.stop_rebuild import KEY_PREFIX as STOP_PREFIX
from trading.stop_book import StopBook
from trading.stop_rebuild import adopt_orders, rebuild_stops
from trading.stop_state import (CANCELLING, DONE, LIMIT, MARKET, PROTECTING, TAKE_PROFIT,
                                TRIGGERED, ExitOrder, Stop)
from trading.store import Store, put_op

D = Decimal
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
OWNER = "stops"


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path)
    yield s
    s.close()


def put(store: Store, *records: tuple[StoreDb, str, Any]) -> dict[str, dict[str, Any]]:
    store.apply([put_op(db, key, value) for db, key, value in records])
    return store.read_all()


def coordinator_order(coid: str, symbol: str, side: Side, qty: str, *, owner: str = OWNER,
                      order_type: OrderType = OrderType.STOP_LIMIT, price: str | None = "94.5",
                      trigger: str | None = "95", purpose: OrderPurpose = OrderPurpose.STOP,
                      status: str = "acked") -> tuple[StoreDb, str, Any]:
    req = OrderRequest(coid, symbol, side, order_type, D(qty), T0,
                       price=None if price is None else D(price),
                       trigger_price=None if trigger is None else D(trigger), purpose=purpose)
    return StoreDb.ORDERS, coid, {"order": req, "status": status, "owner": owner}


def fill(coid: str, fill_id: str, qty: str, symbol: str = "BTCUSDT",
         side: Side = Side.SELL) -> tuple[StoreDb, str, Any]:
    return StoreDb.FILLS, fill_id, OrderFilled(coid, fill_id, symbol, side, D(qty), D(95),
                                               D(0), T0)


def status(coid: str, value: str) -> tuple[StoreDb, str, Any]:
    return StoreDb.META, order_status_key(coid), value


def stop_record(st: Stop) -> tuple[StoreDb, str, Any]:
    return StoreDb.META, STOP_PREFIX + st.stop_id, st.record()


def long_btc(stop_id: str = "e1", **kw: Any) -> Stop:
    return Stop(stop_id, "BTCUSDT", "default", Side.BUY, D(95), D(2), **kw)


# -- the shared readers ------------------------------------------------------------------------

def test_records_with_prefix_yields_only_that_prefix_without_it(store) -> None:
    snap = put(store, (StoreDb.META, "stop|a", 1), (StoreDb.META, "hedge|a", 2),
               (StoreDb.META, "stop|b", 3), (StoreDb.GROUPS, "stop|c", 4))
    assert sorted(records_with_prefix(snap, "meta", "stop|")) == [("a", 1), ("b", 3)]
    assert list(records_with_prefix(snap, "absent", "stop|")) == []


def test_owned_orders_are_one_owners_with_their_fills_and_last_status(store) -> None:
    snap = put(store, coordinator_order("c1", "BTCUSDT", Side.SELL, "2"),
               coordinator_order("x1", "BTCUSDT", Side.SELL, "2", owner="hedger"),
               fill("c1", "F1", "0.5"), fill("x1", "F2", "1"), status("c1", "canceled"))
    owned = owned_orders(snap, OWNER)
    assert list(owned) == ["c1"]
    assert owned["c1"].fills == {"F1": D("0.5")} and owned["c1"].closed == "canceled"


# -- rebuild_stops ------------------------------------------------------------------------------

def test_an_active_plan_comes_back_caught_up_with_the_coordinators_fills(store) -> None:
    st = long_btc(phase=TRIGGERED, triggered_at=T0)
    st.orders["c1"] = ExitOrder(LIMIT, D(2), {"F1": D("0.5")})
    snap = put(store, stop_record(st), coordinator_order("c1", "BTCUSDT", Side.SELL, "2"),
               fill("c1", "F1", "0.5"), fill("c1", "F2", "1.5"))
    rebuilt = rebuild_stops(snap, OWNER)
    got = rebuilt.book.stops["e1"]
    assert got.phase == TRIGGERED and got.triggered_at == T0
    assert got.orders["c1"].fills == {"F1": D("0.5"), "F2": D("1.5")}  # the missed fill, once
    assert got.orders["c1"].closed == "filled" and got.exited == D(2) and got.open_qty == 0
    assert rebuilt.book.by_coid == {"c1": "e1"}
    assert rebuilt.adopted == [] and rebuilt.unreadable == []


def test_a_status_the_coordinator_recorded_closes_the_order(store) -> None:
    st = long_btc()
    st.orders["c1"] = ExitOrder(LIMIT, D(2))
    snap = put(store, stop_record(st), coordinator_order("c1", "BTCUSDT", Side.SELL, "2"),
               status("c1", "canceled"))
    order = rebuild_stops(snap, OWNER).book.stops["e1"].orders["c1"]
    assert order.closed == "canceled" and order.live_qty == 0


def test_a_completed_plan_is_counted_and_its_orders_are_never_adopted(store) -> None:
    tp = long_btc("e1", phase=DONE, outcome=TAKE_PROFIT)
    tp.orders["c1"] = ExitOrder(TAKE_PROFIT, D(2), {"F1": D(2)}, "filled")
    old = long_btc("e2", phase=DONE)  # a record from before outcomes were stored
    old.orders["c2"] = ExitOrder(LIMIT, D(2), {"F2": D(2)}, "filled")
    snap = put(store, stop_record(tp), stop_record(old),
               coordinator_order("c1", "BTCUSDT", Side.SELL, "2", order_type=OrderType.LIMIT,
                                 trigger=None),
               coordinator_order("c2", "BTCUSDT", Side.SELL, "2"))
    rebuilt = rebuild_stops(snap, OWNER)
    book = rebuilt.book
    assert book.stops == {} and rebuilt.adopted == []
    assert set(book.finished) == {"c1", "c2"}
    assert book.exits["take_profit"] == 1 and book.exits["stop_loss_limit"] == 1
    assert book.stop_exits[LIMIT] == 1 and book.exit_qty == {"BTCUSDT": D(4)}
    assert book.next_stop_id("e1") == "e1#2"  # more of that entry is a new plan


def test_an_order_of_a_plan_memory_forgot_is_known_by_the_plans_record(store) -> None:
    """A completed plan's orders leave memory after a bounded window (rule 13); an
    adoption (a lost intent's timeout) still finds them in the plan's DONE record."""
    tp = long_btc("e1", phase=DONE, outcome=TAKE_PROFIT)
    tp.orders["c1"] = ExitOrder(TAKE_PROFIT, D(2), {"F1": D(2)}, "filled")
    snap = put(store, stop_record(tp),
               coordinator_order("c1", "BTCUSDT", Side.SELL, "2", order_type=OrderType.LIMIT,
                                 trigger=None),
               coordinator_order("c9", "BTCUSDT", Side.SELL, "2"))
    book = StopBook()                     # c1 is not in memory any more
    adopted = adopt_orders(book, snap, OWNER)
    assert [a.client_order_id for a in adopted] == ["c9"]   # only the stranger


def test_an_unreadable_record_is_skipped_and_named(store) -> None:
    snap = put(store, (StoreDb.META, "stop|bad", {"phase": "protecting"}),
               stop_record(long_btc()), (StoreDb.META, "hedge|default|BTCUSDT", {"v": 1}))
    rebuilt = rebuild_stops(snap, OWNER)
    assert list(rebuilt.book.stops) == ["e1"]
    assert [key for key, _ in rebuilt.unreadable] == ["stop|bad"]
    assert isinstance(rebuilt.unreadable[0][1], KeyError)


def test_an_order_the_record_missed_is_adopted_into_the_plan_of_its_side(store) -> None:
    short = Stop("a-short", "BTCUSDT", "default", Side.SELL, D(105), D(1))  # read first
    snap = put(store, stop_record(short), stop_record(long_btc()),
               coordinator_order("c2", "BTCUSDT", Side.SELL, "2", status="acked"),
               fill("c2", "F5", "0.5"),
               coordinator_order("h1", "BTCUSDT", Side.SELL, "2", owner="hedger"))
    rebuilt = rebuild_stops(snap, OWNER)
    assert [(a.client_order_id, a.kind, a.qty, a.stop_id) for a in rebuilt.adopted] == [
        ("c2", LIMIT, D(2), "e1")]
    order = rebuilt.book.stops["e1"].orders["c2"]
    assert order.fills == {"F5": D("0.5")} and order.closed is None
    assert rebuilt.book.by_coid == {"c2": "e1"}
    # adopting again finds nothing new
    assert adopt_orders(rebuilt.book, snap, OWNER) == []


def test_an_order_without_a_plan_gets_a_plan_of_its_own(store) -> None:
    snap = put(store,
               coordinator_order("m1", "ETHUSDT", Side.SELL, "3", order_type=OrderType.MARKET,
                                 price=None, trigger=None),
               coordinator_order("t1", "SOLUSDT", Side.BUY, "4", order_type=OrderType.LIMIT,
                                 price="20", trigger=None))
    book = rebuild_stops(snap, OWNER).book
    market, tp = book.stops["adopted-m1"], book.stops["adopted-t1"]
    assert (market.phase, market.position_side, market.orders["m1"].kind) == (
        CANCELLING, Side.BUY, MARKET)
    assert (tp.phase, tp.position_side, tp.take_profit, tp.stop_price, tp.orders["t1"].kind) == (
        PROTECTING, Side.SELL, D(20), None, TAKE_PROFIT)


# -- rebuild_group ------------------------------------------------------------------------------

GROUP = "g1"
GROUP_OWNER = f"group-{GROUP}"


def pair_group() -> Group:
    g = Group(parse_group({"kind": "pair", "long": "SPY", "short": "QQQ", "qty": "5", "id": GROUP}),
              T0, SUBMITTING)
    g.history.append((SUBMITTING, "approved", T0))
    return g


def leg_of(g: Group, symbol: str) -> int:
    return next(x.index for x in g.legs if x.symbol == symbol)


def group_record(g: Group) -> tuple[StoreDb, str, Any]:
    return StoreDb.GROUPS, GROUP_PREFIX + GROUP, g.record()


def test_no_record_is_no_group_and_a_bad_record_is_named(store) -> None:
    assert rebuild_group(store.read_all(), GROUP_PREFIX + GROUP, GROUP_OWNER).group is None
    bad = dict(pair_group().record(), state="sideways")
    snap = put(store, (StoreDb.GROUPS, GROUP_PREFIX + GROUP, bad))
    rebuilt = rebuild_group(snap, GROUP_PREFIX + GROUP, GROUP_OWNER)
    assert rebuilt.group is None and isinstance(rebuilt.unreadable, ValueError)


def test_a_group_comes_back_with_its_orders_caught_up(store) -> None:
    g = pair_group()
    spy = leg_of(g, "SPY")
    g.orders["o1"] = GroupOrder(LEG, spy, "buy", D(5), T0, {"F1": D(2)})
    snap = put(store, group_record(g),
               coordinator_order("o1", "SPY", Side.BUY, "5", owner=GROUP_OWNER,
                                 order_type=OrderType.MARKET, price=None, trigger=None,
                                 purpose=OrderPurpose.ENTRY),
               fill("o1", "F1", "2", "SPY", Side.BUY), fill("o1", "F2", "3", "SPY", Side.BUY))
    rebuilt = rebuild_group(snap, GROUP_PREFIX + GROUP, GROUP_OWNER)
    got = rebuilt.group
    assert got is not None and got.state == SUBMITTING and rebuilt.adopted == []
    assert got.orders["o1"].fills == {"F1": D(2), "F2": D(3)} and got.orders["o1"].closed == "filled"
    assert got.filled(spy) == D(5) and got.held(spy) == D(5)


def test_an_order_the_group_missed_takes_the_place_of_its_pending_intent(store) -> None:
    g = pair_group()
    qqq = leg_of(g, "QQQ")
    sent = datetime(2026, 1, 5, 14, 29, tzinfo=UTC)
    p = PendingIntent(LEG, qqq, "sell", D(5), sent)
    g.seq = 3
    g.pending[make_tag(GROUP, 3, p)] = p
    snap = put(store, group_record(g),
               coordinator_order("o2", "QQQ", Side.SELL, "5", owner=GROUP_OWNER,
                                 order_type=OrderType.MARKET, price=None, trigger=None,
                                 purpose=OrderPurpose.ENTRY),
               coordinator_order("o3", "SPY", Side.SELL, "2", owner=GROUP_OWNER,
                                 order_type=OrderType.MARKET, price=None, trigger=None,
                                 purpose=OrderPurpose.ROLLBACK, status="canceled"),
               coordinator_order("o4", "IWM", Side.BUY, "1", owner=GROUP_OWNER,
                                 order_type=OrderType.MARKET, price=None, trigger=None),
               coordinator_order("o5", "QQQ", Side.SELL, "5", owner="group-other",
                                 order_type=OrderType.MARKET, price=None, trigger=None))
    rebuilt = rebuild_group(snap, GROUP_PREFIX + GROUP, GROUP_OWNER)
    got = rebuilt.group
    assert got is not None and sorted(rebuilt.adopted) == ["o2", "o3"]  # IWM is no leg of it
    assert got.pending == {}
    assert (got.orders["o2"].kind, got.orders["o2"].leg, got.orders["o2"].sent_at) == (LEG, qqq, sent)
    assert (got.orders["o3"].kind, got.orders["o3"].closed, got.orders["o3"].sent_at) == (
        UNWIND, "canceled", T0)
    assert adopt_group_orders(got, snap, GROUP_OWNER) == []
