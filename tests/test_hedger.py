"""Rule 7: emergency hedges cover only the delta, the first at once, the rest
coalesced; rapid partial fills never cascade into over-hedging.

Through the real tree in virtual time; the exchange's events.jsonl says
which hedge orders reached the broker. The exposure is on BTCUSDT, the
hedge instrument is ETHUSDT (a short hedge against a long leg).
"""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

import pytest

from messages.control import HedgeRequest
from tests.virtual_runtime import VirtualRuntime

D = Decimal
HEDGE = "ETHUSDT"
WINDOW_S = 0.5  # hedger.debounce_ms


def _signed_hedge_orders(vr: VirtualRuntime) -> list[Decimal]:
    return [D(o["qty"]) * (1 if o["side"] == "buy" else -1) for o in vr.orders(symbol=HEDGE)]


def _request(vr: VirtualRuntime, target: str, source: str = "group-1") -> None:
    vr.system.tell("hedger", HedgeRequest(HEDGE, D(target), "default", vr.clock.now(), source))


@contextmanager
def _hedge_runtime(tmp_path, config=None, **exchange):
    with VirtualRuntime(tmp_path / "run", ("BTCUSDT", HEDGE),
                        exchange={"latency_ms": 5, **exchange}, config=config) as vr:
        vr.quote(HEDGE, "100.0", "100.1")
        vr.at(1.0)
        yield vr


@pytest.fixture
def vr(tmp_path):
    with _hedge_runtime(tmp_path) as vr:
        yield vr


def _never_over_hedged(vr: VirtualRuntime, most: Decimal) -> None:
    """At no point did the hedge orders sent add up to more than the largest target."""
    total = D(0)
    for qty in _signed_hedge_orders(vr):
        total += qty
        assert abs(total) <= most, f"over-hedged: {total} sent against at most {most}"


@pytest.mark.parametrize("latency_ms", [5, 800], ids=["fast-broker", "broker-slower-than-window"])
def test_fifty_partial_fills_in_200ms_hedge_exactly_the_delta(tmp_path, latency_ms) -> None:
    """A leg fills 1 lot every 4 ms; each fill asks for the hedge of the cumulative fill.
    With a slow broker the first hedge is still in flight when the window closes."""
    with _hedge_runtime(tmp_path, latency_ms=latency_ms) as vr:
        _fifty_fills(vr)


def _fifty_fills(vr: VirtualRuntime) -> None:
    t0 = vr.now
    for i in range(50):
        vr.at(t0 + 0.004 * i)
        _request(vr, str(-(i + 1)))
    vr.at(t0 + 5)

    orders = vr.orders(symbol=HEDGE)
    _never_over_hedged(vr, D(50))
    assert sum(_signed_hedge_orders(vr)) == D(-50), "hedge orders must add up to the delta"
    assert vr.exchange_position(HEDGE) == D(-50)
    first = orders[0]
    assert vr.seconds(first) == pytest.approx(t0) and first["qty"] == "1", \
        "the first hedge must go out at once"
    assert len(orders) == 2, "requests inside the window must be coalesced into one order"
    assert vr.seconds(orders[1]) == pytest.approx(t0 + WINDOW_S)
    info = vr.info("hedger")
    assert info["hedges_sent"] == 2 and info["coalesced"] == 49 and info["requests"] == 50
    assert info["hedge_lag_p99_ms"] is not None and info["hedge_lag_p99_ms"] <= 500.0
    assert info["books"][f"default|{HEDGE}"]["delta"] == "0"


def test_hedge_fills_arriving_in_pieces_never_cascade(tmp_path) -> None:
    """The hedge orders themselves fill in 10 pieces each while requests keep coming:
    in-flight hedges count, so nothing is hedged twice."""
    with _hedge_runtime(tmp_path, partial_fills=10, partial_fill_interval_ms=150) as vr:
        t0 = vr.now
        for i in range(50):
            vr.at(t0 + 0.004 * i)
            _request(vr, str(-(i + 1)))
        for i, target in enumerate(("-30", "-30", "-35")):  # the leg is partly unwound
            vr.at(t0 + 1.0 + 0.1 * i)
            _request(vr, target)
        vr.at(t0 + 5)
        _never_over_hedged(vr, D(50))
        assert sum(_signed_hedge_orders(vr)) == D(-35)
        assert vr.exchange_position(HEDGE) == D(-35)
        assert vr.info("hedger")["books"][f"default|{HEDGE}"]["position"] == "-35"


def test_a_request_for_the_hedge_already_held_sends_nothing(vr: VirtualRuntime) -> None:
    _request(vr, "-5")
    vr.at(vr.now + 1)
    _request(vr, "-5")
    vr.at(vr.now + 1)
    assert _signed_hedge_orders(vr) == [D(-5)]
    assert vr.info("hedger")["counts"]["no_delta"] == 1


def test_targets_of_two_sources_add_up(vr: VirtualRuntime) -> None:
    """Two order groups hand over residues in one symbol: each states its own target,
    so the second is hedged too (one shared target would read it as already held)."""
    _request(vr, "-5", source="group:a")
    vr.at(vr.now + 1)
    _request(vr, "-5", source="group:b")
    vr.at(vr.now + 1)
    _request(vr, "-5", source="group:a")  # a repeats itself: nothing more
    vr.at(vr.now + 1)
    assert _signed_hedge_orders(vr) == [D(-5), D(-5)]
    book = vr.info("hedger")["books"][f"default|{HEDGE}"]
    assert (book["target"], book["position"]) == ("-10", "-10")
    assert book["targets"] == {"group:a": "-5", "group:b": "-5"}


def test_after_a_quiet_window_the_next_request_goes_out_at_once(vr: VirtualRuntime) -> None:
    _request(vr, "-5")
    vr.at(vr.now + 2)
    t1 = vr.now
    _request(vr, "-8")
    vr.at(t1 + 0.01)
    assert _signed_hedge_orders(vr) == [D(-5), D(-3)]
    assert vr.seconds(vr.orders(symbol=HEDGE)[1]) == pytest.approx(t1)


def test_a_refused_hedge_is_retried_for_the_delta_only(tmp_path) -> None:
    with _hedge_runtime(tmp_path) as vr:
        vr.fault(reject_next=1)
        _request(vr, "-7")
        vr.at(vr.now + 0.1)
        _request(vr, "-9")
        vr.at(vr.now + 3)
        rejected = vr.events("order_rejected")
        assert len(rejected) == 1
        assert vr.exchange_position(HEDGE) == D(-9)
        filled = sum(D(e["qty"]) for e in vr.events("order_filled") if e["symbol"] == HEDGE)
        assert filled == D(9)
        assert vr.info("hedger")["counts"]["refused"] == 1


def _crash_hedger(vr: VirtualRuntime) -> None:
    """A malformed request (built around validation) crashes the handler; the
    supervisor restarts the hedger, which has only the store to go by."""
    poison = object.__new__(HedgeRequest)
    for name, value in {"symbol": HEDGE, "target_qty": None, "account": "default",
                        "ts": vr.clock.now(), "source": "poison"}.items():
        object.__setattr__(poison, name, value)
    restarts = vr.system.restart_counts["hedger"]
    vr.tell("hedger", poison)
    vr.at(vr.now + 0.3)
    assert vr.system.restart_counts["hedger"] == restarts + 1


def test_a_restarted_hedger_remembers_its_hedge(vr: VirtualRuntime) -> None:
    _request(vr, "-6")
    vr.at(vr.now + 1)
    _crash_hedger(vr)
    _request(vr, "-10")
    vr.at(vr.now + 1)
    assert _signed_hedge_orders(vr) == [D(-6), D(-4)]
    assert vr.exchange_position(HEDGE) == D(-10)


@pytest.mark.parametrize("crash_after_s", [0.1, 0.79], ids=["before-reports", "during-reports"])
def test_a_restart_with_a_hedge_in_flight_neither_forgets_nor_doubles_it(
        tmp_path, crash_after_s: float) -> None:
    """The fill reports of the first hedge (due at +0.8, +0.9, +1.0 s) are on their way
    when the hedger crashes. Crashing at 0.79 s, the first report reaches the store while
    the hedger waits for its restart and is also held for it: it must count once."""
    with _hedge_runtime(tmp_path, latency_ms=800, partial_fills=3,
                        partial_fill_interval_ms=100) as vr:
        _request(vr, "-6")
        vr.at(vr.now + crash_after_s)
        _crash_hedger(vr)
        vr.at(vr.now + 2)
        assert vr.info("hedger")["books"][f"default|{HEDGE}"]["position"] == "-6"
        _request(vr, "-10")
        vr.at(vr.now + 2)
        assert _signed_hedge_orders(vr) == [D(-6), D(-4)]
        assert vr.exchange_position(HEDGE) == D(-10)
        assert vr.info("hedger")["books"][f"default|{HEDGE}"]["position"] == "-10"


def test_ended_hedge_orders_leave_memory_after_the_retention_window(tmp_path) -> None:
    """Rule 13: a hedge order that ended (filled, refused, canceled) stays in the hedger's
    book, its record and its order index only for the coordinator's retention window;
    its fills stay in the position, and a restart reads it back from the coordinator's
    records, so the hedge is neither forgotten nor doubled."""
    retention = {"runtime": {"retention": {"ended_orders": 1000, "ended_order_s": 30}}}
    with _hedge_runtime(tmp_path, config=retention) as vr:
        for target in ("-2", "-5", "-6"):
            _request(vr, target)
            vr.at(vr.now + 1)
        book_key = f"hedge|default|{HEDGE}"
        store = vr.rt.store
        assert len(store.get("meta", book_key)["orders"]) == 3
        vr.at(vr.now + 31)
        _request(vr, "-7")        # the next order's end lets the three past the window go
        vr.at(vr.now + 1)
        record = store.get("meta", book_key)
        assert len(record["orders"]) == 1
        assert vr.info("hedger")["counts"]["orders_dropped"] == 3
        assert vr.info("hedger")["books"][f"default|{HEDGE}"]["position"] == "-7"
        _crash_hedger(vr)
        vr.at(vr.now + 1)
        assert vr.info("hedger")["books"][f"default|{HEDGE}"]["position"] == "-7"
        _request(vr, "-10")
        vr.at(vr.now + 1)
        assert _signed_hedge_orders(vr) == [D(-2), D(-3), D(-1), D(-1), D(-3)]
        assert vr.exchange_position(HEDGE) == D(-10)
