"""Risk gate rules (2, 3, 4, 5) on the pure decision function."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from messages.enums import OrderPurpose, Side
from trading.positions import InFlight, PositionBook
from trading.gate import HALTED, GateState, Intent, MarketView, decide
from trading.limits import CircuitBreaker, Limits, RateLimiter
from trading.reasons import Reason

KEY = ("default", "sim", "BTC")


def state(**kw):
    limits = kw.pop("limits", Limits())
    st = GateState(limits=limits, book=PositionBook(),
                   market={"BTC": MarketView(D("100"), D("100.02"))},
                   symbols=frozenset({"BTC"}), limiter=RateLimiter(1000, 1000),
                   breaker=CircuitBreaker(3, 30), positions_fresh=True)
    for k, v in kw.items():
        setattr(st, k, v)
    return st


def buy(q, **kw):
    return Intent("BTC", Side.BUY, D(q), **kw)


def sell(q, **kw):
    return Intent("BTC", Side.SELL, D(q), **kw)


def fill(st, side, q, price="100"):
    st.book.apply_fill("x", f"f{len(st.book.fills._seen)}", side, D(q), D(price), D(0), KEY)


def test_plain_entry_is_approved():
    assert decide(buy(10), state(), 0).reason is Reason.APPROVED


def test_two_rapid_opposite_signals_cannot_both_pass():
    st = state()
    st.book.add_inflight(InFlight("o1", KEY, Side.BUY, D(10), OrderPurpose.ENTRY, False))
    d = decide(sell(10), st, 0)
    assert d.reason is Reason.NETTING_CONFLICT and not d.approved


def test_reduce_only_exit_within_position_passes_and_beyond_is_blocked():
    st = state()
    fill(st, Side.BUY, 10)
    assert decide(sell(10), st, 0).approved
    assert decide(sell(11), st, 0).reason is Reason.NETTING_CONFLICT


def test_pending_sells_count_against_the_reduce_budget():
    st = state()
    fill(st, Side.BUY, 10)
    st.book.add_inflight(InFlight("o1", KEY, Side.SELL, D(6), OrderPurpose.EXIT, True))
    assert decide(sell(4), st, 0).approved
    assert decide(sell(5), st, 0).reason is Reason.NETTING_CONFLICT


def test_a_resting_protective_stop_is_not_the_other_side():
    """Long 10 with its stop (sell 10) resting: adding to the long cannot make
    the key short, so it is not a netting conflict (the duplicate-position
    check decides it); a sell entry could, so that one is."""
    st = state(limits=Limits(duplicate_position_check=False))
    fill(st, Side.BUY, 10)
    st.book.add_inflight(InFlight("sl", KEY, Side.SELL, D(10), OrderPurpose.STOP, True))
    assert decide(buy(5), st, 0).approved
    assert decide(sell(15), st, 0).reason is Reason.NETTING_CONFLICT
    st.limits = Limits()
    assert decide(buy(5), st, 0).reason is Reason.DUPLICATE_POSITION


def test_hedging_account_may_hold_both_sides():
    st = state(limits=Limits(hedging_accounts=frozenset({"default"})))
    fill(st, Side.BUY, 10)
    assert decide(sell(20), st, 0).approved


def test_fail_closed_without_fresh_positions_but_exits_pass():
    st = state(positions_fresh=False)
    assert decide(buy(5), st, 0).reason is Reason.POSITIONS_UNAVAILABLE
    fill(st, Side.BUY, 10)
    assert decide(sell(5), st, 0).approved


def test_fail_open_only_when_explicitly_configured():
    st = state(positions_fresh=False, limits=Limits(fail_closed_on_missing_positions=False))
    assert decide(buy(5), st, 0).approved


def test_kill_switch_blocks_new_risk_not_exits():
    st = state(trading_state=HALTED)
    assert decide(buy(1), st, 0).reason is Reason.KILL_SWITCH
    fill(st, Side.BUY, 3)
    assert decide(sell(3), st, 0).approved


@pytest.mark.parametrize("intent,limits,reason", [
    (buy("0.5"), Limits(), Reason.MIN_ORDER_SIZE),
    (buy(101), Limits(), Reason.MAX_ORDER_SIZE),
    (buy(50), Limits(max_position_size=D(40)), Reason.MAX_POSITION_SIZE),
    (buy(50, stop_loss=D(80)), Limits(), Reason.MAX_LOSS_PER_TRADE),
    (buy(90), Limits(account_equity=D(50_000)), Reason.MAX_POSITION_CONCENTRATION),
])
def test_size_and_loss_limits(intent, limits, reason):
    assert decide(intent, state(limits=limits), 0).reason is reason


def test_max_position_counts_in_flight_orders():
    st = state(limits=Limits(max_position_size=D(15), duplicate_position_check=False))
    st.book.add_inflight(InFlight("o1", KEY, Side.BUY, D(10), OrderPurpose.ENTRY, False))
    assert decide(buy(6), st, 0).reason is Reason.MAX_POSITION_SIZE


def test_spread_volatility_and_participation_limits():
    st = state()
    st.market["BTC"] = MarketView(D("100"), D("101"))
    assert decide(buy(1), st, 0).reason is Reason.MAX_SPREAD
    st.market["BTC"] = MarketView(D("100"), D("100.01"), volatility=D("0.05"))
    assert decide(buy(1), st, 0).reason is Reason.MAX_VOLATILITY
    st.market["BTC"] = MarketView(D("100"), D("100.01"), adv=D(100))
    assert decide(buy(11), st, 0).reason is Reason.MAX_VOLUME_PARTICIPATION


def test_duplicate_position_and_cooldown():
    st = state()
    fill(st, Side.BUY, 2)
    assert decide(buy(1), st, 0).reason is Reason.DUPLICATE_POSITION
    st2 = state(cooldown_until={"BTC": 100.0})
    assert decide(buy(1), st2, 50).reason is Reason.STOP_OUT_COOLDOWN
    assert decide(buy(1), st2, 101).approved


def test_unknown_symbol_and_missing_market_data():
    assert decide(Intent("DOGE", Side.BUY, D(1)), state(), 0).reason is Reason.UNKNOWN_SYMBOL
    st = state()
    st.market.clear()
    assert decide(buy(1), st, 0).reason is Reason.NO_MARKET_DATA


def test_rate_limit_burst():
    st = state()
    st.limiter = RateLimiter(rate=1, burst=3)
    results = [decide(buy(1, purpose=OrderPurpose.HEDGE), st, 0).reason for _ in range(5)]
    assert results == [Reason.APPROVED] * 3 + [Reason.RATE_LIMITED] * 2
    assert decide(buy(1, purpose=OrderPurpose.HEDGE), st, 1.0).approved


def test_circuit_breaker_opens_half_opens_and_closes():
    br = CircuitBreaker(failures_to_open=2, cooloff_s=10)
    assert not br.failure(0) and br.failure(1) and br.state == "open"
    st = state()
    st.breaker = br
    assert decide(buy(1), st, 5).reason is Reason.CIRCUIT_OPEN
    assert decide(buy(1), st, 12).approved  # half-open trial
    assert decide(buy(1, purpose=OrderPurpose.HEDGE), st, 12).reason is Reason.CIRCUIT_OPEN
    br.success()
    assert decide(buy(1, purpose=OrderPurpose.HEDGE), st, 13).approved


def test_duplicate_fill_applied_once():
    book = PositionBook()
    assert book.apply_fill("o", "f1", Side.BUY, D(2), D(100), D(0), KEY) == 0
    assert book.apply_fill("o", "f1", Side.BUY, D(2), D(100), D(0), KEY) is None
    assert book.qty(KEY) == D(2)
