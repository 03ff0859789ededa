"""Property-based test of the whole runtime (DESIGN rules 1-17).

Hypothesis writes random scenario timelines: quotes on two symbols whose
prices walk and sometimes gap (and books that are sometimes thin, so market
orders fill in parts and wait), signals (buy/sell, qty 1-20, some
reduce-only, some with a stop-loss), simulated-exchange faults (partial
fills, rejects, dropped and stalled streams, slow cancel acks, duplicate
fill reports, resting orders filled, price gaps, an exchange restart that
keeps its state), crash/restart pairs (at
once or at a named crash point: after an intent is durable, after the
submit, after a fill) and the kill switch on and off. Each timeline runs
through the scenario runner in virtual time, exactly like a scenario file
(it is written as YAML and loaded by ``load_scenario``, so it is validated
the same way and a failure prints a file you can save and replay with
``main.py scenario``).

The property, checked from ground truth outside the coordinator:

* no invariant violation (single door, netting, unique client order ids,
  positions match the exchange, kill switch / fail-closed respected, no
  order-flow dead letters, group leg order);
* every order that reached the exchange has exactly one approved audit record;
* at the end the runtime's positions equal the exchange's.

Left out on purpose: ``set_position`` (a position changed behind the
runtime's back has no fills, so the netting replay of the exchange's fills
cannot judge the orders after it; ``tests/scenarios/position_changed_at_the_exchange.yaml``
covers it) and exchange restarts that wipe the venue's state.

Reproducible: ``derandomize=True`` makes the examples a function of the test
alone, so CI and a laptop see the same timelines.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from exchange.events_log import read_events
from app.crash_points import POINTS
from app.scenario_file import load_scenario
from app.scenario_runner import ScenarioRun
from trading.audit import read_audit

SYMBOLS = ("BTCUSDT", "ETHUSDT")
START_PRICE = {"BTCUSDT": D("100"), "ETHUSDT": D("50")}
TICK = D("0.1")
#: Quiet time after the last entry before the run ends and is judged. The
#: runtime learns some exchange facts only late, by design: a fill reported
#: while the stream was down or stalled is applied at the resync after the
#: reconnect (the watchdog reconnects a silent stream after 15 s), and a
#: symbol whose positions answer was older than its last fill waits for the
#: next 12 s reconciliation poll (``trading.recovery.apply_broker_positions``).
#: 45 s covers the watchdog plus two polls, so "positions equal the
#: exchange's" is judged once the runtime has had the chance the design gives
#: it, not in the middle of a correction it is entitled to make.
QUIET_S = 45


# -- the generator ----------------------------------------------------------------------------


def _price(p: D) -> str:
    return str(p.quantize(TICK))


@st.composite
def quotes(draw: Any, prices: dict[str, D]) -> dict:
    sym = draw(st.sampled_from(SYMBOLS))
    move = draw(st.one_of(
        st.sampled_from([D("-0.004"), D("-0.001"), D("0"), D("0.001"), D("0.004")]),  # drift
        st.sampled_from([D("-0.08"), D("-0.04"), D("0.04"), D("0.08")])))             # a gap
    bid = max(D("1"), (prices[sym] * (1 + move)).quantize(TICK))
    prices[sym] = bid
    quote: dict[str, Any] = {"symbol": sym, "bid": _price(bid), "ask": _price(bid + TICK)}
    if draw(st.integers(0, 4)) == 0:  # a thin book: market orders fill in parts and wait
        size = str(draw(st.integers(1, 8)))
        quote.update(bid_size=size, ask_size=size)
    return {"quote": quote}


@st.composite
def signals(draw: Any, prices: dict[str, D]) -> dict:
    sym = draw(st.sampled_from(SYMBOLS))
    side = draw(st.sampled_from(["buy", "sell"]))
    sig: dict[str, Any] = {"symbol": sym, "side": side, "qty": str(draw(st.integers(1, 20)))}
    kind = draw(st.sampled_from(["plain", "plain", "reduce_only", "stop_loss"]))
    if kind == "reduce_only":
        sig["reduce_only"] = True
    elif kind == "stop_loss":  # within max_loss_per_trade for most sizes
        pct = D(draw(st.sampled_from(["0.005", "0.01", "0.03"])))
        stop = prices[sym] * (1 - pct if side == "buy" else 1 + pct)
        sig["stop_loss"] = _price(max(TICK, stop))
    return {"signal": sig}


def faults() -> st.SearchStrategy[dict]:
    sym = st.sampled_from(SYMBOLS)
    return st.one_of(
        st.builds(lambda n, ms: {"partial_fills": n, "partial_fill_interval_ms": ms},
                  st.integers(1, 4), st.sampled_from([0, 50, 300])),
        st.builds(lambda n: {"reject_next": n}, st.integers(1, 2)),
        st.just({"drop_stream": True}),
        st.builds(lambda s: {"stall_stream": s}, st.sampled_from([0.2, 1, 3, True])),
        st.just({"restart": "keep"}),  # every session drops, the venue keeps its state
        st.builds(lambda ms: {"cancel_ack_delay_ms": ms}, st.sampled_from([0, 500, 3000])),
        st.builds(lambda n: {"duplicate_fill": n}, st.sampled_from([1, 2, "last"])),
        st.one_of(st.just({"fill_resting": True}), st.builds(lambda s: {"fill_resting": s}, sym)),
        st.builds(lambda s, pct: {"gap_price": {"symbol": s, "pct": pct}}, sym,
                  st.sampled_from(["-6", "-3", "3", "6"])),
    ).map(lambda spec: {"exchange": spec})


@st.composite
def timelines(draw: Any, max_steps: int = 16) -> list[dict]:
    """A valid timeline: entries in time order, every crash followed by its
    restart with nothing in between but (at the crash instant) the signal
    that may reach an armed crash point."""
    prices = dict(START_PRICE)
    out: list[dict] = [{"at": "0ms", **draw(quotes(prices))} for _ in range(2)]
    out[0]["quote"]["symbol"], out[1]["quote"]["symbol"] = SYMBOLS  # both markets exist
    for q in out:
        sym = q["quote"]["symbol"]
        q["quote"].update(bid=_price(START_PRICE[sym]), ask=_price(START_PRICE[sym] + TICK))
    t = 0
    halted = False
    for _ in range(draw(st.integers(1, max_steps))):
        t += draw(st.sampled_from([0, 5, 50, 300, 1000, 2500]))
        kind = draw(st.sampled_from(["quote"] * 4 + ["signal"] * 5 + ["fault"] * 2
                                    + ["crash", "control"]))
        at = f"{t}ms"
        if kind == "quote":
            out.append({"at": at, **draw(quotes(prices))})
        elif kind == "signal":
            out.append({"at": at, **draw(signals(prices))})
        elif kind == "fault":
            out.append({"at": at, **draw(faults())})
        elif kind == "control":
            halted = not halted if draw(st.booleans()) else halted
            out.append({"at": at, "control": {"kill_switch": halted, "reason": "property test"}})
        else:
            point = draw(st.sampled_from([None, *POINTS]))
            crash = {"at": at, "crash": True if point is None else {"point": point}}
            if point is None:  # a signal in the same instant, just before the runtime dies
                out += [{"at": at, **draw(signals(prices))}] if draw(st.booleans()) else []
                out.append(crash)
            else:  # the point is armed, then the signal that may reach it
                out += [crash, {"at": at, **draw(signals(prices))}]
            t += draw(st.sampled_from([500, 1500, 4000]))
            out.append({"at": f"{t}ms", "restart": True})
    out.append({"at": f"{t + QUIET_S * 1000}ms", "end": True})
    return out


#: Half the examples relax the limits that refuse most orders of a random
#: walk (a gap trips max_volatility; adding to a position is a duplicate), so
#: more orders reach the exchange, partial fills, stops and crashes.
RELAXED = {"risk": {"max_volatility": "1", "block_duplicate_positions": False}}


def scenario_yaml(timeline: list[dict], seed: int, relaxed: bool = False,
                  latency_ms: int = 5) -> str:
    """The scenario file; a higher latency keeps more acks and fills on the wire
    when a crash or a stream drop comes."""
    doc = {"name": "property", "seed": seed, "config": RELAXED if relaxed else {},
           "exchange": {"latency_ms": latency_ms}, "symbols": list(SYMBOLS),
           "timeline": timeline}
    return yaml.safe_dump(doc, sort_keys=False, width=120)


# -- the property -------------------------------------------------------------------------------


def check_run(text: str) -> dict:
    """Run one generated scenario; assert the property; return its summary."""
    with tempfile.TemporaryDirectory(prefix="tw-prop-") as tmp:
        path = Path(tmp) / "property.yaml"
        path.write_text(text, encoding="utf-8")
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        # Lenient crash points: a generated crash point that no order reaches
        # becomes a crash at the restart's instant instead of an error.
        result = ScenarioRun(load_scenario(path), run_dir, strict_crash_points=False).run()
        s = result.summary
        events = read_events(run_dir / "events.jsonl")
        audit = list(read_audit(run_dir / "audit.jsonl"))
    # what the examples exercised (pytest --hypothesis-show-statistics)
    sent = s["orders"]["submitted"]
    event(f"orders at the exchange: {sent if sent < 5 else '5+'}")
    for point in s["crash_points"] or (["immediate or fallback"] if s["crashes"] else []):
        event(f"crashed at {point}")
    where = f"\n--- scenario (save as a .yaml file to replay) ---\n{text}"
    assert s["invariant_violations"] == [], f"{s['invariant_violations']}{where}"
    approved = Counter(r.get("client_order_id") for r in audit
                       if r.get("kind") == "risk_decision" and r.get("approved"))
    at_exchange = {e["client_order_id"] for e in events if e.get("kind") == "order_submitted"}
    wrong = {c: approved[c] for c in at_exchange if approved[c] != 1}
    assert not wrong, f"orders at the exchange without exactly one approval: {wrong}{where}"
    ours, theirs = s["positions"], s["exchange_positions"]
    for sym in set(ours) | set(theirs):
        assert D(ours.get(sym, "0")) == D(theirs.get(sym, "0")), (
            f"{sym}: runtime {ours.get(sym)} exchange {theirs.get(sym)}{where}")
    return s


#: derandomize: the same examples on every machine and run (CI is reproducible);
#: no example database, so nothing is written into the checkout. A run takes
#: 0.03-0.4 s of wall time (virtual time), so 120 examples stay well under a
#: minute on 2 cores, shrinking included.
PROPERTY = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=120, **PROPERTY)
@given(timeline=timelines(max_steps=20), seed=st.integers(0, 3), relaxed=st.booleans(),
       latency_ms=st.sampled_from([1, 5, 60]))
def test_random_timelines_keep_every_safety_rule(timeline: list[dict], seed: int,
                                                 relaxed: bool, latency_ms: int) -> None:
    check_run(scenario_yaml(timeline, seed, relaxed, latency_ms))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 3 minutes on 2 cores; the suite's 120 s is per test
@settings(max_examples=1500, **PROPERTY)
@given(timeline=timelines(max_steps=40), seed=st.integers(0, 1000), relaxed=st.booleans(),
       latency_ms=st.sampled_from([1, 5, 60]))
def test_random_timelines_keep_every_safety_rule_long(timeline: list[dict], seed: int,
                                                      relaxed: bool, latency_ms: int) -> None:
    check_run(scenario_yaml(timeline, seed, relaxed, latency_ms))
