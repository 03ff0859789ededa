"""Every pre-trade limit of the risk gate (rule 4) at, just below and just above its value.

A limit is a number compared with a number; the classic slips are ``<``
for ``<=`` and a limit read from the wrong field. Each case names which
side of the limit the value sits on and what the rule says about it: a
maximum is allowed up to and including its value, a minimum from its
value up, a cool-down lasts until (not including) its end.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from messages.enums import OrderPurpose, Side
from tests.test_gate import KEY, buy, fill, sell, state
from trading.positions import InFlight
from trading.gate import MarketView, decide
from trading.limits import CircuitBreaker, Limits, RateLimiter
from trading.reasons import Reason

OK = Reason.APPROVED
SIDES = ("just-below", "at", "just-above")


def test_min_order_size() -> None:
    st = state()
    got = [decide(buy(q), st, 0).reason for q in ("0.99", "1", "1.01")]
    assert got == [Reason.MIN_ORDER_SIZE, OK, OK]


def test_max_order_size() -> None:
    got = [decide(buy(q), state(), 0).reason for q in ("99.99", "100", "100.01")]
    assert got == [OK, OK, Reason.MAX_ORDER_SIZE]


@pytest.mark.parametrize("held", ["position", "in_flight"])
def test_max_position_size_counts_what_is_held_and_what_is_in_flight(held: str) -> None:
    def decision(qty: str) -> Reason:
        st = state(limits=Limits(max_position_size=D(40), duplicate_position_check=False))
        if held == "position":
            fill(st, Side.BUY, 30)
        else:
            st.book.add_inflight(InFlight("o1", KEY, Side.BUY, D(30), OrderPurpose.ENTRY, False))
        return decide(buy(qty), st, 0).reason

    assert [decision(q) for q in ("9.99", "10", "10.01")] == [OK, OK, Reason.MAX_POSITION_SIZE]


def test_max_position_size_on_the_short_side() -> None:
    st = state(limits=Limits(max_position_size=D(40), duplicate_position_check=False))
    st.book.add_inflight(InFlight("o1", KEY, Side.SELL, D(30), OrderPurpose.ENTRY, False))
    got = [decide(sell(q), st, 0).reason for q in ("9.99", "10", "10.01")]
    assert got == [OK, OK, Reason.MAX_POSITION_SIZE]


def test_max_spread_bps() -> None:
    st = state()
    got = []
    for ask in ("100.2499", "100.25", "100.2501"):  # bid 99.75: 50 bps of the mid at 100.25
        st.market["BTC"] = MarketView(D("99.75"), D(ask))
        got.append(decide(buy(1), st, 0).reason)
    assert got == [OK, OK, Reason.MAX_SPREAD]


def test_max_volatility() -> None:
    st = state()
    got = []
    for vol in ("0.0199", "0.02", "0.0201"):
        st.market["BTC"] = MarketView(D("100"), D("100.02"), volatility=D(vol))
        got.append(decide(buy(1), st, 0).reason)
    assert got == [OK, OK, Reason.MAX_VOLATILITY]


def test_max_volume_participation() -> None:
    st = state()
    st.market["BTC"] = MarketView(D("100"), D("100.02"), adv=D(100))  # 10 % of it: 10
    got = [decide(buy(q), st, 0).reason for q in ("9.99", "10", "10.01")]
    assert got == [OK, OK, Reason.MAX_VOLUME_PARTICIPATION]


def test_max_loss_per_trade() -> None:
    st = state()  # a buy prices at the ask, 100.02; 10 x (100.02 - 50.02) = 500, the default
    got = [decide(buy(10, stop_loss=D(stop)), st, 0).reason for stop in ("50.03", "50.02", "50.01")]
    assert got == [OK, OK, Reason.MAX_LOSS_PER_TRADE]


def test_max_loss_per_trade_of_a_short_is_measured_from_the_bid() -> None:
    st = state(limits=Limits(duplicate_position_check=False))  # sells price at the bid, 100
    got = [decide(sell(10, stop_loss=D(stop)), st, 0).reason for stop in ("149.99", "150", "150.01")]
    assert got == [OK, OK, Reason.MAX_LOSS_PER_TRADE]


def test_max_position_concentration() -> None:
    # 10 x 100.02 (the ask) is exactly 10 % of 10,002
    st = state(limits=Limits(account_equity=D(10_002)))
    got = [decide(buy(q), st, 0).reason for q in ("9.99", "10", "10.01")]
    assert got == [OK, OK, Reason.MAX_POSITION_CONCENTRATION]


def test_stop_out_cooldown_lasts_until_its_end() -> None:
    st = state(cooldown_until={"BTC": 100.0})
    got = [decide(buy(1), st, now).reason for now in (99.999, 100.0, 100.001)]
    assert got == [Reason.STOP_OUT_COOLDOWN, OK, OK]
    fresh = state(cooldown_until={"BTC": 100.0})
    assert decide(buy(1, purpose=OrderPurpose.HEDGE), fresh, 50).approved, "entries only"


@pytest.mark.parametrize(("later", "allowed"), [(0.49, False), (0.5, True), (0.51, True)],
                         ids=SIDES)
def test_rate_limiter_needs_a_whole_token(later: float, allowed: bool) -> None:
    limiter = RateLimiter(rate=2.0, burst=1)  # a token every 0.5 s
    assert limiter.allow(10.0) and not limiter.allow(10.0)
    assert limiter.allow(10.0 + later) is allowed


def test_rate_limiter_burst_is_its_ceiling() -> None:
    limiter = RateLimiter(rate=1.0, burst=3)
    assert limiter.allow(0.0)
    # a long quiet spell refills to the burst, never beyond it
    assert [limiter.allow(1000.0) for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        RateLimiter(rate=1, burst=0)


@pytest.mark.parametrize(("failures", "opened"), [(2, False), (3, True)],
                         ids=["just-below", "at"])
def test_circuit_breaker_opens_at_failures_to_open(failures: int, opened: bool) -> None:
    br = CircuitBreaker(failures_to_open=3, cooloff_s=10)
    results = [br.failure(float(t)) for t in range(failures)]
    assert results[-1] is opened and br.state == ("open" if opened else "closed")
    assert br.allow(5.0) is not opened
    assert br.open_count == (1 if opened else 0)


@pytest.mark.parametrize(("at", "allowed"), [(11.99, False), (12.0, True), (12.01, True)],
                         ids=SIDES)
def test_circuit_breaker_half_opens_after_exactly_the_cool_off(at: float, allowed: bool) -> None:
    br = CircuitBreaker(failures_to_open=1, cooloff_s=10)
    assert br.failure(2.0) and br.opened_at == 2.0
    assert br.allow(at) is allowed
    if allowed:
        assert br.state == "half_open" and not br.allow(at), "one trial order, no more"
        assert br.failure(at) and br.state == "open" and br.open_count == 2


def test_a_success_closes_the_breaker_and_resets_the_count() -> None:
    br = CircuitBreaker(failures_to_open=2, cooloff_s=10)
    br.failure(0.0)
    br.success()
    assert not br.failure(1.0) and br.state == "closed", "the count restarted from zero"
    assert br.failure(2.0) and br.state == "open"


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
@pytest.mark.parametrize("held", ["position", "in_flight"])
def test_duplicate_position_check_sees_any_exposure_on_the_same_side(side: Side, held: str) -> None:
    """Half a unit held, or half a unit in flight, is a position on that side already."""
    def decision(qty: str, on: Side) -> Reason:
        st = state(limits=Limits(duplicate_position_check=True))
        if held == "position":
            fill(st, on, qty)
        else:
            st.book.add_inflight(InFlight("o1", KEY, on, D(qty), OrderPurpose.ENTRY, False))
        entry = buy(1) if side is Side.BUY else sell(1)
        return decide(entry, st, 0).reason

    assert decision("0.5", side) is Reason.DUPLICATE_POSITION
    other = Side.SELL if side is Side.BUY else Side.BUY
    if held == "in_flight":  # the other side in flight is netting's business, not this check's
        assert decision("0.5", other) is Reason.NETTING_CONFLICT
    st = state(limits=Limits(duplicate_position_check=True))
    st.book.add_inflight(InFlight("o2", ("default", "sim", "ETH"), side, D(5),
                                  OrderPurpose.ENTRY, False))
    entry = buy(1) if side is Side.BUY else sell(1)
    assert decide(entry, st, 0).reason is OK, "exposure in another symbol is not this one's"


def test_participation_applies_to_any_known_volume_and_skips_an_unknown_one() -> None:
    st = state()
    st.market["BTC"] = MarketView(D("100"), D("100.02"), adv=D("0.5"))
    assert decide(buy(1), st, 0).reason is Reason.MAX_VOLUME_PARTICIPATION
    st.market["BTC"] = MarketView(D("100"), D("100.02"), adv=D(0))  # no volume figure yet
    assert decide(buy(1), st, 0).approved


def test_concentration_applies_to_any_positive_equity_and_skips_none() -> None:
    assert decide(buy(1), state(limits=Limits(account_equity=D(1))), 0).reason \
        is Reason.MAX_POSITION_CONCENTRATION
    assert decide(buy(1), state(limits=Limits(account_equity=D(0))), 0).approved, \
        "no equity figure: no concentration check, and no division by zero"
