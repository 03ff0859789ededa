"""The trading rules' figures, exactly: what a decision records, which
configuration reaches which limit, how a fill moves a position.

Each of these is a rule's observable output (DESIGN section 5 and 6): the
audit record of a decision carries its inputs; a limit the user configured
is the limit the gate applies; a fill id is applied once and a position's
average price and realized PnL follow the fills. Asserting the whole
record, not a field or two, is what makes a renamed key or a swapped
field fail a test.
"""

from __future__ import annotations

from decimal import Decimal as D

from config import load_config
from messages.enums import OrderPurpose, Side
from tests.test_gate import KEY, buy, fill, sell, state
from trading.positions import FillLedger, InFlight, Position, PositionBook
from trading.gate import HALTED, MarketView, decide
from trading.limits import Limits
from trading.reasons import Reason

BASE = {"symbol": "BTC", "account": "default", "purpose": "entry", "reduce_only": False,
        "trading_state": "ACTIVE", "positions_fresh": True, "bid": "100", "ask": "100.02"}


def test_an_approved_entry_records_every_input() -> None:
    st = state()
    st.book.add_inflight(InFlight("o1", KEY, Side.SELL, D(2), OrderPurpose.STOP, True))
    fill(st, Side.BUY, 3)
    d = decide(buy(1, purpose=OrderPurpose.HEDGE), st, 0)
    assert (d.approved, d.reason, d.risk_reducing) == (True, Reason.APPROVED, False)
    assert d.inputs == {**BASE, "side": "buy", "qty": "1", "purpose": "hedge", "position": "3",
                        "pending": ["0", "2"], "price": "100.02"}


def test_a_refusal_records_the_limit_it_hit() -> None:
    d = decide(buy(101), state(), 0)
    assert (d.approved, d.reason) == (False, Reason.MAX_ORDER_SIZE)
    assert d.inputs == {**BASE, "side": "buy", "qty": "101", "position": "0",
                        "pending": ["0", "0"], "limit": "100"}
    d = decide(buy("0.5"), state(), 0)
    assert (d.reason, d.inputs["limit"], d.inputs["qty"]) == (Reason.MIN_ORDER_SIZE, "1", "0.5")
    st = state(limits=Limits(max_position_size=D(40), duplicate_position_check=False))
    fill(st, Side.SELL, 35)
    d = decide(sell(6), st, 0)
    assert d.reason is Reason.MAX_POSITION_SIZE
    assert (d.inputs["worst_case_qty"], d.inputs["limit"], d.inputs["position"]) == ("41", "40",
                                                                                    "-35")
    st = state()
    st.market["BTC"] = MarketView(D("100"), D("101"))
    d = decide(buy(1), st, 0)
    assert (d.reason, d.inputs["spread_bps"], d.inputs["limit"]) == (Reason.MAX_SPREAD,
                                                                     "99.50", "50")
    st.market["BTC"] = MarketView(D("100"), D("100.02"), volatility=D("0.03"))
    d = decide(buy(1), st, 0)
    assert (d.inputs["volatility"], d.inputs["limit"]) == ("0.03", "0.02")
    st.market["BTC"] = MarketView(D("100"), D("100.02"), adv=D(5))
    assert decide(buy(1), st, 0).inputs["adv"] == "5"
    d = decide(buy(10, stop_loss=D(40)), state(), 0)
    assert (d.inputs["loss_at_stop"], d.inputs["limit"]) == ("600.20", "500")
    d = decide(buy(20), state(limits=Limits(account_equity=D(1000))), 0)
    assert (d.reason, d.inputs["concentration"]) == (Reason.MAX_POSITION_CONCENTRATION, "2.0004")
    d = decide(buy(1), state(cooldown_until={"BTC": 9.5}), 3)
    assert (d.reason, d.inputs["until"]) == (Reason.STOP_OUT_COOLDOWN, 9.5)


def test_a_reduce_only_order_that_would_not_reduce_says_so() -> None:
    d = decide(sell(1, reduce_only=True), state(), 0)
    assert (d.approved, d.reason) == (False, Reason.NETTING_CONFLICT)
    assert d.inputs["note"] == "reduce_only order would not reduce"
    assert d.inputs["reduce_only"] is True


def test_an_exit_passes_every_guard_that_stops_new_risk() -> None:
    """Halted, stale, recovering, breaker open, rate limited: an exit still goes out."""
    st = state(trading_state=HALTED, positions_fresh=False, recovering=True)
    fill(st, Side.BUY, 5)
    st.breaker.failure(0), st.breaker.failure(0), st.breaker.failure(0)
    st.limiter.tokens = 0.0
    d = decide(sell(5), st, 0)
    assert (d.approved, d.risk_reducing) == (True, True)
    assert d.inputs["trading_state"] == "HALTED" and d.inputs["positions_fresh"] is False
    assert decide(buy(1), st, 0).reason is Reason.KILL_SWITCH


def test_malformed_intents_are_refused_not_compared() -> None:
    from trading.gate import Intent

    refused = {Reason.INVALID_SIGNAL, Reason.OUT_OF_RANGE}
    for qty in (D("NaN"), D("Infinity"), D(0), D(-1), True, 1.5, "1", 2):
        d = decide(Intent("BTC", Side.BUY, qty), state(), 0)  # type: ignore[arg-type]  # wrong on purpose: refused
        assert not d.approved and d.reason in refused, qty
    d = decide(Intent("BTC", "buy", D(1)), state(), 0)  # type: ignore[arg-type]  # wrong on purpose: refused
    assert not d.approved and d.reason in refused
    assert decide(Intent("BTC", Side.BUY, D(2)), state(), 0).approved


def test_every_configured_limit_reaches_the_gate() -> None:
    cfg = load_config(overrides={"risk": {
        "max_position_size": "900", "max_order_size": "90", "min_order_size": "2",
        "max_spread_bps": "40", "max_volatility": "0.03", "max_volume_participation": "0.2",
        "max_daily_loss": "700", "max_loss_per_trade": "300",
        "max_position_concentration": "0.3", "fail_closed_on_missing_positions": False,
        "position_staleness_s": 45.0, "stop_out_cooldown_s": 12.0,
        "block_duplicate_positions": False,
        "rate_limit": {"orders_per_s": "3", "burst": 7},
        "circuit_breaker": {"failures_to_open": 4, "cool_off_s": 9.0},
        "hedging_mode": {"a1": True, "a2": False},
        "per_symbol": {"ETHUSDT": {"max_order_size": "5"}}}})
    lim = Limits.from_config(cfg.risk, account_equity=D(5000))
    assert lim == Limits(
        max_position_size=D(900), max_order_size=D(90), min_order_size=D(2),
        max_spread_bps=D(40), max_volatility=D("0.03"), max_volume_participation=D("0.2"),
        max_daily_loss=D(700), max_loss_per_trade=D(300), max_position_concentration=D("0.3"),
        account_equity=D(5000), stop_out_cooldown_s=12.0, duplicate_position_check=False,
        fail_closed_on_missing_positions=False, positions_stale_after_s=45.0,
        orders_per_s=3.0, order_burst=7, breaker_failures=4, breaker_cooloff_s=9.0,
        hedging_accounts=frozenset({"a1"}))
    assert lim.per_symbol == {"ETHUSDT": {"max_order_size": D(5)}}
    eth = lim.for_symbol("ETHUSDT")
    assert eth.max_order_size == 5 and eth.max_position_size == 900 and eth.per_symbol == {}
    assert lim.for_symbol("BTCUSDT") is lim
    assert Limits.from_config(cfg.risk).account_equity == Limits().account_equity


def test_a_fill_id_is_applied_once_and_the_ledger_stays_bounded() -> None:
    ledger = FillLedger(keep=2)
    assert ledger.first_time("a") and ledger.first_time("b") and not ledger.first_time("a")
    assert ledger.first_time("c")  # over the bound: the oldest id is forgotten
    assert "a" not in ledger and "b" in ledger and "c" in ledger
    ledger.load([("d", "o4"), ("c", "")])
    assert "b" not in ledger and "d" in ledger
    ledger.forget("o4")  # its order left memory: so do its fill ids
    assert "d" not in ledger and "c" in ledger and len(ledger) == 1

    book = PositionBook()
    book.add_inflight(InFlight("o1", KEY, Side.BUY, D(5), OrderPurpose.ENTRY, False))
    assert book.apply_fill("o1", "f1", Side.BUY, D(2), D(100), D("0.1"), KEY) == D("-0.1")
    assert book.apply_fill("o1", "f1", Side.BUY, D(2), D(100), D("0.1"), KEY) is None
    assert book.inflight["o1"].filled == 2 and book.inflight["o1"].fills == ["f1"]
    assert book.pending(KEY) == (D(3), D(0))
    book.apply_fill("o1", "f2", Side.BUY, D(3), D(110), D(0), KEY)
    assert "o1" not in book.inflight and book.pending(KEY) == (D(0), D(0)), "filled: out of flight"
    pos = book.position(KEY)
    assert (pos.qty, pos.avg_price, pos.fees, pos.realized) == (D(5), D(106), D("0.1"),
                                                               D("-0.1"))
    assert book.close_inflight("nope") is None


def test_a_position_follows_its_fills_through_zero() -> None:
    pos = Position()
    assert pos.apply(Side.SELL, D(4), D(50)) == 0 and (pos.qty, pos.avg_price) == (D(-4), D(50))
    assert pos.unrealized(D(45)) == D(20) and pos.unrealized(None) == 0
    assert pos.apply(Side.BUY, D(1), D(40), D("0.5")) == D("9.5")  # covered 1 at 10 profit
    assert (pos.qty, pos.avg_price) == (D(-3), D(50))
    assert pos.apply(Side.BUY, D(5), D(60)) == D(-30)  # covered 3 at 10 loss, then long 2
    assert (pos.qty, pos.avg_price, pos.realized) == (D(2), D(60), D("-20.5"))
    assert pos.apply(Side.SELL, D(2), D(61)) == D(2) and (pos.qty, pos.avg_price) == (0, 0)
    assert Position().unrealized(D(1)) == 0


def test_netting_and_worst_case_count_in_flight_orders_on_both_sides() -> None:
    """In-flight orders count (an exit plan's own protective orders, purpose STOP,
    are left out by design: tests/test_exit_plans.py)."""
    book = PositionBook()
    book.position(KEY).apply(Side.BUY, D(10), D(100))
    book.add_inflight(InFlight("s1", KEY, Side.SELL, D(4), OrderPurpose.EXIT, True))
    assert book.guaranteed_reduce(KEY, Side.SELL, D(6))
    assert not book.guaranteed_reduce(KEY, Side.SELL, D("6.01"))
    assert not book.guaranteed_reduce(KEY, Side.BUY, D(1))
    assert not book.netting_conflict(KEY, Side.BUY, D(1)), "adding to a long is no conflict"
    assert book.netting_conflict(KEY, Side.SELL, D(7))
    assert book.worst_case_qty(KEY, Side.BUY, D(3)) == 13
    assert book.worst_case_qty(KEY, Side.SELL, D(8)) == 10  # if nothing fills: still 10 long
    assert book.worst_case_qty(KEY, Side.SELL, D(20)) == 14
    short = PositionBook()
    short.position(KEY).apply(Side.SELL, D(10), D(100))
    short.add_inflight(InFlight("b1", KEY, Side.BUY, D(4), OrderPurpose.EXIT, True))
    assert short.guaranteed_reduce(KEY, Side.BUY, D(6))
    assert not short.guaranteed_reduce(KEY, Side.BUY, D("6.01"))
    assert short.netting_conflict(KEY, Side.BUY, D(7))
    assert not short.netting_conflict(KEY, Side.SELL, D(1))
    assert short.worst_case_qty(KEY, Side.BUY, D(1)) == 10
    flat = PositionBook()
    flat.add_inflight(InFlight("b2", KEY, Side.BUY, D(2), OrderPurpose.ENTRY, False))
    assert flat.netting_conflict(KEY, Side.SELL, D(1)), "a pending buy makes a sell a conflict"
    assert not flat.guaranteed_reduce(KEY, Side.SELL, D(1))


def test_fractional_positions_close_and_flip_at_the_right_price() -> None:
    long_half = Position()
    long_half.apply(Side.BUY, D("0.5"), D(100))
    assert long_half.apply(Side.SELL, D("0.5"), D(110)) == D(5), "half a unit long, closed at +10"
    flip_up = Position()
    flip_up.apply(Side.SELL, D(1), D(100))
    assert flip_up.apply(Side.BUY, D("1.5"), D(90)) == D(10)  # short 1 covered at +10 ...
    assert (flip_up.qty, flip_up.avg_price) == (D("0.5"), D(90))  # ... then long 0.5 at 90
    assert flip_up.unrealized(D(92)) == D(1)
    flip_down = Position()
    flip_down.apply(Side.BUY, D(2), D(100))
    assert flip_down.apply(Side.SELL, D(3), D(95)) == D(-10)  # long 2 sold at -5 each ...
    assert (flip_down.qty, flip_down.avg_price) == (D(-1), D(95))  # ... then short 1 at 95
    assert flip_down.unrealized(D(90)) == D(5)


def test_an_order_replaced_under_another_key_leaves_the_old_key() -> None:
    book = PositionBook()
    other = ("default", "sim", "ETH")
    book.add_inflight(InFlight("o1", KEY, Side.BUY, D(5), OrderPurpose.ENTRY, False))
    book.add_inflight(InFlight("o1", other, Side.BUY, D(3), OrderPurpose.ENTRY, False))
    assert book.pending(KEY) == (D(0), D(0)) and book.pending(other) == (D(3), D(0))
    assert book.close_inflight("o1") is not None and book.pending(other) == (D(0), D(0))


def test_an_order_that_only_reduces_is_never_a_netting_conflict() -> None:
    book = PositionBook()
    book.position(KEY).apply(Side.BUY, D(10), D(100))
    book.add_inflight(InFlight("s1", KEY, Side.SELL, D(4), OrderPurpose.EXIT, True))
    assert not book.netting_conflict(KEY, Side.SELL, D(6)), "6 more can only reduce the 10"
    assert book.netting_conflict(KEY, Side.SELL, D("6.01"))


def test_pnl_of_a_key_without_a_position_is_zero() -> None:
    from trading.pnl import PnlTracker

    book, market = PositionBook(), {"BTC": MarketView(D(99), D(101))}
    pnl = PnlTracker(book, market)
    pnl.update_key(KEY)  # asked about a key the book never held
    pnl.mark_symbol("BTC")
    assert (pnl.daily, pnl.positions) == (D(0), {"BTC": "0"})
    book.apply_fill("o", "f1", Side.BUY, D("1.50"), D(100), D(0), KEY)
    pnl.update_key(KEY)
    assert (pnl.daily, pnl.positions) == (D(0), {"BTC": "1.50"})


def test_an_exit_of_a_fractional_position_is_an_exit() -> None:
    st = state(trading_state=HALTED)
    fill(st, Side.BUY, "0.5")
    d = decide(sell("0.5"), st, 0)
    assert (d.approved, d.risk_reducing) == (True, True), "halted, yet the exit goes out"
    st = state(trading_state=HALTED)
    fill(st, Side.SELL, "0.5")
    assert decide(buy("0.5"), st, 0).risk_reducing


def test_an_open_breaker_records_its_state() -> None:
    st = state()
    st.breaker.failure(0), st.breaker.failure(0), st.breaker.failure(0)
    d = decide(buy(1), st, 1)
    assert (d.reason, d.inputs["breaker"]) == (Reason.CIRCUIT_OPEN, "open")
