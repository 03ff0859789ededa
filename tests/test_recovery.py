"""Crash recovery and reconciliation (DESIGN rules 10, 11, 15).

The whole runtime runs on a virtual clock with the in-process simulated
exchange (``tests.recovery_life.Life``): a "crash" drops every waiting
message, as if the process died; the exchange engine outlives it, as a venue
would, and a new runtime starts on the same store. The moments in between
are reached with real faults, not by writing the store by hand:

* a malformed message (built around validation) crashes an actor, and the
  runtime holds that actor's mail while the supervisor waits out the
  restart backoff; killing the runtime then loses exactly that mail (a
  Durable ack, a SubmitOrder);
* exchange latency keeps an ack or a fill report in flight when the runtime dies;
* the exchange's own API (cancel, set_position, a quote) changes its state
  while the runtime is down, as the market or an operator at the venue could.

Ground truth is read from outside the coordinator: the exchange's
``events.jsonl``, the audit trail, the exchange engine and the store
(``trading.store.Store``). ``tests/test_resume.py`` has the command line
and the real process (SIGKILL, ``run --resume``).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from decimal import Decimal as D
from typing import Any

import pytest

from messages.control import KillSwitch, OrderIntent
from messages.enums import OrderPurpose, OrderType, Side
from messages.exchange import ExchangeFault, OpenOrdersSnapshot
from messages.orders import CancelOrder, Signal
from messages.persistence import StoreDb
from app import invariants
from trading.store import Store
from tests.recovery_life import BTC, Life, accepted_once
from trading.audit import read_audit


# -- (i) an intent durable in the store but never sent -----------------------------------------


def test_an_intent_durable_but_never_sent_is_resubmitted_once_with_its_id(life) -> None:
    lf = life()
    lf.quote()
    # The coordinator crashes right after deciding: the intent is written, its
    # Durable ack waits in the coordinator's mailbox through the restart
    # backoff, and the runtime dies before anyone reads it.
    lf.system.tell("coordinator", Signal(BTC, Side.BUY, D(3), lf.clock.now()))
    lf.poison("coordinator")
    lf.settle()
    # The approval is on disk already (before the intent could be durable),
    # although the coordinator died before its idle-time flush.
    (coid,) = lf.approved()
    lf.crash()
    assert lf.stored(coid) == ("intent", None)  # durable, never marked sent
    assert lf.events("order_submitted") == []   # the exchange never saw it

    lf.advance(2)
    lf.start(settle_s=0)
    lf.signal("buy", 1)  # before the first resync settles the orders: refused
    assert lf.audit("risk_decision")[-1]["reason"] in ("recovering", "positions_unavailable")
    lf.advance(1)
    assert [e["client_order_id"] for e in lf.events("order_submitted")] == [coid]
    assert len(lf.audit("resubmitted", coid)) == 1
    assert lf.coord["orders_by_status"] == {"filled": 1}
    assert lf.position() == lf.exchange_position() == 3
    accepted_once(lf)
    assert lf.violations() == []


# -- (ii) sent, but lost before the exchange got it ----------------------------------------------


def test_a_submission_lost_before_the_exchange_is_resubmitted_and_filled(life) -> None:
    lf = life()
    lf.quote()
    # The gateway crashes; while it waits out its restart backoff its mail is
    # held, so the coordinator's SubmitOrder sits there when the runtime dies.
    lf.poison("gateway")
    lf.settle()
    lf.signal("buy", 4)
    (coid,) = lf.approved()
    lf.crash()
    assert lf.stored(coid) == ("intent", "submitted")
    assert lf.events("order_submitted") == []

    lf.advance(2)
    lf.start()
    assert [e["client_order_id"] for e in lf.events("order_submitted")] == [coid]
    (rec,) = lf.audit("resubmitted", coid)
    assert rec["inputs"]["status_before"] == "submitted" and rec["inputs"]["qty"] == "4"
    assert lf.position() == lf.exchange_position() == 4
    assert lf.coord["inflight"] == 0
    accepted_once(lf)
    assert lf.violations() == []


# -- (iii) filled at the exchange while the runtime was down ---------------------------------------


def test_a_fill_made_while_the_runtime_was_down_is_synthesized_once(life) -> None:
    lf = life(exchange={"latency_ms": 50})
    lf.quote()
    lf.signal("buy", 5)  # the exchange fills at once; the report needs 50 ms
    (coid,) = lf.approved()
    assert lf.exchange_position() == 5 and lf.position() == 0
    lf.crash()
    assert lf.stored(coid) == ("intent", "submitted")

    lf.advance(2)
    lf.start()
    (synth,) = lf.audit("synthesized_fill", coid)
    assert synth["inputs"]["qty"] == "5"
    assert lf.audit("resubmitted") == [] and lf.audit("divergence") == []
    assert lf.coord["orders_by_status"] == {"filled": 1}
    assert lf.position() == lf.exchange_position() == 5
    # Die and come back again: the fill is in the store now, never applied twice.
    lf.crash()
    lf.advance(1)
    lf.start()
    assert len(lf.audit("synthesized_fill")) == 1
    assert lf.position() == lf.exchange_position() == 5
    assert len(lf.events("order_submitted")) == 1
    lf.signal("sell", 5, reduce_only=True)
    lf.advance(1)
    assert lf.position() == lf.exchange_position() == 0
    accepted_once(lf)
    assert lf.violations() == []


def test_fills_of_a_partly_filled_order_made_while_down_are_synthesized(life) -> None:
    lf = life()
    lf.quote(size=D(4))
    lf.signal("buy", 10)  # 4 fill now, 6 wait for the book
    lf.advance(1)
    assert lf.position() == 4 and lf.coord["orders_by_status"] == {"partially_filled": 1}
    lf.crash()
    lf.advance(1)
    lf.quote(size=D(3))  # the market moves on without the runtime: 3 more fill
    assert lf.exchange_position() == 7
    lf.advance(1)
    lf.start()
    assert len(lf.audit("synthesized_fill")) == 1
    assert lf.position() == lf.exchange_position() == 7
    assert lf.coord["inflight"] == 1  # the rest still works at the exchange: left alone
    assert lf.audit("resubmitted") == [] and lf.audit("order_closed") == []
    lf.quote()  # the rest fills over the live stream
    assert lf.position() == lf.exchange_position() == 10
    assert lf.coord["orders_by_status"] == {"filled": 1}
    accepted_once(lf)
    assert lf.violations() == []


def test_a_missed_fill_and_a_changed_position_are_both_settled_by_the_first_resync(life) -> None:
    """The round's positions answer is asked after its fills answer, so it
    includes the synthesized fill and may correct the rest at once; it need
    not wait for the 12 s poll."""
    lf = life(exchange={"latency_ms": 50})
    lf.quote()
    lf.signal("buy", 5)
    lf.crash()
    lf.engine.set_position(BTC, "8")  # and someone added 3 at the venue
    lf.advance(1)
    lf.start()  # one second: far from the first poll
    assert len(lf.audit("synthesized_fill")) == 1
    (div,) = lf.audit("divergence")
    assert (div["inputs"]["ours"], div["inputs"]["broker"]) == ("5", "8")
    assert div["inputs"]["source"].startswith("resync")
    assert lf.position() == lf.exchange_position() == 8

# -- (iv) no client order id accepted twice, whatever the moment of the crash -------------------


@pytest.mark.parametrize("crash_after_s", [0.0, 0.002, 0.004, 0.006, 0.05])
def test_no_order_doubles_whatever_the_moment_of_the_crash(life, crash_after_s: float) -> None:
    lf = life(exchange={"latency_ms": 3, "latency_jitter_ms": 2})
    lf.quote()
    lf.signal("buy", 6)
    lf.advance(crash_after_s)
    lf.crash()
    lf.advance(1)
    lf.start()
    assert lf.position() == lf.exchange_position() == 6
    lf.signal("sell", 6, reduce_only=True)
    lf.advance(1)
    assert lf.position() == lf.exchange_position() == 0
    submitted = Counter(e["client_order_id"] for e in lf.events("order_submitted"))
    assert len(submitted) == 2 and set(submitted.values()) == {1}
    accepted_once(lf)
    assert lf.violations() == []


# -- orders the exchange still works, or ended, while the runtime was down ----------------------


def _limit_buy(lf: Life) -> None:
    """An entry intent that rests at the exchange (a limit buy of 5 at 90, under the quote)."""
    lf.system.tell("coordinator", OrderIntent(BTC, Side.BUY, D(5), OrderPurpose.ENTRY,
                                              lf.clock.now(), order_type=OrderType.LIMIT,
                                              price=D("90")))


def _resting_buy(lf: Life) -> str:
    _limit_buy(lf)
    lf.advance(1)
    (coid,) = lf.approved()
    return coid


def test_an_order_still_working_at_the_exchange_is_left_alone(life) -> None:
    lf = life()
    lf.quote()
    coid = _resting_buy(lf)
    lf.crash()
    lf.advance(1)
    lf.start()
    assert lf.coord["orders_by_status"] == {"acked": 1} and lf.coord["inflight"] == 1
    assert lf.audit("resubmitted") == [] and lf.audit("order_closed") == []
    lf.signal("sell", 5)  # the resting buy still counts for netting (rule 2)
    assert lf.audit("risk_decision")[-1]["reason"] == "netting_conflict"
    lf.system.tell("venue", ExchangeFault({"fill_resting": {"symbol": BTC}}))
    lf.advance(1)
    assert lf.position() == lf.exchange_position() == 5
    assert [e["client_order_id"] for e in lf.events("order_submitted")] == [coid]
    assert lf.violations() == []


def test_an_order_the_exchange_ended_while_down_is_closed(life) -> None:
    lf = life()
    lf.quote()
    coid = _resting_buy(lf)
    lf.crash()
    # Canceled at the venue while nobody listened: the report is lost.
    lf.engine.handle(CancelOrder(coid, BTC, lf.clock.now()), lf.clock.now())
    lf.advance(1)
    lf.start()
    (closed,) = lf.audit("order_closed", coid)
    assert closed["reason"] == "not_open_at_broker"
    assert lf.coord["orders_by_status"] == {"canceled": 1} and lf.coord["inflight"] == 0
    assert lf.audit("resubmitted") == []
    lf.signal("sell", 5)  # nothing in flight on the buy side any more
    lf.advance(1)
    assert lf.position() == lf.exchange_position() == -5
    assert lf.violations() == []


def test_a_submitted_order_the_exchange_knew_and_ended_is_closed_not_doubled(life) -> None:
    lf = life(exchange={"latency_ms": 50})
    lf.quote()
    _limit_buy(lf)
    lf.settle()  # at the exchange; its ack is 50 ms away
    (coid,) = lf.approved()
    lf.crash()
    assert lf.stored(coid) == ("intent", "submitted")
    lf.engine.handle(CancelOrder(coid, BTC, lf.clock.now()), lf.clock.now())
    lf.advance(1)
    lf.start()
    # Neither working nor filled: resubmitted with its id, which the exchange
    # refuses as a duplicate, which proves it had the order: closed.
    (dup,) = lf.events("order_rejected", coid)
    assert dup["reason"].startswith("duplicate_client_order_id")
    assert len(lf.audit("resubmitted", coid)) == 1
    (closed,) = lf.audit("order_closed", coid)
    assert closed["reason"] == "ended_at_broker"
    assert lf.coord["orders_by_status"] == {"rejected": 1} and lf.coord["inflight"] == 0
    assert lf.position() == lf.exchange_position() == 0
    accepted_once(lf)
    assert lf.violations() == []


def test_a_submitted_order_working_at_the_exchange_gets_its_lost_ack(life) -> None:
    lf = life(exchange={"latency_ms": 50})
    lf.quote()
    _limit_buy(lf)
    lf.settle()  # resting at the exchange; its ack is 50 ms away
    lf.crash()
    (coid,) = lf.approved()
    assert lf.stored(coid) == ("intent", "submitted")
    lf.advance(1)
    lf.start()
    (ack,) = lf.audit("synthesized_ack", coid)
    assert ack["inputs"]["status_before"] == "submitted"
    assert lf.coord["orders_by_status"] == {"acked": 1} and lf.coord["inflight"] == 1
    assert lf.audit("resubmitted") == [] and lf.audit("order_closed") == []
    assert lf.rt.store.get(StoreDb.META, f"order_status|{coid}") == "acked"  # no longer in doubt
    assert len(lf.events("order_submitted", coid)) == 1


def test_an_order_sent_during_the_resync_window_is_not_judged_by_it(life) -> None:
    """The resync's question leaves before the order: the answer cannot know it,
    so "not working at the exchange" must not close it."""
    lf = life(exchange={"latency_ms": 20})
    lf.quote()
    lf.signal("buy", 5)
    lf.advance(1)
    lf.system.tell("venue", ExchangeFault({"drop_stream": True}))
    for _ in range(2000):  # step to the instant the stream is back and the round asked
        lf.advance(0.001)
        if lf.rt.info("reconciler").get("resyncs", 0) >= 1 and lf.rt.info("gateway")["connected"] \
                and lf.rt.info("gateway")["stream_reconciling"]:
            break
    else:
        raise AssertionError("the stream did not come back")
    rounds = lf.rt.info("reconciler").get("rounds_done", 0)
    # A reduce-only exit may go out while the resync runs (rule 3): resting.
    lf.system.tell("coordinator", OrderIntent(BTC, Side.SELL, D(5), OrderPurpose.EXIT,
                                              lf.clock.now(), order_type=OrderType.LIMIT,
                                              price=D("150"), reduce_only=True))
    lf.advance(1)
    assert lf.rt.info("reconciler")["rounds_done"] == rounds + 1
    assert lf.audit("order_closed") == [] and lf.audit("resubmitted") == []
    assert lf.coord["orders_by_status"].get("acked") == 1
    lf.system.tell("venue", ExchangeFault({"fill_resting": {"symbol": BTC}}))
    lf.advance(1)
    assert lf.position() == lf.exchange_position() == 0
    assert lf.violations() == []


def test_a_reconciler_crash_during_the_startup_round_does_not_hang_recovery(life) -> None:
    lf = life(exchange={"latency_ms": 20})
    lf.quote()
    lf.signal("buy", 2)
    lf.crash()
    lf.advance(1)
    lf.start(settle_s=0)  # the startup round's answers are 20 ms away
    bad = object.__new__(OpenOrdersSnapshot)  # an answer whose id cannot be looked up
    for name, value in {"request_id": ["x"], "account": "default", "orders": (),
                        "ts": lf.clock.now()}.items():
        object.__setattr__(bad, name, value)
    lf.system.tell("reconciler", bad)
    lf.advance(2)
    assert lf.system.directory.get("reconciler").restarts == 1
    assert not lf.coord["recovering"]  # the new instance asked for its own round
    assert lf.position() == lf.exchange_position() == 2
    lf.signal("sell", 1)
    assert lf.audit("risk_decision")[-1]["reason"] == "approved"

# -- (v) a position changed behind the runtime's back ---------------------------------------------


def test_a_position_changed_at_the_exchange_is_corrected_by_the_next_poll(life) -> None:
    lf = life()
    lf.quote()
    lf.signal("buy", 5)
    lf.advance(1)
    assert lf.position() == 5 and lf.coord["counts"].get("divergences", 0) == 0
    lf.engine.set_position(BTC, "-3")  # no event is sent
    lf.advance(2)
    assert lf.position() == 5  # events only: nobody told the runtime yet
    lf.advance(12)  # the reconciliation poll
    assert lf.position() == lf.exchange_position() == -3
    assert lf.coord["counts"]["divergences"] == 1
    (div,) = lf.audit("divergence")
    assert (div["reason"], div["inputs"]["ours"], div["inputs"]["broker"],
            div["inputs"]["source"]) == ("broker_wins", "5", "-3", "poll")
    # Netting holds on the corrected book: a buy that would cross to long is
    # blocked, one that only reduces the short passes.
    lf.signal("buy", 5)
    assert lf.audit("risk_decision")[-1]["reason"] == "netting_conflict"
    lf.signal("buy", 3)
    lf.advance(1)
    assert lf.position() == lf.exchange_position() == 0
    assert invariants.netting(lf.events()) == []
    assert lf.violations() == []


# -- (vi) a crash loop halts trading and leaves the store consistent ---------------------------


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_a_crash_loop_beyond_the_restart_intensity_halts_alerts_and_keeps_the_store(
        life, webhook) -> None:
    url, received = webhook
    lf = life(config={"alerts": {"webhook": {"url": url}}})
    lf.quote()
    lf.signal("buy", 2)
    lf.advance(1)
    intensity = lf.config.runtime.supervisor.intensity
    for _ in range(intensity + 1):  # every restart of the coordinator dies again
        lf.poison("coordinator")
        lf.advance(1)
    system = lf.system
    assert system.halted and "restart intensity" in system.halt_reason
    assert not system.directory.get("coordinator").running
    assert not system.directory.get("gateway").running
    # Trading is over: a signal reaches nobody and nothing more reaches the exchange.
    sent = len(lf.events("order_submitted"))
    system.tell("coordinator", Signal(BTC, Side.BUY, D(1), lf.clock.now()))
    lf.advance(1)
    assert len(lf.events("order_submitted")) == sent == 1
    # Kill switch recorded, alert delivered, halt flushed to the store.
    kill = [r for r in read_audit(lf.run_dir / "audit.jsonl") if r["kind"] == "kill_switch"]
    assert kill and kill[-1]["reason"] == "engaged" and "halt" in kill[-1]["inputs"]["why"]
    assert any(a.get("title") == "runtime halted" and a.get("severity") == "critical"
               for a in received), received
    lf.stop()
    store = Store.open(lf.run_dir)
    try:
        snap = store.read_all()
    finally:
        store.close()
    assert "restart intensity" in snap["meta"]["halt"]["reason"]
    # a resumed run comes back halted, in step with the audit's "engaged"
    assert "halt" in snap["meta"]["kill_switch"]
    (coid,) = [c for c in snap["orders"]]
    assert snap["meta"][f"order_status|{coid}"] == "filled"
    fills = list(snap["fills"].values())
    assert sum(f.qty for f in fills) == 2 and {f.client_order_id for f in fills} == {coid}
    assert snap["positions"][f"default|{lf.config.exchange.venue}|{BTC}"]["qty"] == 2
    assert lf.engine.position(BTC) == 2


def test_a_kill_switch_on_during_recovery_closes_instead_of_resubmitting(life) -> None:
    lf = life()
    lf.quote()
    lf.poison("gateway")  # as in the lost-submission test: the SubmitOrder dies with the runtime
    lf.settle()
    lf.signal("buy", 4)
    lf.crash()
    (coid,) = lf.approved()
    lf.advance(2)
    lf.start(settle_s=0)
    lf.system.tell("coordinator", KillSwitch(True, "operator", lf.clock.now()))
    lf.advance(1)
    # A risk-increasing order is not sent again while halted; it never reached
    # the exchange (neither working nor filled), so it is simply over.
    (closed,) = lf.audit("order_closed", coid)
    assert closed["reason"] == "halted"
    assert lf.audit("resubmitted") == [] and lf.events("order_submitted") == []
    assert lf.coord["orders_by_status"] == {"rejected": 1} and lf.coord["inflight"] == 0
    assert lf.position() == lf.exchange_position() == 0
