"""The engine's stop-market order: dormant until its trigger, then a market
order that takes the touch (Binance's STOP_MARKET, the fallback a stop-loss
may want when a limit could be gapped through)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from exchange.engine import SimulatedExchange
from messages import (
    MessageError,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    Quote,
    Side,
    SubmitOrder,
)
from messages.codec import decode, encode

T0 = datetime(2026, 1, 1, tzinfo=UTC)
D = Decimal


def _order(coid: str, side: Side, qty: str, trigger: str | None,
           reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(coid, "BTCUSDT", side, OrderType.STOP_MARKET, D(qty), T0,
                        trigger_price=D(trigger) if trigger else None, reduce_only=reduce_only)


def _events(emits: list) -> list:
    return [e.event for e in emits]


def test_stop_market_rests_until_triggered_then_fills_at_the_touch_even_through_a_gap() -> None:
    ex = SimulatedExchange()
    ex.handle(Quote("BTCUSDT", D("100"), D("100.1"), T0), T0)
    ex.handle(SubmitOrder(OrderRequest("long", "BTCUSDT", Side.BUY, OrderType.MARKET, D("3"),
                                       T0)), T0)
    out = _events(ex.handle(SubmitOrder(_order("sm-1", Side.SELL, "3", "95", True)), T0))
    assert not [e for e in out if isinstance(e, OrderFilled)]
    assert ex.order("sm-1").is_working and not ex.order("sm-1").triggered
    # the market gaps from 100 straight to 90: a stop-limit at 95 would rest
    # unfilled; the stop-market takes the bid
    fills = [e for e in _events(ex.handle(Quote("BTCUSDT", D("90"), D("90.1"), T0), T0))
             if isinstance(e, OrderFilled)]
    assert [(f.client_order_id, f.qty, f.price) for f in fills] == [("sm-1", D("3"), D("90"))]
    assert ex.position("BTCUSDT") == 0


def test_stop_market_already_through_its_trigger_fills_on_arrival() -> None:
    ex = SimulatedExchange()
    ex.handle(Quote("BTCUSDT", D("100"), D("100.1"), T0), T0)
    out = _events(ex.handle(SubmitOrder(_order("sm-2", Side.BUY, "1", "99")), T0))
    assert [(e.qty, e.price) for e in out if isinstance(e, OrderFilled)] == [(D("1"), D("100.1"))]


def test_stop_market_needs_a_trigger_and_round_trips_the_codec() -> None:
    with pytest.raises(MessageError, match="trigger_price"):
        _order("sm-3", Side.BUY, "1", None)
    order = _order("sm-4", Side.BUY, "1", "101")
    assert decode(encode(SubmitOrder(order))).order == order
    ex = SimulatedExchange()
    bad = OrderRequest.__new__(OrderRequest)  # what a decoder without checks could deliver
    for name, value in (("client_order_id", "sm-5"), ("symbol", "BTCUSDT"), ("side", Side.BUY),
                        ("order_type", OrderType.STOP_MARKET), ("qty", D("1")), ("ts", T0),
                        ("price", None), ("trigger_price", None), ("reduce_only", False),
                        ("tif", order.tif), ("account", "default"), ("purpose", order.purpose),
                        ("group_id", None)):
        object.__setattr__(bad, name, value)
    rejected = [e for e in _events(ex.submit(bad, T0)) if isinstance(e, OrderRejected)]
    assert rejected and rejected[0].reason.startswith("invalid_trigger_price")
