"""The control endpoint (``/metrics``, ``/actors``, ``/healthz``) and ``inspect``.

``/metrics`` parses with the Prometheus text parser and carries every
metric; ``/actors`` matches the live system (a blocked actor's depth rises as
messages are injected); ``inspect`` against a running ``run`` shows every
actor and against nothing prints one line and exits 1; a non-loopback bind
without a token refuses to start; a canary secret never appears in what the
runtime serves or writes.

Actors are held with a ``threading.Event`` (``tests.rt_helpers.Gate``), never
by sleeping; the only polling is of a child process's output.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from messages.control import HedgeRequest, KillSwitch
from app.control import ControlError, ControlServer, from_config, parse_hostport
from app.metrics import METRIC_NAMES
from runtime.rolling import RollingSample
from runtime.supervisor import ChildSpec
from tests.rt_helpers import Block, Gate, Note
from tests.virtual_runtime import VirtualRuntime
from trading.audit import read_audit

ROOT = Path(__file__).resolve().parent.parent
CANARY_TOKEN = "canary-tok-7f3a9c1e5b"
CANARY_KEY = "canary-key-2d8e4b6a0f"


@dataclass(frozen=True)
class Creds:
    """A message carrying a secret, as a careless sender might write one."""

    api_key: str


def get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def vr(tmp_path):
    with VirtualRuntime(tmp_path / "run", ("BTCUSDT", "ETHUSDT"),
                        exchange={"latency_ms": 5}) as vr:
        vr.quote("BTCUSDT", "100.0", "100.1")
        vr.quote("ETHUSDT", "100.0", "100.1")
        vr.at(1.0)
        yield vr


# -- /metrics --------------------------------------------------------------------------------


def test_metrics_parse_and_carry_every_metric(vr) -> None:
    vr.signal("BTCUSDT", "buy", "1")
    vr.signal("DOGEUSDT", "buy", "1")           # rejected: unknown_symbol
    vr.system.tell("hedger", HedgeRequest("ETHUSDT", Decimal("-1"), "default", vr.clock.now(),
                                          "group-1"))
    vr.at(3.0)
    with ControlServer(vr.rt) as control:
        status, text = get(control.url + "/metrics")
    assert status == 200
    got = samples(text)
    for name in METRIC_NAMES:
        if name.endswith(("tick_to_signal_seconds", "hedge_lag_seconds")):
            for suffix in ("_bucket", "_count", "_sum"):
                assert name + suffix in got, name + suffix
        else:
            assert name in got, name
    ours = {n for n in got if not n.startswith(("process_", "python_"))}
    assert all(n.startswith("tradewarden_") for n in ours), sorted(ours)
    assert "process_resident_memory_bytes" in got and "python_info" in got
    assert not any(n.startswith("tradewarden_ws_") for n in got), "no socket in-process"
    assert "tradewarden_orders_blocked_by_invariant_total" not in got  # = netting_conflict
    assert got["tradewarden_exchange_connected"][0].value == 1.0
    limit = got["tradewarden_max_daily_loss"][0]
    assert limit.value > 0 and limit.labels == {"currency": "USDT"}
    rejects = {s.labels["reason"]: s.value for s in got["tradewarden_trade_rejects_total"]}
    assert rejects.get("unknown_symbol") == 1.0
    assert got["tradewarden_hedge_lag_seconds_count"][0].value >= 1.0
    # per symbol: orders, fills, positions and PnL (with its currency)
    sent = {s.labels["symbol"]: s.value for s in got["tradewarden_orders_submitted_total"]}
    fills = {s.labels["symbol"]: s.value for s in got["tradewarden_fills_total"]}
    pos = {s.labels["symbol"]: s.value for s in got["tradewarden_position"]}
    assert sent["BTCUSDT"] == 1.0 and fills["BTCUSDT"] >= 1.0 and pos["BTCUSDT"] == 1.0
    assert sent["ETHUSDT"] == 1.0 and pos["ETHUSDT"] == -1.0  # the hedge
    assert {s.labels["currency"] for s in got["tradewarden_unrealized_pnl"]} == {"USDT"}
    assert {s.labels["symbol"] for s in got["tradewarden_realized_pnl"]} >= {"BTCUSDT"}
    depth_actors = {s.labels["actor"] for s in got["tradewarden_actor_mailbox_depth"]}
    assert depth_actors == set(vr.system.directory.names()) | {"group-*"}
    processed = {s.labels["actor"]: s.value for s in got["tradewarden_actor_messages_total"]}
    assert processed["coordinator"] == vr.system.directory.get("coordinator").mailbox.processed


def test_group_actors_are_one_label_value_whose_counter_never_goes_down(harness_factory) -> None:
    """A run may start thousands of groups: their actors are folded into actor="group-*",
    and the folded message count keeps what retired group actors handled."""
    from tests.rt_helpers import Finish, Recorder

    def group(name: str) -> ChildSpec:
        return ChildSpec(name, Recorder, kwargs={"journal": None}, restart="temporary")

    h = harness_factory(group("group-a"), group("group-b"), ChildSpec("other", Gate))
    with ControlServer(h) as control:
        for name in ("group-a", "group-a", "group-b"):
            h.tell(name, Note("x"))
        first = samples(get(control.url + "/metrics")[1])
        h.tell("group-a", Finish())  # the group ends: its actor retires
        h.tell("group-b", Note("y"))
        second = samples(get(control.url + "/metrics")[1])
    msgs = [{s.labels["actor"]: s.value for s in snap["tradewarden_actor_messages_total"]}
            for snap in (first, second)]
    assert set(msgs[0]) == {"group-*", "other", "root"}
    assert msgs[0]["group-*"] == 3 and msgs[1]["group-*"] >= 4


def test_hedge_lag_histogram_keeps_counting_once_the_sample_window_is_full(vr) -> None:
    """The hedger keeps only its last N lags; the histogram must still count every
    hedge scraped in time (reading by window length stopped counting at N)."""
    vr.system.directory.get("hedger").actor.lags_ms = RollingSample(2)
    counts = []
    with ControlServer(vr.rt) as control:
        for i in range(1, 5):
            vr.system.tell("hedger", HedgeRequest("ETHUSDT", Decimal(-i), "default",
                                                  vr.clock.now(), "group-1"))
            vr.at(vr.now + 2.0)  # past the coalescing window: one order per request
            _, text = get(control.url + "/metrics")
            counts.append(samples(text)["tradewarden_hedge_lag_seconds_count"][0].value)
    assert counts == [1.0, 2.0, 3.0, 4.0]


def test_tick_to_signal_histogram_folds_each_sample_once(harness_factory) -> None:
    """The collector reads the symbol actors' latency ring at scrape time; a sample
    is counted once however often Prometheus scrapes."""
    import numpy as np

    from runtime import Actor

    class FakeSymbol(Actor):
        def __init__(self, ctx):
            super().__init__(ctx)
            self.ring = np.zeros(4)
            self.n = 0
            ctx.cell.info = {"signal_latency_us": {"n": 0}}

        def add(self, us):
            self.ring[self.n % 4] = us
            self.n += 1
            self.ctx.cell.info = {"signal_latency_us": {"n": self.n}}

        def signal_latencies_us(self):
            return self.ring[: min(self.n, 4)].copy()

    h = harness_factory(ChildSpec("symbol-X", FakeSymbol))
    actor = h.actor("symbol-X")
    with ControlServer(h) as control:
        for us in (100.0, 2000.0):
            actor.add(us)
        first = samples(get(control.url + "/metrics")[1])
        again = samples(get(control.url + "/metrics")[1])
        for us in (30.0, 40.0, 50.0, 60.0, 70.0):  # more than the ring holds
            actor.add(us)
        last = samples(get(control.url + "/metrics")[1])
    name = "tradewarden_tick_to_signal_seconds"
    assert first[name + "_count"][0].value == 2
    assert again[name + "_count"][0].value == 2
    assert first[name + "_sum"][0].value == pytest.approx(0.0021)
    # 5 new samples, the ring keeps 4: the oldest rolled out before the scrape
    assert last[name + "_count"][0].value == 6
    le = {s.labels["le"]: s.value for s in last[name + "_bucket"]}
    assert le["0.0001"] == 5 and le["+Inf"] == 6


# -- /actors -----------------------------------------------------------------------------------


def test_actors_shows_a_blocked_mailbox_filling_up(harness_factory) -> None:
    h = harness_factory(ChildSpec("gate", Gate), ChildSpec("other", Gate))
    gate, entered = threading.Event(), threading.Event()
    try:
        with ControlServer(h) as control:
            h.system.tell("gate", Block(gate, entered))
            assert entered.wait(5), "the gate actor did not start handling"
            depths = []
            for i in range(5):
                h.system.tell("gate", Note(f"n{i}"))
                snap = json.loads(get(control.url + "/actors")[1])
                depths.append(next(a for a in snap["actors"] if a["name"] == "gate")["depth"])
            h.system.tell("gate", Creds(api_key=CANARY_KEY))
            status, body = get(control.url + "/actors?peek=10")
            metrics = get(control.url + "/metrics")[1]
            gate.set()
            h.settle()
            after = json.loads(get(control.url + "/actors")[1])
    finally:
        gate.set()
    assert depths == [1, 2, 3, 4, 5]
    assert status == 200
    snap = json.loads(body)
    assert {a["name"] for a in snap["actors"]} == set(h.system.directory.names())
    g = next(a for a in snap["actors"] if a["name"] == "gate")
    assert g["depth"] == 6 and g["supervisor"] == "root" and g["state"] == "running"
    assert g["oldest_age_s"] >= 0
    assert [w["type"] for w in g["waiting"]] == ["Note"] * 5 + ["Creds"]
    assert "n0" in g["waiting"][0]["summary"]
    assert CANARY_KEY not in body and "***" in g["waiting"][-1]["summary"]
    assert CANARY_KEY not in metrics
    depth = {s.labels["actor"]: s.value
             for s in samples(metrics)["tradewarden_actor_mailbox_depth"]}
    assert depth["gate"] == 6 and depth["other"] == 0
    g2 = next(a for a in after["actors"] if a["name"] == "gate")
    assert g2["depth"] == 0 and g2["processed"] == 7 and g2["high_water"] >= 5
    assert "dead_letters" in after and "supervisors" in after


def test_stop_leaves_no_thread(harness_factory) -> None:
    h = harness_factory(ChildSpec("gate", Gate))
    before = {t.ident for t in threading.enumerate()}
    control = ControlServer(h).start()
    for _ in range(3):
        assert get(control.url + "/healthz")[0] in (200, 503)
    control.stop()
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert left == []
    with pytest.raises(OSError):
        urllib.request.urlopen(control.url + "/healthz", timeout=2)


# -- /healthz ---------------------------------------------------------------------------------


def test_readyz_reports_trading_state_connectivity_and_reconciliation(vr) -> None:
    """Readiness (DESIGN section 8): 503 while halted, disconnected or reconciling;
    liveness stays 200 meanwhile, since restarting the process would cure none of it."""
    with ControlServer(vr.rt) as control:
        status, body = get(control.url + "/readyz")
        h = json.loads(body)
        assert status == 200, h
        assert h["ok"] and h["trading_state"] == "ACTIVE"
        assert h["connectivity"]["connected"] is True
        assert h["reconciliation"]["last_reconciled"]
        vr.tell("coordinator", KillSwitch(True, "operator test", vr.clock.now()))
        status, body = get(control.url + "/readyz")
        h = json.loads(body)
        live_status, live = get(control.url + "/healthz")
    assert status == 503
    assert not h["ok"] and h["trading_state"] == "HALTED"
    assert any("HALTED" in r for r in h["reasons"])
    assert live_status == 200 and json.loads(live) == {"live": True, "state": "supervising"}


def test_readyz_is_503_while_the_stream_is_down(vr) -> None:
    with ControlServer(vr.rt) as control:
        vr.fault(drop_stream=True)
        status, body = get(control.url + "/readyz")
        assert get(control.url + "/healthz")[0] == 200
    h = json.loads(body)
    assert status == 503 and any("stream" in r for r in h["reasons"]), h


def test_healthz_is_503_once_the_root_supervisor_gave_up(harness_factory) -> None:
    from tests.rt_helpers import Boom, Recorder

    h = harness_factory(ChildSpec("w", Recorder, kwargs={"journal": None}),
                        intensity=1, period_s=60)
    with ControlServer(h) as control:
        assert get(control.url + "/healthz")[0] == 200
        for _ in range(2):  # the second crash within 60 s exceeds the root's intensity
            h.tell("w", Boom())
            h.advance(10)
        assert h.system.halted
        status, body = get(control.url + "/healthz")
        ready = get(control.url + "/readyz")[0]
    live = json.loads(body)
    assert status == 503 and live["live"] is False and "restart intensity" in live["reason"]
    assert ready == 503


def test_unknown_route_and_bad_peek(harness_factory) -> None:
    h = harness_factory(ChildSpec("gate", Gate))
    with ControlServer(h) as control:
        assert get(control.url + "/nope")[0] == 404
        assert get(control.url + "/actors?peek=x")[0] == 400


# -- tokens and addresses ------------------------------------------------------------------------


def test_token_is_required_when_configured(harness_factory) -> None:
    h = harness_factory(ChildSpec("gate", Gate))
    with ControlServer(h, token=CANARY_TOKEN) as control:
        assert CANARY_TOKEN not in repr(control)
        for path in ("/metrics", "/actors", "/healthz"):
            assert get(control.url + path)[0] == 401
            assert get(control.url + path, "wrong")[0] == 401
        assert get(control.url + "/actors", CANARY_TOKEN)[0] == 200
        status, text = get(control.url + "/metrics", CANARY_TOKEN)
    assert status == 200 and CANARY_TOKEN not in text


def test_token_is_read_from_the_named_environment_variable(harness_factory) -> None:
    from config.schema import ControlConfig

    h = harness_factory(ChildSpec("gate", Gate))
    cfg = ControlConfig(host="127.0.0.1", port=0, token_env="TW_TEST_CONTROL_TOKEN")
    control = from_config(h, cfg, environ={"TW_TEST_CONTROL_TOKEN": CANARY_TOKEN})
    with control:
        assert get(control.url + "/actors")[0] == 401
        assert get(control.url + "/actors", CANARY_TOKEN)[0] == 200
    assert from_config(h, cfg, "off") is None


def test_non_loopback_without_token_refuses_to_start(harness_factory, tmp_path) -> None:
    h = harness_factory(ChildSpec("gate", Gate))
    with pytest.raises(ControlError):
        ControlServer(h, "0.0.0.0", 0)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "run", "--control",
                           "0.0.0.0:0", "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "token" in proc.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_hostport(":9000") == ("127.0.0.1", 9000)
    assert parse_hostport("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ControlError):
        parse_hostport("localhost:http")


# -- inspect ----------------------------------------------------------------------------------


def test_inspect_against_nothing_is_one_line_and_exit_1() -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", "--control",
                           f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing is listening" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_inspect_shows_every_actor(vr, capsys) -> None:
    from rich.console import Console

    from app.inspect_cli import main as inspect_main

    names = set(vr.system.directory.names())
    with ControlServer(vr.rt) as control:
        address = f"{control.host}:{control.port}"
        assert inspect_main(address, as_json=True) == 0
        snap = json.loads(capsys.readouterr().out)
        console = Console(record=True, width=220)
        assert inspect_main(address, peek=2, console=console) == 0
    assert {a["name"] for a in snap["actors"]} == names
    text = console.export_text()
    for name in names:
        assert name in text
    assert "dead letters" in text
    assert "trading: ACTIVE" in text and "kill switch: off" in text


def test_inspect_shows_the_kill_switch_state_reason_and_since(vr) -> None:
    from rich.console import Console

    from app.inspect_cli import main as inspect_main

    engaged_at = vr.clock.now()
    vr.tell("coordinator", KillSwitch(True, "fat finger", engaged_at))
    with ControlServer(vr.rt) as control:
        console = Console(record=True, width=220)
        assert inspect_main(f"{control.host}:{control.port}", console=console) == 0
    text = console.export_text()
    assert "trading: HALTED" in text
    assert f"kill switch: ENGAGED since {engaged_at.isoformat()}: manual: fat finger" in text


def test_run_serves_control_and_keeps_the_canary_secret(tmp_path) -> None:
    """A real ``run`` with a token and an API key in its environment: ``inspect``
    sees every actor; neither secret appears in anything served or written."""
    cfg = tmp_path / "canary.yaml"
    cfg.write_text("market: {tick_interval_ms: 20, bar_interval_s: 0.5}\n"
                   "risk: {max_volatility: \"1\"}\n"
                   "control: {token_env: TW_TEST_CONTROL_TOKEN}\n"
                   "exchange: {api_key_env: TW_TEST_API_KEY}\n", encoding="utf-8")
    env = {**os.environ, "TW_TEST_CONTROL_TOKEN": CANARY_TOKEN, "TW_TEST_API_KEY": CANARY_KEY,
           "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--config", str(cfg),
                             "--duration", "5", "--out", str(out), "--control", "127.0.0.1:0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: list[str] = []
    try:
        url = None
        for line in proc.stdout:  # the child prints its endpoint once it is up
            seen.append(line)
            if "control endpoint:" in line:
                url = line.split("control endpoint:")[1].split()[0]
                break
        assert url, "".join(seen)
        assert get(url + "/actors")[0] == 401
        actors_body = get(url + "/actors?peek=5", CANARY_TOKEN)[1]
        metrics_body = get(url + "/metrics", CANARY_TOKEN)[1]
        health_body = get(url + "/healthz", CANARY_TOKEN)[1]
        insp = subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", "--config",
                               str(cfg), "--control", url.removeprefix("http://"), "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        rest_out, rest_err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest_err
    assert insp.returncode == 0, insp.stderr
    names = {a["name"] for a in json.loads(insp.stdout)["actors"]}
    expected = {"root", "persistence", "alerts", "venue", "gateway", "reconciler", "coordinator",
                "symbols", "market"} | {f"symbol-{s}" for s in
                                        json.loads((out / "summary.json").read_text())["symbols"]}
    assert expected <= names
    assert {a["name"] for a in json.loads(actors_body)["actors"]} >= expected
    samples(metrics_body)  # parses
    assert (out / "report.html").exists()
    written = [(out / f).read_text() for f in ("run.log", "summary.json", "report.html",
                                               "audit.jsonl")]
    for text in [actors_body, metrics_body, health_body, insp.stdout, insp.stderr,
                 "".join(seen), rest_out, rest_err, *written]:
        assert CANARY_TOKEN not in text and CANARY_KEY not in text


def test_kill_switch_command_engages_and_releases_through_the_endpoint(vr, capsys) -> None:
    from main import main as cli

    run_dir = vr.rt.spec.run_dir
    cfg = run_dir.parent / "runs-here.yaml"
    cfg.write_text(f"run: {{out_root: '{run_dir.parent}'}}\n", encoding="utf-8")
    with ControlServer(vr.rt) as control:
        control.advertise(run_dir)
        where = f"127.0.0.1:{control.port}"
        # the token comes from the run directory: named, or found by the endpoint it serves
        assert cli(["kill-switch", "on", "--reason", "desk says stop", "--run", str(run_dir)]) == 0
        vr.rt.system.wait_quiescent()
        assert vr.rt.info("coordinator")["trading_state"] == "HALTED"
        assert "desk says stop" in vr.rt.info("coordinator")["kill_reason"]
        assert cli(["kill-switch", "off", "--reason", "all clear", "--control", where,
                    "--config", str(cfg)]) == 0
        vr.rt.system.wait_quiescent()
        assert vr.rt.info("coordinator")["trading_state"] == "ACTIVE"
        token = (run_dir / "control.token").read_text().strip()
        req = urllib.request.Request(control.url + "/kill-switch", data=b'{"on": "yes"}',
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(req, timeout=5)
        assert bad.value.code == 400
    audit = [r for r in read_audit(vr.rt.spec.run_dir / "audit.jsonl") if r["kind"] == "kill_switch"]
    assert [r["reason"] for r in audit] == ["engaged", "released"]


def test_inspect_names_an_unset_token_variable_before_asking(tmp_path, monkeypatch,
                                                          capsys) -> None:
    """The endpoint refuses a request without its token; inspect says which variable
    is missing instead of sending one and reporting 'unauthorized'."""
    monkeypatch.delenv("TW_TEST_UNSET_TOKEN", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("control: {token_env: TW_TEST_UNSET_TOKEN}\n", encoding="utf-8")
    from app.inspect_cli import main as inspect_main

    assert inspect_main("127.0.0.1:9", config_path=str(cfg)) == 2
    err = capsys.readouterr().err
    assert "TW_TEST_UNSET_TOKEN" in err and "not set" in err


# -- cross-site requests -------------------------------------------------------------------------


def _request(control: ControlServer, method: str, path: str, *, host: str | None = None,
             headers: dict[str, str] | None = None, body: bytes = b"") -> int:
    """One request over a real socket with exactly these headers (Host included)."""
    conn = http.client.HTTPConnection("127.0.0.1", control.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host != "":  # "" sends none at all
            conn.putheader("Host", host if host is not None else f"127.0.0.1:{control.port}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_the_kill_switch_refuses_cross_site_requests(vr) -> None:
    """Mutating routes need the run's token (generated, 0600 in the run
    directory), a Host naming the endpoint, no browser origin and a JSON body:
    a web page cannot release the kill switch through the operator's browser."""
    run_dir = vr.rt.spec.run_dir
    vr.rt.system.tell("coordinator", KillSwitch(True, "desk", vr.rt.system.clock.now()))
    vr.rt.system.wait_quiescent()
    off = b'{"on": false, "reason": "released from a web page"}'
    with ControlServer(vr.rt) as control:
        control.advertise(run_dir)
        path = run_dir / "control.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert len(token) >= 32
        auth = {"Authorization": f"Bearer {token}"}
        json_auth = {**auth, "Content-Type": "application/json"}
        port = control.port
        refused = {
            "no token": (401, {"Content-Type": "application/json"}, None),
            "wrong token": (401, {"Content-Type": "application/json",
                                  "Authorization": "Bearer guess"}, None),
            "browser origin": (403, {**json_auth, "Origin": "http://evil.example"}, None),
            "fetch metadata": (403, {**json_auth, "Sec-Fetch-Site": "cross-site"}, None),
            "same-origin page": (403, {**json_auth, "Sec-Fetch-Site": "same-origin",
                                       "Sec-Fetch-Mode": "cors"}, None),
            "form": (415, {**auth, "Content-Type": "application/x-www-form-urlencoded"}, None),
            "multipart": (415, {**auth, "Content-Type": "multipart/form-data; boundary=x"}, None),
            "text": (415, {**auth, "Content-Type": "text/plain"}, None),
            "no type": (415, auth, None),
            "rebound host": (421, json_auth, f"evil.example:{port}"),
            "other port": (421, json_auth, f"127.0.0.1:{port + 1}"),
            "no host": (421, json_auth, ""),
        }
        for what, (status, headers, host) in refused.items():
            got = _request(control, "POST", "/kill-switch", host=host, headers=headers, body=off)
            assert got == status, what
        vr.rt.system.wait_quiescent()
        assert vr.rt.info("coordinator")["trading_state"] == "HALTED"  # nothing got through
        # reads: a rebound Host or a cross-site page is refused; a scraper is not
        assert _request(control, "GET", "/healthz", host=f"evil.example:{port}") == 421
        assert _request(control, "GET", "/actors", headers={"Sec-Fetch-Site": "cross-site"}) == 403
        assert _request(control, "GET", "/metrics") == 200
        assert _request(control, "GET", "/metrics", host=f"localhost:{port}") == 200
        # the operator's own request goes through (a loopback alias is the same endpoint)
        assert _request(control, "POST", "/kill-switch", host=f"localhost:{port}",
                        headers=json_auth, body=off) == 202
        vr.rt.system.wait_quiescent()
        assert vr.rt.info("coordinator")["trading_state"] == "ACTIVE"


def test_a_configured_token_is_the_write_token_and_is_not_written_to_disk(vr) -> None:
    with ControlServer(vr.rt, token=CANARY_TOKEN) as control:
        control.advertise(vr.rt.spec.run_dir)
        assert not (vr.rt.spec.run_dir / "control.token").exists()
        body = b'{"on": true, "reason": "x"}'
        ok = {"Authorization": f"Bearer {CANARY_TOKEN}", "Content-Type": "application/json"}
        assert _request(control, "POST", "/kill-switch", headers=ok, body=body) == 202


def test_transport_metrics_only_where_there_is_a_socket() -> None:
    from types import SimpleNamespace

    from app.metrics import WS_METRIC_NAMES, registry_for

    def names(url: str | None) -> set[str]:
        from prometheus_client import generate_latest

        target = SimpleNamespace(spec=SimpleNamespace(exchange_url=url), system=None)
        return set(samples(generate_latest(registry_for(target)).decode()))

    assert set(WS_METRIC_NAMES) <= names("ws://127.0.0.1:8766")
    assert not set(WS_METRIC_NAMES) & names(None)
