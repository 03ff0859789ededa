"""Scenario file parsing and validation (app/scenario_file.py, DESIGN section 9)."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import ConfigError
from config.registry import KeyRegistry, Spec, flag
from config.sim_exchange import EXCHANGE_KEYS, FAULT
from messages.enums import Side
from app.scenario_file import (BarEvent, ControlEvent, CrashEvent, EndEvent, ExchangeEvent,
                                   GroupEvent, QuoteEvent, RestartEvent, SignalEvent,
                                   load_scenario)

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DESIGN_EXAMPLE = SCENARIOS / "stop_gap_slow_cancel.yaml"

HEAD = "name: t\nseed: 1\nsymbols: [BTCUSDT]\ntimeline:\n"  # timeline entries start on line 5


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(write(tmp_path, text))
    return str(info.value)


def entries(tmp_path: Path, timeline: str):
    return load_scenario(write(tmp_path, HEAD + textwrap.dedent(timeline))).timeline


# -- the DESIGN example ----------------------------------------------------------------------


def test_design_example_parses():
    sc = load_scenario(DESIGN_EXAMPLE)
    assert sc.name == "stop-loss gap-through with a slow cancel acknowledgement"
    assert sc.seed == 7
    assert sc.symbols == ("BTCUSDT",)
    assert sc.config_overrides == {"risk": {"max_order_size": 50}}
    assert sc.config.risk.max_order_size == Decimal("50")
    assert sc.config.risk.max_position_size == Decimal("1000")      # defaults kept
    assert sc.exchange == {"latency_ms": 5, "cancel_ack_delay_ms": 3000}
    assert [(e.at, e.kind) for e in sc.timeline] == [
        (Decimal("0"), "quote"), (Decimal("1"), "signal"), (Decimal("5"), "quote"),
        (Decimal("6.5"), "exchange"), (Decimal("30"), "end")]
    assert [e.line for e in sc.timeline] == [7, 9, 11, 13, 15]
    q = sc.timeline[0].event
    assert q == QuoteEvent("BTCUSDT", Decimal("100.0"), Decimal("100.1"))
    sig = sc.timeline[1].event
    assert sig == SignalEvent("BTCUSDT", Side.BUY, Decimal("10"), stop_loss=Decimal("95"))
    assert sc.timeline[3].event == ExchangeEvent({"fill_resting": {"symbol": "BTCUSDT"}})
    assert sc.end_at == Decimal("30")
    assert sc.timeline[3].at_s == 6.5
    assert sc.expect == {"positions": {"BTCUSDT": Decimal("0")},
                         "max_exit_qty": {"BTCUSDT": Decimal("10")}}
    assert sc.where("timeline", 3, "exchange") == f"{sc.path}:14: timeline[3].exchange"


def test_parsing_is_deterministic():
    assert load_scenario(DESIGN_EXAMPLE) == load_scenario(DESIGN_EXAMPLE)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_scenario_in_the_repository_is_valid(path):
    sc = load_scenario(path)
    assert sc.timeline and sc.symbols


# -- timeline --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("0s", "0"), ("1.5s", "1.5"), ("250ms", "0.25"), ("2m", "120"), ("1h", "3600"),
    (" 3s", "3"), ("0.5ms", "0.0005"), (".5s", "0.5")])
def test_durations(tmp_path, text, seconds):
    (entry,) = entries(tmp_path, f"  - at: '{text}'\n    end: true\n")
    assert entry.at == Decimal(seconds)


@pytest.mark.parametrize("text", ["1.5", "5", "-1s", "1.5 sec", "1:30", "''", "1s2", "null",
                                  "true", "5 m s"])
def test_bad_durations_name_file_line_key(tmp_path, text):
    msg = errors(tmp_path, HEAD + f"  - at: 0s\n    end: true\n  - at: {text}\n    end: true\n")
    assert "x.yaml:7: timeline[1].at: " in msg and "duration with a unit" in msg, msg


def test_unsorted_times_are_sorted_stably(tmp_path):
    timeline = entries(tmp_path, """\
          - at: 2s
            quote: {symbol: BTCUSDT, bid: "3", ask: "3.1"}
          - at: 1s
            quote: {symbol: BTCUSDT, bid: "1", ask: "1.1"}
          - at: 1000ms
            quote: {symbol: BTCUSDT, bid: "2", ask: "2.1"}
          - at: 0s
            control: {kill_switch: off}
    """)
    assert [e.index for e in timeline] == [3, 1, 2, 0]
    assert [e.event.bid for e in timeline[1:]] == [Decimal("1"), Decimal("2"), Decimal("3")]
    assert [e.line for e in timeline] == [11, 7, 9, 5]


def test_every_entry_kind(tmp_path):
    timeline = entries(tmp_path, """\
          - at: 0s
            bar: {symbol: BTCUSDT, open: 10, high: "12", low: 9.5, close: "11", volume: "0"}
          - at: 1s
            signal: {symbol: BTCUSDT, side: sell, qty: "0.5", account: acct-2, reduce_only: true}
          - at: 2s
            control: {kill_switch: on, reason: manual}
          - at: 3s
            crash:
          - at: 4s
            restart: true
          - at: 5s
            crash: {point: after_intent}
          - at: 6s
            restart: {}
          - at: 7s
            group: {kind: bull_put, legs: [{symbol: BTCUSDT, side: buy, qty: "1"}]}
          - at: 8s
            exchange: {reject_next: 2, partial_fills: 50, drop_stream: true, stall_stream: 20,
                       set_position: {symbol: BTCUSDT, qty: "-3"},
                       gap_price: {symbol: BTCUSDT, price: "90"}, duplicate_fill: last,
                       fill_resting: BTCUSDT, latency_ms: 7, restart: wipe}
          - at: 9s
            end: true
    """)
    events = [e.event for e in timeline]
    assert events[0] == BarEvent("BTCUSDT", Decimal(10), Decimal(12), Decimal("9.5"),
                                 Decimal(11), Decimal(0))
    assert events[1] == SignalEvent("BTCUSDT", Side.SELL, Decimal("0.5"), account="acct-2",
                                    reduce_only=True)
    assert events[2] == ControlEvent(True, "manual")
    assert events[3:7] == [CrashEvent(), RestartEvent(), CrashEvent("after_intent"),
                           RestartEvent()]
    assert isinstance(events[7], GroupEvent) and events[7].spec["kind"] == "bull_put"
    spec = events[8].spec  # as written: the simulated exchange parses it when applied
    assert spec == {"reject_next": 2, "partial_fills": 50, "drop_stream": True,
                    "stall_stream": 20, "set_position": {"symbol": "BTCUSDT", "qty": "-3"},
                    "gap_price": {"symbol": "BTCUSDT", "price": "90"}, "duplicate_fill": "last",
                    "fill_resting": "BTCUSDT", "latency_ms": 7, "restart": "wipe"}
    assert list(spec)[:3] == ["reject_next", "partial_fills", "drop_stream"]  # file order
    assert isinstance(events[9], EndEvent)


# -- located errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("timeline, line, key, why", [
    ("  - at: 0s\n    quote: {symbol: BTCUSDT, bidd: '1', bid: '1', ask: '2'}\n",
     6, "timeline[0].quote.bidd", "unknown key"),
    ("  - at: 0s\n    quote:\n      symbol: BTCUSDT\n      bid: '1'\n      ask: '2'\n"
     "      sise: 3\n", 10, "timeline[0].quote.sise", "unknown key"),
    ("  - at: 0s\n    quot: {symbol: BTCUSDT}\n", 6, "timeline[0].quot", "unknown key"),
    ("  - at: 0s\n    signal: {symbol: BTCUSDT, side: buy, qty: '-10'}\n",
     6, "timeline[0].signal.qty", "'-10' is not valid: must be > 0"),
    ("  - at: 0s\n    signal: {symbol: BTCUSDT, side: buy, qty: 0}\n",
     6, "timeline[0].signal.qty", "must be > 0"),
    ("  - at: 0s\n    signal: {symbol: BTCUSDT, side: hold, qty: 1}\n",
     6, "timeline[0].signal.side", "buy or sell"),
    ("  - at: 0s\n    signal: {symbol: BTCUSDT, side: buy, qty: 1, stop_loss: .nan}\n",
     6, "timeline[0].signal.stop_loss", "finite"),
    ("  - at: 0s\n    quote: {symbol: BTCUSDT, bid: NaN, ask: '2'}\n",
     6, "timeline[0].quote.bid", "finite"),
    ("  - at: 0s\n    quote: {symbol: BTCUSDT, bid: '2', ask: '1'}\n",
     6, "timeline[0].quote.ask", "below bid"),
    ("  - at: 0s\n    quote: {symbol: BTCUSDT, bid: '1', ask: '2', bid_size: '-1'}\n",
     6, "timeline[0].quote.bid_size", "must be >= 0"),
    ("  - at: 0s\n    bar: {symbol: BTCUSDT, open: 1, high: 1, low: 2, close: 1, volume: 1}\n",
     6, "timeline[0].bar.low", "above high"),
    ("  - at: 0s\n    quote: {symbol: btc, bid: '1', ask: '2'}\n",
     6, "timeline[0].quote.symbol", "upper-case"),
    ("  - at: 0s\n    exchange: {fill_restng: {symbol: BTCUSDT}}\n",
     6, "timeline[0].exchange.fill_restng", "unknown key"),
    ("  - at: 0s\n    exchange:\n      fill_resting: {symbl: BTCUSDT}\n",
     7, "timeline[0].exchange.fill_resting.symbl", "unknown key"),
    ("  - at: 0s\n    exchange: {set_position: {symbol: BTCUSDT, qty: .inf}}\n",
     6, "timeline[0].exchange.set_position.qty", "finite"),
    ("  - at: 0s\n    exchange: {reject_next: -1}\n",
     6, "timeline[0].exchange.reject_next", "must be >= 0"),
    ("  - at: 0s\n    exchange: {partial_fills: 0}\n",
     6, "timeline[0].exchange.partial_fills", "must be > 0"),
    ("  - at: 0s\n    exchange: {gap_price: {symbol: BTCUSDT, bid: '5', ask: '4'}}\n",
     6, "timeline[0].exchange.gap_price.ask", "below bid"),
    ("  - at: 0s\n    exchange: {gap_price: {symbol: BTCUSDT, price: '5', pct: 3}}\n",
     6, "timeline[0].exchange.gap_price.price", "exactly one of"),
    ("  - at: 0s\n    exchange: {restart: soft}\n",
     6, "timeline[0].exchange.restart", "keep, wipe"),
    ("  - at: 0s\n    exchange:\n      set_position:\n        symbol: BTCUSDT\n"
     "        qtty: '1'\n", 9, "timeline[0].exchange.set_position.qtty", "unknown key"),
    ("  - at: 0s\n    exchange: {fill_resting: {symbol: BTCUSDT, qty: 1.5}}\n",
     6, "timeline[0].exchange.fill_resting.qty", "decimal (as a string)"),
    ("  - at: 0s\n    exchange: {cancel_ack_delay_ms: -5}\n",
     6, "timeline[0].exchange.cancel_ack_delay_ms", "must be >= 0"),
    ("  - at: 0s\n    exchange: {}\n", 6, "timeline[0].exchange", "at least one of"),
    ("  - at: 0s\n    exchange: {drop_stream: 'yes'}\n", 6, "timeline[0].exchange.drop_stream",
     "valid boolean"),
    ("  - at: 0s\n    exchange: {fill_resting: false}\n", 6,
     "timeline[0].exchange.fill_resting", "write true"),
    ("  - at: 0s\n    control: {kill_switch: on, mode: x}\n",
     6, "timeline[0].control.mode", "unknown key"),
    ("  - at: 0s\n    end: false\n", 6, "timeline[0].end", "not valid"),
    ("  - at: 0s\n    crash: {when: now}\n", 6, "timeline[0].crash.when", "unknown key"),
    ("  - at: 0s\n    quote: {symbol: BTCUSDT, bid: '1', ask: '2'}\n    end: true\n",
     5, "timeline[0]", "exactly one of"),
    ("  - quote: {symbol: BTCUSDT, bid: '1', ask: '2'}\n", 5, "timeline[0].at",
     "required key is missing"),
    ("  - 5s\n", 5, "timeline[0]", "must be a mapping"),
])
def test_bad_timeline_entry_names_file_line_key(tmp_path, timeline, line, key, why):
    msg = errors(tmp_path, HEAD + timeline)
    assert f"x.yaml:{line}: {key}: " in msg, msg
    assert why in msg, msg


@pytest.mark.parametrize("text, line, key, why", [
    ("nam: t\n", 1, "nam", "unknown key"),
    ("seed: -1\n", 1, "seed", "must be >= 0"),
    ("seed: 1.5\n", 1, "seed", "not valid"),
    ("symbols: [BTCUSDT, BTCUSDT]\n", 1, "symbols", "listed twice"),
    ("config: {risk: {max_order_size: -5}}\n", 1, "config.risk.max_order_size",
     "-5 is not valid: must be > 0"),
    ("config:\n  risk:\n    max_ordr_size: 5\n", 3, "config.risk.max_ordr_size", "unknown key"),
    ("config:\n  reconciler: {poll_s: 0}\n", 2, "config.reconciler.poll_s", "must be > 0"),
    ("exchange: {latency_ms: 5, cancel_ack_dela_ms: 3000}\n", 1,
     "exchange.cancel_ack_dela_ms", "unknown key"),
    ("exchange: {latency_ms: -5}\n", 1, "exchange.latency_ms", "must be >= 0"),
    ("exchange: {reject_next: 1}\n", 1, "exchange.reject_next", "one-shot fault"),
    ("expect:\n  positions: {BTCUSDT: '0'}\n  positons: {}\n", 3, "expect.positons",
     "unknown key"),
    ("expect:\n  max_exit_qty: {BTCUSDT: '-1'}\n", 2, "expect.max_exit_qty.BTCUSDT",
     "must be >= 0"),
    ("expect:\n  orders: {filled: -1}\n", 2, "expect.orders.filled.min", "must be >= 0"),
    ("expect:\n  orders: {filed: 1}\n", 2, "expect.orders.filed", "unknown key"),
    ("expect:\n  risk_rejected: {positions_unavailable: {min: 3, max: 1}}\n", 2,
     "expect.risk_rejected.positions_unavailable.max", "below min"),
    ("expect:\n  no_invariant_violations: false\n", 2, "expect.no_invariant_violations",
     "not valid"),
])
def test_bad_top_level_names_file_line_key(tmp_path, text, line, key, why):
    body = "symbols: [BTCUSDT]\ntimeline:\n  - at: 0s\n    end: true\n"
    if text.startswith("symbols"):
        body = "timeline:\n  - at: 0s\n    end: true\n"
    msg = errors(tmp_path, text + body)
    assert f"x.yaml:{line}: {key}: " in msg, msg
    assert why in msg, msg


def test_required_parts(tmp_path):
    msg = errors(tmp_path, "name: t\n")
    assert "x.yaml:1: symbols: required key is missing" in msg
    assert "x.yaml:1: timeline: required key is missing" in msg
    msg = errors(tmp_path, "symbols: [BTCUSDT]\ntimeline: []\n")
    assert "x.yaml:2: timeline: " in msg and "at least 1" in msg


def test_all_mistakes_are_listed_in_one_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_scenario(write(tmp_path, """\
            seed: -1
            config: {risk: {nope: 1}}
            symbols: [BTCUSDT]
            timeline:
              - at: 1
                end: true
            expect: {orderz: 1}
        """))
    assert [(i.line, i.path) for i in info.value.issues] == [
        (1, "seed"), (2, "config.risk.nope"), (5, "timeline[0].at"), (7, "expect.orderz")]


def test_expect_counts_are_normalised(tmp_path):
    sc = load_scenario(write(tmp_path, HEAD + textwrap.dedent("""\
          - at: 0s
            end: true
        expect:
          orders: {submitted: 2, rejected: {min: 1}}
          risk_rejected: {positions_unavailable: 1}
          no_invariant_violations: true
          kill_switch: true
    """)))
    assert sc.expect["orders"] == {"submitted": {"min": 2, "max": 2},
                                   "rejected": {"min": 1, "max": None}}
    assert sc.expect["orders"]["rejected"] == {"min": 1, "max": None}
    assert sc.expect["risk_rejected"] == {"positions_unavailable": {"min": 1, "max": 1}}
    assert sc.expect["no_invariant_violations"] is True and sc.expect["kill_switch"] is True


# -- sequence rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("timeline, line, why", [
    ("  - at: 1s\n    restart: true\n", 5, "restart without an earlier crash"),
    ("  - at: 1s\n    crash: true\n", 5, "crash without a later restart"),
    ("  - at: 1s\n    crash: true\n  - at: 2s\n    crash: true\n  - at: 3s\n    restart: true\n",
     7, "already down"),
    ("  - at: 1s\n    end: true\n  - at: 2s\n    control: {kill_switch: on}\n", 7,
     "after the end entry"),
    ("  - at: 1s\n    end: true\n  - at: 1s\n    end: true\n", 7, "after the end entry"),
    ("  - at: 1s\n    crash: true\n  - at: 2s\n    signal: {symbol: BTCUSDT, side: buy, qty: 1}\n"
     "  - at: 3s\n    restart: true\n", 7, "only quote, bar and exchange entries apply"),
    ("  - at: 1s\n    crash: true\n  - at: 2s\n    control: {kill_switch: on}\n"
     "  - at: 3s\n    restart: true\n", 7, "the runtime is down (crash on line 5)"),
])
def test_sequence_errors(tmp_path, timeline, line, why):
    msg = errors(tmp_path, HEAD + timeline)
    assert f"x.yaml:{line}: timeline[" in msg and why in msg, msg


def test_exchange_entries_may_come_while_the_runtime_is_down(tmp_path):
    timeline = entries(tmp_path, "  - at: 1s\n    crash: true\n"
                                 "  - at: 2s\n    quote: {symbol: BTCUSDT, bid: 1, ask: 2}\n"
                                 "  - at: 2s\n    exchange: {drop_stream: true}\n"
                                 "  - at: 3s\n    restart: true\n")
    assert [e.kind for e in timeline] == ["crash", "quote", "exchange", "restart"]


def test_entries_written_after_end_but_earlier_in_time_are_fine(tmp_path):
    timeline = entries(tmp_path, "  - at: 30s\n    end: true\n  - at: 1s\n    crash: true\n"
                                 "  - at: 2s\n    restart: true\n")
    assert [e.kind for e in timeline] == ["crash", "restart", "end"]


# -- extension -----------------------------------------------------------------------------------


class FreezeBook(Spec):
    seconds: int = 1


def test_exchange_keys_can_be_extended(tmp_path):
    # a new key is checked here and by the exchange's parser alike (one registry)
    text = HEAD + "  - at: 0s\n    exchange: {freeze_book: {seconds: 2}}\n"
    assert "exchange.freeze_book: unknown key" in errors(tmp_path, text)
    EXCHANGE_KEYS.register("freeze_book", flag(FreezeBook), group=FAULT)
    try:
        (entry,) = entries(tmp_path, "  - at: 0s\n    exchange: {freeze_book: {seconds: 2}}\n")
        assert entry.event.spec == {"freeze_book": {"seconds": 2}}
        assert "freeze_book.secs: unknown key" in errors(
            tmp_path, HEAD + "  - at: 0s\n    exchange: {freeze_book: {secs: 2}}\n")
        with pytest.raises(KeyError):
            EXCHANGE_KEYS.register("freeze_book", bool)
    finally:
        EXCHANGE_KEYS.unregister("freeze_book")
    assert "freeze_book" not in EXCHANGE_KEYS


def test_registry_rejects_unknown_keys_and_keeps_order():
    reg = KeyRegistry("demo", {"b": int, "a": int, "json": int})
    assert reg.validate({"b": 1, "a": 2}) == {"b": 1, "a": 2}
    assert list(reg.validate({"b": 1, "a": 2})) == ["b", "a"]
    assert reg.validate({"json": 3}) == {"json": 3}
    with pytest.raises(ValidationError):
        reg.validate({"k0": 1})  # internal field names are not keys


def test_signal_exit_plan_fields(tmp_path):
    [entry] = [e for e in entries(tmp_path, """\
        - at: 1s
          signal: {symbol: BTCUSDT, side: buy, qty: "2", stop_loss: "95", take_profit: "105",
                   trailing_stop: {percent: "1.5"}, time_limit: 90s}
        - at: 2s
          end: true
        """) if isinstance(e.event, SignalEvent)]
    ev = entry.event
    assert (ev.stop_loss, ev.take_profit, ev.trailing_distance, ev.trailing_percent,
            ev.time_limit_s) == (Decimal("95"), Decimal("105"), None, Decimal("1.5"), 90.0)


@pytest.mark.parametrize("signal, key, why", [
    ("trailing_stop: {distance: '1', percent: '2'}", "trailing_stop.distance", "exactly one"),
    ("trailing_stop: {}", "trailing_stop.distance", "exactly one"),
    ("trailing_stop: {percent: '100'}", "trailing_stop.percent", "must be < 100"),
    ("take_profit: '-1'", "take_profit", "must be > 0"),
    ("time_limit: 0s", "time_limit", "must be > 0"),
    ("take_proft: '1'", "take_proft", "unknown key"),
])
def test_bad_signal_exit_plan_names_file_line_key(tmp_path, signal, key, why):
    timeline = ("  - at: 0s\n    signal: {symbol: BTCUSDT, side: buy, qty: '1', "
                + signal + "}\n")
    msg = errors(tmp_path, HEAD + timeline)
    assert f"x.yaml:6: timeline[0].signal.{key}" in msg, msg
    assert why in msg, msg
