"""The reconciler's resync round (rules 10 and 11), in virtual time.

The reconciler is real; the gateway and the coordinator are stand-ins that
record what they are told, and the test answers the exchange's part, so
each answer can come late, in pages, or never.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from actors.reconciler import Reconciler
from messages.connectivity import ResyncDone, ResyncRequest
from messages.control import BrokerOrders, BrokerPositions, RecoveryDone
from messages.enums import OrderType, Side
from messages.exchange import (FillsSnapshot, OpenOrder, OpenOrdersSnapshot, QueryFills,
                               QueryOpenOrders, QueryPositions)
from messages.orders import OrderFilled, PositionSnapshot
from runtime import Actor, ChildSpec
from runtime.clock import EPOCH_DEFAULT

T0 = EPOCH_DEFAULT


class Inbox(Actor):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.got: list[Any] = []

    def on_receive(self, message: Any) -> None:
        self.got.append(message)

    def of(self, *types: type) -> list[Any]:
        return [m for m in self.got if isinstance(m, types)]


def _rig(harness_factory: Any, **kw: Any) -> Any:
    return harness_factory(
        ChildSpec("gateway", Inbox), ChildSpec("coordinator", Inbox),
        ChildSpec("reconciler", Reconciler, kwargs={"poll_s": 12.0, **kw}))


def _fill(n: int) -> OrderFilled:
    return OrderFilled(f"c{n}", f"f{n}", "BTCUSDT", Side.BUY, D(1), D(100), D(0), T0)


def _answer(h: Any, query: Any, *, fills: tuple = (), cursor: int = 0, more: bool = False,
            open_ids: tuple = (), qty: str = "0") -> None:
    if isinstance(query, QueryOpenOrders):
        orders = tuple(OpenOrder(c, f"x{c}", "BTCUSDT", Side.BUY, OrderType.LIMIT, D(1), D(1), T0,
                                 price=D(90)) for c in open_ids)
        msg: Any = OpenOrdersSnapshot(query.request_id, "default", orders, T0)
    elif isinstance(query, QueryFills):
        msg = FillsSnapshot(query.request_id, "default", fills, cursor, T0, more=more)
    else:
        msg = PositionSnapshot("default", (("BTCUSDT", D(qty)),), T0, request_id=query.request_id)
    h.tell("reconciler", msg)


def test_a_resync_asks_orders_fills_then_positions_and_reports_in_that_order(
        harness_factory) -> None:
    h = _rig(harness_factory)
    h.tell("reconciler", ResyncRequest("connected", T0))
    gw, coord = h.actor("gateway"), h.actor("coordinator")
    asked = gw.of(QueryOpenOrders, QueryFills, QueryPositions)
    assert [type(q) for q in asked] == [QueryOpenOrders, QueryFills, QueryPositions]
    assert asked[1].since_cursor == 0
    # Answers in any order; nothing reaches the coordinator until all are in.
    _answer(h, asked[2], qty="2")
    _answer(h, asked[1], fills=(_fill(1), _fill(2)), cursor=7)
    assert coord.of(BrokerOrders, BrokerPositions, RecoveryDone) == []
    _answer(h, asked[0], open_ids=("c9",))
    told = coord.of(BrokerOrders, BrokerPositions, RecoveryDone)
    assert [type(m) for m in told] == [BrokerOrders, BrokerPositions, RecoveryDone]
    orders, positions, done = told
    assert orders.open_order_ids == ("c9",) and [f.fill_id for f in orders.fills] == ["f1", "f2"]
    assert positions.positions == (("BTCUSDT", D(2)),) and positions.source == "resync:connected"
    assert done.requested_at == orders.requested_at
    assert len(gw.of(ResyncDone)) == 1
    # The next resync asks for the fills after the cursor; a poll asks positions only.
    h.tell("reconciler", ResyncRequest("connected", T0))
    assert gw.of(QueryFills)[-1].since_cursor == 7
    before = len(gw.got)
    h.advance(12)
    assert [type(q) for q in gw.got[before:]] == [QueryPositions]


def test_fills_in_pages_and_positions_asked_again_after_the_last(harness_factory) -> None:
    h = _rig(harness_factory, fills_page=2)
    h.tell("reconciler", ResyncRequest("connected", T0))
    gw, coord = h.actor("gateway"), h.actor("coordinator")
    q_orders, q_fills, q_pos = gw.of(QueryOpenOrders, QueryFills, QueryPositions)
    _answer(h, q_orders)
    _answer(h, q_fills, fills=(_fill(1), _fill(2)), cursor=2, more=True)
    q_fills2, q_pos2 = gw.got[-2:]
    assert isinstance(q_fills2, QueryFills) and q_fills2.since_cursor == 2
    assert isinstance(q_pos2, QueryPositions) and q_pos2.request_id != q_pos.request_id
    _answer(h, q_pos, qty="5")  # asked before the second page: no longer trusted
    _answer(h, q_fills2, fills=(_fill(3),), cursor=3)
    assert coord.of(BrokerPositions) == []
    _answer(h, q_pos2, qty="3")
    (orders,) = coord.of(BrokerOrders)
    (positions,) = coord.of(BrokerPositions)
    assert [f.fill_id for f in orders.fills] == ["f1", "f2", "f3"]
    assert positions.positions == (("BTCUSDT", D(3)),)
    assert h.actor("reconciler").fill_cursor == {"default": 3}


def test_a_round_with_a_lost_answer_is_asked_again(harness_factory) -> None:
    h = _rig(harness_factory, round_timeout_s=30.0)
    h.tell("reconciler", ResyncRequest("connected", T0))
    gw, coord = h.actor("gateway"), h.actor("coordinator")
    q_orders, q_fills, q_pos = gw.of(QueryOpenOrders, QueryFills, QueryPositions)
    _answer(h, q_fills)
    _answer(h, q_pos)  # the open-orders answer is lost
    h.advance(29)
    assert coord.of(RecoveryDone) == [] and len(gw.of(QueryOpenOrders)) == 1
    h.advance(2)
    polls = [q for q in gw.of(QueryPositions) if not q.request_id.endswith("-positions")]
    assert len(polls) == 2  # the 12 s polls go on meanwhile
    r_orders, r_fills, r_pos = [q for q in gw.of(QueryOpenOrders, QueryFills, QueryPositions)
                                if q not in (q_orders, q_fills, q_pos) and q not in polls]
    _answer(h, q_orders)  # the old round's late answer changes nothing
    assert coord.of(RecoveryDone) == []
    for q in (r_orders, r_fills, r_pos):
        _answer(h, q)
    assert [type(m) for m in coord.of(BrokerOrders, RecoveryDone)] == [BrokerOrders, RecoveryDone]
    assert h.actor("reconciler").rounds_retried == 1
    h.advance(60)  # a completed round is not asked again
    assert len(gw.of(QueryOpenOrders)) == 2
