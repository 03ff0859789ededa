"""Safety rules guarded against the small changes that would break them.

An independent mutation check (DESIGN section 5: every rule needs tests that
fail if it is broken) found rule-breaking changes no test noticed; each test
here states one rule's behaviour so that the matching change fails it:

* rule 1: a hedge the gate refuses is refused (audited approved=false, the
  hedger told, nothing at the exchange), whatever the refusal;
* rule 3: a position snapshot older than the staleness bound is no snapshot;
* rule 4: the rate limiter never lets a fraction of a token through;
* rule 5: a daily loss exactly at max_daily_loss halts trading;
* rule 8: a late cancel confirmation alerts, and the market exit still waits
  for it (or for the final fill);
* rule 12: a second "connected" report restores nothing and resyncs nothing;
* and the weakly guarded ones: the 90 % margin limit, duplicate fill reports,
  the re-armed poll, in-flight orders in max_position_size, the reconnect
  budget's boundary.

Every limit is tested just below, at (where time and decimals allow it
exactly) and just above its value. Everything runs the real tree in virtual
time against the in-process simulated exchange; the exchange's events.jsonl
and the audit trail are the ground truth.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from messages.control import HedgeRequest, KillSwitch
from messages.enums import Side
from messages.exchange import StreamStatus
from messages.market import Quote
from messages.orders import Signal
from app import invariants
from tests.virtual_runtime import VirtualRuntime
from trading.audit import read_audit
from trading.limits import Limits

D = Decimal
BTC, ETH = "BTCUSDT", "ETHUSDT"
DEEP = D("1000000")  # quote size: fills are never capped by the book


class GuardRig(VirtualRuntime):
    """The whole runtime on a virtual clock, timeline signals only, plus readers."""

    def __init__(self, run_dir: Path, symbols: tuple[str, ...] = (BTC,), *,
                 config: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(run_dir, symbols, config={"strategy": {"name": "none"}, **(config or {})},
                         **kw)

    def __enter__(self) -> GuardRig:
        super().__enter__()
        self.at(1.0)  # connected, positions resynced, recovery done
        assert not self.info("coordinator")["recovering"]
        return self

    def deep_quote(self, symbol: str, bid: str, ask: str) -> None:
        self.system.tell("venue", Quote(symbol, D(bid), D(ask), self.clock.now(),
                                        bid_size=DEEP, ask_size=DEEP))
        self.at(self.now + 0.25)

    def send(self, side: str, qty: str, symbol: str = BTC, **kw: Any) -> None:
        """A strategy signal, handled by the coordinator at the current virtual time."""
        self.tell("coordinator", Signal(symbol, Side(side), D(qty), self.clock.now(), **kw))

    def actor(self, name: str) -> Any:
        """The live actor behind ``name`` (read at quiescence only)."""
        return self.system.directory.get(name).actor

    @property
    def coord(self) -> dict[str, Any]:
        return self.info("coordinator")

    def audit(self) -> list[dict[str, Any]]:
        self.system.wait_quiescent()  # the coordinator flushes its audit file when idle
        return list(read_audit(self.run_dir / "audit.jsonl"))

    def decisions(self) -> list[dict[str, Any]]:
        return [r for r in self.audit() if r["kind"] == "risk_decision"]

    def reasons(self) -> list[str]:
        return [r["reason"] for r in self.decisions()]

    def position(self, symbol: str = BTC) -> Decimal:
        return D(self.coord["positions"].get(symbol, "0"))

    def violations(self) -> list[dict[str, Any]]:
        cfg = self.rt.spec.config
        return invariants.check_all(
            events=self.events(), audit=self.audit(), positions=self.coord["positions"],
            exchange_positions={k: str(v) for k, v in self.rt.exchange_positions().items()},
            hedging_accounts=Limits.from_config(cfg.risk).hedging_accounts,
            fail_closed=cfg.risk.fail_closed_on_missing_positions,
            dead_letters=list(self.system.dead_letters.snapshot(recent=1000)["recent"]))


# -- rule 1: a hedge the gate refuses is refused ------------------------------------------------


@pytest.mark.parametrize("refusal", ["kill_switch", "max_order_size", "rate_limited"])
def test_a_hedge_the_gate_refuses_is_audited_told_to_the_hedger_and_never_sent(
        tmp_path: Path, refusal: str) -> None:
    risk: dict[str, Any] = {"block_duplicate_positions": False}
    if refusal == "rate_limited":  # one token, refilled far slower than the hedger retries
        risk["rate_limit"] = {"orders_per_s": "0.1", "burst": 1}
    with GuardRig(tmp_path / "run", (BTC, ETH), config={"risk": risk}) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        rig.deep_quote(ETH, "100.0", "100.1")
        target = "-7"  # a short hedge from flat: risk-increasing
        if refusal == "kill_switch":
            rig.tell("coordinator", KillSwitch(True, "operator", rig.clock.now()))
        elif refusal == "max_order_size":
            target = "-150"  # over the default max_order_size of 100
        else:
            rig.send("buy", "1")  # spends the burst of one
        rig.tell("hedger", HedgeRequest(ETH, D(target), "default", rig.clock.now(), "group-g1"))
        rig.at(rig.now + 3.0)  # the hedger retries at its window, then gives up

        hedges = [r for r in rig.decisions() if r["inputs"]["purpose"] == "hedge"]
        assert len(hedges) >= 2, "the hedger retries a refused hedge"
        assert [(r["approved"], r["reason"]) for r in hedges] == [(False, refusal)] * len(hedges)
        assert all(r["client_order_id"] is None for r in hedges)
        assert rig.orders(symbol=ETH) == [], "a refused hedge reached the exchange"
        hedger = rig.info("hedger")
        assert hedger["counts"]["refused"] == len(hedges), "every refusal reaches the hedger"
        assert hedger["books"][f"default|{ETH}"]["in_flight"] == "0"
        assert rig.exchange_position(ETH) == 0
        assert rig.violations() == []


# -- rule 3: a snapshot older than the staleness bound is no snapshot ------------------------------


STALE_S = 30.0


@pytest.mark.parametrize("age_vs_bound", [-0.01, +0.01], ids=["just-below", "just-above"])
def test_with_poll_answers_withheld_past_the_bound_entries_fail_closed_and_exits_pass(
        tmp_path: Path, age_vs_bound: float) -> None:
    # A stream that stays up but answers nothing: the watchdog is set late on
    # purpose, so only the snapshot's age can tell that positions are unknown.
    config = {"gateway": {"watchdog": {"timeout_s": 600.0}},
              "risk": {"position_staleness_s": STALE_S, "block_duplicate_positions": False}}
    with GuardRig(tmp_path / "run", config=config) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        rig.send("buy", "5")
        rig.at(rig.now + 1.0)
        assert rig.position() == 5
        rig.fault(stall_stream=True)
        synced_at = rig.actor("coordinator").ledger.sync.synced_at  # when the last poll answer came in
        rig.at(synced_at + STALE_S + age_vs_bound)
        assert rig.info("gateway")["connected"] and not rig.info("gateway")["stream_reconciling"]
        assert rig.actor("reconciler").polls >= 2, "polls were asked, their answers withheld"

        rig.send("buy", "1")
        rig.send("sell", "2", reduce_only=True)
        entry, exit_ = rig.decisions()[-2:]
        assert (exit_["approved"], exit_["reason"]) == (True, "approved")
        if age_vs_bound < 0:
            assert (entry["approved"], entry["reason"]) == (True, "approved")
        else:
            assert (entry["approved"], entry["reason"]) == (False, "positions_unavailable")
            assert entry["inputs"]["positions_fresh"] is False
        assert invariants.gate_respected(rig.audit()) == []


# -- rule 4: no fraction of a token ------------------------------------------------------------


def test_after_the_burst_a_signal_a_fraction_of_a_token_later_is_rate_limited(
        tmp_path: Path) -> None:
    config = {"risk": {"rate_limit": {"orders_per_s": "1", "burst": 2},
                       "block_duplicate_positions": False}}
    with GuardRig(tmp_path / "run", config=config) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        rig.at(2.0)
        rig.send("buy", "1")
        rig.send("buy", "1")  # the burst of two is spent at t = 2
        for t in (2.5, 2.75, 2.96875):  # half, three quarters, 31/32 of a token back
            rig.at(t)
            rig.send("buy", "1")
        rig.at(3.0)  # exactly one token back
        rig.send("buy", "1")
        rig.send("buy", "1")  # and spent again
        assert rig.reasons() == ["approved", "approved", "rate_limited", "rate_limited",
                                 "rate_limited", "approved", "rate_limited"]
        rig.at(4.0)
        assert rig.position() == rig.exchange_position(BTC) == 3


# -- rule 5: a daily loss exactly at the limit halts ---------------------------------------------


@pytest.mark.parametrize(("loss", "halted"), [("99.9", False), ("100", True), ("100.1", True)],
                         ids=["just-below", "at", "just-above"])
def test_a_daily_loss_at_max_daily_loss_halts_trading(tmp_path: Path, loss: str,
                                                      halted: bool) -> None:
    config = {"risk": {"max_daily_loss": "100", "block_duplicate_positions": False,
                       "max_volatility": "1"},  # the test moves the price on purpose
              "exchange": {"maker_fee_bps": "0", "taker_fee_bps": "0"}}  # the loss is exact
    with GuardRig(tmp_path / "run", config=config) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        rig.send("buy", "10")
        rig.at(rig.now + 1.0)
        [fill] = rig.events("order_filled")
        mid = D(fill["price"]) - D(loss) / 10  # long 10: the mark that loses exactly `loss`
        rig.deep_quote(BTC, str(mid - D("0.05")), str(mid + D("0.05")))
        coord = rig.coord
        assert D(coord["daily_pnl"]) == -D(loss)
        assert coord["trading_state"] == ("HALTED" if halted else "ACTIVE")
        engaged = [r for r in rig.audit() if r["kind"] == "kill_switch"]
        assert [r["reason"] for r in engaged] == (["engaged"] if halted else [])
        rig.send("buy", "1")
        assert rig.reasons()[-1] == ("kill_switch" if halted else "approved")


# -- rule 8: a late cancel confirmation never lets the market exit out early ---------------------


@pytest.mark.parametrize("ending", ["confirmation", "final_fill"])
def test_a_cancel_slower_than_the_alert_alerts_and_the_market_exit_still_waits(
        tmp_path: Path, ending: str) -> None:
    config = {"exchange": {"latency_ms": 5, "cancel_ack_delay_ms": 25_000},
              "stops": {"fallback_after_s": 2.0, "cancel_wait_alert_s": 10.0}}
    with GuardRig(tmp_path / "run", config=config) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        rig.send("buy", "10", stop_loss=D("95"))
        rig.at(5.0)
        rig.deep_quote(BTC, "90.0", "90.1")  # gaps through the SL-limit's bound: it rests
        alerts_before = rig.info("alerts").get("received", 0)
        rig.at(19.0)  # cancel asked at ~7.25 s, alert due ~17.25 s, confirmation ~32 s
        stops = rig.info("stops")
        assert stops["counts"].get("cancel_wait_alerts") == 1
        assert rig.info("alerts")["received"] > alerts_before
        if ending == "final_fill":
            rig.fault(fill_resting={"symbol": BTC})  # the SL-limit fills before the cancel lands
            end = rig.now
        rig.at(31.0)
        if ending == "confirmation":
            assert rig.events("order_canceled") == []
            end = 32.0

        def market_exits() -> list[dict[str, Any]]:
            return [r for r in rig.decisions()
                    if r["inputs"]["purpose"] == "stop" and r["order_type"] == "market"]

        # Until the confirmation or the final fill: no market exit asked for,
        # none refused by the gate (a second line of defence), none sent.
        assert market_exits() == [] and rig.orders(symbol=BTC, order_type="market",
                                                   side="sell") == []
        assert rig.info("stops")["counts"].get("exit_orders_refused", 0) == 0
        assert rig.coord["rejected"] == {}

        rig.at(60.0)
        sells = [e for e in rig.events("order_filled") if e["side"] == "sell"]
        running = D(0)
        for e in sells:
            running += D(e["qty"])
            assert running <= 10, "the exit exceeded the position"
        assert running == 10 and rig.exchange_position(BTC) == 0
        markets = rig.orders(symbol=BTC, order_type="market", side="sell")
        if ending == "final_fill":
            assert markets == [] and market_exits() == []
        else:
            [canceled] = rig.events("order_canceled")
            [market] = markets
            assert market["seq"] > canceled["seq"] and rig.seconds(canceled) >= end
        assert rig.info("stops")["counts"]["cancel_wait_alerts"] == 1
        assert len(rig.events("cancel_requested")) == 1
        assert rig.violations() == []


# -- rule 12: exactly one restore and one resync per connection -------------------------------


def test_two_connected_reports_in_a_row_restore_and_resync_once(tmp_path: Path) -> None:
    with GuardRig(tmp_path / "run", (BTC, ETH)) as rig:
        subscribed = rig.info("gateway")["subscriptions"]
        assert subscribed == [BTC, ETH]
        rig.fault(drop_stream=True)
        rig.at(rig.now + 10.0)  # reconnected after the backoff, resynced
        gw = rig.info("gateway")
        assert gw["connected"] and not gw["stream_reconciling"]
        restores, resyncs = gw["counts"]["subscription_restores"], rig.info("reconciler")["resyncs"]
        subscribes = len(rig.events("subscribed"))
        # The transport reports "connected" a second time (a late duplicate status):
        rig.tell("gateway", StreamStatus(True, "connected (reported again)", rig.clock.now()))
        rig.at(rig.now + 5.0)
        gw = rig.info("gateway")
        assert gw["counts"]["subscription_restores"] == restores
        assert rig.info("reconciler")["resyncs"] == resyncs
        assert len(rig.events("subscribed")) == subscribes, "a duplicate subscription was sent"
        assert gw["subscriptions"] == subscribed and gw["counts"]["connects"] == 2
        assert not gw["stream_reconciling"]


# -- rule 6: the 90 % margin limit, just above and just below ------------------------------------


def _worst_case_margin(group: dict[str, Any]) -> Decimal:
    """The group's worst case over the rule's full shock grid, by the gate's own functions."""
    from trading.margin import LegArrays, worst_case_margin
    from runtime.clock import EPOCH_DEFAULT
    from tests.test_order_groups import QUOTES
    from trading.group_margin import PortfolioView, build_legs
    from trading.group_spec import parse_group

    _, legs = build_legs(parse_group(dict(group, id="x")),
                         PortfolioView({}, {}, QUOTES, D(1), EPOCH_DEFAULT))
    return D(repr(float(worst_case_margin(LegArrays.from_legs(legs)).worst)))


@pytest.mark.parametrize(("needs", "approved"), [("0.9999", True), ("1.0001", False)],
                         ids=["just-below", "just-above"])
def test_a_group_just_over_90_percent_of_available_margin_is_rejected(
        tmp_path: Path, needs: str, approved: bool) -> None:
    """``needs``: the worst case as a share of 90 % of the available margin."""
    from tests.test_order_groups import BEAR_CALL, GroupRig

    worst = _worst_case_margin(BEAR_CALL)
    equity = (worst / (D("0.9") * D(needs))).quantize(D("0.01"))
    with GroupRig(tmp_path / "run", config={"exchange": {"starting_cash": str(equity)}}) as rig:
        rig.submit(id="m1", **BEAR_CALL)
        rig.at(rig.now + 1)
        [decision] = [r for r in rig.group_audit("m1") if r["approved"] is not None]
        inputs = decision["inputs"]
        assert D(inputs["available_margin"]) == equity
        assert D(inputs["limit_value"]) == D("0.90") * equity
        assert abs(D(inputs["worst_case_margin"]) - worst) <= D("0.01")
        assert decision["approved"] is approved
        if approved:
            assert D(inputs["worst_case_margin"]) <= D(inputs["limit_value"])
            assert len(rig.submitted()) == 2
        else:
            assert decision["reason"] == "worst_case_margin"
            assert D(inputs["worst_case_margin"]) > D(inputs["limit_value"])
            assert rig.submitted() == [], "a rejected group sends no leg"


# -- rule 9: duplicate fill reports are applied once, at the coordinator ---------------------------


def test_duplicate_fill_reports_move_the_position_once(tmp_path: Path) -> None:
    with GuardRig(tmp_path / "run", config={"exchange": {"partial_fills": 2},
                                            "risk": {"block_duplicate_positions": False}}) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        rig.fault(duplicate_fill=2)  # both partial fills of the next order are reported twice
        rig.send("buy", "6")
        rig.at(rig.now + 1.0)
        fills = rig.events("order_filled")
        assert len(fills) == 2 and len({f["fill_id"] for f in fills}) == 2
        coord = rig.coord
        assert coord["counts"]["duplicate_fills"] == 2 and coord["counts"]["fills"] == 2
        assert rig.position() == rig.exchange_position(BTC) == 6
        rig.fault(duplicate_fill="last")  # a late resend of the last report
        rig.at(rig.now + 1.0)
        assert rig.coord["counts"]["duplicate_fills"] == 3
        assert rig.position() == 6
        # The book was never inflated: an exit of the whole position is an exit,
        # one unit more would have been the other side.
        rig.send("sell", "7", reduce_only=True)
        rig.send("sell", "6", reduce_only=True)
        rig.at(rig.now + 1.0)
        assert rig.reasons()[-2:] == ["netting_conflict", "approved"]
        assert rig.position() == rig.exchange_position(BTC) == 0
        assert rig.violations() == []


# -- rule 11: the reconciliation poll is re-armed after every round -------------------------------


def test_the_poll_comes_back_every_poll_s_and_each_round_corrects_a_divergence(
        tmp_path: Path) -> None:
    with GuardRig(tmp_path / "run", config={"reconciler": {"poll_s": 12.0}}) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        polls = []
        for k in range(1, 6):
            rig.at(12.0 * k + 0.5)
            polls.append(rig.actor("reconciler").polls)
        assert polls == [1, 2, 3, 4, 5]
        # Behind the runtime's back, twice: each change is found by the next poll.
        for k, qty in ((6, "3"), (7, "-2")):
            rig.fault(set_position={"symbol": BTC, "qty": qty, "avg_price": "100"})
            rig.at(12.0 * k - 0.5)
            assert rig.position() != D(qty), "corrected before any poll"
            rig.at(12.0 * k + 0.5)
            assert rig.position() == rig.exchange_position(BTC) == D(qty)
        assert rig.coord["counts"]["divergences"] == 2
        divergences = [r for r in rig.audit() if r["kind"] == "divergence"]
        assert [r["inputs"]["source"] for r in divergences] == ["poll", "poll"]


# -- rule 4: in-flight orders count toward max_position_size ------------------------------------


def test_in_flight_orders_count_toward_max_position_size(tmp_path: Path) -> None:
    config = {"exchange": {"latency_ms": 50},
              "risk": {"max_position_size": "10", "max_order_size": "10",
                       "block_duplicate_positions": False}}
    with GuardRig(tmp_path / "run", config=config) as rig:
        rig.deep_quote(BTC, "100.0", "100.1")
        for qty in ("6", "3", "1", "1"):  # all in flight at once: 6, 9, 10, then 11
            rig.send("buy", qty)
        assert rig.coord["inflight"] == 3 and rig.position() == 0
        assert rig.reasons() == ["approved", "approved", "approved", "max_position_size"]
        refused = rig.decisions()[-1]["inputs"]
        assert (refused["worst_case_qty"], refused["limit"]) == ("11", "10")
        rig.at(rig.now + 1.0)
        assert rig.position() == rig.exchange_position(BTC) == 10
        rig.send("buy", "1")  # filled now: the position alone is at the limit
        rig.send("sell", "10", reduce_only=True)
        assert rig.reasons()[-2:] == ["max_position_size", "approved"]


# -- rule 12: the reconnect budget, at its boundary ----------------------------------------------


def test_the_reconnect_budget_allows_exactly_budget_attempts_per_window(harness_factory) -> None:
    from actors.reconnect import ReconnectController
    from messages.connectivity import StreamDown
    from runtime import Backoff, ChildSpec
    from runtime.clock import EPOCH_DEFAULT
    from tests.test_gateway_reconnect import DeadVenueGateway, Inbox

    budget, window = 3, 100.0
    h = harness_factory(ChildSpec("gateway", DeadVenueGateway), ChildSpec("alerts", Inbox),
                        ChildSpec("reconnect", ReconnectController, kwargs={
                            "backoff": Backoff(base_s=1.0, max_s=4.0, jitter="none"),
                            "budget": budget, "window_s": window}), seed=7)
    h.tell("reconnect", StreamDown("test", EPOCH_DEFAULT))
    h.advance(1.0 + 2.0)  # attempts at 1 s and 3 s (no jitter): one below the budget
    asks = h.actor("gateway").asks
    assert asks == [1.0, 3.0] and h.actor("reconnect").state == "reconnecting"
    h.advance(4.0)  # the third: the budget is used up, not exceeded
    assert len(asks) == budget and h.actor("alerts").got == []
    h.advance(4.0)  # the fourth would exceed it: refused, alerted
    rc = h.actor("reconnect")
    assert rc.state == "budget_exhausted" and len(asks) == budget
    [(_, alert)] = h.actor("alerts").got
    assert alert.severity == "critical" and "budget" in alert.title
    h.run_until(asks[0] + window - 0.001)  # the oldest attempt still in the window
    assert len(asks) == budget
    h.run_until(asks[0] + window)  # out of it: exactly then, one more attempt
    assert len(asks) == budget + 1 and asks[budget] == pytest.approx(asks[0] + window)
    h.advance(400.0)
    for i, t in enumerate(asks):  # never more than the budget in any window
        assert len([a for a in asks[:i + 1] if t - a < window]) <= budget, asks
    assert len(asks) > 2 * budget
