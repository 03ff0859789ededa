"""Alerts actor and sinks (DESIGN rules 5 and 17; secrets).

Webhook and Telegram sinks are tested against a real HTTP server on
127.0.0.1 (port 0, in a thread). Actors run in virtual time: retries and
readiness polls are timers, driven with ``advance``; nothing sleeps.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import deque
from datetime import datetime, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from loguru import logger

from app.alert_sinks import LogSink, TelegramSink, WebhookSink, sinks_from_config
from actors.alerts import Sink, SinkError
from actors.alerts import AlertsActor
from messages import Alert, MessageError, SinkReady
from messages.codec import CodecError, decode, encode, from_wire, to_wire
from runtime import Actor, Backoff, ChildSpec, handles

CANARY = "CANARY-TOKEN-123"
TOKEN_ENV, CHAT_ENV = "TW_TEST_TG_TOKEN", "TW_TEST_TG_CHAT"
TS = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
FAST = Backoff(base_s=1.0, max_s=4.0, jitter="none")


def alert(title="kill switch engaged", severity="critical", **kw):
    return Alert(severity, title, kw.pop("text", "daily loss limit reached"), TS,
                 kw.pop("source", "coordinator"), **kw)


# -- a real local HTTP server ----------------------------------------------------


class Server:
    """Records POSTs; answers with queued statuses (then 200); can stall on a gate."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.statuses: deque[int] = deque()
        self.reply_body = b'{"ok": true}'
        self.echo_path_on_error = False
        self.gate: threading.Event | None = None
        self.cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.cond:
                    server.requests.append((self.path, body))
                    status = server.statuses.popleft() if server.statuses else 200
                    server.cond.notify_all()
                if server.gate is not None:
                    server.gate.wait(5)
                reply = server.reply_body
                if status >= 300 and server.echo_path_on_error:
                    reply = f"no bot behind {self.path}".encode()  # a hostile echo of the token
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):  # the default prints the path (with the token)
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="test-http", daemon=True)
        self.thread.start()

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= n, timeout), self.requests
            return list(self.requests)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def log_lines():
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="TRACE", diagnose=True,
                         backtrace=True, format="{level} | {message} | {extra}")
    yield lines
    logger.remove(handler)


class ListSink(Sink):
    """In-memory sink; fails its first ``fail_times`` sends; records attempt times."""

    kind = "list"

    def __init__(self, name="list", fail_times=0, **kw):
        super().__init__(name, **kw)
        self.got: list[Alert] = []
        self.fail_times = fail_times
        self.attempts: list[float] = []
        self.clock = None

    def send(self, a):
        self.attempts.append(self.clock.monotonic() if self.clock else 0.0)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise SinkError(f"{self.name}: down")
        self.got.append(a)


def start(harness_factory, *sinks, **kw):
    h = harness_factory(ChildSpec("alerts", AlertsActor,
                                  kwargs={"sinks": list(sinks), "backoff": FAST, **kw}))
    for s in sinks:
        if isinstance(s, ListSink):
            s.clock = h.clock
    return h


def sink_figures(h, name):
    return h.actor("alerts").figures()["sinks"][name]


# -- messages --------------------------------------------------------------------


def test_alert_messages_validate_and_round_trip_through_codec():
    a = alert(dedup_key="kill:acct1")
    assert decode(encode(a)) == a
    assert decode(encode(SinkReady("telegram"))) == SinkReady("telegram")
    with pytest.raises(MessageError, match="severity"):
        alert(severity="panic")
    with pytest.raises(MessageError, match="timezone-aware"):
        Alert("info", "t", "x", datetime(2026, 1, 5), "src")  # noqa: DTZ001 - naive on purpose: refused
    with pytest.raises(MessageError, match="title"):
        alert(title="")
    with pytest.raises(MessageError, match="sink"):
        SinkReady("")
    wire = to_wire(a)
    wire["f"]["severity"] = "loud"
    with pytest.raises(CodecError, match="severity"):
        from_wire(wire)


# -- webhook ---------------------------------------------------------------------


def test_webhook_receives_the_alert_as_json(harness_factory, server):
    h = start(harness_factory, WebhookSink(server.url + "/hook", timeout_s=3))
    h.tell("alerts", alert(dedup_key="kill:acct1"))
    (path, body), = server.wait_requests(1)
    assert path == "/hook"
    assert body == {"type": "tradewarden.alert", "severity": "critical",
                    "title": "kill switch engaged", "text": "daily loss limit reached",
                    "ts": "2026-01-05T14:30:00+00:00", "source": "coordinator",
                    "dedup_key": "kill:acct1"}
    f = h.actor("alerts").figures()
    assert (f["sent"], f["failed"], f["pending"], f["dropped"]) == (1, 0, 0, 0)


def test_webhook_500_is_retried_with_backoff_and_delivered_once_in_order(harness_factory, server):
    server.statuses.extend([500])
    h = start(harness_factory, WebhookSink(server.url + "/hook"))
    h.tell("alerts", alert("first"))
    server.wait_requests(1)
    fig = sink_figures(h, "webhook")
    assert (fig["failed"], fig["pending"], fig["retrying"]) == (1, 1, True)
    assert "HTTP 500" in fig["last_error"]
    h.tell("alerts", alert("second"))        # queues behind the failed head
    h.advance(0.9)                           # backoff is 1 s: nothing yet
    assert len(server.requests) == 1
    h.advance(0.2)
    titles = [b["title"] for _, b in server.wait_requests(3)]
    assert titles == ["first", "first", "second"]
    h.advance(120)                           # no stray retry later
    assert len(server.requests) == 3
    fig = sink_figures(h, "webhook")
    assert (fig["sent"], fig["failed"], fig["pending"], fig["last_error"]) == (2, 1, 0, None)


def test_permanent_http_error_rejects_one_alert_and_keeps_going(harness_factory, server, log_lines):
    server.statuses.extend([400])
    h = start(harness_factory, WebhookSink(server.url))
    h.tell("alerts", alert("malformed"))
    h.tell("alerts", alert("fine"))
    assert [b["title"] for _, b in server.wait_requests(2)] == ["malformed", "fine"]
    fig = sink_figures(h, "webhook")
    assert (fig["rejected"], fig["sent"], fig["failed"], fig["pending"]) == (1, 1, 0, 0)
    assert any("rejected" in line and "malformed" in line for line in log_lines)


def test_failing_sink_backs_off_exponentially_on_the_timer(harness_factory):
    sink = ListSink(fail_times=4)
    h = start(harness_factory, sink)
    h.tell("alerts", alert())
    h.advance(60)
    gaps = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 4.0]      # bounded by max_s
    assert len(sink.got) == 1 and sink_figures(h, "list")["failed"] == 4


def test_sender_never_blocks_while_a_sink_stalls(harness_factory, server):
    class Ping(Actor):
        @handles(threading.Event)
        def on_event(self, ev):
            ev.set()

    server.gate = threading.Event()
    h = harness_factory(ChildSpec("alerts", AlertsActor,
                                  kwargs={"sinks": [WebhookSink(server.url, timeout_s=3)]}),
                        ChildSpec("coordinator", Ping))
    t0 = time.monotonic()
    h.system.tell("alerts", alert())         # what the coordinator does
    assert time.monotonic() - t0 < 0.5
    server.wait_requests(1)                  # the alerts actor is now inside the POST
    pong = threading.Event()
    h.system.tell("coordinator", pong)
    assert pong.wait(2), "another actor was blocked by a stalled sink"
    server.gate.set()
    h.settle()
    assert sink_figures(h, "webhook")["sent"] == 1


# -- readiness -------------------------------------------------------------------


def test_alerts_before_sink_ready_are_delivered_in_order_after_sink_ready(harness_factory, server):
    h = start(harness_factory, WebhookSink(server.url, wait_for_ready=True), LogSink())
    for i in range(3):
        h.tell("alerts", alert(f"a{i}"))
    h.advance(30)
    assert server.requests == []
    fig = sink_figures(h, "webhook")
    assert (fig["ready"], fig["pending"], fig["not_ready_reason"]) == (False, 3, "waiting for SinkReady")
    assert sink_figures(h, "log")["sent"] == 3  # other sinks are not held back
    h.tell("alerts", SinkReady("webhook"))
    assert [b["title"] for _, b in server.wait_requests(3)] == ["a0", "a1", "a2"]
    assert sink_figures(h, "webhook")["pending"] == 0
    h.tell("alerts", SinkReady("nope"))
    assert h.actor("alerts").figures()["unknown_ready"] == 1


def test_telegram_missing_env_is_not_ready_by_name_then_delivers_when_set(
        harness_factory, server, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(CHAT_ENV, raising=False)
    sink = TelegramSink(TOKEN_ENV, CHAT_ENV, api_base=server.url)
    assert sink.ready_reason() == f"environment variable {TOKEN_ENV} and {CHAT_ENV} not set"
    h = start(harness_factory, sink, ready_poll_s=5.0)
    h.tell("alerts", alert())
    fig = sink_figures(h, "telegram")
    assert fig["ready"] is False and TOKEN_ENV in fig["not_ready_reason"]
    monkeypatch.setenv(CHAT_ENV, "4242")
    h.advance(5)
    assert sink_figures(h, "telegram")["not_ready_reason"] == f"environment variable {TOKEN_ENV} not set"
    assert "4242" not in sink_figures(h, "telegram")["not_ready_reason"]
    monkeypatch.setenv(TOKEN_ENV, CANARY)
    assert server.requests == []
    h.advance(5)
    (path, body), = server.wait_requests(1)
    assert path == f"/bot{CANARY}/sendMessage" and body["chat_id"] == "4242"
    assert body["text"].startswith("[CRITICAL] kill switch engaged\n")
    assert sink_figures(h, "telegram")["sent"] == 1


# -- secrets ---------------------------------------------------------------------


def test_telegram_token_never_leaks_to_logs_errors_or_introspection(
        harness_factory, server, monkeypatch, log_lines):
    monkeypatch.setenv(TOKEN_ENV, CANARY)
    monkeypatch.setenv(CHAT_ENV, "4242")
    server.statuses.extend([500])
    server.echo_path_on_error = True
    sink = TelegramSink(TOKEN_ENV, CHAT_ENV, api_base=server.url)
    h = start(harness_factory, sink)
    h.tell("alerts", alert())
    fig_failed = json.dumps(h.actor("alerts").figures())
    h.advance(5)
    paths = [p for p, _ in server.wait_requests(2)]
    assert paths == [f"/bot{CANARY}/sendMessage"] * 2   # the request does use the token
    assert sink_figures(h, "telegram")["sent"] == 1
    assert "HTTP 500" in fig_failed and "no bot behind /bot***/sendMessage" in fig_failed

    # Direct sends that fail three ways: HTTP error echoing the path, refused
    # connection, and a token that makes http.client quote the URL back.
    errors = []
    server.statuses.extend([500])
    for token, base in ((CANARY, server.url), (CANARY, "http://127.0.0.1:9"),
                        (CANARY + " x", server.url)):
        monkeypatch.setenv(TOKEN_ENV, token)
        with pytest.raises(SinkError) as info:
            TelegramSink(TOKEN_ENV, CHAT_ENV, api_base=base, timeout_s=2).send(alert())
        exc = info.value
        assert exc.__context__ is None and exc.__cause__ is None
        errors.append("".join(traceback.format_exception(exc)) + repr(exc))
    assert "HTTP 500" in errors[0] and "Connection" in errors[1] and "InvalidURL" in errors[2]

    h.tell("alerts", SinkReady("telegram"))
    exposed = {
        "logs": "\n".join(log_lines),
        "errors": "\n".join(errors),
        "figures": json.dumps(h.actor("alerts").figures()),
        "snapshot": json.dumps(h.snapshot(peek=10), default=str),
        "repr": repr(sink) + repr(vars(sink)) + repr(h.actor("alerts")._sinks),
        "dead_letters": json.dumps(h.dead_letters.snapshot(), default=str),
    }
    assert exposed["logs"]  # the capture did see the failure lines
    for where, text in exposed.items():
        assert CANARY not in text, f"token leaked into {where}"


def test_webhook_url_secret_path_is_hidden(server):
    sink = WebhookSink(server.url + "/services/T0/B0/SECRETPATH", timeout_s=2)
    assert "SECRETPATH" not in repr(sink)
    server.statuses.extend([503])
    server.echo_path_on_error = True
    with pytest.raises(SinkError) as info:
        sink.send(alert())
    assert "HTTP 503" in str(info.value) and "SECRETPATH" not in str(info.value)


def test_webhook_url_from_env_is_read_at_send_and_never_shown(harness_factory, server,
                                                               monkeypatch, log_lines):
    monkeypatch.delenv("TW_TEST_HOOK_URL", raising=False)
    sink = WebhookSink(url_env="TW_TEST_HOOK_URL", timeout_s=2)
    h = start(harness_factory, sink)
    h.tell("alerts", alert())
    assert sink_figures(h, "webhook")["not_ready_reason"] == "environment variable TW_TEST_HOOK_URL not set"
    monkeypatch.setenv("TW_TEST_HOOK_URL", server.url + "/hooks/SECRETPATH")
    server.statuses.extend([502])
    server.echo_path_on_error = True
    h.advance(5)                             # readiness poll, a failure, then the retry
    h.advance(5)
    assert [p for p, _ in server.wait_requests(2)] == ["/hooks/SECRETPATH"] * 2
    assert sink_figures(h, "webhook")["sent"] == 1
    shown = repr(sink) + "\n".join(log_lines) + json.dumps(h.snapshot(peek=5), default=str)
    assert "HTTP 502" in "\n".join(log_lines) and "SECRETPATH" not in shown
    with pytest.raises(ValueError, match="not both"):
        WebhookSink(server.url, url_env="X")


# -- bounds, dedup, log sink, config ---------------------------------------------


def test_bounded_queue_drops_oldest_with_a_count_and_a_warning(harness_factory, log_lines):
    sink = ListSink(wait_for_ready=True)
    h = start(harness_factory, sink, max_pending=5)
    for i in range(8):
        h.tell("alerts", alert(f"a{i}"))
    fig = sink_figures(h, "list")
    assert (fig["pending"], fig["dropped"]) == (5, 3)
    assert h.actor("alerts").figures()["dropped"] == 3
    drops = [line for line in log_lines if "dropped oldest" in line]
    assert len(drops) == 3 and "'a0'" in drops[0] and drops[0].startswith("WARNING")
    h.tell("alerts", SinkReady("list"))
    assert [a.title for a in sink.got] == ["a3", "a4", "a5", "a6", "a7"]


def test_duplicate_alerts_within_window_are_counted_and_suppressed(harness_factory):
    sink = ListSink()
    h = start(harness_factory, sink, dedup_window_s=60)
    h.tell("alerts", alert(dedup_key="kill"))
    h.tell("alerts", alert(dedup_key="kill"))
    h.tell("alerts", alert(dedup_key=None))
    h.advance(61)
    h.tell("alerts", alert(dedup_key="kill"))
    assert len(sink.got) == 3
    assert h.actor("alerts").figures()["deduplicated"] == 1


def test_large_backlog_is_sent_in_batches_in_order(harness_factory):
    sink = ListSink(wait_for_ready=True)
    h = start(harness_factory, sink, batch=7)
    for i in range(50):
        h.system.tell("alerts", alert(f"a{i}"))
    h.tell("alerts", SinkReady("list"))
    assert [a.title for a in sink.got] == [f"a{i}" for i in range(50)]


def test_log_sink_writes_the_alert_at_its_severity(harness_factory, log_lines):
    h = start(harness_factory, LogSink())
    h.tell("alerts", alert("halt", text="root supervisor failed"))
    h.tell("alerts", alert("slow fill", severity="warning"))
    assert any(l.startswith("CRITICAL") and "halt: root supervisor failed" in l for l in log_lines)
    assert any(l.startswith("WARNING") and "slow fill" in l for l in log_lines)
    assert sink_figures(h, "log")["sent"] == 2


def test_sinks_from_config_and_bad_entries():
    sinks = sinks_from_config([{"kind": "log"}, {"kind": "webhook", "url": "https://x.test/h"},
                               {"kind": "telegram", "bot_token_env": "A", "chat_id_env": "B"}])
    assert [s.name for s in sinks] == ["log", "webhook", "telegram"]
    with pytest.raises(ValueError, match=r"alerts.sinks\[0\].kind: 'pager'"):
        sinks_from_config([{"kind": "pager"}])
    with pytest.raises(ValueError, match=r"alerts.sinks\[0\] \(webhook\).*url"):
        sinks_from_config([{"kind": "webhook", "url": "ftp://x"}])
    with pytest.raises(ValueError, match="timeout_s"):
        WebhookSink("http://x.test", timeout_s=0)


def test_duplicate_sink_names_are_refused(harness_factory):
    h = harness_factory(ChildSpec("alerts", AlertsActor, kwargs={"sinks": [LogSink(), LogSink()]}))
    assert "duplicate sink name 'log'" in h.cell("alerts").last_failure["error"]


def test_alerts_still_pending_at_stop_are_logged_not_lost_silently(harness_factory, log_lines):
    h = start(harness_factory, ListSink(wait_for_ready=True))
    h.tell("alerts", alert("kill switch engaged"))
    h.system.shutdown()
    assert any("1 alert(s) not delivered to list at stop" in line
               and "kill switch engaged" in line for line in log_lines)
