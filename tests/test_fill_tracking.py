"""The one fill-tracking type of every order owner (``trading.fill_tracking``).

``ExitOrder`` (stop manager), ``GroupOrder`` (order groups) and ``HedgeOrder``
(hedger) answer "how much did it fill, how much can still fill?" the same
way: a fill counts once by fill id, the first close answer stands, and a
broker's "already filled" is trusted before every report is in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from actors.hedger import HedgeOrder
from messages.enums import Side
from trading.fill_tracking import FillTracking
from trading.group_state import LEG, GroupOrder
from trading.stop_state import LIMIT, ExitOrder

D = Decimal
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)

MAKERS = {
    "exit": lambda qty: ExitOrder(LIMIT, D(qty)),
    "group": lambda qty: GroupOrder(LEG, 0, "buy", D(qty), T0),
    "hedge": lambda qty: HedgeOrder(Side.SELL, D(qty)),
}


@pytest.fixture(params=sorted(MAKERS))
def order(request) -> FillTracking:
    made = MAKERS[request.param]("10")
    assert isinstance(made, FillTracking)
    return made


def test_a_fill_counts_once_by_fill_id(order) -> None:
    assert order.apply_fill("F1", D(4), D(6)) is True
    assert order.apply_fill("F1", D(4), D(6)) is False  # the same report again
    assert (order.filled, order.live_qty, order.closed) == (D(4), D(6), None)


def test_nothing_left_at_the_broker_closes_it_filled(order) -> None:
    order.apply_fill("F1", D(4), D(6))
    order.apply_fill("F2", D(6), D(0))
    assert (order.filled, order.live_qty, order.closed) == (D(10), D(0), "filled")


def test_fills_covering_the_quantity_close_it_even_without_leaves_zero(order) -> None:
    order.apply_fill("F1", D(10), D(3))  # a broker's stale leaves_qty
    assert order.closed == "filled" and order.live_qty == 0


def test_the_first_close_answer_stands_and_later_fills_still_count(order) -> None:
    assert order.close("canceled") is True
    assert order.close("rejected") is False
    assert order.closed == "canceled" and order.live_qty == 0
    assert order.apply_fill("F9", D(2), D(8)) is True  # a cancel that lost the race
    assert order.filled == D(2) and order.closed == "canceled"


def test_already_filled_is_trusted_before_the_reports_arrive() -> None:
    o = ExitOrder(LIMIT, D(10))
    o.apply_fill("F1", D(3), D(7))
    o.close("already_filled")
    assert (o.filled, o.live_qty) == (D(10), D(0))


def test_a_hedge_order_in_flight_is_signed_and_ends_when_closed() -> None:
    sell, buy = HedgeOrder(Side.SELL, D(5)), HedgeOrder(Side.BUY, D(5))
    sell.apply_fill("F1", D(2), D(3))
    assert (sell.in_flight, buy.in_flight) == (D(-3), D(5))
    buy.close("rejected")
    assert buy.in_flight == 0
