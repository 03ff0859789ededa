"""Symbol actors, features, strategies and the synthetic market.

Everything runs in virtual time through VirtualHarness; waiting is done by
settling the system or on events with timeouts, never by sleeping.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from actors.features import (
    FeatureParams,
    Features,
    adv_from_bars,
    compute_features,
    realized_volatility,
    rolling_mean,
    spread_bps,
    zscore,
)
from trading.strategy import (
    DemoStrategy,
    MarketHistory,
    QuoteHistory,
    BarHistory,
    SignalIntent,
    Strategy,
    strategy_by_name,
)
from actors.symbol import SymbolActor, symbol_actor_name, symbols_supervisor
from exchange.synthetic import SyntheticMarket, make_symbols
from messages import Bar, MarketStats, MessageError, Quote, Side, Signal
from messages.codec import decode, encode
from runtime import Actor, ChildSpec, TaskDone, handles
from runtime.clock import EPOCH_DEFAULT
from runtime.mailbox import Mailbox
from runtime.testing import VirtualHarness
from tests.rt_helpers import Block, Boom

T0 = EPOCH_DEFAULT


class StubCoordinator(Actor):
    """Stands in for the coordinator: records what symbol actors tell it."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.received: list = []

    @handles(Signal, MarketStats)
    def on_message(self, msg):
        self.received.append(msg)

    def signals(self) -> list[Signal]:
        return [m for m in self.received if isinstance(m, Signal)]


class BlockableSymbol(SymbolActor):
    """A symbol actor a test can hold inside a handler (to fill its mailbox)."""

    @handles(Block)
    def on_block(self, msg):
        msg.entered.set()
        msg.gate.wait(10)

    @handles(Boom)
    def on_boom(self, msg):
        raise RuntimeError(msg.why)


def coordinator_spec() -> ChildSpec:
    return ChildSpec("coordinator", StubCoordinator)


def quote(sym: str, bid: str, i: int, spread: str = "0.02") -> Quote:
    b = Decimal(bid)
    return Quote(sym, b, b + Decimal(spread), T0 + timedelta(milliseconds=100 * i),
                 Decimal(10), Decimal(12))


def passthrough(h: VirtualHarness, name: str) -> None:
    """Return once everything told to ``name`` so far has been handled (FIFO)."""
    gate, entered = threading.Event(), threading.Event()
    gate.set()
    h.system.tell(name, Block(gate, entered))
    assert entered.wait(5)


def feed_market(h: VirtualHarness, market: SyntheticMarket, duration_s: float) -> int:
    n = 0
    for t, msg in market.events(duration_s):
        h.run_until(t)
        h.tell(symbol_actor_name(msg.symbol), msg)
        n += 1
    return n


# -- the pipeline ----------------------------------------------------------------------


def run_demo(seed: int):
    market = SyntheticMarket(seed=seed)
    with VirtualHarness(coordinator_spec(), symbols_supervisor(market.symbols, "demo", {}),
                        seed=seed) as h:
        events = feed_market(h, market, 30)
        received = list(h.actor("coordinator").received)
        infos = {s: dict(h.cell(symbol_actor_name(s)).info) for s in market.symbols}
    return events, received, infos


def test_demo_strategy_signals_are_deterministic_and_exercise_both_sides():
    events, received, infos = run_demo(7)
    _, again, _ = run_demo(7)
    signals = [m for m in received if isinstance(m, Signal)]
    key = [(s.symbol, s.side, s.qty, s.stop_loss, s.ts) for s in signals]
    assert key == [(s.symbol, s.side, s.qty, s.stop_loss, s.ts) for s in again
                   if isinstance(s, Signal)]
    # A 30 s run at 10 quotes/s/symbol over 5 symbols: a few dozen signals, both sides,
    # including repeats on one side (duplicate-position check) and reversals (netting).
    assert 20 <= len(signals) <= 120
    assert {s.side for s in signals} == {Side.BUY, Side.SELL}
    per_symbol = {}
    for s in signals:
        per_symbol.setdefault(s.symbol, []).append(s.side)
    assert any(a == b for sides in per_symbol.values() for a, b in zip(sides, sides[1:], strict=False))
    assert any(a != b for sides in per_symbol.values() for a, b in zip(sides, sides[1:], strict=False))
    last_stats: dict[str, MarketStats] = {}
    for m in received:
        if isinstance(m, MarketStats):
            last_stats[m.symbol] = m
            continue
        # Every signal is preceded by fresh figures for its symbol (the gate needs them).
        stats = last_stats[m.symbol]
        assert isinstance(m.qty, Decimal) and 1 <= m.qty <= 5
        assert m.strategy == "demo" and m.ts.utcoffset() == timedelta(0)
        assert m.stop_loss.as_tuple().exponent == -3  # on the quotes' price grid
        distance = (m.stop_loss - stats.mid) / stats.mid
        assert (distance < 0) if m.side is Side.BUY else (distance > 0)
        assert Decimal("0.004") < abs(distance) < Decimal("0.006")  # stop_pct 0.5 %
    # Stats at most every N (=10) ticks, plus one ahead of a signal at most.
    for sym, info in infos.items():
        n_stats = sum(1 for m in received if isinstance(m, MarketStats) and m.symbol == sym)
        assert n_stats <= info["ticks"] // 10 + info["signals"] + 1
        assert info["rejected"] == 0 and info["strategy_errors"] == 0
        lat = info["signal_latency_us"]
        assert lat["n"] == info["signals"]
        if lat["n"]:
            assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert sum(i["ticks"] for i in infos.values()) == events
    assert sum(i["signals"] for i in infos.values()) == len(signals)


def test_features_run_on_the_shared_executor_and_threads_do_not_grow_per_symbol():
    def measure(n: int) -> dict:
        for t in threading.enumerate():  # let threads of an earlier system finish
            if t.name.startswith("tw-"):
                t.join(5)
        before = set(threading.enumerate())
        symbols = [f"S{i:02d}" for i in range(n)]
        h = VirtualHarness(coordinator_spec(),
                           symbols_supervisor(symbols, "demo", {}, features_on="executor"),
                           executor_workers=2).start()
        try:
            for i in range(30):
                for s in symbols:
                    h.system.tell(symbol_actor_name(s), quote(s, str(100 + i % 7), i))
                h.settle()
            new = [t for t in threading.enumerate() if t not in before and t.is_alive()]
            threaded = [c.name for c in h.system.directory.cells()
                        if c.running and c.execution == "threaded"]
            infos = [h.cell(symbol_actor_name(s)).info for s in symbols]
            return {
                "executor": [t.name for t in new if t.name.startswith("tw-exec")],
                "dispatcher": [t.name for t in new if t.name.startswith("tw-dispatch")],
                "actors": sorted(t.name for t in new
                                 if not t.name.startswith(("tw-exec", "tw-dispatch"))),
                "expected": sorted(f"tw-{name}" for name in threaded),
                "submitted": h.system.executor.submitted,
                "computations": sum(i["computations"] for i in infos),
            }
        finally:
            h.system.shutdown()

    one, twenty = measure(1), measure(20)
    for m in (one, twenty):
        assert m["actors"] == m["expected"]        # one thread per threaded actor ...
        assert len(m["dispatcher"]) == 1           # ... the dispatcher's one worker ...
        assert 1 <= len(m["executor"]) <= 2        # ... plus the one bounded executor
        assert m["submitted"] == m["computations"]  # every feature computation went there
    assert twenty["actors"] == one["actors"]       # symbol actors are pooled: no thread each
    assert twenty["submitted"] >= 20 * 30 // 2


def test_mailbox_conflates_quotes_when_the_actor_is_behind(harness_factory):
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", BlockableSymbol, args=("BTC", "demo"),
                                  conflate=True))
    gate, entered = threading.Event(), threading.Event()
    h.system.tell("symbol-BTC", Block(gate, entered))
    assert entered.wait(5)
    for i in range(100):
        h.system.tell("symbol-BTC", quote("BTC", str(100 + i), i))
    assert h.cell("symbol-BTC").mailbox.depth == 1
    gate.set()
    h.settle()
    actor = h.actor("symbol-BTC")
    assert actor.info["quotes"] == 1 and actor.info["conflated"] == 99
    n = actor.quotes.snapshot()
    assert n == 1 and actor.quotes.scratch[1, 0] == 199.0   # the latest bid won
    assert actor.features.mid == pytest.approx(199.01)


def test_ticks_during_a_computation_are_buffered_and_the_next_one_uses_the_latest(
        harness_factory):
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", BlockableSymbol, args=("BTC", "demo"),
                                  kwargs={"features_on": "executor"}, conflate=True),
                        executor_workers=1)
    hold, busy = threading.Event(), threading.Event()
    h.system.executor.submit(lambda: (busy.set(), hold.wait(10)))  # occupy the only worker
    assert busy.wait(5)
    for i in range(10):
        h.system.tell("symbol-BTC", quote("BTC", str(100 + i), i))
        passthrough(h, "symbol-BTC")  # handled one by one: no mailbox conflation here
    actor = h.actor("symbol-BTC")
    assert actor.info["quotes"] == 10 and actor.info["computations"] == 1
    assert actor.info["coalesced"] == 9
    hold.set()
    h.settle()
    assert actor.info["computations"] == 2       # one catch-up computation, not nine
    assert actor.features.n_quotes == 10
    assert actor.features.mid == pytest.approx(109.01)


def test_inline_features_need_no_executor_and_signal_in_the_same_handler(harness_factory):
    """The default: features and strategy run inside the quote's own handler, so
    a tick costs no executor round trip (two thread hand-offs) before its signal."""
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", SymbolActor, args=("BTC", "demo"), conflate=True))
    for i in range(40):
        h.tell("symbol-BTC", quote("BTC", str(100 + (i % 3)), i))
    info = h.actor("symbol-BTC").info
    assert info["computations"] == info["ticks"] == 40
    assert info["coalesced"] == 0 and info["feature_errors"] == 0
    assert h.system.executor.submitted == 0
    assert h.actor("symbol-BTC").features.n_quotes == 40


def test_features_on_is_validated():
    with pytest.raises(ValueError, match="features_on must be one of"):
        symbols_supervisor(["A"], "demo", {}, features_on="gpu")


def test_bad_input_is_rejected_counted_and_never_crashes_the_actor(harness_factory):
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", SymbolActor, args=("BTC", "demo"), conflate=True))
    with pytest.raises(MessageError):
        Quote("BTC", Decimal("NaN"), Decimal(1), T0)
    with pytest.raises(MessageError):
        Quote("BTC", Decimal(101), Decimal(100), T0)
    # What the constructor refuses can still arrive corrupted; the actor checks again.
    nan_bid = quote("BTC", "100", 1)
    object.__setattr__(nan_bid, "bid", Decimal("NaN"))
    crossed = quote("BTC", "100", 2)
    object.__setattr__(crossed, "ask", Decimal("99"))
    naive = quote("BTC", "100", 3)
    object.__setattr__(naive, "ts", datetime(2026, 1, 5))  # noqa: DTZ001 - naive on purpose: refused
    garbage = quote("BTC", "100", 4)
    object.__setattr__(garbage, "bid", "lots")
    bad_bar = Bar("BTC", Decimal(100), Decimal(101), Decimal(99), Decimal(100), Decimal(5),
                  T0 + timedelta(seconds=1))
    object.__setattr__(bad_bar, "low", Decimal(102))
    h.tell("symbol-BTC", quote("BTC", "100", 10))
    for bad in (quote("ETH", "100", 11), nan_bid, crossed, naive, garbage, bad_bar,
                quote("BTC", "100", 5)):  # the last is older than one already seen
        h.tell("symbol-BTC", bad)
    h.tell("symbol-BTC", TaskDone(("features", 99, 1), None))  # stale result: ignored
    h.tell("symbol-BTC", quote("BTC", "101", 12))
    cell = h.cell("symbol-BTC")
    assert cell.state == "running" and cell.failures == 0 and cell.incarnation == 1
    info = cell.info
    assert info["rejected"] == 7 and info["quotes"] == 2
    assert info["rejected_by_reason"] == {"wrong_symbol": 1, "bad_price": 2, "crossed": 1,
                                          "bad_ts": 1, "bad_range": 1, "out_of_order": 1}
    assert h.dead_letters.total == 0
    assert h.actor("symbol-BTC").features.mid == pytest.approx(101.01)


def test_restarted_symbol_actor_keeps_counters_and_ignores_old_results(harness_factory):
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", BlockableSymbol, args=("BTC", "demo"),
                                  conflate=True))
    for i in range(3):
        h.tell("symbol-BTC", quote("BTC", "100", i))
    h.tell("symbol-BTC", Boom("injected"))
    h.advance(5)  # past the restart backoff
    cell = h.cell("symbol-BTC")
    assert cell.state == "running" and cell.incarnation == 2 and cell.restarts == 1
    h.tell("symbol-BTC", TaskDone(("features", 1, 1), None))  # from the dead instance
    h.tell("symbol-BTC", quote("BTC", "102", 3))
    assert cell.info["quotes"] == 4 and cell.info["computations"] == 4
    assert h.actor("symbol-BTC").features.n_quotes == 1  # rebuilt from fresh market data


class Faulty(Strategy):
    name = "faulty"
    warmup = 1

    def __init__(self):
        self.calls = 0

    def on_data(self, market, features):
        self.calls += 1
        if self.calls % 2:
            raise RuntimeError("strategy bug")
        assert not market.quotes.mid.flags.writeable  # history is read-only
        return [SignalIntent(Side.BUY, 0), SignalIntent("sell", np.int64(2), np.float64(90.123456))]


def test_strategy_errors_are_counted_and_bad_intents_dropped(harness_factory):
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", SymbolActor, args=("BTC", Faulty), conflate=True))
    for i in range(4):
        h.tell("symbol-BTC", quote("BTC", "100", i))
    cell = h.cell("symbol-BTC")
    assert cell.state == "running" and cell.failures == 0
    assert cell.info["strategy_errors"] == 4  # two raises, two zero-quantity intents
    sigs = h.actor("coordinator").signals()
    assert [(s.side, s.qty, s.stop_loss, s.strategy) for s in sigs] == [
        (Side.SELL, Decimal(2), Decimal("90.12"), "faulty")] * 2


def test_ring_buffer_memory_is_flat_after_ten_times_its_size(harness_factory):
    ring = 64
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", SymbolActor, args=("BTC", "demo", "coordinator", ring),
                                  conflate=True))
    actor = h.actor("symbol-BTC")
    arrays = [actor.quotes.data, actor.quotes.scratch, actor.bars.data, actor.bars.scratch,
              actor._latency]
    ids, nbytes = [id(a) for a in arrays], [a.nbytes for a in arrays]
    market = SyntheticMarket(["BTC"], seed=3)
    n = 0
    for _t, msg in market.events(ring):  # 10 quotes/s for `ring` seconds: 10x the ring
        h.tell("symbol-BTC", msg)
        n += 1
    arrays_after = [actor.quotes.data, actor.quotes.scratch, actor.bars.data, actor.bars.scratch,
                    actor._latency]
    assert [id(a) for a in arrays_after] == ids
    assert [a.nbytes for a in arrays_after] == nbytes
    assert actor.info["quotes"] == 10 * ring and actor.quotes.count == ring
    got = actor.quotes.snapshot()
    t = actor.quotes.scratch[0, :got]
    assert got == ring and np.all(np.diff(t) > 0)   # chronological after wrapping
    last_quote = [m for _, m in market.events(ring) if isinstance(m, Quote)][-1]
    assert t[-1] == last_quote.ts.timestamp()


# -- features and strategies (pure) ---------------------------------------------------------


def test_feature_kernels():
    t = np.arange(101, dtype=float)
    mid = 100 * np.exp(np.cumsum(np.r_[0.0, np.tile([0.001, -0.001], 50)]))
    assert realized_volatility(t, mid, 100, 60.0) == pytest.approx(0.001 * math.sqrt(60))
    assert spread_bps(bid=99.99, ask=100.01) == pytest.approx(2.0)
    assert zscore(np.full(10, 5.0), 10) == 0.0
    assert zscore(np.array([1.0, 1.0, 1.0, 4.0]), 4) == pytest.approx(2.25 / math.sqrt(27 / 16))
    assert adv_from_bars(np.array([1.0, 2.0, 3.0]), np.array([5.0, 10.0, 10.0])) == 20 / 2 * 86_400
    assert list(rolling_mean(np.array([1.0, 2.0, 3.0, 4.0]), 2)) == [1.5, 2.5, 3.5]
    q = np.vstack([t, mid - 0.01, mid + 0.01, mid, np.full(101, 10.0), np.full(101, 10.0)])
    q.flags.writeable = False  # kernels only read
    f = compute_features(q, np.zeros((6, 0)), FeatureParams())
    assert f.valid and f.n_quotes == 101 and f.adv > 0 and f.mid == mid[-1]
    empty = compute_features(np.zeros((6, 0)), np.zeros((6, 0)))
    assert not empty.valid and math.isnan(empty.volatility)
    with pytest.raises(ValueError, match="vol_window"):
        FeatureParams(vol_window=1)


def history(mids: list[float]) -> MarketHistory:
    m = np.array(mids)
    t = np.arange(len(m), dtype=float)
    empty = np.zeros(0)
    return MarketHistory("X", QuoteHistory(t, m, m, m, m, m), BarHistory(*(empty,) * 6))


def feats(mid: float, z: float) -> Features:
    return Features(60, 0, mid, 2.0, 0.01, mid, mid, z, 1e6)


def test_demo_strategy_is_edge_triggered_with_cooldown():
    s = strategy_by_name("demo", {"entry_z": 1.5, "cooldown_s": 2.0})
    assert isinstance(s, DemoStrategy)
    assert s.on_data(history([100.0] * 10), feats(100, 0.0)) == []
    out = s.on_data(history([100.0] * 11), feats(100, -2.0))
    assert [(i.side, i.qty) for i in out] == [(Side.BUY, 3)]
    assert out[0].stop_loss == pytest.approx(99.5)  # stop_pct 0.5 % below the mid
    assert s.on_data(history([100.0] * 12), feats(100, -2.5)) == []   # no new crossing
    assert s.on_data(history([100.0] * 12), feats(100, 0.0)) == []
    assert s.on_data(history([100.0] * 12), feats(100, 2.0)) == []    # within cooldown
    assert s.on_data(history([100.0] * 16), feats(100, 0.0)) == []
    out = s.on_data(history([100.0] * 17), feats(100, 3.0))
    assert [(i.side, i.qty) for i in out] == [(Side.SELL, 5)] and out[0].stop_loss > 100


def test_strategy_registry_names_bad_input():
    with pytest.raises(ValueError, match="unknown strategy 'nope'.*demo"):
        strategy_by_name("nope")
    with pytest.raises(ValueError, match="bad parameters"):
        strategy_by_name("demo", {"entry": 1})
    with pytest.raises(ValueError, match="stop_pct"):
        strategy_by_name("demo", {"stop_pct": -1})
    with pytest.raises(ValueError, match="unknown strategy"):
        symbols_supervisor(["A"], "nope", {})


def test_symbols_supervisor_spec():
    spec = symbols_supervisor(["BTC", "ETH"], "demo", {"entry_z": 2.0}, coordinator="coord")
    assert spec.name == "symbols" and spec.strategy == "one_for_one"
    assert [c.name for c in spec.children] == ["symbol-BTC", "symbol-ETH"]
    assert all(c.conflate and c.actor is SymbolActor for c in spec.children)
    assert spec.children[0].args[:3] == ("BTC", "demo", "coord")
    assert spec.children[0].kwargs["strategy_params"] == {"entry_z": 2.0}


def test_market_stats_round_trips_the_codec_and_conflates():
    s = MarketStats("BTC", Decimal("0.0123"), Decimal("8640000.00"), Decimal("2.5"),
                    Decimal("100.01"), T0)
    assert decode(encode(s)) == s
    assert s.conflatable and s.conflation_key() == ("stats", "BTC")
    mb = Mailbox("c", conflate=True)
    mb.put(s)
    mb.put(s.replace(mid=Decimal("101")))
    assert mb.depth == 1 and mb.get().mid == Decimal("101")
    with pytest.raises(MessageError):
        MarketStats("BTC", Decimal("-1"), Decimal(0), Decimal(0), Decimal(1), T0)
    with pytest.raises(MessageError):
        MarketStats("BTC", Decimal("0"), Decimal(0), Decimal(0), Decimal(1),
                    datetime(2026, 1, 5))  # noqa: DTZ001 - naive on purpose: refused


# -- synthetic market -------------------------------------------------------------------------


def test_synthetic_market_is_deterministic_and_plausible():
    m = SyntheticMarket(seed=11)
    events = list(m.events(30))
    assert events == list(m.events(30)) == list(SyntheticMarket(seed=11).events(30))
    assert events != list(SyntheticMarket(seed=12).events(30))
    times = [t for t, _ in events]
    assert times == sorted(times) and times[-1] <= 30
    quotes = [q for _, q in events if isinstance(q, Quote)]
    bars = [b for _, b in events if isinstance(b, Bar)]
    assert len(quotes) == 5 * 300 and len(bars) == 5 * 30
    assert all(q.ts == T0 + timedelta(seconds=t) for t, q in events if isinstance(q, Quote))
    assert all(Decimal(0) < q.bid < q.ask and q.bid_size >= 1 for q in quotes)
    spreads = np.array([float((q.ask - q.bid) / q.mid * 10_000) for q in quotes])
    assert 1.0 < np.median(spreads) < 5.0
    for sym in m.symbols:
        mids = np.array([float(q.mid) for q in quotes if q.symbol == sym])
        r = np.diff(np.log(mids))
        sigma = np.median(np.abs(r)) / 0.6745  # robust to jumps
        assert 0.00025 < sigma < 0.001
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume >= 0 and b.ts.microsecond == 0
    calm = SyntheticMarket(seed=1, jump_rate_per_s=0)
    jumpy = SyntheticMarket(seed=1, jump_rate_per_s=1.0, jump_sigma=0.05)

    def max_abs_return_and_spread(market):
        qs = [q for _, q in market.events(20) if isinstance(q, Quote)]
        mids = {s: [float(q.mid) for q in qs if q.symbol == s] for s in market.symbols}
        ret = max(np.abs(np.diff(np.log(v))).max() for v in mids.values())
        return ret, max(float((q.ask - q.bid) / q.mid * 10_000) for q in qs)

    calm_ret, calm_spread = max_abs_return_and_spread(calm)
    jump_ret, jump_spread = max_abs_return_and_spread(jumpy)
    assert calm_ret < 0.004 and jump_ret > 0.05
    assert calm_spread < 10 < 50 < jump_spread


def test_synthetic_market_is_cheap_enough_for_a_thousand_symbols():
    m = SyntheticMarket(make_symbols(1000), seed=5, tick_interval_s=0.2)
    assert m.events_per_s == pytest.approx(6000)
    t0 = time.perf_counter()
    n = sum(1 for _ in m.events(2.0))
    elapsed = time.perf_counter() - t0
    assert n == 12_000
    assert n / elapsed > 5_000, f"{n / elapsed:.0f} events/s"


def test_importing_the_modules_has_no_side_effects():
    code = ("import threading, os; n = threading.active_count(); before = set(os.listdir('.'));"
            "import actors.symbol, trading.strategy, actors.features, exchange.synthetic;"
            "assert threading.active_count() == n; assert set(os.listdir('.')) == before")
    subprocess.run([sys.executable, "-B", "-c", code], check=True, timeout=60)


class Planner(Strategy):
    name = "planner"
    warmup = 1

    def on_data(self, market, features):
        return [SignalIntent("buy", 3, stop_loss=np.float64(95.123), take_profit=105.456,
                             trailing_percent=1.5, time_limit_s=np.float64(30)),
                SignalIntent("buy", 1, trailing_distance=-1)]  # refused: counted, dropped


def test_a_strategy_intent_carries_its_exit_plan_to_the_signal(harness_factory):
    h = harness_factory(coordinator_spec(),
                        ChildSpec("symbol-BTC", SymbolActor, args=("BTC", Planner), conflate=True))
    h.tell("symbol-BTC", quote("BTC", "100", 0))
    [sig] = h.actor("coordinator").signals()
    assert h.cell("symbol-BTC").info["strategy_errors"] == 1
    plan = sig.exit_plan
    assert (plan.stop_loss, plan.take_profit, plan.trailing_percent, plan.time_limit_s) == (
        Decimal("95.12"), Decimal("105.46"), Decimal("1.5"), 30.0)
