"""The venue's instrument rules in the risk gate (trading.venue_rules).

Rules are data; the numbers below are Binance BTCUSDT-like (tick 0.1, step
0.001, min notional 100) but nothing here knows about Binance: an equity
venue's (tick 0.01, step 1) goes through the same code.
"""

from __future__ import annotations

from decimal import Decimal as D

from messages.enums import OrderType, Side
from trading.gate import GateState, Intent, MarketView, decide
from trading.positions import PositionBook
from trading.limits import CircuitBreaker, Limits, RateLimiter
from trading.reasons import Reason
from trading.venue_rules import InstrumentRules, check, conform, round_down, rules_table

BTC = InstrumentRules.from_mapping({
    "tick_size": "0.1", "step_size": "0.001", "min_qty": "0.001", "max_qty": "1000",
    "market_step_size": "0.001", "market_min_qty": "0.001", "market_max_qty": "120",
    "min_notional": "100", "min_price": "556.8", "max_price": "4529764",
    "price_band_up": "1.05", "price_band_down": "0.95"})
STOCK = InstrumentRules.from_mapping({"tick_size": "0.01", "step_size": "1", "min_qty": "1"})


def state(rules: dict[str, InstrumentRules]) -> GateState:
    limits = Limits(instrument_rules=rules, min_order_size=D("0.001"),
                    max_position_concentration=D(1))
    return GateState(limits=limits, book=PositionBook(),
                     market={"BTCUSDT": MarketView(D("60000.0"), D("60000.1")),
                             "AAPL": MarketView(D("190.00"), D("190.01"))},
                     symbols=frozenset({"BTCUSDT", "AAPL"}), limiter=RateLimiter(1000, 1000),
                     breaker=CircuitBreaker(3, 30), positions_fresh=True)


def test_quantity_rounds_down_never_up() -> None:
    assert round_down(D("0.0129"), D("0.001")) == D("0.012")
    assert round_down(D("0.0009"), D("0.001")) == 0
    assert round_down(D("7.99"), D("1")) == D("7")
    c = conform(BTC, Side.BUY, D("0.0129"), price=None, trigger=None, market=True)
    assert c.qty == D("0.012") and c.notes == {"qty_requested": "0.0129"}


def test_prices_go_on_the_tick_in_the_passive_direction() -> None:
    buy = conform(BTC, Side.BUY, D("1"), price=D("60000.17"), trigger=None, market=False)
    sell = conform(BTC, Side.SELL, D("1"), price=D("60000.11"), trigger=D("60010.01"), market=False)
    assert buy.price == D("60000.1")          # a buy never pays more than asked
    assert sell.price == D("60000.2")         # a sell never takes less than asked
    assert sell.trigger == D("60010.1")


def test_gate_refuses_what_breaks_the_rules_with_a_reason() -> None:
    st = state({"BTCUSDT": BTC, "AAPL": STOCK})
    tiny = decide(Intent("BTCUSDT", Side.BUY, D("0.001")), st, 0)
    assert tiny.reason is Reason.VENUE_MIN_NOTIONAL and not tiny.approved
    assert tiny.inputs["min_notional"] == "100"
    off_step = decide(Intent("BTCUSDT", Side.BUY, D("0.0125")), st, 0)
    assert off_step.reason is Reason.VENUE_LOT_SIZE
    too_big = decide(Intent("BTCUSDT", Side.BUY, D("121")), st, 0)
    assert too_big.reason is Reason.VENUE_LOT_SIZE and too_big.inputs["max_qty"] == "120"
    band = decide(Intent("BTCUSDT", Side.BUY, D("0.01"), limit_price=D("70000.0"),
                         order_type=OrderType.LIMIT), st, 0)
    assert band.reason is Reason.VENUE_PRICE_BAND
    tick = decide(Intent("BTCUSDT", Side.BUY, D("0.01"), limit_price=D("60000.05"),
                         order_type=OrderType.LIMIT), st, 0)
    assert tick.reason is Reason.VENUE_TICK_SIZE
    ok = decide(Intent("BTCUSDT", Side.BUY, D("0.002")), st, 0)
    assert ok.approved
    shares = decide(Intent("AAPL", Side.BUY, D("1.5")), st, 0)
    assert shares.reason is Reason.VENUE_LOT_SIZE  # not on the 1-share step


def test_reduce_only_exit_is_exempt_from_min_notional_only() -> None:
    st = state({"BTCUSDT": BTC})
    st.book.apply_fill("x", "f1", Side.BUY, D("0.002"), D("60000"), D(0),
                       ("default", "sim", "BTCUSDT"))
    assert decide(Intent("BTCUSDT", Side.SELL, D("0.001"), reduce_only=True), st, 0).approved
    odd = decide(Intent("BTCUSDT", Side.SELL, D("0.0015"), reduce_only=True), st, 0)
    assert odd.reason is Reason.VENUE_LOT_SIZE


def test_symbols_without_rules_are_not_checked() -> None:
    st = state({})
    assert decide(Intent("BTCUSDT", Side.BUY, D("0.0001234")), st, 0).reason \
        is not Reason.VENUE_LOT_SIZE
    assert check(None, D("0.1"), price=None, reference=None, market=True, reduce_only=False) is None


def test_rules_from_data_refuse_bad_numbers() -> None:
    import pytest

    with pytest.raises(ValueError, match="tick_size"):
        rules_table({"X": {"tick_size": "-1"}})
    with pytest.raises(ValueError, match="unknown rule"):
        rules_table({"X": {"lot": "1"}})


def test_coordinator_refuses_before_sending_audits_and_rounds_down(tmp_path) -> None:
    """Through the real tree: the refused order never reaches the exchange and
    has its audit record; an accepted one leaves with its quantity rounded down."""
    from exchange.events_log import read_events
    from trading.audit import read_audit
    from tests.test_coordinator import Rig

    rig = Rig(tmp_path, risk={"min_order_size": "0.001", "max_position_concentration": "1"})
    rig.spec.instrument_rules = {"BTCUSDT": {"tick_size": "0.1", "step_size": "0.001",
                                             "min_qty": "0.001", "min_notional": "100"}}
    rig.start()
    try:
        rig.quote(bid="60000.0", ask="60000.1")
        rig.signal("buy", "0.001")
        rig.signal("buy", "0.0029")
        rig.advance(1.0)
    finally:
        rig.rt.stop()
    audit = [r for r in read_audit(tmp_path / "audit.jsonl") if r.get("kind") == "risk_decision"]
    reasons = [r["reason"] for r in audit]
    assert reasons == ["venue_min_notional", "approved"], reasons
    assert audit[1]["inputs"]["qty"] == "0.002" and audit[1]["inputs"]["qty_requested"] == "0.0029"
    submitted = [e for e in read_events(tmp_path / "events.jsonl")
                 if e["kind"] == "order_submitted"]
    assert len(submitted) == 1 and D(str(submitted[0]["qty"])) == D("0.002")


def test_venue_rate_limit_opens_the_breaker_for_retry_after_and_alerts(tmp_path) -> None:
    """An adapter's ``rate_limited`` report (a 429 with Retry-After) reaches the
    coordinator through the gateway: the breaker opens at once (not after N
    rejects), stays open for the Retry-After even past its cool-off, and the
    operator is alerted."""
    from messages import ExchangeError
    from tests.test_coordinator import Rig

    rig = Rig(tmp_path, risk={"circuit_breaker": {"cool_off_s": 5}})
    rig.start()
    try:
        rig.quote()
        alerts_before = rig.rt.info("alerts").get("received", 0)
        rig.tell("gateway", ExchangeError(code="rate_limited", reason="venue rate limit hit",
                                          ts=rig.clock.now(), retry_after_s=60.0))
        rig.advance(0.1)
        assert rig.coord["breaker"] == "open"
        assert rig.rt.info("alerts")["received"] == alerts_before + 1
        rig.signal("buy", "1")
        rig.advance(0.5)
        assert rig.coord["rejected"].get("circuit_open") == 1
        rig.advance(30)  # past the 5 s cool-off, inside the venue's 60 s
        rig.quote()
        rig.signal("buy", "1")
        rig.advance(0.5)
        assert rig.coord["rejected"].get("circuit_open") == 2
        rig.advance(31)
        rig.quote()
        rig.signal("buy", "1")  # the half-open trial goes out
        rig.advance(0.5)
        assert rig.coord["counts"]["approved"] == 1
    finally:
        rig.rt.stop()
