"""The stop manager's parts on their own: the retry policy for refused exits
(``trading.exit_retry``) and the book of plans (``trading.stop_book``)."""

from __future__ import annotations

from decimal import Decimal

from messages.enums import Side
from trading.exit_retry import ExitRetries
from trading.stop_book import StopBook
from trading.stop_state import DONE, LIMIT, MARKET, TAKE_PROFIT, ExitOrder, Stop

D = Decimal


def plan(stop_id: str, side: Side = Side.BUY, protected: str = "2", symbol: str = "BTCUSDT") -> Stop:
    return Stop(stop_id, symbol, "default", side, D(95), D(protected))


def test_a_refused_exit_waits_twice_as_long_each_time_up_to_the_cap() -> None:
    retries, st = ExitRetries(1.0, 5.0), plan("e1")
    assert [retries.refused(st) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert st.retry_wait and st.failures == 5
    retries.traded(st)  # a fill starts the doubling over
    assert retries.refused(st) == 1.0


def test_one_alert_per_plan() -> None:
    retries, st = ExitRetries(1.0, 5.0), plan("e1")
    assert [retries.first_refusal(st) for _ in range(3)] == [True, False, False]


def test_a_reduce_only_refusal_waits_for_the_position_of_its_own_symbol() -> None:
    retries = ExitRetries(1.0, 30.0)
    btc, eth = plan("e1"), plan("e2", symbol="ETHUSDT")
    stops = {"e1": btc, "e2": eth}
    assert retries.refused(btc, await_position=True) == 30.0
    retries.refused(eth, await_position=True)
    assert list(retries.position_spoke(stops, "SOLUSDT", "default")) == []
    assert list(retries.position_spoke(stops, "BTCUSDT", "default")) == [btc]
    assert not btc.retry_wait and eth.retry_wait and retries.awaiting_position == {"e2"}
    retries.due(eth)  # or the timer ends the wait
    assert not eth.retry_wait and retries.awaiting_position == set()


def test_protection_above_the_position_is_released_oldest_plan_first() -> None:
    book = StopBook()
    old, new, short = plan("e1", protected="2"), plan("e2", protected="3"), plan("e3", Side.SELL)
    book.stops.update({"e1": old, "e2": new, "e3": short})
    released = list(book.releases("BTCUSDT", "default", D(1), "fill:entry"))  # long 1, short 0
    assert [(st.stop_id, qty) for st, qty in released] == [("e1", D(2)), ("e2", D(2)), ("e3", D(2))]
    assert (old.open_qty, new.open_qty, old.release_cause) == (D(0), D(1), "strategy")
    assert short.open_qty == 0  # the position is not short at all


def test_completing_a_plan_records_how_it_ended_and_forgets_its_orders() -> None:
    book = StopBook()
    st = plan("e1")
    st.orders = {"c1": ExitOrder(LIMIT, D(2), {"F1": D(1)}, "canceled"),
                 "c2": ExitOrder(MARKET, D(1), {"F2": D(1)}, "filled")}
    book.stops["e1"] = st
    book.by_coid.update({"c1": "e1", "c2": "e1"})
    assert book.complete(st) == "market_fallback"
    assert st.phase == DONE and book.by_coid == {} and set(book.finished) == {"c1", "c2"}
    assert book.stop_exits["market_fallback"] == 1 and book.exits["stop_loss_market"] == 1
    assert book.exit_qty == {"BTCUSDT": D(2)} and book.next_stop_id("e1") == "e1#2"
    tp = plan("e4")
    tp.orders = {"c3": ExitOrder(TAKE_PROFIT, D(1), {"F3": D(1)}, "filled"),  # one gap, both
                 "c4": ExitOrder(LIMIT, D(1), {"F4": D(1)}, "filled")}      # fill: a take-profit
    assert book.complete(tp) == TAKE_PROFIT


def test_completed_plans_are_remembered_for_a_bounded_window_then_by_their_record() -> None:
    """Rule 13: the orders and entry counts of completed plans stay in memory for the
    newest RECENT only; past that a new plan of an old entry is still named past the
    plans on record (the store), never over one of them."""
    from trading.stop_book import RECENT

    book = StopBook()
    for i in range(RECENT + 5):
        st = plan(f"e{i}")
        st.orders = {f"c{i}": ExitOrder(LIMIT, D(2), {f"F{i}": D(2)}, "filled")}
        book.stops[st.stop_id] = st
        book.complete(st)
    assert len(book.finished) == RECENT and len(book.entries_done) == RECENT
    assert "c0" not in book.finished and f"c{RECENT + 4}" in book.finished
    assert book.exits["stop_loss_limit"] == RECENT + 5      # the tallies keep every plan
    on_record = {"e0", "e0#2"}.__contains__               # e0's plans, as the store has them
    assert book.next_stop_id("e0", on_record) == "e0#3"
    assert book.next_stop_id(f"e{RECENT + 4}") == f"e{RECENT + 4}#2"
