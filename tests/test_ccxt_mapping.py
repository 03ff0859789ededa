"""The ccxt adapter's pure parts on the venue's documented shapes.

Report fixtures follow the ``ORDER_TRADE_UPDATE`` example of Binance's
USDⓈ-M futures user-data stream docs ("Event: Order Update": fields s, c, S,
o, f, q, p, ap, sp, x, X, i, l, z, L, N, n, T, t, R, ps, ...), the
``ALGO_UPDATE`` example ("Event: Algo Order Update": caid, aid, X, ai, aq,
...) and the bookTicker stream; each case varies the execution type /
status / quantities as the docs define them (partial fill: x=TRADE
X=PARTIALLY_FILLED; canceled after a partial fill: x=CANCELED with z>0;
IOC remainder: x=EXPIRED, f=IOC).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import pytest

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.errors import Kind, classify, retry_after_s
from exchange.ccxt_venue.ids import ClientIdError, max_account_len, venue_client_id
from exchange.ccxt_venue.markets import binance_rules
from exchange.ccxt_venue.orders import order_call
from exchange.ccxt_venue.queries import positions_snapshot
from exchange.ccxt_venue.weights import RequestBudget, Window
from messages import (CancelConfirmed, OrderAcked, OrderFilled, OrderRejected, OrderRequest,
                      OrderType, Side, TimeInForce, utc_now)
from messages.enums import CancelOutcome
from messages.exchange import OrderExpired


def report(**over: Any) -> dict[str, Any]:
    """Binance's documented ORDER_TRADE_UPDATE ``o`` object (a NEW limit sell)."""
    o = {"s": "BTCUSDT", "c": "default-1a2b3c4d-7", "S": "SELL", "o": "LIMIT", "f": "GTC",
         "q": "0.003", "p": "7103.04", "ap": "0", "sp": "0", "x": "NEW", "X": "NEW",
         "i": 8886774, "l": "0", "z": "0", "L": "0", "N": "USDT", "n": "0",
         "T": 1568879465650, "t": 0, "b": "0", "a": "9.91", "m": False, "R": False,
         "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "BOTH", "cp": False, "rp": "0",
         "pP": False, "si": 0, "ss": 0, "V": "NONE", "pm": "NONE", "gtd": 0, "er": "0"}
    o.update(over)
    return o


def test_new_then_partial_fills_then_fill_each_once() -> None:
    tr = ev.OrderTracker()
    out = ev.order_update(report(), tr, "default")
    assert [type(e) for e in out] == [OrderAcked]
    assert out[0].exchange_order_id == "8886774"
    out = ev.order_update(report(x="TRADE", X="PARTIALLY_FILLED", l="0.001", z="0.001",
                                 L="7103.04", n="0.0028", t=51), tr, "default")
    assert len(out) == 1 and isinstance(out[0], OrderFilled)
    f = out[0]
    assert (f.fill_id, f.qty, f.price, f.leaves_qty, f.side, f.fee) == (
        "BTCUSDT-51", Decimal("0.001"), Decimal("7103.04"), Decimal("0.002"), Side.SELL,
        Decimal("0.0028"))
    # the same trade reported again keeps its fill id: the coordinator dedups it
    again = ev.order_update(report(x="TRADE", X="PARTIALLY_FILLED", l="0.001", z="0.001",
                                   L="7103.04", t=51), tr, "default")
    assert again[0].fill_id == f.fill_id
    out = ev.order_update(report(x="TRADE", X="FILLED", l="0.002", z="0.003", L="7103.05",
                                 t=52), tr, "default")
    assert out[0].leaves_qty == 0 and out[0].qty == Decimal("0.002")
    assert tr.get("default-1a2b3c4d-7").ended


def test_canceled_after_partial_fill_reports_what_was_left() -> None:
    tr = ev.OrderTracker()
    ev.order_update(report(), tr, "default")
    ev.order_update(report(x="TRADE", X="PARTIALLY_FILLED", l="0.001", z="0.001", L="7103.04",
                           t=60), tr, "default")
    out = ev.order_update(report(x="CANCELED", X="CANCELED", z="0.001"), tr, "default")
    assert len(out) == 1 and isinstance(out[0], CancelConfirmed)
    assert out[0].outcome is CancelOutcome.CANCELED and out[0].canceled_qty == Decimal("0.002")
    # the REST cancel answer for the same order ends nothing twice
    rest = ev.rest_order_events({"orderId": 8886774, "status": "CANCELED", "origQty": "0.003",
                                 "executedQty": "0.001"}, tr, "default-1a2b3c4d-7", "BTCUSDT",
                                utc_now())
    assert rest == []


def test_expired_ioc_remainder() -> None:
    tr = ev.OrderTracker()
    ev.order_update(report(f="IOC"), tr, "default")
    ev.order_update(report(f="IOC", x="TRADE", X="PARTIALLY_FILLED", l="0.001", z="0.001",
                           L="7103.04", t=70), tr, "default")
    out = ev.order_update(report(f="IOC", x="EXPIRED", X="EXPIRED", z="0.001", er="2"), tr,
                          "default")
    assert len(out) == 1 and isinstance(out[0], OrderExpired)
    assert out[0].expired_qty == Decimal("0.002") and "IOC" in out[0].reason


def test_fill_before_any_ack_is_preceded_by_one_ack() -> None:
    tr = ev.OrderTracker()
    out = ev.order_update(report(x="TRADE", X="FILLED", o="MARKET", l="0.003", z="0.003",
                                 L="7000", t=5), tr, "default")
    assert [type(e) for e in out] == [OrderAcked, OrderFilled]
    # the REST answer arriving afterwards acks nothing again (no status going back)
    assert ev.rest_order_events({"orderId": 8886774, "status": "FILLED", "origQty": "0.003",
                                 "executedQty": "0.003"}, tr, "default-1a2b3c4d-7", "BTCUSDT",
                                utc_now()) == []


def test_algo_update_new_cancel_and_triggered_order_reports() -> None:
    tr = ev.OrderTracker()
    algo = {"caid": "default-1a2b3c4d-9", "aid": 2148719, "at": "CONDITIONAL", "o": "STOP",
            "s": "BNBUSDT", "S": "SELL", "ps": "BOTH", "f": "GTC", "q": "0.01", "X": "NEW",
            "ai": "", "ap": "0.00000", "aq": "0.00000", "act": "0", "tp": "750", "p": "745",
            "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False,
            "pP": False, "R": True, "tt": 0, "gtd": 0}
    out = ev.algo_update(algo, tr, 1750515742297)
    assert [type(e) for e in out] == [OrderAcked]
    assert out[0].exchange_order_id == "algo-2148719"
    ev.algo_update({**algo, "X": "TRIGGERED", "ai": "9911"}, tr, 1750515742300)
    # the matching-engine order carries another client id: found by its order id
    out = ev.order_update(report(s="BNBUSDT", c="x-engine", i=9911, q="0.01", x="TRADE",
                                 X="FILLED", l="0.01", z="0.01", L="745", t=3), tr, "default")
    assert [type(e) for e in out] == [OrderFilled]
    assert out[0].client_order_id == "default-1a2b3c4d-9"
    tr2 = ev.OrderTracker()
    ev.algo_update(algo, tr2, 1)
    out = ev.algo_update({**algo, "X": "CANCELED"}, tr2, 2)
    assert isinstance(out[0], CancelConfirmed) and out[0].canceled_qty == Decimal("0.01")


def test_bad_reports_are_parse_errors_not_crashes() -> None:
    tr = ev.OrderTracker()
    for bad in (report(q="NaN"), report(q="-1"), report(S="UP", x="TRADE", l="1", t=1),
                report(x="TRADE", l="0.001", t=0), {"s": ""}, "nope"):
        with pytest.raises(ev.ParseError):
            ev.order_update(bad, tr, "default")  # type: ignore[arg-type]  # wrong on purpose: refused
    with pytest.raises(ev.ParseError):
        ev.book_ticker({"s": "BTCUSDT", "b": "101", "a": "100", "T": 1}, utc_now())


def test_book_ticker_to_quote() -> None:
    q = ev.book_ticker({"e": "bookTicker", "u": 400900217, "E": 1568014460893,
                        "T": 1568014460891, "s": "BNBUSDT", "b": "25.35190000",
                        "B": "31.21000000", "a": "25.36520000", "A": "40.66000000"}, utc_now())
    assert (q.symbol, q.bid, q.ask, q.bid_size) == ("BNBUSDT", Decimal("25.35190000"),
                                                     Decimal("25.36520000"), Decimal("31.21"))


def _req(otype: OrderType, **kw: Any) -> OrderRequest:
    base: dict[str, Any] = {"price": None, "trigger_price": None}
    base.update(kw)
    return OrderRequest("default-1a2b3c4d-7", "BTCUSDT", Side.SELL, otype, Decimal("0.010"),
                        utc_now(), **base)


def test_order_mapping_per_type() -> None:
    m = order_call(_req(OrderType.MARKET, reduce_only=True), "BTC/USDT:USDT")
    assert (m.type, m.amount, m.price, m.algo) == ("market", "0.01", None, False)
    assert m.params == {"newClientOrderId": "default-1a2b3c4d-7", "reduceOnly": True}
    m = order_call(_req(OrderType.LIMIT, price=Decimal("100.50"), tif=TimeInForce.IOC), "X")
    assert (m.type, m.price, m.params["timeInForce"]) == ("limit", "100.5", "IOC")
    m = order_call(_req(OrderType.STOP_LIMIT, price=Decimal("99"), trigger_price=Decimal("99.5")),
                   "X")
    assert (m.type, m.algo, m.params["stopPrice"], m.price) == ("limit", True, "99.5", "99")
    if hasattr(OrderType, "STOP_MARKET"):
        m = order_call(_req(OrderType.STOP_MARKET, trigger_price=Decimal("98")), "X")
        assert (m.type, m.algo, m.params["stopPrice"]) == ("market", True, "98")
    # hedge mode: positionSide instead of reduceOnly
    m = order_call(_req(OrderType.MARKET, reduce_only=True), "X", hedge_mode=True)
    assert m.params.get("positionSide") == "LONG" and "reduceOnly" not in m.params


def test_client_ids_identity_or_refused() -> None:
    assert venue_client_id("default-1a2b3c4d-123") == "default-1a2b3c4d-123"
    for bad in ("x" * 37, "has space", "ümlaut", ""):
        with pytest.raises(ClientIdError):
            venue_client_id(bad)
    longest = "a" * max_account_len() + "-1a2b3c4d-" + "9" * 12
    assert venue_client_id(longest) == longest


def _exc(cls: type, body: str) -> BaseException:
    return cls(f"binanceusdm {body}")


@pytest.mark.parametrize("exc, kind, code", [
    (_exc(ccxt.InsufficientFunds, '{"code":-2019,"msg":"Margin is insufficient."}'),
     Kind.REJECTED, "insufficient_funds"),
    (_exc(ccxt.InvalidOrder, '{"code":-4164,"msg":"notional must be no smaller than 5"}'),
     Kind.REJECTED, "min_notional"),
    (_exc(ccxt.InvalidOrder, '{"code":-4116,"msg":"ClientOrderId is duplicated."}'),
     Kind.REJECTED, "duplicate_client_order_id"),
    (_exc(ccxt.OrderNotFound, '{"code":-2011,"msg":"Unknown order sent."}'),
     Kind.NOT_FOUND, "unknown_order"),
    (_exc(ccxt.OperationRejected, '{"code":-2011,"msg":"Unknown order sent."}'),
     Kind.NOT_FOUND, "unknown_order"),
    (_exc(ccxt.RateLimitExceeded, '429 Too Many Requests {"code":-1003,"msg":"Too many"}'),
     Kind.RATE_LIMITED, "rate_limited"),
    (_exc(ccxt.DDoSProtection, "418 I'm a teapot"), Kind.BANNED, "ip_banned"),
    (_exc(ccxt.BadRequest, '{"code":-1021,"msg":"Timestamp outside of the recvWindow."}'),
     Kind.CLOCK_SKEW, "clock_skew"),
    (_exc(ccxt.InvalidNonce, "Timestamp for this request"), Kind.CLOCK_SKEW, "clock_skew"),
    (_exc(ccxt.RequestTimeout, "request timed out (10000 ms)"), Kind.UNKNOWN, "timeout"),
    (_exc(ccxt.NetworkError, "Cannot connect"), Kind.UNKNOWN, "network"),
    (_exc(ccxt.ExchangeNotAvailable, '503 {"code":-1000,"msg":"unknown"}'),
     Kind.UNKNOWN, "venue_internal"),
    (RuntimeError("something odd"), Kind.UNKNOWN, "unknown_outcome"),
])
def test_error_classification(exc: BaseException, kind: Kind, code: str) -> None:
    c = classify(exc)
    assert (c.kind, c.code) == (kind, code)


def test_retry_after_header() -> None:
    assert retry_after_s({"Retry-After": "7"}, 1.0) == 7.0
    assert retry_after_s({"retry-after": "x"}, 1.0) == 1.0
    assert retry_after_s(None, 3.0) == 3.0
    assert retry_after_s({"Retry-After": "1e9"}, 2.0) == 2.0


def test_request_budget_window_and_hold() -> None:
    now = [0.0]
    b = RequestBudget(lambda: now[0], weight=Window(10, 60.0), orders=Window(2, 10.0))
    assert b.take(5) and b.take(5)
    assert not b.take(1) and b.wait_s(1) == pytest.approx(60.0)
    now[0] = 60.0
    assert b.take(1, order=True) and b.take(1, order=True)
    assert not b.take(1, order=True)  # orders per 10 s
    now[0] = 71.0
    b.hold(30.0, "HTTP 429")
    assert b.wait_s(1) == pytest.approx(30.0) and not b.take(1)
    now[0] = 101.0
    assert b.take(1)


def test_binance_filters_to_rules() -> None:
    info = {"symbol": "BTCUSDT", "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764",
         "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120",
         "minQty": "0.001"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
         "multiplierDecimal": 4}]}
    r = binance_rules(info)
    assert r == {"tick_size": "0.1", "min_price": "556.8", "max_price": "4529764",
                 "step_size": "0.001", "min_qty": "0.001", "max_qty": "1000",
                 "market_step_size": "0.001", "market_min_qty": "0.001",
                 "market_max_qty": "120", "min_notional": "100", "price_band_up": "1.05",
                 "price_band_down": "0.95"}


def test_positions_net_with_entry_price() -> None:
    rows = [{"symbol": "BTCUSDT", "positionAmt": "0.010", "entryPrice": "100", "positionSide":
             "BOTH"},
            {"symbol": "ETHUSDT", "positionAmt": "2", "entryPrice": "10", "positionSide": "LONG"},
            {"symbol": "ETHUSDT", "positionAmt": "-0.5", "entryPrice": "12",
             "positionSide": "SHORT"},
            {"symbol": "XRPUSDT", "positionAmt": "0", "entryPrice": "0"}]
    snap = positions_snapshot(rows, "r1", "default", utc_now())
    assert snap.as_dict() == {"BTCUSDT": Decimal("0.010"), "ETHUSDT": Decimal("1.5")}
    assert dict(snap.entry_prices)["BTCUSDT"] == Decimal("100")


def test_rejection_reason_codes_are_protocol_shaped() -> None:
    tr = ev.OrderTracker()
    out = ev.rest_order_events({"orderId": 1, "status": "REJECTED"}, tr, "c-1", "BTCUSDT",
                               utc_now())
    assert isinstance(out[0], OrderRejected) and out[0].reason.startswith("venue_rejected:")


def test_http_status_decides_ban_and_rate_limit() -> None:
    # ccxt raises DDoSProtection for Binance's 429 and puts the status first
    c = classify(ccxt.DDoSProtection('binanceusdm 429 Too Many Requests {"code": -1003}'))
    assert c.kind is Kind.RATE_LIMITED
    c = classify(ccxt.DDoSProtection('binanceusdm 418 I\'m a teapot {"code": -1003}'))
    assert c.kind is Kind.BANNED
