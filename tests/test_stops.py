"""Rule 8: stop-loss without double exit, through the real tree in virtual time.

Every test drives the whole runtime (coordinator, gateway, persistence,
stops) against the in-process simulated exchange and reads the exchange's
own events.jsonl as the truth about what reached the broker. The setting is
DESIGN section 9's example: long 10 BTCUSDT from 100.1 with a stop at 95,
then the market gaps to 90/90.1, through the SL-limit's bound (94.525).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from messages.control import ProtectPosition
from messages.enums import Side
from messages.orders import Signal
from tests.virtual_runtime import VirtualRuntime

D = Decimal
SYM = "BTCUSDT"
GAP_AT = 5.0          # the quote that gaps through the stop
FALLBACK_AT = 7.0     # GAP_AT + stops.fallback_after_s (2 s)


def _open_long_and_gap(vr: VirtualRuntime) -> None:
    vr.quote(SYM, "100.0", "100.1")
    vr.at(1)
    vr.signal(SYM, "buy", "10", stop_loss="95")
    vr.at(GAP_AT)
    vr.quote(SYM, "90.0", "90.1")


def _sl_orders(vr: VirtualRuntime) -> list[dict]:
    return vr.orders(symbol=SYM, side="sell", order_type="stop_limit")


def _market_exits(vr: VirtualRuntime) -> list[dict]:
    return vr.orders(symbol=SYM, side="sell", order_type="market")


def _phases(vr: VirtualRuntime) -> list[str]:
    return [row["phase"] for row in vr.info("stops")["stops"].values()]


def _assert_no_refused_exit(vr: VirtualRuntime) -> None:
    """A correct manager never asks for an exit the gate has to refuse (an exit sent
    while the SL-limit could still fill is refused by the netting check: the gate is
    the second line of defence, not the first)."""
    assert vr.info("stops")["counts"].get("exit_orders_refused", 0) == 0
    assert vr.info("coordinator")["rejected"] == {}


@pytest.fixture
def slow_cancel(tmp_path):
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5,
                                                    "cancel_ack_delay_ms": 3000}) as vr:
        yield vr


def test_the_sl_limit_sits_at_the_stop_with_the_slippage_bound(slow_cancel: VirtualRuntime) -> None:
    vr = slow_cancel
    vr.quote(SYM, "100.0", "100.1")
    vr.at(1)
    vr.signal(SYM, "buy", "10", stop_loss="95")
    vr.at(2)
    [sl] = _sl_orders(vr)
    assert sl["trigger_price"] == "95" and D(sl["price"]) == D("94.525")  # 95 x (1 - 0.5 %)
    assert sl["reduce_only"] is True and sl["qty"] == "10"
    assert vr.info("stops")["stops"][next(iter(vr.info("stops")["stops"]))]["phase"] == "protecting"


def test_slow_cancel_while_the_limit_fills_exits_once_without_market_order(
        slow_cancel: VirtualRuntime) -> None:
    vr = slow_cancel
    _open_long_and_gap(vr)
    vr.at(8.0)  # the cancel went out at ~7 s; its confirmation is due ~3 s later
    [cancel] = vr.events("cancel_requested")
    assert FALLBACK_AT <= vr.seconds(cancel) < 8.0
    vr.fault(fill_resting={"symbol": SYM})  # a counterparty lifts the resting SL-limit
    vr.at(30)

    [sl] = _sl_orders(vr)
    [confirm] = vr.events("cancel_rejected")
    assert confirm["reason"] == "already filled" and vr.seconds(confirm) >= 10.0
    assert _market_exits(vr) == [], "a market order went out although the SL-limit filled"
    assert vr.filled_qty(side="sell") == D("10") == vr.filled_qty({sl["client_order_id"]})
    assert vr.exchange_position(SYM) == 0
    assert len(vr.events("cancel_requested")) == 1
    stops = vr.info("stops")
    assert stops["stop_exits"] == {"limit": 1, "market_fallback": 0}
    assert stops["exit_qty"] == {SYM: "10"} and stops["active"] == 0
    _assert_no_refused_exit(vr)


def test_limit_never_fills_one_market_order_for_the_rest_after_the_confirmation(
        slow_cancel: VirtualRuntime) -> None:
    vr = slow_cancel
    _open_long_and_gap(vr)
    vr.at(GAP_AT + 0.5)
    assert _phases(vr) == ["triggered"]
    vr.at(9.9)
    assert _market_exits(vr) == [], "market order sent before the cancel was confirmed"
    assert _phases(vr) == ["cancelling"], "the published row must follow the stop"
    vr.at(30)
    assert _phases(vr) == [] and vr.info("stops")["active"] == 0, "a finished stop's row stays"

    [canceled] = vr.events("order_canceled")
    [market] = _market_exits(vr)
    assert market["qty"] == "10" and market["reduce_only"] is True
    assert market["seq"] > canceled["seq"] and vr.seconds(market) >= vr.seconds(canceled)
    assert vr.filled_qty(side="sell") == D("10")
    assert vr.exchange_position(SYM) == 0
    assert vr.info("stops")["stop_exits"] == {"limit": 0, "market_fallback": 1}
    _assert_no_refused_exit(vr)


def test_fills_during_the_cancel_are_counted(slow_cancel: VirtualRuntime) -> None:
    vr = slow_cancel
    _open_long_and_gap(vr)
    vr.at(8.0)
    vr.fault(fill_resting={"symbol": SYM, "qty": "4"})  # part of it fills mid-cancel
    vr.at(9.0)
    vr.fault(fill_resting={"symbol": SYM, "qty": "1.5"})
    vr.at(30)

    [sl] = _sl_orders(vr)
    assert vr.filled_qty({sl["client_order_id"]}) == D("5.5")
    [canceled] = vr.events("order_canceled")
    assert canceled["qty"] == "4.5"
    [market] = _market_exits(vr)
    assert market["qty"] == "4.5", "the market order must be exactly what is still open"
    assert market["seq"] > canceled["seq"]
    assert vr.filled_qty(side="sell") == D("10")
    assert vr.exchange_position(SYM) == 0
    assert vr.info("stops")["exit_qty"] == {SYM: "10"}
    _assert_no_refused_exit(vr)


def test_a_late_confirmation_alerts_once_and_the_cancel_is_never_resent(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5,
                                                    "cancel_ack_delay_ms": 25_000}) as vr:
        _open_long_and_gap(vr)
        vr.at(FALLBACK_AT + 10.5)  # past stops.cancel_wait_alert_s
        assert vr.info("stops")["counts"].get("cancel_wait_alerts") == 1
        assert _market_exits(vr) == []
        vr.at(60)
        assert len(vr.events("cancel_requested")) == 1
        assert vr.info("stops")["counts"]["cancel_wait_alerts"] == 1
        [canceled] = vr.events("order_canceled")
        [market] = _market_exits(vr)
        assert vr.seconds(canceled) >= FALLBACK_AT + 25 and market["seq"] > canceled["seq"]
        assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0


def test_partial_entry_fills_grow_the_protection_and_the_exit_matches_the_position(
        tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5, "partial_fills": 4,
                                                    "cancel_ack_delay_ms": 500}) as vr:
        _open_long_and_gap(vr)
        vr.at(30)
        sls = _sl_orders(vr)
        assert len(sls) > 1, "each entry fill should add protection"
        assert sum(D(o["qty"]) for o in sls) == D("10")
        assert len(vr.events("cancel_requested")) == len(sls)
        [market] = _market_exits(vr)
        assert market["qty"] == "10"
        assert max(e["seq"] for e in vr.events("order_canceled")) < market["seq"]
        assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0
        _assert_no_refused_exit(vr)


def test_a_stop_that_fills_normally_ends_the_position_and_starts_the_cooldown(tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}) as vr:
        vr.quote(SYM, "100.0", "100.1")
        vr.at(1)
        vr.signal(SYM, "buy", "10", stop_loss="95")
        vr.at(3)
        vr.quote(SYM, "94.9", "95.0")  # through the trigger, inside the bound
        vr.at(10)
        assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0
        assert _market_exits(vr) == [] and vr.events("cancel_requested") == []
        assert vr.info("stops")["stop_exits"] == {"limit": 1, "market_fallback": 0}
        vr.tell("coordinator", Signal(SYM, "buy", D("1"), vr.clock.now()))  # StoppedOut
        assert vr.info("coordinator")["rejected"] == {"stop_out_cooldown": 1}


def test_the_gateway_forwards_to_stops_only_the_quotes_of_symbols_with_a_stop(tmp_path) -> None:
    other = "ETHUSDT"
    with VirtualRuntime(tmp_path / "run", symbols=(SYM, other),
                        exchange={"latency_ms": 5}) as vr:
        stops = vr.system.directory.get("stops").mailbox
        vr.quote(SYM, "100.0", "100.1")
        vr.quote(other, "2000.0", "2000.5")
        vr.at(1)
        assert vr.info("gateway")["quote_watch"] == {"stops": 0}
        handled = stops.processed
        vr.quote(other, "2001.0", "2001.5")
        vr.at(1.5)
        assert stops.processed == handled  # no stop anywhere: no quote for the manager
        vr.signal(SYM, "buy", "10", stop_loss="95")
        vr.at(2)
        assert vr.info("gateway")["quote_watch"] == {"stops": 1}
        handled = stops.processed
        vr.quote(other, "2002.0", "2002.5")
        vr.at(2.5)
        assert stops.processed == handled
        vr.quote(SYM, "94.9", "95.0")  # the watched symbol's quote still triggers the stop
        vr.at(10)
        assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0
        assert vr.info("stops")["stop_exits"] == {"limit": 1, "market_fallback": 0}
        assert vr.info("gateway")["quote_watch"] == {"stops": 0}


def test_a_restarted_gateway_sends_every_quote_to_stops_again(tmp_path) -> None:
    """The watch lives in the gateway's memory: a new instance starts from "every
    quote" (safe) rather than from nothing (a stop that never triggers)."""
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 5}) as vr:
        vr.quote(SYM, "100.0", "100.1")
        vr.at(1)
        assert vr.info("gateway")["quote_watch"] == {"stops": 0}
        restarts = vr.system.restart_counts["gateway"]
        vr.system.directory.get("gateway").actor.actor_ref.stop(block=False)
        vr.at(3)
        assert vr.system.restart_counts["gateway"] == restarts + 1
        assert vr.info("gateway")["quote_watch"] == {"stops": "all"}


# -- restarts -----------------------------------------------------------------------------


def _crash_stops(vr: VirtualRuntime, then: Any = None) -> None:
    """A malformed message (built around validation) makes the stop manager's handler
    raise: a real crash, which its supervisor answers with a restart (after a backoff).
    The poison is dead-lettered, so the new instance has only the store to go by."""
    poison = object.__new__(ProtectPosition)
    for name, value in {"symbol": SYM, "position_side": Side.BUY, "qty": None,
                        "stop_price": D("1"), "account": "default", "entry_order_id": "poison",
                        "ts": vr.clock.now()}.items():
        object.__setattr__(poison, name, value)
    restarts = vr.system.restart_counts["stops"]
    vr.tell("stops", poison)
    if then is not None:
        then()  # happens while the manager waits for its restart
    vr.at(vr.now + 1.0)
    assert vr.system.restart_counts["stops"] == restarts + 1


@pytest.mark.parametrize("crash_at", [6.0, 8.0])
def test_a_restart_while_the_cancel_is_pending_does_not_double_the_exit(
        slow_cancel: VirtualRuntime, crash_at: float) -> None:
    """6 s: triggered, fallback timer running; 8 s: cancel requested, awaiting
    confirmation. The new incarnation asks once more for a cancel the old one
    asked for (it may have died with it), never more often."""
    vr = slow_cancel
    _open_long_and_gap(vr)
    vr.at(crash_at)
    _crash_stops(vr)
    vr.at(30)

    assert len(_sl_orders(vr)) == 1
    assert len(vr.events("cancel_requested")) == (1 if crash_at < FALLBACK_AT else 2)
    assert vr.info("stops")["counts"].get("cancels_reasserted", 0) == (crash_at > FALLBACK_AT)
    [canceled] = vr.events("order_canceled")
    [market] = _market_exits(vr)
    assert market["qty"] == "10" and market["seq"] > canceled["seq"]
    assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0
    assert vr.info("stops")["stop_exits"] == {"limit": 0, "market_fallback": 1}
    _assert_no_refused_exit(vr)


def test_a_restart_right_after_the_market_order_left_does_not_send_another(
        tmp_path) -> None:
    with VirtualRuntime(tmp_path / "run", exchange={"latency_ms": 50,
                                                    "cancel_ack_delay_ms": 3000}) as vr:
        _open_long_and_gap(vr)
        vr.at(10.0)
        while not vr.info("stops")["counts"].get("market_orders"):
            vr.at(vr.now + 0.001)
            assert vr.now < 12, "the market order never went out"
        [stop] = vr.info("stops")["stops"].values()
        assert stop["exited"] == "0"  # the fill report is still on its way back
        _crash_stops(vr)
        vr.at(30)
        [market] = _market_exits(vr)
        assert market["qty"] == "10"
        assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0
        stops = vr.info("stops")
        assert stops["stop_exits"] == {"limit": 0, "market_fallback": 1} and stops["active"] == 0
        _assert_no_refused_exit(vr)


def test_a_restart_while_only_protecting_keeps_the_protection(slow_cancel: VirtualRuntime) -> None:
    vr = slow_cancel
    vr.quote(SYM, "100.0", "100.1")
    vr.at(1)
    vr.signal(SYM, "buy", "10", stop_loss="95")
    vr.at(2)
    _crash_stops(vr)
    vr.at(GAP_AT)
    vr.quote(SYM, "90.0", "90.1")
    vr.at(30)
    assert len(_sl_orders(vr)) == 1, "the restarted manager placed a second SL-limit"
    assert len(_market_exits(vr)) == 1
    assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0


def test_fill_reports_reaching_the_store_during_a_restart_count_once(
        slow_cancel: VirtualRuntime) -> None:
    """The manager crashes while a partial fill of its SL-limit is being reported: the
    fill is in the coordinator's store at the rebuild *and* held for the new instance."""
    vr = slow_cancel
    _open_long_and_gap(vr)
    vr.at(8.0)
    _crash_stops(vr, then=lambda: vr.fault(fill_resting={"symbol": SYM, "qty": "4"}))
    vr.at(30)
    [market] = _market_exits(vr)
    assert market["qty"] == "6"
    assert vr.filled_qty(side="sell") == D("10") and vr.exchange_position(SYM) == 0
    assert vr.info("stops")["exit_qty"] == {SYM: "10"}
    _assert_no_refused_exit(vr)
