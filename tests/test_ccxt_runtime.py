"""The whole runtime through the ccxt adapter against the Binance face.

``main.py run --venue binanceusdm`` runs as a real process, with the real
ccxt, against the simulated engine behind Binance's API on loopback; the
safety invariants (app/invariants.py) are then checked from the
engine's own events.jsonl, the run's audit trail and its summary.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.binance_face.auth import ApiKey
from exchange.binance_face.server import BinanceFaceServer
from exchange.feed import RandomWalkFeed
from app.invariants import check_all
from tests.ccxt_face import KEY, events_jsonl, run_venue

pytestmark = pytest.mark.timeout(180)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
#: a demo strategy that trades within seconds on the face's random walk (short
#: warm-up, low entry threshold); volatility is not what these runs test
TRADE_LAYER = {"strategy": {"name": "demo", "params": {"warmup": 10, "entry_z": 0.5,
                                                       "cooldown_s": 1.0}},
               "risk": {"max_volatility": "1"}}


def _face(tmp: Path, keys: tuple[ApiKey, ...] = (KEY,), **kw: object) -> BinanceFaceServer:
    face = BinanceFaceServer(symbols=SYMBOLS, out_dir=tmp / "face", keys=keys,
                             feed=RandomWalkFeed(SYMBOLS, seed=3, step_bps=8.0),
                             feed_interval_s=0.1, **kw)  # type: ignore[arg-type]  # test settings passed through as given
    face.start()
    return face


def _check_run(tmp_path: Path, rc: int, output: str, run_dir: Path) -> dict:
    """The run's verdict and the invariants from the engine's own record."""
    assert rc == 0, output[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["invariant_violations"] == []
    copied = events_jsonl(run_dir)  # the face's record of this run, copied at the end
    assert any(e["kind"] == "order_filled" for e in copied), "the summary's checks had events"
    assert summary["exchange_positions"] is not None, "the venue's positions were compared"
    def held(p: dict) -> dict:
        return {s: Decimal(q) for s, q in p.items() if Decimal(q) != 0}

    assert held(summary["positions"]) == held(summary["exchange_positions"])
    # up to the run's end: its protective stops keep working at the venue after
    # it (as they should) and may fill once the run is over
    ended = summary["ended_at"]
    events = [e for e in events_jsonl(tmp_path / "face")
              if e.get("account") in (None, "default") and e["t"] <= ended]
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    submitted = [e for e in events if e["kind"] == "order_submitted"]
    fills = [e for e in events if e["kind"] == "order_filled"]
    assert submitted and fills, "the demo strategy traded through ccxt"
    exchange_positions: dict[str, Decimal] = {}
    for f in fills:
        sign = 1 if f["side"] == "buy" else -1
        exchange_positions[f["symbol"]] = exchange_positions.get(f["symbol"], Decimal(0)) \
            + sign * Decimal(str(f["qty"]))
    violations = check_all(events=events, audit=audit, positions=summary["positions"],
                           exchange_positions={s: q for s, q in exchange_positions.items()},
                           hedging_accounts=frozenset(), fail_closed=True, dead_letters=[])
    assert violations == [], violations
    approved = {r.get("client_order_id") for r in audit if r.get("approved")}
    assert {e["client_order_id"] for e in submitted} <= approved  # rule 1 through ccxt
    return {"summary": summary, "events": events, "submitted": submitted, "output": output}


def test_run_venue_against_the_face_holds_every_invariant(tmp_path: Path) -> None:
    face = _face(tmp_path)
    try:
        rc, output, run_dir = run_venue(tmp_path, face, key=KEY.key, secret=KEY.secret,
                                        duration=12, layer=TRADE_LAYER)
    finally:
        face.stop()
    got = _check_run(tmp_path, rc, output, run_dir)
    assert any(e.get("order_type") == "stop_limit" for e in got["submitted"]), \
        "stop-loss orders went out (Binance's algo service through ccxt)"


def test_run_venue_through_venue_faults_holds_every_invariant(tmp_path: Path) -> None:
    """While the run trades, the venue loses create-order answers (the orders
    are on the book), rate-limits with a 429 and repeats a fill report: the run
    still ends with every invariant held and its positions equal to the venue's."""
    import time

    face = _face(tmp_path)

    def count(kind: str) -> int:
        return sum(1 for e in events_jsonl(tmp_path / "face") if e["kind"] == kind)

    def wait(pred: object, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:  # type: ignore[operator]  # pred is a callable here
            time.sleep(0.1)

    def faults() -> None:
        wait(lambda: count("order_filled") >= 1)  # trading has started
        face.venue_fault({"lose_create_answer": 2})
        face.inject({"duplicate_fill": 2})
        wait(lambda: count("answer_lost") >= 2)
        face.venue_fault({"rate_limit": {"count": 1, "retry_after_s": 1}})

    try:
        layer = {**TRADE_LAYER, "risk": {**TRADE_LAYER["risk"],
                                         "circuit_breaker": {"cool_off_s": 2}}}
        rc, output, run_dir = run_venue(tmp_path, face, key=KEY.key, secret=KEY.secret,
                                        duration=20, during=faults, layer=layer)
    finally:
        face.stop()
    got = _check_run(tmp_path, rc, output, run_dir)
    ids = [e["client_order_id"] for e in got["submitted"]]
    assert len(ids) == len(set(ids)), "no order reached the venue twice"
    kinds = [e["kind"] for e in got["events"]]
    assert kinds.count("answer_lost") == 2 and "fill_duplicated" in kinds, kinds
    assert got["summary"]["orders"]["submitted"] >= len(ids)


def test_position_mode_mismatch_refuses_to_start(tmp_path: Path) -> None:
    """The face's account is one-way (netting); a run that says hedging for the
    account must not start, and must say what to change (exit 2)."""
    face = _face(tmp_path)
    try:
        rc, output, run_dir = run_venue(tmp_path, face, key=KEY.key, secret=KEY.secret,
                                        duration=2, layer={"risk": {"hedging_mode":
                                                                    {"default": True}}})
    finally:
        face.stop()
    assert rc == 2, output[-2000:]
    assert "one-way" in output and "risk.hedging_mode" in output and "Hedge" in output
    assert not (run_dir / "summary.json").exists()


def test_live_venue_needs_live_flag(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.ccxt_face import REPO

    cfg = tmp_path / "live.yaml"
    cfg.write_text("venues:\n  binanceusdm:\n    mode: live\n")
    r = subprocess.run([sys.executable, str(REPO / "main.py"), "run", "--venue", "binanceusdm",
                        "--config", str(cfg), "--out", str(tmp_path / "r"), "--control", "off"],
                       capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "--live" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, str(REPO / "main.py"), "run", "--venue", "nowhere",
                        "--out", str(tmp_path / "r2"), "--control", "off"],
                       capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "no such entry" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, str(REPO / "main.py"), "run", "--venue", "binanceusdm",
                        "--out", str(tmp_path / "r3"), "--control", "off"],
                       capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "TW_BINANCE_API_KEY" in r.stderr, r.stderr


def _until(pred: object, timeout: float = 20.0, what: str = "", info: object = None) -> None:
    """Wait for a live runtime talking to a real socket (bounded; polls its figures)."""
    import time

    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]  # pred is a callable here
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f": {info()}" if info is not None else ""))  # type: ignore[operator]  # info is a callable here
        time.sleep(0.02)


def _live_runtime(tmp_path: Path, face: BinanceFaceServer, monkeypatch: pytest.MonkeyPatch,
                  symbols: tuple[str, ...] = ("BTCUSDT",)) -> object:
    """The whole tree in this process on the live clock, trading at the face
    through the ccxt adapter, once connected, resynced and quoting."""
    from config import config_hash, load_config
    from runtime.clock import LiveClock
    from app.launcher import LaunchSpec, Runtime
    from exchange.ccxt_venue.venue_config import prepare_venue

    monkeypatch.setenv("TW_BINANCE_API_KEY", KEY.key)
    monkeypatch.setenv("TW_BINANCE_API_SECRET", KEY.secret)
    cfg = load_config(overrides={
        "strategy": {"name": "none"}, "market": {"symbols": list(symbols)},
        "risk": {"max_volatility": "1"},  # the face's random walk is not what is tested
        "venues": {"binanceusdm": {"base_url": f"http://127.0.0.1:{face.port}"}}})
    venue = prepare_venue(cfg, "binanceusdm", live=False)
    spec = LaunchSpec(cfg, tmp_path / "run", symbols, LiveClock(), run_id="live",
                      config_hash=config_hash(cfg), venue=venue.settings,
                      instrument_rules=venue.rules)
    rt = Runtime(spec).start()
    try:
        _until(lambda: _ready(rt, len(symbols)), what="connected, resynced, quoting")
    except BaseException:
        rt.stop()
        raise
    return rt


def _ready(rt: object, n_symbols: int) -> bool:
    gw = rt.info("gateway")  # type: ignore[attr-defined]  # rt is the runtime handle the helper was given
    return (not rt.info("coordinator").get("recovering")  # type: ignore[attr-defined]  # rt is the runtime handle the helper was given
            and gw.get("connected") and not gw.get("stream_reconciling")
            and gw.get("counts", {}).get("market_events", 0) >= n_symbols)


def test_duplicate_fill_report_through_ccxt_is_applied_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The venue reports one trade twice (same trade id): the adapter gives both
    reports the same fill id and the coordinator applies it once."""
    from messages import Side, Signal, utc_now

    face = _face(tmp_path)
    rt = None
    try:
        rt = _live_runtime(tmp_path, face, monkeypatch)
        runtime = rt
        face.inject({"duplicate_fill": 1})
        rt.system.tell("coordinator", Signal("BTCUSDT", Side.BUY, Decimal("2"), utc_now()))
        _until(lambda: runtime.info("coordinator").get("counts", {}).get("duplicate_fills", 0) >= 1,
               what="the repeated report", info=lambda: (runtime.info("coordinator"),
                                                          runtime.info("gateway")["counts"]))
        coord = rt.info("coordinator")
        assert coord["counts"]["fills"] == 1
        assert coord["positions"] == {"BTCUSDT": "2"}
        assert rt.info("gateway")["counts"]["OrderFilled"] == 2  # both reports arrived
    finally:
        if rt is not None:
            rt.stop()
        face.stop()


def test_stream_loss_reconnects_and_restores_subscriptions_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 12 through ccxt: the venue expires the listen key (its user stream
    ends); the gateway hears one StreamStatus down, the reconnect controller
    connects again, each tracked symbol is subscribed exactly once on the new
    session, the state is resynced, and orders flow again."""
    from messages import Side, Signal, utc_now

    face = _face(tmp_path)
    rt = None
    try:
        rt = _live_runtime(tmp_path, face, monkeypatch, symbols=("BTCUSDT", "ETHUSDT"))
        runtime = rt
        face.venue_fault({"expire_listen_keys": True})
        _until(lambda: runtime.info("gateway").get("counts", {}).get("connects", 0) >= 2
               and _ready(runtime, 2), timeout=30, what="reconnected and resynced")
        gw = rt.info("gateway")
        assert gw["counts"]["disconnects"] == 1
        assert gw["counts"]["subscription_restores"] == gw["counts"]["connects"] == 2
        assert sorted(gw["subscriptions"]) == ["BTCUSDT", "ETHUSDT"]
        rt.system.tell("coordinator", Signal("ETHUSDT", Side.BUY, Decimal("1"), utc_now()))
        _until(lambda: runtime.info("coordinator").get("counts", {}).get("fills", 0) >= 1,
               what="an order after the reconnect")
    finally:
        if rt is not None:
            rt.stop()
        face.stop()
    subs = [e for e in events_jsonl(tmp_path / "face") if e["kind"] == "subscribed"]
    streams = [s for e in subs for s in e["symbols"]]
    assert sorted(streams) == sorted(["btcusdt@bookTicker", "ethusdt@bookTicker"] * 2), streams
    assert all(not e.get("duplicates") for e in subs)
