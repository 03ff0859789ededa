"""The order ledger on its own: no actor, no harness (rules 2, 3, 4, 5, 9, 10, 15).

``trading.ledger.OrderLedger`` takes one event at a time and returns its
effects (messages, store writes, audit records) as values, so each rule it
enforces is checked here by feeding it events and reading what it decided.
Time is a ``VirtualClock`` moved by hand; the store in the recovery tests
is a real LMDB store, written with exactly the store writes a first ledger
returned, as the persistence actor would have written them.

One test per rule; each fails when its rule is broken (every one was
checked by breaking the rule in the ledger and watching the test fail).
"""

from __future__ import annotations

import itertools
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from loguru import logger

from messages.alerts import Alert
from messages.control import (BrokerOrders, BrokerPositions, CancelIntent, ConnectivityChanged,
                              KillSwitch, OrderIntent, RecoveryDone, StoppedOut)
from messages.enums import CancelOutcome, OrderPurpose, Side
from messages.exchange import SubmitOrder
from messages.market import Quote
from messages.orders import (CancelConfirmed, CancelOrder, OrderAcked, OrderFilled, OrderRejected,
                             Signal)
from messages.persistence import Durable, StoreDb
from runtime.clock import VirtualClock
from trading.effects import AuditRecord, Effects, FlushAudit, Send, Sent, StoreWrite
from trading.ledger import OrderLedger
from trading.limits import Limits
from trading.reasons import Reason
from trading.recovery import rebuild
from trading.store import Store, put_op
from trading.store_keys import KILL_SWITCH_KEY, order_status_key
from trading.trading_state import TradingState

BTC = "BTCUSDT"
KEY = ("default", "sim", BTC)


class Desk:
    """One ledger on a virtual clock, and the events a coordinator would feed it."""

    def __init__(self, *, limits: Limits | None = None, clock: VirtualClock | None = None,
                 store: Store | None = None, prefix: str = "t") -> None:
        self.clock = clock or VirtualClock()
        n = itertools.count(1)
        self.ledger = OrderLedger(limits=limits or Limits(), symbols=[BTC], clock=self.clock,
                                  next_id=lambda: f"{prefix}-{next(n)}", log=logger, store=store)

    @property
    def now(self) -> Any:
        return self.clock.now()

    def at(self, t: float) -> None:
        self.clock.advance_to(t)

    def ready(self, bid: str = "100", ask: str = "100.02") -> Desk:
        """Stream up, positions answered, recovery done, a quote: entries may pass."""
        self.connect()
        self.positions()
        self.ledger.on_recovery_done(RecoveryDone(self.now))
        self.quote(bid, ask)
        return self

    def connect(self, up: bool = True, resyncing: bool = False) -> Effects:
        return self.ledger.on_connectivity(ConnectivityChanged(up, resyncing, "test", self.now))

    def positions(self, *held: tuple[str, str], source: str = "poll") -> Effects:
        return self.ledger.on_broker_positions(BrokerPositions(
            "default", tuple((s, D(q)) for s, q in held), self.now, source=source,
            requested_at=self.now))

    def quote(self, bid: str, ask: str) -> Effects:
        return self.ledger.on_quote(Quote(BTC, D(bid), D(ask), self.now))

    def signal(self, side: str, qty: str) -> Effects:
        return self.ledger.on_signal(Signal(BTC, Side(side), D(qty), self.now))

    def exit(self, side: str, qty: str) -> Effects:
        return self.ledger.on_intent(OrderIntent(BTC, Side(side), D(qty), OrderPurpose.EXIT,
                                                 self.now, reduce_only=True, owner="strategy"))

    def sent(self, side: str, qty: str) -> str:
        """An approved entry, durable and sent: its client order id."""
        fx = self.signal(side, qty)
        assert decision(fx)["approved"], decision(fx)
        coid = decision(fx)["client_order_id"]
        assert [type(m) for _, m in self.ledger.on_durable(Durable(coid)).sent()] == [SubmitOrder]
        return str(coid)

    def fill(self, coid: str, fill_id: str, side: str, qty: str, price: str,
             leaves: str) -> Effects:
        return self.ledger.on_filled(OrderFilled(coid, fill_id, BTC, Side(side), D(qty), D(price),
                                                 D(leaves), self.now))

    def position(self) -> D:
        return self.ledger.book.qty(KEY)


def decision(fx: Effects) -> dict[str, Any]:
    """The one risk decision among ``fx``'s audit records."""
    (rec,) = fx.audited("risk_decision")
    return rec


def reason(fx: Effects) -> str:
    return str(decision(fx)["reason"])


def stored(fx: Effects, db: StoreDb) -> list[tuple[str, Any]]:
    return [(w.put.key, w.put.value) for w in fx.of(StoreWrite) if w.put.db is db]


def restarted(first: Desk, store: Store, **kw: Any) -> Desk:
    """A new ledger five seconds after ``first`` died, rebuilt from ``store``."""
    clock = VirtualClock(first.now)
    clock.advance_to(5.0)
    desk = Desk(store=store, clock=clock, **kw)
    rebuild(desk.ledger, store)
    return desk


def write(store: Store, *batches: Effects) -> None:
    """What the persistence actor would write for these effects."""
    store.apply([put_op(w.put.db, w.put.key, w.put.value)
                 for fx in batches for w in fx.of(StoreWrite)])


# -- rule 2: netting ---------------------------------------------------------------------------


def test_rule2_two_rapid_opposite_signals_cannot_both_pass() -> None:
    desk = Desk().ready()
    first = desk.signal("buy", "10")
    assert decision(first)["approved"]  # in flight, not filled: the book is still flat
    second = desk.signal("sell", "10")
    assert reason(second) == Reason.NETTING_CONFLICT
    assert desk.ledger.counts["blocked_by_invariant"] == 1
    assert [b["side"] for b in desk.ledger.blocked] == ["sell"]
    assert decision(second)["inputs"]["pending"] == ["10", "0"]  # counted the in-flight buy
    # Hedging mode for the account lifts it.
    hedged = Desk(limits=Limits(hedging_accounts=frozenset({"default"}))).ready()
    hedged.signal("buy", "10")
    assert decision(hedged.signal("sell", "10"))["approved"]


# -- rule 3: fail closed -----------------------------------------------------------------------


def test_rule3_no_fresh_positions_refuses_new_risk_but_not_an_exit() -> None:
    desk = Desk(limits=Limits(duplicate_position_check=False))
    desk.connect()
    desk.ledger.on_recovery_done(RecoveryDone(desk.now))
    desk.quote("100", "100.02")
    assert reason(desk.signal("buy", "1")) == Reason.POSITIONS_UNAVAILABLE  # never answered
    desk.positions()
    coid = desk.sent("buy", "5")
    desk.fill(coid, "F1", "buy", "5", "100.02", "0")
    # The stream drops: positions are unknown again until it is back and resynced.
    desk.connect(up=False)
    assert reason(desk.signal("buy", "1")) == Reason.POSITIONS_UNAVAILABLE
    assert decision(desk.exit("sell", "2"))["approved"]  # a reducing exit still goes
    desk.connect(resyncing=True)
    assert reason(desk.signal("buy", "1")) == Reason.POSITIONS_UNAVAILABLE
    desk.connect()
    desk.positions(("BTCUSDT", "5"))
    assert decision(desk.signal("buy", "1"))["approved"]
    # A snapshot older than the staleness bound is no snapshot.
    desk.at(Limits().positions_stale_after_s + 1)
    assert reason(desk.signal("buy", "1")) == Reason.POSITIONS_UNAVAILABLE
    assert decision(desk.exit("sell", "1"))["approved"]


# -- rule 4: pre-trade limits, breaker, rate limit, cool-down; every decision audited ------------


def test_rule4_limits_the_ledger_holds_across_events_and_each_decision_is_one_record() -> None:
    limits = Limits(order_burst=3, orders_per_s=1.0, breaker_failures=2,
                    duplicate_position_check=False, stop_out_cooldown_s=60.0)
    desk = Desk(limits=limits).ready()
    too_big = desk.signal("buy", "101")
    assert [(r["approved"], r["reason"], r["inputs"]["limit"]) for r in too_big.audited()] == [
        (False, Reason.MAX_ORDER_SIZE, "100")]  # one record, with its reason and inputs
    # Two broker rejects in a row open the breaker: new risk is refused.
    for _ in range(2):
        coid = desk.sent("buy", "1")
        desk.ledger.on_rejected(OrderRejected(coid, BTC, "insufficient margin", desk.now))
    assert reason(desk.signal("buy", "1")) == Reason.CIRCUIT_OPEN
    # After the cool-off one trial goes; its acknowledgement closes the breaker.
    desk.at(limits.breaker_cooloff_s + 1)
    desk.positions(("BTCUSDT", "0"))
    coid = desk.sent("buy", "1")
    assert reason(desk.signal("buy", "1")) == Reason.CIRCUIT_OPEN  # one trial only
    desk.ledger.on_acked(OrderAcked(coid, "X1", BTC, desk.now))
    # A stop-out holds new entries on the symbol for the cool-down.
    desk.ledger.risk.on_stopped_out(StoppedOut(BTC, "default", desk.now))
    assert reason(desk.signal("buy", "1")) == Reason.STOP_OUT_COOLDOWN
    desk.at(limits.breaker_cooloff_s + 1 + limits.stop_out_cooldown_s + 1)
    desk.positions(("BTCUSDT", "0"))
    # A burst past the bucket is refused by the rate limiter.
    decisions = [decision(desk.signal("buy", "1")) for _ in range(5)]
    assert [d["approved"] for d in decisions] == [True, True, True, False, False]
    assert {d["reason"] for d in decisions[3:]} == {Reason.RATE_LIMITED}
    assert desk.ledger.rejected[Reason.RATE_LIMITED] == 2


# -- rule 5: kill switch -----------------------------------------------------------------------


def test_rule5_daily_loss_halts_new_risk_durably_loudly_and_exits_still_pass() -> None:
    desk = Desk(limits=Limits(max_daily_loss=D(50))).ready()
    coid = desk.sent("buy", "10")
    desk.fill(coid, "F1", "buy", "10", "100.02", "0")
    fx = desk.quote("94", "94.02")  # 10 x about -6: past the limit
    assert desk.ledger.risk.kill.state is TradingState.HALTED
    assert stored(fx, StoreDb.META) == [(KILL_SWITCH_KEY, desk.ledger.risk.kill.reason)]
    assert [r["reason"] for r in fx.audited("kill_switch")] == ["engaged"]
    assert [m.severity for _, m in fx.sent(Alert)] == ["critical"]
    assert reason(desk.signal("buy", "1")) == Reason.KILL_SWITCH
    out = desk.exit("sell", "10")
    assert decision(out)["approved"] and decision(out)["risk_reducing"]
    # Released by hand only, with its own store write and audit record.
    fx = desk.ledger.risk.on_kill_switch(KillSwitch(False, "operator checked", desk.now))
    assert desk.ledger.risk.kill.state is TradingState.ACTIVE
    assert stored(fx, StoreDb.META) == [(KILL_SWITCH_KEY, None)]
    assert [r["reason"] for r in fx.audited("kill_switch")] == ["released"]


# -- rule 9: partial fills, duplicate reports, fills after a cancel request ---------------------


def test_rule9_fills_apply_one_by_one_each_fill_id_once_even_after_a_cancel() -> None:
    desk = Desk().ready()
    coid = desk.sent("buy", "10")
    fx = desk.fill(coid, "F1", "buy", "4", "100.02", "6")
    assert desk.position() == 4 and desk.ledger.orders.status(coid) == "partially_filled"
    assert [k for k, _ in stored(fx, StoreDb.FILLS)] == ["F1"]
    again = desk.fill(coid, "F1", "buy", "4", "100.02", "6")  # the same report twice
    assert desk.position() == 4 and desk.ledger.counts["duplicate_fills"] == 1
    assert not again.of(StoreWrite) and not again.sent()
    cancel = desk.ledger.on_cancel_intent(CancelIntent(coid, desk.now))
    assert [type(m) for _, m in cancel.sent()] == [CancelOrder]
    desk.fill(coid, "F2", "buy", "6", "100.03", "0")  # raced the cancel: still booked, once
    desk.fill(coid, "F2", "buy", "6", "100.03", "0")
    assert desk.position() == 10 and desk.ledger.orders.status(coid) == "filled"
    assert coid not in desk.ledger.book.inflight
    late = desk.ledger.on_cancel_confirmed(CancelConfirmed(coid, BTC, CancelOutcome.ALREADY_FILLED,
                                                           D(0), desk.now))
    assert desk.position() == 10 and not late.of(StoreWrite)


# -- rule 10: start-up recovery ----------------------------------------------------------------


def test_rule10_a_restarted_ledger_is_rebuilt_from_the_store_and_waits_for_its_own_resync(
        tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        first = Desk(store=store).ready()
        fx = first.signal("buy", "10")
        coid = decision(fx)["client_order_id"]
        sent = first.ledger.on_durable(Durable(coid))
        filled = first.fill(coid, "F1", "buy", "4", "100.02", "6")
        halt = first.ledger.risk.on_kill_switch(KillSwitch(True, "operator", first.now))
        write(store, fx, sent, filled, halt)
        asked_before_restart = first.now

        second = restarted(first, store, limits=Limits(duplicate_position_check=False))
        ledger = second.ledger
        assert second.position() == 4
        assert ledger.book.inflight[coid].remaining == 6  # in flight: counted by netting
        assert ledger.orders.status(coid) == "partially_filled"
        assert ledger.risk.kill.state is TradingState.HALTED  # a crash is no way out (rule 5)
        assert "F1" in ledger.book.fills
        # Until its own recovery round is done, no new risk: a round asked
        # before this ledger started (by the previous instance) does not count.
        ledger.risk.on_kill_switch(KillSwitch(False, "operator", second.now))
        second.connect()
        second.positions(("BTCUSDT", "4"))
        second.quote("100", "100.02")
        ledger.on_recovery_done(RecoveryDone(second.now, requested_at=asked_before_restart))
        assert reason(second.signal("buy", "1")) == Reason.RECOVERING
        ledger.on_recovery_done(RecoveryDone(second.now, requested_at=second.now))
        assert decision(second.signal("buy", "1"))["approved"]


# -- rule 15: identity across a crash ----------------------------------------------------------


def test_rule15_an_order_the_broker_never_got_is_resent_under_its_own_id_never_twice(
        tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        first = Desk(store=store).ready()
        fx = first.signal("buy", "3")
        coid = decision(fx)["client_order_id"]
        sent = first.ledger.on_durable(Durable(coid))
        write(store, fx, sent)  # the SubmitOrder was lost with the process
        (_, request), = sent.sent(SubmitOrder)

        second = restarted(first, store, prefix="u")
        second.connect()
        asked = second.now
        second.at(6.0)
        resync = second.ledger.on_broker_orders(BrokerOrders("default", (), (), asked, second.now))
        (to, again), = resync.sent(SubmitOrder)
        assert again.order == request.order  # the stored request, the same client order id
        assert [r["client_order_id"] for r in resync.audited("resubmitted")] == [coid]
        assert [type(e) for e in resync if isinstance(e, (Send, Sent))] == [Send, Sent]
        # The broker had it after all and refuses the duplicate id: over, never a second order.
        refused = second.ledger.on_rejected(OrderRejected(
            coid, BTC, "duplicate_client_order_id: known", second.now))
        assert not refused.sent(SubmitOrder)
        assert second.ledger.orders.status(coid) == "rejected"
        assert coid not in second.ledger.book.inflight
        assert stored(refused, StoreDb.META) == [(order_status_key(coid), "rejected")]
        # A later round does not send it again either.
        second.at(7.0)
        later = second.ledger.on_broker_orders(BrokerOrders("default", (), (), second.now,
                                                            second.now))
        assert not later.sent(SubmitOrder)


# -- the write-ahead order of effects (DESIGN section 6) ---------------------------------------


def test_an_approval_is_flushed_to_the_audit_before_its_intent_is_written_and_sent_after() -> None:
    desk = Desk(limits=Limits(duplicate_position_check=False)).ready()
    fx = desk.signal("buy", "1")
    kinds = [type(e) for e in fx]
    assert kinds == [AuditRecord, FlushAudit, StoreWrite]
    assert not fx.sent(SubmitOrder)  # nothing leaves before the intent is durable
    coid = decision(fx)["client_order_id"]
    # Durable: the order leaves, and only after the send is its status stamped
    # (the coordinator stamps it when it carries out ``Sent``): a resync asked
    # before that stamp may not know the order, and must not judge it.
    out = desk.ledger.on_durable(Durable(coid))
    order = [type(e.message).__name__ if isinstance(e, Send) else type(e).__name__
             for e in out if isinstance(e, (Send, Sent))]
    assert order == ["SubmitOrder", "Sent"] and out.of(Sent) == [Sent(coid)]
    # Not durable: never sent.
    other = decision(desk.signal("buy", "1"))["client_order_id"]
    failed = desk.ledger.on_durable(Durable(other, ok=False, error="disk full"))
    assert not failed.sent() and desk.ledger.orders.status(other) == "not_durable"
    assert other not in desk.ledger.book.inflight


# -- rules 11 and 18: the broker wins a divergence, once a second answer confirms it -----------


def test_a_divergence_moves_the_book_only_when_a_second_answer_confirms_it() -> None:
    desk = Desk().ready()
    first = desk.positions(("BTCUSDT", "7"), source="poll")
    assert desk.position() == 0  # one answer is not enough: asked again at once
    assert [m.account for _, m in first.sent()] == ["default"]
    assert reason(desk.signal("buy", "1")) == Reason.POSITIONS_UNAVAILABLE  # in doubt meanwhile
    second = desk.positions(("BTCUSDT", "7"), source="confirm")
    assert desk.position() == 7
    (rec,) = second.audited("divergence")
    assert (rec["inputs"]["ours"], rec["inputs"]["broker"]) == ("0", "7")
    assert rec["inputs"]["price_source"].startswith("mark_at_takeover")
    assert stored(second, StoreDb.POSITIONS) == [("default|sim|BTCUSDT", {
        "qty": D(7), "avg_price": D("100.01"), "realized": D(0)})]
    # A divergence the next answer no longer shows was never the broker's state.
    desk.positions(("BTCUSDT", "9"))
    desk.positions(("BTCUSDT", "7"), source="confirm")
    assert desk.position() == 7 and desk.ledger.counts["divergences_not_confirmed"] == 1
