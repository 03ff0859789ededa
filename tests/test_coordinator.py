"""Safety rules at the actor level, through the real tree (DESIGN sections 2, 5, 6).

Every test starts the whole runtime (``app.launcher.Runtime``) on a
virtual clock with the in-process simulated exchange: signals go to the real
coordinator, orders to the real gateway and venue, intents to the real
persistence actor. Nothing is mocked; faults are injected the way a scenario
does (exchange faults, messages a gateway would send). Ground truth is read
from outside the coordinator: the exchange's ``events.jsonl``, the audit
trail and the store.

Time only moves with ``run_until``/``advance`` and every wait is on
quiescence, so each test is deterministic and takes a fraction of a second.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from datetime import datetime, UTC
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from config import config_hash, load_config
from exchange.events_log import read_events
from messages.base import MessageError
from messages.control import ConnectivityChanged, KillSwitch, OrderIntent
from messages.enums import OrderPurpose, OrderType, Side
from messages.exchange import ExchangeFault, SubmitOrder
from messages.market import Quote
from messages.orders import OrderRequest, Signal
from messages.persistence import Flush, Put, StoreDb
from app import invariants
from runtime.clock import EPOCH_DEFAULT, VirtualClock
from app.launcher import LaunchSpec, Runtime
from trading.store import Store
from runtime.supervisor import Supervisor
from trading.audit import AUDIT_SCHEMA_VERSION, read_audit
from trading.limits import Limits
from trading.reasons import Reason

BTC, ETH, SOL = "BTCUSDT", "ETHUSDT", "SOLUSDT"
DEEP = D("1000000")  # quote size: fills are never capped by the book
#: what DESIGN section 6 requires of every audit record
AUDIT_KEYS = {"schema_version", "event_id", "timestamp", "run_id", "app_version", "config_hash",
              "reason", "inputs"}


class Rig:
    """One runtime on a virtual clock, plus the readers a test needs."""

    def __init__(self, run_dir: Path, *, symbols: tuple[str, ...] = (BTC,),
                 risk: dict | None = None, exchange: dict | None = None,
                 clock: VirtualClock | None = None, engine: Any = None,
                 run_id: str = "coord-test", config: dict | None = None) -> None:
        overrides: dict[str, Any] = {"strategy": {"name": "none"}, **(config or {})}  # timeline signals only
        if risk:
            overrides["risk"] = risk
        if exchange:
            overrides["exchange"] = exchange
        self.config = load_config(overrides=overrides)
        self.clock = clock or VirtualClock(EPOCH_DEFAULT)
        self.run_dir = run_dir
        self.spec = LaunchSpec(self.config, run_dir, symbols, self.clock, run_id=run_id,
                               config_hash=config_hash(self.config), engine=engine)
        self.rt = Runtime(self.spec)

    # -- lifecycle -------------------------------------------------------------------

    def start(self, *, ready: bool = True) -> Rig:
        self.rt.start()
        if ready:
            self.advance(1.0)  # connect, resync positions, recovery done
            assert not self.coord["recovering"], self.coord
            assert not self.rt.info("gateway")["stream_reconciling"]
        return self

    def stop(self) -> None:
        self.rt.stop()

    @property
    def system(self) -> Any:
        return self.rt.system

    def advance(self, seconds: float) -> None:
        self.system.advance(seconds)

    def settle(self) -> None:
        self.system.wait_quiescent()

    # -- input -------------------------------------------------------------------------

    def quote(self, symbol: str = BTC, bid: str = "100.0", ask: str = "100.1") -> None:
        """A quote at the venue; it reaches the coordinator after the exchange latency."""
        self.system.tell("venue", Quote(symbol, D(bid), D(ask), self.clock.now(),
                                        bid_size=DEEP, ask_size=DEEP))
        self.advance(0.5)

    def signal(self, side: str, qty: Any, symbol: str = BTC, **kw: Any) -> None:
        self.system.tell("coordinator", Signal(symbol, Side(side), D(qty), self.clock.now(), **kw))

    def tell(self, name: str, msg: Any) -> None:
        self.system.tell(name, msg)

    # -- reading -----------------------------------------------------------------------

    @property
    def coord(self) -> dict[str, Any]:
        return self.rt.info("coordinator")

    def coordinator(self) -> Any:
        return self.system.directory.get("coordinator").actor

    def audit(self) -> list[dict]:
        self.settle()  # the coordinator flushes its audit file when idle
        return list(read_audit(self.run_dir / "audit.jsonl"))

    def decisions(self, **match: Any) -> list[dict]:
        out = [r for r in self.audit() if r.get("kind") == "risk_decision"]
        return [r for r in out if all(r.get(k) == v for k, v in match.items())]

    def reasons(self) -> list[str]:
        return [r["reason"] for r in self.decisions()]

    def events(self, kind: str | None = None) -> list[dict]:
        evs = read_events(self.run_dir / "events.jsonl")
        return [e for e in evs if kind is None or e["kind"] == kind]

    def position(self, symbol: str = BTC) -> D:
        return D(self.coord["positions"].get(symbol, "0"))

    def exchange_position(self, symbol: str = BTC) -> D:
        return D(str(self.rt.exchange_positions().get(symbol, 0)))

    def violations(self) -> list[dict]:
        return invariants.check_all(
            events=self.events(), audit=self.audit(), positions=self.coord["positions"],
            exchange_positions={k: str(v) for k, v in self.rt.exchange_positions().items()},
            hedging_accounts=Limits.from_config(self.config.risk).hedging_accounts,
            fail_closed=self.config.risk.fail_closed_on_missing_positions,
            dead_letters=[e for e in self.system.dead_letters.snapshot(recent=1000)["recent"]])


@pytest.fixture
def rigs(tmp_path: Path):
    """Build rigs (started, ready to trade unless ``ready=False``); always stopped after."""
    made: list[Rig] = []

    def make(*, ready: bool = True, run_dir: Path | None = None, **kw: Any) -> Rig:
        rig = Rig(run_dir or tmp_path / "run", **kw)
        made.append(rig)
        return rig.start(ready=ready)

    yield make
    for rig in made:
        rig.stop()


# -- rule 1: single door --------------------------------------------------------------------


def test_every_order_at_the_exchange_has_exactly_one_approved_audit_record(rigs) -> None:
    rig = rigs(symbols=(BTC, ETH))
    rig.quote(BTC)
    rig.quote(ETH, "2000.0", "2000.5")
    rig.signal("buy", 5)
    rig.signal("buy", 3, ETH)
    rig.signal("buy", 1, "DOGEUSDT")  # rejected: never at the exchange
    rig.advance(1)
    rig.signal("sell", 5)
    rig.signal("sell", 2, ETH)
    rig.advance(1)
    submitted = rig.events("order_submitted")
    assert len(submitted) == 4
    approved = rig.decisions(approved=True)
    for ev in submitted:
        mine = [r for r in approved if r["client_order_id"] == ev["client_order_id"]]
        assert len(mine) == 1, ev
    assert {r["client_order_id"] for r in approved} == {e["client_order_id"] for e in submitted}
    assert invariants.single_door(rig.events(), rig.audit()) == []
    assert rig.violations() == []


def test_an_order_sent_to_the_gateway_directly_breaks_single_door(rigs) -> None:
    rig = rigs()
    rig.quote()
    rig.signal("buy", 2)
    rig.advance(1)
    assert invariants.single_door(rig.events(), rig.audit()) == []
    rogue = OrderRequest("rogue-1", BTC, Side.BUY, OrderType.MARKET, D(1), rig.clock.now())
    rig.tell("gateway", SubmitOrder(rogue))  # bypasses the coordinator's gate
    rig.advance(1)
    assert [e["client_order_id"] for e in rig.events("order_submitted")][-1] == "rogue-1"
    found = invariants.single_door(rig.events(), rig.audit())
    assert [(v["rule"], v["client_order_id"]) for v in found] == [("single_door", "rogue-1")]
    assert any(v["rule"] == "single_door" for v in rig.violations())


def test_order_intent_is_durable_before_it_leaves_for_the_broker(rigs) -> None:
    """DESIGN section 6: the coordinator sends an order only once its intent is on disk."""
    rig = rigs()
    rig.quote()
    writer = rig.system.directory.get("persistence").actor
    writer.on_idle = lambda: None  # a slow disk: nothing commits until flushed
    rig.signal("buy", 4)
    rig.settle()
    (rec,) = rig.decisions(approved=True)
    coid = rec["client_order_id"]
    assert rig.coord["orders_by_status"] == {"intent": 1}
    assert rig.rt.store.get(StoreDb.ORDERS, coid) is None  # not durable yet ...
    assert rig.events("order_submitted") == []  # ... so not sent
    del writer.on_idle
    done: Future = Future()
    rig.tell("persistence", Flush(ack=done))
    rig.advance(1)
    assert done.result(5).ok
    assert rig.rt.store.get(StoreDb.ORDERS, coid)["order"].client_order_id == coid
    assert [e["client_order_id"] for e in rig.events("order_submitted")] == [coid]
    assert rig.position() == 4


def test_an_intent_whose_write_fails_is_never_sent(rigs) -> None:
    """DESIGN section 6: an order leaves only once its intent is durable; a failed
    write (here the disk refuses the transaction) means the order never leaves."""
    rig = rigs()
    rig.quote()
    store = rig.rt.store

    def disk_full(ops: Any) -> Any:
        raise OSError(28, "No space left on device")

    store.apply = disk_full
    try:
        rig.signal("buy", 4)
        rig.settle()
    finally:
        del store.apply
    rig.advance(1)
    (rec,) = rig.decisions(approved=True)
    coid = rec["client_order_id"]
    assert rig.events("order_submitted") == [], "an order without a durable intent was sent"
    assert rig.coord["orders_by_status"] == {"not_durable": 1} and rig.coord["inflight"] == 0
    (failed,) = [r for r in rig.audit() if r["kind"] == "persist_failed"]
    assert failed["client_order_id"] == coid and "No space left" in failed["inputs"]["error"]
    rig.signal("buy", 2)  # the disk is back: trading goes on, nothing was left in flight
    rig.advance(1)
    assert rig.position() == 2 == rig.exchange_position()


def test_an_intent_queued_at_persistence_when_the_coordinator_crashes_is_sent_after_restart(
        rigs) -> None:
    """The restarted coordinator asks persistence to flush before it reads the store:
    an intent the crashed instance approved (its write still queued) is then rebuilt
    and sent at the first resync. Read before the flush, it was unknown to the new
    instance and would only have been resubmitted at the next process restart."""
    rig = rigs()
    rig.quote()
    writer = rig.system.directory.get("persistence").actor
    writer.on_idle = lambda: None  # a slow disk: the intent's write stays queued
    rig.signal("buy", 4)
    rig.settle()
    (rec,) = rig.decisions(approved=True)
    coid = rec["client_order_id"]
    assert rig.rt.store.get(StoreDb.ORDERS, coid) is None and rig.events("order_submitted") == []
    rig.tell("coordinator", Signal.__new__(Signal))  # fields missing: its handler raises
    rig.advance(2.0)
    assert rig.system.restart_counts["coordinator"] == 1
    del writer.on_idle
    flushed: Future = Future()
    rig.tell("persistence", Flush(ack=flushed))  # the disk catches up in any case
    assert flushed.result(5).ok
    rig.advance(2.0)
    assert rig.rt.store.get(StoreDb.ORDERS, coid) is not None
    assert [e["client_order_id"] for e in rig.events("order_submitted")] == [coid], \
        "the durable intent was never sent"
    assert rig.position() == 4 == rig.exchange_position()
    # only the poison Signal itself, kept as a dead letter
    assert [v["rule"] for v in rig.violations()] == ["order_flow_dead_letter"]


# -- rule 2: netting --------------------------------------------------------------------------


def test_two_rapid_opposite_signals_cannot_both_pass(rigs) -> None:
    rig = rigs(exchange={"latency_ms": 50})
    rig.quote()
    rig.signal("buy", 10)
    rig.signal("sell", 10)  # the buy is still in flight (50 ms latency)
    rig.settle()
    c = rig.coord
    assert c["inflight"] == 1
    assert c["rejected"] == {"netting_conflict": 1}
    assert c["counts"]["blocked_by_invariant"] == 1
    assert [(b["symbol"], b["side"], b["qty"]) for b in c["blocked"]] == [(BTC, "sell", "10")]
    assert rig.reasons() == ["approved", "netting_conflict"]
    rig.advance(1)
    assert rig.position() == rig.exchange_position() == 10
    assert len(rig.events("order_submitted")) == 1
    assert invariants.netting(rig.events()) == []
    assert rig.violations() == []


def test_reduce_only_exit_is_allowed_but_never_past_flat(rigs) -> None:
    rig = rigs(exchange={"latency_ms": 50})
    rig.quote()
    rig.signal("buy", 10)
    rig.advance(1)
    rig.signal("sell", 11, reduce_only=True)  # would go short: not an exit
    rig.signal("sell", 6, reduce_only=True)
    rig.signal("sell", 4)  # guaranteed to reduce even if the 6 fills: allowed
    rig.signal("sell", 1)  # with 6 + 4 in flight this could open a short: blocked
    rig.settle()
    assert rig.reasons() == ["approved", "netting_conflict", "approved", "approved",
                             "netting_conflict"]
    rig.advance(1)
    assert rig.position() == rig.exchange_position() == 0
    assert rig.violations() == []


def test_hedging_mode_lets_an_account_hold_both_sides(rigs) -> None:
    rig = rigs(exchange={"latency_ms": 50}, risk={"hedging_mode": {"default": True}})
    rig.quote()
    rig.signal("buy", 10)
    rig.signal("sell", 10)
    rig.settle()
    assert rig.reasons() == ["approved", "approved"]
    assert rig.coord["blocked"] == []
    rig.advance(1)
    assert len(rig.events("order_filled")) == 2
    assert rig.violations() == []


# -- rule 3: fail closed --------------------------------------------------------------------


def test_entries_are_refused_until_positions_are_reconciled(rigs) -> None:
    rig = rigs(ready=False)  # started, but recovery has not run yet
    assert rig.coord["recovering"]
    rig.signal("buy", 1)
    rig.settle()
    (rec,) = rig.decisions()
    assert (rec["reason"], rec["approved"]) == ("positions_unavailable", False)
    assert rec["inputs"]["positions_fresh"] is False
    rig.advance(1)  # connected, resynced
    rig.quote()
    rig.signal("buy", 1)
    rig.advance(1)
    assert rig.reasons() == ["positions_unavailable", "approved"]
    assert rig.position() == 1
    assert rig.violations() == []


def test_while_the_gateway_reports_stream_reconciling_only_exits_pass(rigs) -> None:
    rig = rigs(risk={"block_duplicate_positions": False})
    rig.quote()
    rig.signal("buy", 5)
    rig.advance(1)
    now = rig.clock.now()
    rig.tell("coordinator", ConnectivityChanged(True, True, "test: resyncing", now))
    rig.signal("buy", 1)
    rig.signal("sell", 2, reduce_only=True)
    rig.advance(1)
    assert rig.reasons() == ["approved", "positions_unavailable", "approved"]
    assert rig.position() == rig.exchange_position() == 3  # the exit went out and filled
    rig.tell("coordinator", ConnectivityChanged(True, False, "test: resynced", rig.clock.now()))
    rig.signal("buy", 1)  # new risk again once the gateway reports the resync
    rig.advance(1)
    assert rig.reasons()[-1] == "approved" and rig.position() == 4
    assert rig.violations() == []


def test_a_dropped_stream_fails_closed_until_the_resync(rigs) -> None:
    rig = rigs(symbols=(ETH,))
    rig.quote(ETH, "2000.0", "2000.5")
    rig.tell("venue", ExchangeFault({"drop_stream": True}))
    rig.settle()
    rig.signal("buy", 1, ETH)
    rig.settle()
    assert rig.reasons() == ["positions_unavailable"]
    rig.advance(4)  # the reconnect controller reconnects, the reconciler resyncs
    # (kept clear of the 12 s poll: see the report on poll snapshots racing fills)
    assert rig.rt.info("gateway")["connected"]
    rig.quote(ETH, "2000.0", "2000.5")
    rig.signal("buy", 1, ETH)
    rig.advance(1)
    assert rig.reasons() == ["positions_unavailable", "approved"]
    assert rig.position(ETH) == 1
    assert rig.violations() == []


def test_fail_closed_can_only_be_turned_off_explicitly(rigs) -> None:
    rig = rigs(risk={"fail_closed_on_missing_positions": False})
    rig.quote()
    rig.tell("coordinator", ConnectivityChanged(True, True, "test: resyncing", rig.clock.now()))
    rig.signal("buy", 2)
    rig.advance(1)
    (rec,) = rig.decisions()
    assert rec["approved"] and rec["inputs"]["positions_fresh"] is False
    assert rig.position() == 2
    assert rig.violations() == []  # the checks read the same opt-out


def test_startup_recovery_holds_entries_even_without_fail_closed(rigs) -> None:
    rig = rigs(ready=False, risk={"fail_closed_on_missing_positions": False})
    rig.signal("buy", 1)
    rig.settle()
    assert rig.reasons() == [Reason.RECOVERING.value]


# -- rule 4: pre-trade limits at the actor -----------------------------------------------------


def test_per_symbol_override_and_order_size_limits(rigs) -> None:
    rig = rigs(symbols=(BTC, ETH), risk={"per_symbol": {ETH: {"max_order_size": "5"}}})
    rig.quote(BTC)
    rig.quote(ETH, "2000.0", "2000.5")
    rig.signal("buy", 6, ETH)  # over ETH's own limit
    rig.signal("buy", 5, ETH)
    rig.signal("buy", "0.5")  # under min_order_size 1
    rig.signal("buy", 101)  # over the account-wide max_order_size 100
    rig.signal("buy", 6)  # BTC keeps the account-wide limit
    rig.advance(1)
    assert rig.reasons() == ["max_order_size", "approved", "min_order_size", "max_order_size",
                             "approved"]
    eth_rej, btc_rej = rig.decisions(reason="max_order_size")
    assert eth_rej["inputs"]["limit"] == "5" and btc_rej["inputs"]["limit"] == "100"
    assert rig.position(ETH) == 5 and rig.position(BTC) == 6
    assert rig.violations() == []


def test_config_names_reach_the_coordinators_limits(rigs) -> None:
    rig = rigs(risk={"position_staleness_s": 45.0, "rate_limit": {"orders_per_s": "2", "burst": 3},
                     "circuit_breaker": {"failures_to_open": 4, "cool_off_s": 7.0},
                     "block_duplicate_positions": False, "hedging_mode": {"acct2": True}})
    limits = rig.coordinator().ledger.limits
    assert limits.positions_stale_after_s == 45.0
    assert (limits.orders_per_s, limits.order_burst) == (2.0, 3)
    assert (limits.breaker_failures, limits.breaker_cooloff_s) == (4, 7.0)
    assert limits.duplicate_position_check is False
    assert limits.hedging_accounts == frozenset({"acct2"})
    state = rig.coordinator().ledger.risk.gate
    assert (state.limiter.rate, state.limiter.burst) == (2.0, 3)
    assert (state.breaker.failures_to_open, state.breaker.cooloff_s) == (4, 7.0)


def test_order_rate_limit_from_config(rigs) -> None:
    rig = rigs(risk={"rate_limit": {"orders_per_s": "1", "burst": 2},
                     "block_duplicate_positions": False})
    rig.quote()
    for _ in range(3):
        rig.signal("buy", 1)
    rig.advance(1)  # one token back
    rig.signal("buy", 1)
    rig.advance(1)
    assert rig.reasons() == ["approved", "approved", "rate_limited", "approved"]
    assert rig.position() == 3


def test_circuit_breaker_from_config_opens_then_half_opens(rigs) -> None:
    rig = rigs(risk={"circuit_breaker": {"failures_to_open": 2, "cool_off_s": 5.0}})
    rig.quote()
    rig.tell("venue", ExchangeFault({"reject_next": 2}))
    rig.signal("buy", 1)
    rig.advance(1)
    rig.signal("buy", 1)
    rig.advance(1)
    assert rig.coord["breaker"] == "open"
    rig.signal("buy", 1)
    rig.advance(5)  # cool-off over: one trial goes out and closes the breaker
    rig.signal("buy", 1)
    rig.advance(1)
    assert rig.reasons() == ["approved", "approved", "circuit_open", "approved"]
    assert rig.coord["breaker"] == "closed" and rig.position() == 1


# -- rule 5: kill switch ---------------------------------------------------------------------


def test_manual_kill_switch_halts_entries_alerts_and_releases(rigs) -> None:
    rig = rigs()
    rig.quote()
    rig.signal("buy", 5)
    rig.advance(1)
    alerts_before = rig.rt.info("alerts").get("received", 0)
    rig.tell("coordinator", KillSwitch(True, "operator", rig.clock.now()))
    rig.settle()
    assert rig.coord["trading_state"] == "HALTED" and "operator" in rig.coord["kill_reason"]
    assert rig.rt.info("alerts")["received"] == alerts_before + 1
    rig.signal("buy", 1)  # new risk: refused
    rig.signal("sell", 5)  # an exit still goes out
    rig.advance(1)
    assert rig.reasons()[-2:] == ["kill_switch", "approved"]
    assert rig.position() == 0
    rig.tell("coordinator", KillSwitch(False, "operator", rig.clock.now()))
    rig.signal("buy", 2)
    rig.advance(1)
    assert rig.coord["trading_state"] == "ACTIVE"
    assert rig.reasons()[-1] == "approved" and rig.position() == 2
    assert rig.rt.info("alerts")["received"] == alerts_before + 2  # released is announced too
    switches = [r["reason"] for r in rig.audit() if r["kind"] == "kill_switch"]
    assert switches == ["engaged", "released"]
    assert invariants.gate_respected(rig.audit()) == []
    assert rig.violations() == []


# -- rule 15: identity across restarts -----------------------------------------------------------


def _coid_number(coid: str) -> int:
    return int(coid.rsplit("-", 1)[1])


def test_client_order_ids_are_unique_and_stable_across_a_restart(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = Rig(run_dir, run_id="first").start()
    try:
        first.quote()
        first.signal("buy", 3)
        first.advance(1)
        first.signal("sell", 3)
        first.advance(1)
        old = [r["client_order_id"] for r in first.decisions(approved=True)]
        old_order = first.rt.store.get(StoreDb.ORDERS, old[0])["order"]
        store_id = first.rt.store_id
    finally:
        first.stop()
    assert len(old) == 2
    # Same store, same exchange (it outlives the runtime, as a venue would).
    second = Rig(run_dir, run_id="second", clock=first.clock, engine=first.rt.engine).start()
    try:
        assert second.rt.store_id == store_id
        second.quote()
        second.signal("buy", 2)
        second.advance(1)
        second.signal("sell", 2)
        second.advance(1)
        new = [r["client_order_id"] for r in second.decisions(approved=True)
               if r["run_id"] == "second"]
        assert len(new) == 2
        assert not set(new) & set(old)
        assert all(c.startswith(f"default-{store_id}-") for c in old + new)
        assert min(map(_coid_number, new)) > max(map(_coid_number, old))
        # A resubmission of an old id (as after a crash) is refused by the exchange.
        position = second.exchange_position()
        second.tell("gateway", SubmitOrder(old_order))
        second.advance(1)
        dup = [e for e in second.events("order_rejected") if e["client_order_id"] == old[0]]
        assert len(dup) == 1 and dup[0]["reason"].startswith("duplicate_client_order_id")
        assert invariants.unique_orders(second.events()) == []
        assert second.exchange_position() == position == second.position() == 0
        # The refusal concerns the resubmission; the original order is untouched.
        assert second.coordinator().ledger.orders.status(old[0]) == "filled"
        assert second.coord["counts"].get("rejected", 0) == 0
    finally:
        second.stop()


def test_a_duplicate_resubmission_never_drops_a_live_order_from_netting(rigs) -> None:
    rig = rigs()
    rig.quote()
    rig.tell("coordinator", OrderIntent(BTC, Side.BUY, D(5), OrderPurpose.ENTRY, rig.clock.now(),
                                        order_type=OrderType.LIMIT, price=D("90")))
    rig.advance(1)
    (coid,) = [r["client_order_id"] for r in rig.decisions(approved=True)]
    resting = rig.rt.store.get(StoreDb.ORDERS, coid)["order"]
    rig.tell("gateway", SubmitOrder(resting))  # refused by the venue: the original rests
    rig.advance(1)
    assert rig.coord["inflight"] == 1 and rig.coord["orders_by_status"] == {"acked": 1}
    rig.signal("sell", 5)  # the resting buy still counts: this could leave both sides
    rig.advance(1)
    assert rig.reasons()[-1] == "netting_conflict"


# -- rule 16: clean shutdown ------------------------------------------------------------------


def test_stop_leaves_no_thread_and_persistence_drains_last(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    rig = Rig(tmp_path / "run").start()
    rig.quote()
    rig.signal("buy", 2)
    rig.advance(1)
    # Every other actor writes to the store as it stops; with persistence
    # stopped last each write is durable, and the values give the stop order.
    order = itertools.count()
    watched = [c for c in rig.system.directory.cells()
               if c.actor is not None and c.name not in ("root", "persistence")
               and not isinstance(c.actor, Supervisor)]
    for cell in watched:
        _write_on_stop(rig.system, cell.actor, order)
    # Sent just before the stop: decided whenever the coordinator gets to it;
    # whatever the timing, the store and the exchange must agree afterwards.
    rig.signal("sell", 2)
    rig.stop()
    left = [t for t in threading.enumerate() if t not in before]
    for t in left:
        t.join(timeout=10)
    assert [t.name for t in left if t.is_alive()] == []
    system = rig.system
    assert not system.halted and dict(system.failure_counts) == {}
    assert all(not c.running for c in system.directory.cells())
    dead = system.dead_letters.snapshot(recent=1000)
    assert set(dead["by_reason"]) <= {"shutdown"}, dead
    assert invariants.no_lost_orders(dead["recent"]) == []
    last = [r for r in read_audit(tmp_path / "run" / "audit.jsonl")
            if r["kind"] == "risk_decision"][-1]
    assert last["approved"] and last["inputs"]["side"] == "sell"
    coid = last["client_order_id"]
    sent = {e["client_order_id"] for e in read_events(tmp_path / "run" / "events.jsonl")
            if e["kind"] == "order_submitted"}
    store = Store.open(tmp_path / "run")
    try:
        stopped = {k.split("|", 1)[1]: v for k, v in store.items(StoreDb.META, prefix="stopped|")}
        assert store.get(StoreDb.ORDERS, coid) is not None  # the intent is durable ...
        status = store.get(StoreDb.META, f"order_status|{coid}")
    finally:
        store.close()
    assert (coid in sent) == (status is not None)  # ... and sent only if recorded so
    assert set(stopped) == {c.name for c in watched}  # every write made while stopping
    names = sorted(stopped, key=stopped.get)
    rank = {n: i for i, n in enumerate(names)}
    # reverse start order: trading actors first, the gateway and alerts after them
    assert rank["coordinator"] < rank["reconciler"] < rank["gateway"] < rank["alerts"]
    assert all(rank[f"symbol-{BTC}"] < rank[n] for n in ("coordinator", "gateway"))


def _write_on_stop(system: Any, actor: Any, order: Any) -> None:
    name, original = actor.ctx.name, actor.on_stop

    def on_stop() -> None:
        system.tell("persistence", Put(StoreDb.META, f"stopped|{name}", next(order)))
        original()

    actor.on_stop = on_stop


# -- bad input ---------------------------------------------------------------------------------


def test_signal_for_an_unknown_symbol_is_rejected_and_audited(rigs) -> None:
    rig = rigs()
    rig.quote()
    rig.signal("buy", 1, "DOGEUSDT")
    rig.settle()
    (rec,) = rig.decisions()
    assert (rec["reason"], rec["approved"], rec["client_order_id"]) == ("unknown_symbol", False, None)
    assert rec["inputs"]["symbol"] == "DOGEUSDT"
    assert rig.coord["rejected"] == {"unknown_symbol": 1}
    assert rig.events("order_submitted") == []


def _corrupt(sig: Signal, **fields: Any) -> Signal:
    """A Signal whose fields were changed after validation (as a buggy sender could)."""
    for name, value in fields.items():
        object.__setattr__(sig, name, value)
    return sig


def test_malformed_input_never_crashes_the_coordinator(rigs) -> None:
    rig = rigs()
    rig.quote()
    cell = rig.system.directory.get("coordinator")
    now = rig.clock.now()
    for junk in ({"symbol": BTC, "side": "buy", "qty": "1"}, "buy 1 BTCUSDT", None, 42):
        rig.tell("coordinator", junk)
    for bad in ({"qty": D("NaN")}, {"qty": D("-3")}, {"qty": "1"}, {"side": "sideways"}):
        rig.tell("coordinator", _corrupt(Signal(BTC, Side.BUY, D(1), now), **bad))
    rig.settle()
    assert (cell.restarts, cell.failures) == (0, 0)
    dead = rig.system.dead_letters.snapshot(recent=1000)
    assert dead["by_reason"] == {"unhandled": 4}
    assert {d["target"] for d in dead["recent"]} == {"coordinator"}
    assert rig.reasons() == ["invalid_signal"] * 4
    rig.signal("buy", 1)
    rig.advance(1)
    assert rig.reasons()[-1] == "approved" and rig.position() == 1
    assert rig.violations() == []


def test_a_crashed_coordinator_restarts_from_the_store_and_trades_again(rigs) -> None:
    rig = rigs(symbols=(BTC, ETH))
    rig.quote(BTC)
    rig.quote(ETH, "2000.0", "2000.5")
    rig.signal("buy", 4)
    rig.advance(1)
    cell = rig.system.directory.get("coordinator")

    def crash() -> None:
        raise RuntimeError("injected coordinator bug")

    cell.actor.on_idle = crash
    rig.tell("coordinator", "poke")  # any message, then the idle hook crashes
    rig.advance(5)  # restart backoff, resync
    assert (cell.restarts, cell.failures) == (1, 1)
    assert rig.position(BTC) == 4  # rebuilt from the store
    assert not rig.coord["recovering"]
    rig.quote(ETH, "2000.0", "2000.5")  # the new instance's market view starts empty
    rig.signal("buy", 2, ETH)  # new risk is accepted again after the resync
    rig.advance(1)
    assert rig.reasons()[-1] == "approved" and rig.position(ETH) == 2


@pytest.mark.parametrize("qty", [0, -1, "0", "-0.5", D("NaN"), float("nan"), "abc", float("inf")])
def test_signal_with_a_bad_quantity_cannot_be_built(qty: Any) -> None:
    with pytest.raises(MessageError, match=r"Signal\.qty"):
        Signal(BTC, Side.BUY, qty, datetime.now(UTC))


# -- audit ---------------------------------------------------------------------------------------


def test_every_decision_is_exactly_one_complete_audit_record(rigs) -> None:
    rig = rigs(symbols=(BTC, ETH))
    rig.quote(BTC)
    rig.quote(ETH, "2000.0", "2000.5")
    sent = [("buy", 2, BTC), ("buy", 2, BTC), ("buy", 500, ETH), ("sell", 1, "XYZUSDT"),
            ("buy", 1, ETH), ("sell", 2, BTC)]
    for side, qty, sym in sent:
        rig.signal(side, qty, sym)
        rig.advance(0.2)
    rig.advance(1)
    decisions = rig.decisions()
    assert len(decisions) == len(sent) == rig.coord["counts"]["signals"]
    assert [(r["inputs"]["side"], r["inputs"]["qty"], r["inputs"]["symbol"]) for r in decisions] \
        == [(s, str(q), sym) for s, q, sym in sent]
    assert [r["reason"] for r in decisions] == ["approved", "duplicate_position", "max_order_size",
                                               "unknown_symbol", "approved", "approved"]
    for rec in decisions:
        assert AUDIT_KEYS <= set(rec), rec
        assert rec["schema_version"] == AUDIT_SCHEMA_VERSION
        assert len(rec["prev_hash"]) == 64 and rec["seq"] >= 1  # the hash chain (audit verify)
        assert rec["run_id"] == rig.spec.run_id and rec["config_hash"] == rig.spec.config_hash
        assert rec["app_version"]
        assert datetime.fromisoformat(rec["timestamp"]).utcoffset().total_seconds() == 0
        assert rec["reason"] in {r.value for r in Reason}
        assert isinstance(rec["inputs"], dict) and rec["inputs"]["symbol"]
        assert isinstance(rec["approved"], bool)
        assert (rec["client_order_id"] is not None) == rec["approved"]
    ids = [r["event_id"] for r in rig.audit()]
    assert len(ids) == len(set(ids))
    submitted = {e["client_order_id"] for e in rig.events("order_submitted")}
    assert submitted == {r["client_order_id"] for r in decisions if r["approved"]}


# -- rule 11: a poll answer older than the runtime's own news ------------------------------


def test_poll_answer_taken_before_a_fill_does_not_undo_it(rigs) -> None:
    """The 12 s poll's question leaves, a fill lands, then the (older) answer
    arrives: broker-wins must not put the position back to the old value."""
    rig = rigs(exchange={"latency_ms": 5})
    rig.quote()
    rig.system.run_until(12.0)        # the poll's QueryPositions is on its way ...
    rig.signal("buy", "1")            # ... and an order fills meanwhile
    rig.advance(1.0)
    assert rig.coord["positions"] == {BTC: "1"}
    assert rig.rt.exchange_positions() == {BTC: D("1")}
    assert rig.coord["counts"].get("divergences", 0) == 0


def test_poll_answer_skips_only_symbols_touched_since_the_question(rigs) -> None:
    from messages.control import BrokerPositions
    from messages.exchange import ExchangeFault

    rig = rigs()
    rig.quote()
    asked = rig.clock.now()
    rig.advance(0.1)
    rig.signal("buy", "2")
    rig.advance(0.5)
    assert rig.coord["positions"] == {BTC: "2"}
    # an answer to a question asked before the fill: not trusted for BTC
    rig.tell("coordinator", BrokerPositions("default", ((BTC, D("0")),), rig.clock.now(),
                                            requested_at=asked))
    rig.settle()
    assert rig.coord["positions"] == {BTC: "2"}
    assert rig.coord["counts"]["stale_snapshots_skipped"] == 1
    # an answer to a later question is the broker's word once a second answer
    # confirms it (rule 18): the confirming query finds the exchange at 2 ...
    rig.tell("coordinator", BrokerPositions("default", ((BTC, D("5")),), rig.clock.now(),
                                            requested_at=rig.clock.now()))
    rig.advance(0.5)  # the confirming question and its answer
    assert rig.coord["positions"] == {BTC: "2"}
    assert rig.coord["counts"].get("divergences", 0) == 0
    assert rig.coord["counts"]["divergences_not_confirmed"] == 1
    # ... and once the exchange really holds 5, the confirmation agrees: it wins, audited
    rig.tell("venue", ExchangeFault({"set_position": {"symbol": BTC, "qty": "5"}}))
    rig.tell("coordinator", BrokerPositions("default", ((BTC, D("5")),), rig.clock.now(),
                                            requested_at=rig.clock.now()))
    rig.advance(0.5)
    assert rig.coord["positions"] == {BTC: "5"}
    assert rig.coord["counts"]["divergences"] == 1
    assert any(r["kind"] == "divergence" and r["inputs"]["confirmed"] for r in rig.audit())


def test_an_order_the_exchange_expires_leaves_the_in_flight_count(rigs) -> None:
    """OrderExpired (the venue ended the order itself) frees its netting budget."""
    from messages.control import OrderIntent
    from messages.enums import OrderPurpose, OrderType
    from messages.exchange import OrderExpired

    rig = rigs()
    rig.quote()
    rig.tell("coordinator", OrderIntent(BTC, Side.BUY, D("3"), OrderPurpose.ENTRY, rig.clock.now(),
                                        order_type=OrderType.LIMIT, price=D("90")))
    rig.advance(0.5)
    assert rig.coord["inflight"] == 1
    coid = next(r["client_order_id"] for r in rig.audit() if r.get("approved"))
    rig.tell("coordinator", OrderExpired(coid, BTC, D("3"), "exchange restart", rig.clock.now()))
    rig.settle()
    assert rig.coord["inflight"] == 0
    assert rig.coord["orders_by_status"].get("expired") == 1
    rig.signal("sell", "3")            # no longer blocked by the dead buy
    rig.advance(0.5)
    assert rig.coord["positions"] == {BTC: "-3"}


def test_kill_switch_survives_a_coordinator_restart(rigs) -> None:
    """A crash is never a way out of the kill switch."""
    rig = rigs()
    rig.quote()
    rig.tell("coordinator", KillSwitch(True, "operator", rig.clock.now()))
    rig.settle()
    assert rig.coord["trading_state"] == "HALTED"
    rig.tell("coordinator", Signal.__new__(Signal))  # fields missing: its handler raises
    rig.advance(2.0)
    assert rig.system.restart_counts["coordinator"] == 1
    assert rig.coord["trading_state"] == "HALTED"
    rig.signal("buy", "1")
    rig.advance(0.5)
    assert rig.coord["positions"].get(BTC, "0") == "0"
    assert rig.coord["rejected"].get("kill_switch") == 1


def test_kill_switch_survives_a_coordinator_restart_that_lost_its_store_record(rigs) -> None:
    """The restarted instance also reads the switch from the figures its cell last
    published: a lost write of the store record (or a start-up flush that timed
    out) must not be a way out of the kill switch either."""
    from trading.store import key_bytes
    from trading.recovery import KILL_SWITCH_KEY

    rig = rigs()
    rig.quote()
    rig.tell("coordinator", KillSwitch(True, "operator", rig.clock.now()))
    rig.settle()
    assert rig.rt.store.apply([("del", StoreDb.META.value, key_bytes(KILL_SWITCH_KEY))]) == [True]
    rig.tell("coordinator", Signal.__new__(Signal))  # fields missing: its handler raises
    rig.advance(2.0)
    assert rig.system.restart_counts["coordinator"] == 1
    assert rig.coord["trading_state"] == "HALTED" and "operator" in rig.coord["kill_reason"]
    rig.signal("buy", "1")
    rig.advance(0.5)
    assert rig.coord["positions"].get(BTC, "0") == "0"
    assert rig.coord["rejected"].get("kill_switch") == 1


def test_a_symbol_whose_remote_actor_is_down_fails_closed_until_it_is_back(rigs) -> None:
    """While a symbol actor's remote host is lost, no risk-increasing order for
    that symbol passes (an exit still does); other symbols trade on."""
    from runtime.signals import RemoteDown, RemoteUp

    rig = rigs(symbols=(BTC, "ETHUSDT"))
    rig.quote()
    rig.quote("ETHUSDT", "50.0", "50.1")
    rig.signal("buy", 5)
    rig.advance(1)
    rig.tell("coordinator", RemoteDown(f"symbol-{BTC}", "RemoteActorDied: host lost"))
    rig.signal("buy", 1)                       # more risk on the lost symbol: refused
    rig.signal("sell", 2, reduce_only=True)    # an exit: allowed
    rig.signal("buy", 1, symbol="ETHUSDT")     # another symbol: unaffected
    rig.advance(1)
    rig.signal("sell", 3, reduce_only=True)    # flat again
    rig.advance(1)
    rig.signal("buy", 1)
    rig.settle()
    assert rig.reasons()[1:] == ["symbol_actor_down", "approved", "approved", "approved",
                                 "symbol_actor_down"]
    rig.tell("coordinator", RemoteUp(f"symbol-{BTC}"))
    rig.signal("buy", 1)
    rig.settle()
    assert rig.reasons()[-1] == "approved"
    kinds = [r["kind"] for r in rig.audit()]
    assert kinds.count("symbol_actor_down") == 1 and kinds.count("symbol_actor_up") == 1
