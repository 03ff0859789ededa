"""The simulated exchange's matching engine, faults, events.jsonl and codec."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, UTC
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import (
    ACCOUNT,
    ENGINE,
    MARKET,
    REQUESTER,
    TRANSPORT,
    SimSettings,
    SimulatedExchange,
    StreamAction,
    read_events,
    validate_spec,
)
from exchange.book import split_qty
from messages import (
    BalanceSnapshot,
    CancelConfirmed,
    CancelOrder,
    CancelOutcome,
    Connect,
    Disconnect,
    ExchangeError,
    ExchangeFault,
    ExchangeTimer,
    FillsSnapshot,
    OpenOrder,
    OpenOrdersSnapshot,
    OrderAcked,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    PositionSnapshot,
    QueryBalances,
    QueryFills,
    QueryOpenOrders,
    QueryPositions,
    Quote,
    Side,
    StreamStatus,
    Subscribe,
    SubmitOrder,
    TimeInForce,
    Unsubscribe,
)
from messages.codec import decode, encode

D = Decimal
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SYM = "BTCUSDT"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def req(coid: str, side: str = "buy", otype: str = "limit", qty: str = "10",
        price: str | None = None, trigger: str | None = None, **kw) -> OrderRequest:
    return OrderRequest(coid, kw.pop("symbol", SYM), Side(side), OrderType(otype), D(qty), T0,
                        price=D(price) if price else None,
                        trigger_price=D(trigger) if trigger else None, **kw)


def quote(bid: str, ask: str, bid_size: str = "0", ask_size: str = "0", symbol: str = SYM) -> Quote:
    return Quote(symbol, D(bid), D(ask), T0, bid_size=D(bid_size), ask_size=D(ask_size))


def of(emits, cls):
    return [e.event for e in emits if isinstance(e.event, cls)]


#: these tests count fills without latency or fees unless they set them
FREE = {"latency_ms": 0, "maker_fee_bps": 0, "taker_fee_bps": 0, "quote_currency": "USD"}


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(**cfg):
        eng = SimulatedExchange({**FREE, **cfg}, strict=True, clock=lambda: T0)
        eng.start(tmp_path / f"events{len(made)}.jsonl")
        made.append(eng)
        return eng

    yield factory
    for eng in made:
        eng.stop()


@pytest.fixture
def ex(make):
    eng = make()
    eng.on_quote(quote("100", "100.1"), T0)
    return eng


def submit(eng, order, now=T0):
    return eng.handle(SubmitOrder(order), now)


# -- matching ------------------------------------------------------------------------


def test_market_orders_fill_at_the_touch(ex):
    out = submit(ex, req("b1", "buy", "market"))
    assert [type(e.event) for e in out] == [OrderAcked, OrderFilled]
    fill = of(out, OrderFilled)[0]
    assert (fill.price, fill.qty, fill.leaves_qty) == (D("100.1"), D("10"), D("0"))
    sell = of(submit(ex, req("s1", "sell", "market", qty="4")), OrderFilled)[0]
    assert sell.price == D("100")
    assert ex.position(SYM) == D("6")


def test_marketable_limit_takes_the_quote_resting_limit_fills_at_its_price(ex):
    taker = of(submit(ex, req("b1", "buy", price="101")), OrderFilled)[0]
    assert taker.price == D("100.1")  # price improvement: trades at the ask
    rest = submit(ex, req("b2", "buy", price="99.5"))
    assert of(rest, OrderFilled) == [] and ex.order("b2").is_working
    assert of(ex.on_quote(quote("99.6", "99.7"), T0), OrderFilled) == []
    fills = of(ex.on_quote(quote("99.0", "99.2"), T0), OrderFilled)
    assert [(f.client_order_id, f.price) for f in fills] == [("b2", D("99.5"))]  # maker: at limit


def test_sell_stop_limit_triggers_and_fills_at_the_bid(ex):
    assert of(submit(ex, req("sl", "sell", "stop_limit", price="94.5", trigger="95")),
              OrderFilled) == []
    assert not ex.order("sl").triggered
    assert of(ex.on_quote(quote("96", "96.1"), T0), OrderFilled) == []
    fills = of(ex.on_quote(quote("94.8", "94.9"), T0), OrderFilled)
    assert ex.order("sl").triggered
    assert [(f.price, f.qty) for f in fills] == [(D("94.8"), D("10"))]


def test_stop_limit_gap_through_rests_unfilled_then_fills_at_limit(ex):
    submit(ex, req("sl", "sell", "stop_limit", price="94.5", trigger="95"))
    out = ex.on_quote(quote("90", "90.1"), T0)  # gaps past the limit
    assert of(out, OrderFilled) == []
    state = ex.order("sl")
    assert state.triggered and state.is_working
    fills = of(ex.on_quote(quote("95", "95.1"), T0), OrderFilled)
    assert [(f.price, f.qty) for f in fills] == [(D("94.5"), D("10"))]


def test_buy_stop_limit_triggers_on_the_ask(ex):
    submit(ex, req("bs", "buy", "stop_limit", price="105.5", trigger="105"))
    assert of(ex.on_quote(quote("104", "104.5"), T0), OrderFilled) == []
    fills = of(ex.on_quote(quote("105", "105.2"), T0), OrderFilled)
    assert [f.price for f in fills] == [D("105.2")]


def test_stop_already_through_triggers_on_arrival(ex):
    fills = of(submit(ex, req("sl", "sell", "stop_limit", price="99", trigger="101")), OrderFilled)
    assert [f.price for f in fills] == [D("100")]


def test_partial_fills_add_up_with_unique_ids(make):
    eng = make(partial_fills=3)
    eng.on_quote(quote("100", "100.1"), T0)
    fills = of(submit(eng, req("b1", "buy", "market", qty="10")), OrderFilled)
    assert [f.qty for f in fills] == [D("4"), D("3"), D("3")]
    assert [f.leaves_qty for f in fills] == [D("6"), D("3"), D("0")]
    assert sum(f.qty for f in fills) == D("10")
    assert len({f.fill_id for f in fills}) == 3
    assert eng.position(SYM) == D("10")


def test_fills_are_capped_by_quote_size_and_the_rest_waits(make):
    eng = make()
    eng.on_quote(quote("100", "100.1", "5", "4"), T0)
    first = of(submit(eng, req("m1", "buy", "market", qty="10")), OrderFilled)
    assert [f.qty for f in first] == [D("4")]
    # The displayed size is used up: a second order on the same quote gets nothing.
    assert of(submit(eng, req("m2", "buy", "market", qty="1")), OrderFilled) == []
    later = of(eng.on_quote(quote("100.2", "100.3", "5", "20"), T0), OrderFilled)
    assert [(f.client_order_id, f.qty, f.price) for f in later] == [
        ("m1", D("6"), D("100.3")), ("m2", D("1"), D("100.3"))]


def test_ioc_remainder_expires(make):
    eng = make()
    eng.on_quote(quote("100", "100.1", "5", "4"), T0)
    out = submit(eng, req("i1", "buy", price="100.1", tif=TimeInForce.IOC))
    assert [f.qty for f in of(out, OrderFilled)] == [D("4")]
    assert [(x.client_order_id, x.expired_qty) for x in of(out, OrderExpired)] == [("i1", D("6"))]


def test_fees_in_bps_maker_and_taker(make):
    eng = make(taker_fee_bps="10", maker_fee_bps="-1")
    eng.on_quote(quote("100", "100.1"), T0)
    taker = of(submit(eng, req("t", "buy", "market", qty="10")), OrderFilled)[0]
    assert taker.fee == D("1.001")  # 10 * 100.1 * 10 bps
    submit(eng, req("m", "sell", price="101", qty="10"))
    maker = of(eng.on_quote(quote("101.5", "101.6"), T0), OrderFilled)[0]
    assert maker.fee == D("-0.101")  # a rebate
    bal = of(eng.handle(QueryBalances("r"), T0), BalanceSnapshot)[0]
    assert bal.fees_paid == D("0.9")
    assert bal.as_dict()["USD"] == D("1000000") - D("1001") - D("1.001") + D("1010") + D("0.101")
    assert bal.realized_pnl == D("9.0")


def test_positions_average_price_and_realized_pnl(ex):
    ex.on_quote(quote("100", "100"), T0)
    submit(ex, req("b", "buy", "market", qty="10"))
    ex.on_quote(quote("110", "110"), T0)
    submit(ex, req("s", "sell", "market", qty="4"))
    pos = ex.account("default").positions[SYM]
    assert (pos.qty, pos.avg_price, pos.realized) == (D("6"), D("100"), D("40"))
    ex.on_quote(quote("90", "90"), T0)
    submit(ex, req("s2", "sell", "market", qty="10"))  # closes 6 at -10, opens short 4
    assert (pos.qty, pos.avg_price, pos.realized) == (D("-4"), D("90"), D("-20"))


def test_cancel_outcomes(ex):
    submit(ex, req("rest", "buy", price="90"))
    submit(ex, req("done", "buy", "market", qty="1"))
    c = of(ex.handle(CancelOrder("rest", SYM, T0), T0), CancelConfirmed)[0]
    assert (c.outcome, c.canceled_qty) == (CancelOutcome.CANCELED, D("10"))
    assert not ex.order("rest").is_working and ex.open_orders() == []
    again = of(ex.handle(CancelOrder("rest", SYM, T0), T0), CancelConfirmed)[0]
    assert (again.outcome, again.canceled_qty) == (CancelOutcome.CANCELED, D("0"))
    filled = of(ex.handle(CancelOrder("done", SYM, T0), T0), CancelConfirmed)[0]
    assert filled.outcome is CancelOutcome.ALREADY_FILLED
    unknown = of(ex.handle(CancelOrder("nope", SYM, T0), T0), CancelConfirmed)[0]
    assert unknown.outcome is CancelOutcome.UNKNOWN
    # A canceled order no longer fills.
    assert of(ex.on_quote(quote("80", "80.1"), T0), OrderFilled) == []


def test_partially_filled_then_canceled_reports_the_remainder(make):
    eng = make()
    eng.on_quote(quote("100", "100.1", "5", "3"), T0)
    submit(eng, req("p", "buy", "market", qty="10"))
    c = of(eng.handle(CancelOrder("p", SYM, T0), T0), CancelConfirmed)[0]
    assert (c.outcome, c.canceled_qty) == (CancelOutcome.CANCELED, D("7"))


def test_duplicate_client_order_id_is_rejected_and_the_original_stands(ex):
    submit(ex, req("dup", "buy", price="90"))
    out = submit(ex, req("dup", "buy", price="90"))
    rej = of(out, OrderRejected)[0]
    assert rej.reason.startswith("duplicate_client_order_id:")
    assert len(ex.open_orders()) == 1 and ex.order("dup").is_working
    submit(ex, req("f", "buy", "market", qty="1"))
    assert of(submit(ex, req("f", "buy", "market", qty="1")), OrderRejected)
    assert ex.position(SYM) == D("1")  # the resubmission never doubled the order


def test_a_rejected_id_may_be_reused(ex):
    ex.apply({"reject_next": 1})
    assert of(submit(ex, req("r1", "buy", "market", qty="1")), OrderRejected)
    assert of(submit(ex, req("r1", "buy", "market", qty="1")), OrderFilled)


def test_reduce_only_is_honoured(ex):
    flat = of(submit(ex, req("ro1", "sell", "market", qty="1", reduce_only=True)), OrderRejected)
    assert flat and flat[0].reason.startswith("reduce_only:")
    submit(ex, req("b", "buy", "market", qty="5"))
    assert of(submit(ex, req("ro2", "buy", "market", qty="1", reduce_only=True)), OrderRejected)
    too_big = of(submit(ex, req("ro3", "sell", "market", qty="6", reduce_only=True)), OrderRejected)
    assert too_big and "exceeds" in too_big[0].reason
    submit(ex, req("ro4", "sell", price="120", qty="5", reduce_only=True))
    ex.apply({"set_position": {"symbol": SYM, "qty": "2"}})
    out = ex.on_quote(quote("121", "121.1"), T0)
    assert [f.qty for f in of(out, OrderFilled)] == [D("2")]  # capped at the position
    assert [x.expired_qty for x in of(out, OrderExpired)] == [D("3")]
    assert ex.position(SYM) == D("0")


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_is_rejected_never_raised(make):
    eng = make(symbols=[SYM])
    eng.on_quote(quote("100", "100.1"), T0)
    nan = req("nan", "buy", price="100")
    object.__setattr__(nan, "qty", D("NaN"))
    neg = req("neg", "buy", price="100")
    object.__setattr__(neg, "price", D("-1"))
    reasons = {}
    for order in (nan, neg, req("xyz", "buy", price="1", symbol="XYZ")):
        rej = of(submit(eng, order), OrderRejected)
        reasons[order.client_order_id] = rej[0].reason
    assert reasons["nan"].startswith("invalid_qty:")
    assert reasons["neg"].startswith("invalid_price:")
    assert reasons["xyz"].startswith("unknown_symbol:")
    junk = object.__new__(SubmitOrder)
    object.__setattr__(junk, "order", "not an order")
    for bad in (junk, "garbage", OrderAcked("x", "y", SYM, T0), None):
        errs = of(eng.handle(bad, T0), ExchangeError)
        assert errs and errs[0].code == "bad_command"
    assert of(eng.on_quote(quote("1", "2", symbol="XYZ"), T0), Quote) == []  # off-list quote
    assert eng.open_orders() == [] and eng.stats["orders_rejected"] == 3


def test_market_order_without_a_quote_is_rejected(make):
    eng = make()
    rej = of(submit(eng, req("m", "buy", "market")), OrderRejected)
    assert rej[0].reason.startswith("no_market:")
    assert of(submit(eng, req("l", "buy", price="10")), OrderAcked)  # a limit may rest


# -- latency ---------------------------------------------------------------------------


def test_latency_and_fifo_order_with_jitter(make):
    eng = make(latency_ms=20, latency_jitter_ms=10, seed=3)
    out = eng.on_quote(quote("100", "100.1"), T0)
    assert 0.020 <= out[0].delay_s <= 0.030
    dues = []
    for i in range(50):
        now = at(i * 0.001)
        for e in submit(eng, req(f"o{i}", "buy", "market", qty="1"), now):
            assert e.delay_s >= 0.020 - 1e-6
            dues.append(now.timestamp() + e.delay_s)
    assert dues == sorted(dues)  # jitter never reorders the stream


def test_same_seed_same_output(make):
    def run(eng):
        out = []
        for i in range(30):
            out += eng.on_quote(quote(str(100 + i % 3), str(100.5 + i % 3)), at(i))
            out += submit(eng, req(f"o{i}", "buy" if i % 2 else "sell", "market", qty="1"), at(i))
        return [(e.delay_s, e.event) for e in out]

    assert run(make(latency_ms=5, latency_jitter_ms=5, seed=9)) == \
        run(make(latency_ms=5, latency_jitter_ms=5, seed=9))


# -- faults ------------------------------------------------------------------------------


def test_reject_next_n(ex):
    ex.apply({"reject_next": 2})
    results = [type(of(submit(ex, req(f"r{i}", "buy", "market", qty="1")), (OrderRejected, OrderFilled))[0])
               for i in range(3)]
    assert results == [OrderRejected, OrderRejected, OrderFilled]


def test_targeted_reject_hits_only_the_matching_orders(ex):
    """``reject_next: {count, symbol, side, group_id}``: other orders go through,
    and the order_submitted record carries the group id."""
    ex.apply({"reject_next": [{"group_id": "g1", "side": "sell", "count": 2}]})
    orders = [req("a", "sell", "market", qty="1"),                      # no group
              req("b", "buy", "market", qty="1", group_id="g1"),        # other side
              req("c", "sell", "market", qty="1", group_id="g2"),       # other group
              req("d", "sell", "market", qty="1", group_id="g1"),
              req("e", "sell", "market", qty="1", group_id="g1"),
              req("f", "sell", "market", qty="1", group_id="g1")]       # count used up
    results = [type(of(submit(ex, o), (OrderRejected, OrderFilled))[0]).__name__ for o in orders]
    assert results == ["OrderFilled", "OrderFilled", "OrderFilled", "OrderRejected",
                       "OrderRejected", "OrderFilled"]
    assert ex.armed.reject_rules == []
    with pytest.raises(ValueError, match="reject_next: rule 0 side"):
        ex.apply({"reject_next": {"side": "short"}})
    with pytest.raises(ValueError, match="unknown key"):
        ex.apply({"reject_next": {"client_order_id": "x"}})


def test_order_submitted_records_the_group_id(ex):
    submit(ex, req("g-leg", "buy", "market", qty="1", group_id="pair-1"))
    subs = [e for e in read_events(ex.log.path) if e["kind"] == "order_submitted"]
    assert [(e["client_order_id"], e["group_id"]) for e in subs] == [("g-leg", "pair-1")]


def test_cancel_ack_delay_keeps_the_order_live_until_it_takes_effect(ex):
    ex.apply({"cancel_ack_delay_ms": 3000})
    submit(ex, req("a", "sell", price="105"))
    submit(ex, req("b", "sell", price="106"))
    out_a = ex.handle(CancelOrder("a", SYM, at(1)), at(1))
    assert [(e.audience, type(e.event)) for e in out_a] == [(ENGINE, ExchangeTimer)]
    assert out_a[0].delay_s == 3.0
    out_b = ex.handle(CancelOrder("b", SYM, at(1)), at(1))
    # Meanwhile the market reaches "a": it fills although a cancel was requested.
    fills = of(ex.apply({"fill_resting": {"client_order_id": "a"}}, at(2)), OrderFilled)
    assert [f.client_order_id for f in fills] == ["a"]
    ca = of(ex.handle(out_a[0].event, at(4)), CancelConfirmed)[0]
    cb = of(ex.handle(out_b[0].event, at(4)), CancelConfirmed)[0]
    assert ca.outcome is CancelOutcome.ALREADY_FILLED
    assert (cb.outcome, cb.canceled_qty) == (CancelOutcome.CANCELED, D("10"))


def test_fill_resting_on_demand(ex):
    submit(ex, req("l1", "sell", price="105", qty="3"))
    submit(ex, req("l2", "sell", price="106", qty="2", symbol="ETHUSDT"))
    submit(ex, req("st", "sell", "stop_limit", price="90", trigger="91"))
    fills = of(ex.apply({"fill_resting": {"symbol": SYM}}), OrderFilled)
    assert [(f.client_order_id, f.price, f.qty) for f in fills] == [("l1", D("105"), D("3"))]
    part = of(ex.apply({"fill_resting": {"client_order_id": "st", "qty": "4"}}), OrderFilled)
    assert [(f.price, f.qty, f.leaves_qty) for f in part] == [(D("90"), D("4"), D("6"))]
    assert ex.order("l2").is_working


def test_partial_fills_fault_and_interval(ex):
    ex.apply({"partial_fills": 5, "partial_fill_interval_ms": 100})
    out = submit(ex, req("p", "buy", "market", qty="1"))
    fills = [e for e in out if isinstance(e.event, OrderFilled)]
    assert [e.event.qty for e in fills] == [D("0.2")] * 5
    assert [round(e.delay_s, 3) for e in fills] == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_gap_price_forms(ex):
    submit(ex, req("sl", "sell", "stop_limit", price="94.5", trigger="95"))
    out = ex.apply({"gap_price": {"symbol": SYM, "bid": "90", "ask": "90.1"}})
    assert of(out, Quote)[0].bid == D("90") and of(out, OrderFilled) == []
    out = ex.apply({"gap_price": {"symbol": SYM, "pct": "10"}})
    assert (ex.book(SYM).bid, ex.book(SYM).ask) == (D("99.0"), D("99.11"))
    assert [f.price for f in of(out, OrderFilled)] == [D("94.5")]
    ex.apply({"gap_price": {"symbol": SYM, "price": "50"}})
    assert (ex.book(SYM).bid, ex.book(SYM).ask) == (D("50"), D("50.11"))


def test_duplicate_fill_report_same_fill_id_counted_once(ex):
    ex.apply({"duplicate_fill": True})
    out = submit(ex, req("d", "buy", "market", qty="2"))
    fills = of(out, OrderFilled)
    assert len(fills) == 2 and fills[0] == fills[1]
    assert ex.position(SYM) == D("2")  # the exchange booked it once
    again = of(ex.apply({"duplicate_fill": "last"}), OrderFilled)
    assert again == [fills[0]]
    recs = read_events(ex.log.path)
    assert [r["kind"] for r in recs].count("order_filled") == 1
    assert [r["kind"] for r in recs].count("fill_duplicated") == 2


def test_set_position_behind_the_clients_back(ex):
    out = ex.apply({"set_position": {"symbol": SYM, "qty": "5"}})
    assert out == []  # no event: the client only sees it by querying
    snap = of(ex.handle(QueryPositions("q"), T0), PositionSnapshot)[0]
    assert snap.as_dict() == {SYM: D("5")}
    assert ex.account("default").positions[SYM].avg_price == D("100.05")
    assert [r for r in read_events(ex.log.path) if r["kind"] == "position_set"][0]["qty"] == "5"


def test_stream_faults_return_transport_actions(ex):
    kinds = []
    for spec in ({"drop_stream": True}, {"stall_stream": True}, {"stall_stream": 2.5},
                 {"resume_stream": True}, {"stall_stream": False}):
        out = ex.apply(spec)
        assert [e.audience for e in out] == [TRANSPORT]
        kinds.append((out[0].event.kind, out[0].event.duration_s))
    assert kinds == [("drop", None), ("stall", None), ("stall", 2.5), ("resume", None),
                     ("resume", None)]
    logged = [r["kind"] for r in read_events(ex.log.path)]
    assert {"stream_dropped", "stream_stalled", "stream_resumed"} <= set(logged)


def test_restart_keeps_or_wipes_state(ex):
    submit(ex, req("b", "buy", "market", qty="2"))
    submit(ex, req("rest", "buy", price="90"))
    out = ex.apply({"restart": True})
    assert isinstance(out[0].event, StreamAction) and out[0].event.kind == "drop"
    assert ex.position(SYM) == D("2") and ex.order("rest").is_working
    old_ids = {f for st in ex.orders.values() for f in st.fills}
    ex.apply({"restart": {"wipe": True}})
    assert ex.positions() == {} and ex.open_orders() == []
    new = of(submit(ex, req("b", "buy", "market", qty="1")), OrderFilled)  # id free again
    assert new and new[0].fill_id not in old_ids  # fill ids never repeat across a wipe


def test_a_wipe_resets_every_part_that_holds_state(make):
    """Each part owns its state, so a restart with data loss must reach each one:
    orders, accounts, pending cancels, armed faults, id sequences (books stay)."""
    eng = make(cancel_ack_delay_ms=100)
    eng.on_quote(quote("100", "100.1"), T0)
    submit(eng, req("b", "buy", "market", qty="1"))
    submit(eng, req("rest", "buy", price="90"))
    assert eng.handle(CancelOrder("rest", SYM, T0), T0)[0].audience == ENGINE  # queued
    eng.apply({"reject_next": 2, "duplicate_fill": 1})
    eng.apply({"restart": {"wipe": True}})
    assert eng.cancels.pending == {} and eng.orders == {} and eng.positions() == {}
    assert (eng.armed.reject_next, eng.armed.duplicate_next, eng.epoch) == (0, 0, 2)
    assert eng.book(SYM) is not None and eng.book(SYM).has_quote
    out = submit(eng, req("b", "buy", "market", qty="1"))
    assert [e.event.exchange_order_id for e in out if isinstance(e.event, OrderAcked)] == ["SIM2-O1"]
    assert [e.event.fill_id for e in out if isinstance(e.event, OrderFilled)] == ["SIM2-F1"]


def test_engine_parts_never_reach_back_into_the_engine():
    """The engine owns its parts; a part is handed the sibling parts it works on
    and never imports, names or is handed the engine."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "exchange"
    for name in ("order_table", "accounts", "matching", "cancels", "queries", "faults", "outbox"):
        tree = ast.parse((root / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
        assert not {m for m in imported if m and m.startswith("exchange.engine")}, name
        assert not names & {"SimulatedExchange", "EngineHost", "engine", "host"}, name


def test_unknown_or_bad_keys_raise_and_change_nothing(ex):
    with pytest.raises(ValueError, match="unknown exchange key 'rejct_next'"):
        ex.apply({"rejct_next": 1})
    with pytest.raises(ValueError, match="partial_fills"):
        ex.apply({"latency_ms": 50, "partial_fills": 0})
    assert ex.config.latency_ms == 0  # the good key of a bad spec was not applied
    for bad in ({"reject_next": -1}, {"gap_price": {"symbol": SYM, "bid": "1"}},
                {"set_position": {"qty": "1"}}, {"fill_resting": {"sym": SYM}},
                {"restart": "sometimes"}, {"latency_ms": "fast"}, {"stall_stream": "x"}):
        with pytest.raises(ValueError):
            validate_spec(bad)
    errs = of(ex.handle(ExchangeFault({"nope": 1}), T0), ExchangeError)
    assert errs[0].code == "bad_fault" and "nope" in errs[0].reason
    with pytest.raises(ValueError, match="faults, not settings"):
        SimSettings.from_spec({"reject_next": 1})


def test_initial_faults_apply_at_start(tmp_path):
    eng = SimulatedExchange({"latency_ms": 5, "reject_next": 1})
    assert eng.config.latency_ms == 5 and eng.armed.reject_next == 0
    eng.start(tmp_path / "events.jsonl")
    assert eng.armed.reject_next == 1
    eng.stop()
    with pytest.raises(ValueError, match="reject_nxt"):
        SimulatedExchange({"reject_nxt": 1})


def test_scenario_exchange_block_sets_config():
    cfg = SimSettings.from_spec({"latency_ms": 5, "cancel_ack_delay_ms": 3000, "fee_bps": 2.5})
    assert (cfg.latency_ms, cfg.cancel_ack_delay_ms) == (5.0, 3000.0)
    assert cfg.maker_fee_bps == cfg.taker_fee_bps == D("2.5")


# -- queries -------------------------------------------------------------------------------


def test_queries(ex):
    submit(ex, req("b", "buy", "market", qty="3"))
    submit(ex, req("rest", "sell", price="120", qty="1"))
    oo = of(ex.handle(QueryOpenOrders("q1"), T0), OpenOrdersSnapshot)[0]
    assert [(o.client_order_id, o.leaves_qty) for o in oo.orders] == [("rest", D("1"))]
    assert of(ex.handle(QueryPositions("q2"), T0), PositionSnapshot)[0].as_dict() == {SYM: D("3")}
    for i in range(4):
        submit(ex, req(f"m{i}", "buy", "market", qty="1"))
    page = of(ex.handle(QueryFills("q3", since_cursor=0, limit=3), T0), FillsSnapshot)[0]
    assert (len(page.fills), page.cursor, page.more) == (3, 3, True)
    rest = of(ex.handle(QueryFills("q4", since_cursor=page.cursor), T0), FillsSnapshot)[0]
    assert (len(rest.fills), rest.cursor, rest.more) == (2, 5, False)
    assert [e.audience for e in ex.handle(QueryBalances("q5"), T0)] == [REQUESTER]
    assert of(ex.handle(QueryPositions("q6", account="other"), T0), PositionSnapshot)[0].positions == ()


def test_quotes_go_to_market_audience(ex):
    out = ex.on_quote(quote("100", "100.2"), T0)
    assert [(e.audience, type(e.event)) for e in out] == [(MARKET, Quote)]
    out = submit(ex, req("b", "buy", "market", qty="1"))
    assert {e.audience for e in out} == {ACCOUNT}


# -- events.jsonl ------------------------------------------------------------------------


def test_no_file_until_started(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    from exchange.events_log import EventsLog

    eng = SimulatedExchange(events_log=EventsLog(path))
    eng.on_quote(quote("100", "100.1"), T0)
    submit(eng, req("b", "buy", "market", qty="1"))
    assert not path.exists() and not path.parent.exists()
    eng.start()
    submit(eng, req("c", "buy", "market", qty="1"))
    eng.stop()
    assert [r["kind"] for r in read_events(path)] == ["order_submitted", "order_acked",
                                                      "order_filled"]


def test_events_log_is_complete_under_random_flow(make):
    rng = random.Random(11)
    eng = make(partial_fills=2, cancel_ack_delay_ms=0)
    submitted, fill_ids, pending = [], [], []
    mid = D("100")
    for i in range(400):
        now = at(i * 0.01)
        roll = rng.random()
        if roll < 0.35:
            mid += D(rng.choice(["-0.5", "0", "0.5"]))
            out = eng.on_quote(Quote(SYM, mid, mid + D("0.1"), now, bid_size=D("3"),
                                     ask_size=D("3")), now)
        elif roll < 0.8:
            coid = f"o{i}"
            otype = rng.choice(["market", "limit", "stop_limit"])
            side = rng.choice(["buy", "sell"])
            px = str(mid + D(rng.choice(["-1", "0", "1"])))
            trig = str(mid + D("-0.5" if side == "sell" else "0.5"))
            order = req(coid, side, otype, qty=str(rng.randint(1, 5)),
                        price=None if otype == "market" else px,
                        trigger=trig if otype == "stop_limit" else None)
            submitted.append(coid)
            if rng.random() < 0.1 and len(submitted) > 1:
                used = submitted[-2]
                submitted.append(used)  # a resubmission with a used id
                out = submit(eng, order.replace(client_order_id=used), now)
                out += submit(eng, order, now)
            else:
                out = submit(eng, order, now)
            pending.append(coid)
        else:
            coid = rng.choice(pending) if pending else "none"
            out = eng.handle(CancelOrder(coid, SYM, now), now)
        fill_ids += [f.fill_id for f in of(out, OrderFilled)]
    eng.stop()
    recs = read_events(eng.log.path)
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    for r in recs:
        assert {"seq", "t", "kind", "client_order_id", "symbol", "side", "qty", "price",
                "fill_id"} <= set(r)
        assert datetime.fromisoformat(r["t"]).utcoffset() == timedelta(0)
    logged_submits = [r["client_order_id"] for r in recs if r["kind"] == "order_submitted"]
    assert sorted(logged_submits) == sorted(submitted)  # every order received, once each
    logged_fills = [r["fill_id"] for r in recs if r["kind"] == "order_filled"]
    assert sorted(logged_fills) == sorted(fill_ids) and len(set(logged_fills)) == len(fill_ids)
    assert len(fill_ids) > 20
    for r in recs:
        if r["kind"] == "order_filled":
            assert isinstance(r["qty"], str) and isinstance(r["price"], str)
            Decimal(r["qty"]), Decimal(r["price"])
    acked = {r["client_order_id"] for r in recs if r["kind"] == "order_acked"}
    outcomes = {r["client_order_id"] for r in recs if r["kind"] == "order_rejected"}
    assert set(submitted) <= acked | outcomes


def test_reopened_log_continues_seq(tmp_path):
    path = tmp_path / "events.jsonl"
    eng = SimulatedExchange().start(path)
    eng.on_quote(quote("100", "100.1"), T0)
    submit(eng, req("a", "buy", "market", qty="1"))
    eng.stop()
    eng2 = SimulatedExchange().start(path)  # a new process on the same directory
    submit(eng2, req("b", "buy", price="1", qty="1"))
    eng2.stop()
    seqs = [r["seq"] for r in read_events(path)]
    assert seqs == list(range(1, len(seqs) + 1))
    ids = [r["exchange_order_id"] for r in read_events(path) if r["kind"] == "order_acked"]
    assert len(set(ids)) == 2  # the new process did not reuse the old ids
    with open(path) as fh:
        assert all(json.loads(line) for line in fh)


# -- split and codec --------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4), st.integers(1, 12))
def test_split_qty_adds_up_exactly(qty, parts):
    pieces = split_qty(qty, parts)
    assert sum(pieces) == qty
    assert all(p > 0 for p in pieces) and len(pieces) <= parts


def test_new_message_types_round_trip_through_the_codec():
    fill = OrderFilled("c", "F1", SYM, Side.BUY, D("1.5"), D("100.25"), D("0"), T0, fee=D("0.01"))
    open_order = OpenOrder("c", "E1", SYM, Side.SELL, OrderType.STOP_LIMIT, D("2"), D("1.5"), T0,
                           price=D("94.5"), trigger_price=D("95"), triggered=True,
                           reduce_only=True, tif=TimeInForce.IOC)
    samples = [
        SubmitOrder(req("c1", "buy", "stop_limit", price="10", trigger="9.5", reduce_only=True)),
        QueryPositions("r1"), QueryOpenOrders("r2", "acct"), QueryBalances("r3"),
        QueryFills("r4", since_cursor=7, limit=50), Subscribe((SYM, "ETHUSDT")),
        Unsubscribe(("ETHUSDT",)), Connect("gw"), Disconnect("gw"),
        ExchangeFault({"gap_price": {"symbol": SYM, "bid": "90", "ask": "90.1"},
                       "reject_next": 2, "stall_stream": 1.5}),
        ExchangeTimer("cancel", "c#1"),
        OpenOrdersSnapshot("r2", "acct", (open_order,), T0),
        BalanceSnapshot("r3", "default", (("USD", D("999.5")),), T0, realized_pnl=D("-1.5"),
                        fees_paid=D("0.25")),
        FillsSnapshot("r4", "default", (fill, fill.replace(fill_id="F2")), 9, T0, more=True),
        OrderExpired("c", SYM, D("3"), "IOC remainder", T0),
        StreamStatus(False, "connection lost", T0),
        ExchangeError(code="bad_frame", reason="x", ts=T0, ref="c1"),
    ]
    for msg in samples:
        back = decode(encode(msg))
        assert back == msg and type(back) is type(msg), msg


def test_new_messages_validate_their_fields():
    from messages import MessageError

    with pytest.raises(MessageError):
        SubmitOrder("not an order")  # type: ignore[arg-type]  # wrong on purpose: refused
    with pytest.raises(MessageError):
        QueryFills("r", since_cursor=-1)
    with pytest.raises(MessageError):
        Subscribe((SYM, ""))
    with pytest.raises(MessageError):
        StreamStatus("yes", "x", T0)  # type: ignore[arg-type]  # wrong on purpose: refused
    with pytest.raises(MessageError):
        ExchangeFault(["reject_next"])  # type: ignore[arg-type]  # wrong on purpose: refused
    assert Subscribe(SYM).symbols == (SYM,)
