"""The simulated exchange over real loopback WebSockets: server and adapter."""

from __future__ import annotations

import queue
import threading
import time
from datetime import datetime, UTC
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from websockets.sync.client import connect as sync_connect
from websockets.sync.server import serve as sync_serve

from exchange import read_events
from exchange.protocol import BrokerAdapter
from exchange.ws_client import WsClientAdapter
from exchange.ws_server import ExchangeServer, run_server
from messages import (
    ExchangeError,
    ExchangeFault,
    OrderAcked,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    PositionSnapshot,
    QueryPositions,
    Quote,
    Side,
    StreamStatus,
    Subscribe,
    SubmitOrder,
)
from messages.codec import EXT_DECIMAL, EXT_MESSAGE, _default, decode, encode, to_wire

pytestmark = pytest.mark.timeout(30)

D = Decimal
SYM = "BTCUSDT"
WAIT = 5.0


def now() -> datetime:
    return datetime.now(UTC)


def order(coid: str, side: str = "buy", otype: str = "market", qty: str = "1",
          price: str | None = None) -> SubmitOrder:
    return SubmitOrder(OrderRequest(coid, SYM, Side(side), OrderType(otype), D(qty), now(),
                                    price=D(price) if price else None))


class Collector:
    """The adapter's sink: a thread-safe queue the test reads with timeouts."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self.seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.q.put(event)

    def expect(self, cls: type, pred=lambda e: True, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {cls.__name__} within {timeout}s; saw {self.seen[-5:]}")
            try:
                event = self.q.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(event)
            if isinstance(event, cls) and pred(event):
                return event

    def nothing(self, within: float) -> None:
        """Assert that no event arrives within ``within`` seconds."""
        try:
            event = self.q.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected event {event!r}")


def up(e: Any) -> bool:
    return e.connected


def down(e: Any) -> bool:
    return not e.connected


@pytest.fixture
def server(tmp_path):
    srv = run_server(port=0, out_dir=tmp_path)
    srv.push(Quote(SYM, D("100"), D("100.1"), now()))
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    sink = Collector()
    adapter = WsClientAdapter(server.url, sink)
    adapter.connect()
    sink.expect(StreamStatus, up)
    yield adapter, sink
    adapter.close()


def test_submit_ack_round_trip(server, client, tmp_path):
    adapter, sink = client
    assert isinstance(adapter, BrokerAdapter) and adapter.connected
    adapter.send(Subscribe((SYM,)))
    assert sink.expect(Quote).ask == D("100.1")  # the current quote on subscribe
    adapter.send(order("c1", qty="2"))
    assert sink.expect(OrderAcked).client_order_id == "c1"
    fill = sink.expect(OrderFilled)
    assert (fill.price, fill.qty) == (D("100.1"), D("2"))
    kinds = [r["kind"] for r in read_events(tmp_path / "events.jsonl")]
    assert kinds.count("order_submitted") == 1 and kinds.count("order_filled") == 1


def test_server_restart_on_the_same_port_keeps_state(server, client, tmp_path):
    adapter, sink = client
    adapter.send(order("keep", qty="3"))
    sink.expect(OrderFilled)
    port, engine = server.port, server.engine
    server.stop()
    status = sink.expect(StreamStatus)
    assert not status.connected and not adapter.connected
    adapter.connect()  # the server is down: one failure report, no retry
    assert "connect failed" in sink.expect(StreamStatus).reason
    sink.nothing(0.2)
    again = ExchangeServer(engine, port=port, out_dir=tmp_path)
    assert again.start() == port
    try:
        adapter.connect()
        sink.expect(StreamStatus, up)
        adapter.send(QueryPositions("q1"))
        assert sink.expect(PositionSnapshot).as_dict() == {SYM: D("3")}
        adapter.send(order("keep", qty="3"))  # resubmitted after the crash
        assert sink.expect(OrderRejected).reason.startswith("duplicate_client_order_id:")
    finally:
        again.stop()
    recs = read_events(tmp_path / "events.jsonl")
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert [r["kind"] for r in recs].count("client_connected") == 2


def _nan_order_frame(coid: str, field: str, raw: bytes) -> bytes:
    """A SubmitOrder frame whose order carries an invalid Decimal."""
    inner = to_wire(order(coid).order)
    inner["f"][field] = msgpack.ExtType(EXT_DECIMAL, raw)
    inner_bytes = msgpack.packb(inner, default=_default, use_bin_type=True)
    return msgpack.packb({"v": 1, "t": "SubmitOrder",
                          "f": {"order": msgpack.ExtType(EXT_MESSAGE, inner_bytes)}},
                         use_bin_type=True)


def test_malformed_frames_get_an_error_back_and_the_server_keeps_going(server):
    with sync_connect(server.url) as ws:
        def ask(frame: Any) -> Any:
            ws.send(frame)
            return decode(ws.recv(timeout=WAIT))

        err = ask(b"\x00\xffnot msgpack at all")
        assert isinstance(err, ExchangeError) and err.code == "bad_frame"
        assert ask("a text frame").code == "bad_frame"
        assert "unknown message type" in ask(msgpack.packb({"v": 1, "t": "Nope", "f": {}})).reason
        nan = ask(_nan_order_frame("nan1", "qty", b"NaN"))
        assert isinstance(nan, OrderRejected) and nan.client_order_id == "nan1"
        assert nan.reason.startswith("malformed_order:") and "NaN" in nan.reason
        neg = ask(_nan_order_frame("neg1", "price", b"-5"))
        assert isinstance(neg, OrderRejected) and neg.client_order_id == "neg1"
        wrong = ask(encode(OrderAcked("x", "y", SYM, now())))
        assert wrong.code == "bad_command"
        assert isinstance(ask(encode(order("fine"))), OrderAcked)
    assert server.stats["bad_frames"] == 5 and server.stats["bad_commands"] == 1
    assert server.running


def test_adapter_counts_bad_frames_from_the_server():
    def handler(ws):
        ws.send(b"\xc1")
        ws.send("text")
        ws.send(encode(StreamStatus(True, "hello", now())))
        try:
            ws.recv()
        except Exception:  # noqa: BLE001 - the client closing is the end
            pass

    with sync_serve(handler, "127.0.0.1", 0) as fake:
        thread = threading.Thread(target=fake.serve_forever, daemon=True)
        thread.start()
        sink = Collector()
        adapter = WsClientAdapter(f"ws://127.0.0.1:{fake.socket.getsockname()[1]}", sink)
        adapter.connect()
        try:
            sink.expect(StreamStatus, lambda e: e.reason == "hello")
            errors = [e for e in sink.seen if isinstance(e, ExchangeError)]
            assert [e.code for e in errors] == ["bad_frame", "bad_frame"]
            assert adapter.bad_frames == 2 and adapter.connected
        finally:
            adapter.close()
            fake.shutdown()
        thread.join(WAIT)


def test_drop_stream_reports_once_and_reconnect_starts_a_fresh_session(server, client):
    adapter, sink = client
    adapter.send(Subscribe((SYM,)))
    sink.expect(Quote)
    server.inject({"drop_stream": True})
    status = sink.expect(StreamStatus)
    assert not status.connected and "connection lost" in status.reason
    assert not adapter.connected
    adapter.send(order("lost"))  # answered at once: the order never left
    rej = sink.q.get_nowait()
    assert isinstance(rej, OrderRejected) and rej.reason.startswith("not_connected:")
    sink.nothing(0.1)  # no retry inside the adapter
    adapter.connect()
    sink.expect(StreamStatus, up)
    server.push(Quote(SYM, D("101"), D("101.1"), now()))
    sink.nothing(0.2)  # the new session has no subscriptions yet
    adapter.send(Subscribe((SYM,)))
    assert sink.expect(Quote).bid == D("101")
    assert server.engine.stats["duplicate_subscriptions"] == 0


def test_stall_keeps_the_socket_and_stops_sending(server, client):
    adapter, sink = client
    server.inject({"stall_stream": True})
    adapter.send(order("s1"))
    sink.nothing(0.3)
    assert adapter.connected  # the socket is still open
    server.inject({"resume_stream": True})
    assert sink.expect(OrderAcked).client_order_id == "s1"
    t0 = time.monotonic()
    server.inject({"stall_stream": 0.3})
    adapter.send(order("s2"))
    sink.expect(OrderAcked)  # released when the stall ends by itself
    assert time.monotonic() - t0 >= 0.29


def test_watchdog_style_reconnect_escapes_a_stall(server, client):
    adapter, sink = client
    server.inject({"stall_stream": True})
    adapter.connect()  # replace the stalled connection
    assert sink.expect(StreamStatus).connected  # the superseded one reports nothing
    adapter.send(order("w1"))
    assert sink.expect(OrderAcked).client_order_id == "w1"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connect_failure_is_reported_once_without_retry():
    sink = Collector()
    adapter = WsClientAdapter(f"ws://127.0.0.1:{_free_port()}", sink)
    try:
        adapter.connect()
        adapter.send(order("x"))  # no connection: refused on the spot
        got = [sink.q.get(timeout=WAIT), sink.q.get(timeout=WAIT)]  # either order
        rej = next(e for e in got if isinstance(e, OrderRejected))
        assert rej.reason.startswith("not_connected:")
        status = next(e for e in got if isinstance(e, StreamStatus))
        assert not status.connected and "connect failed" in status.reason
        sink.nothing(0.2)  # one report, no retry
    finally:
        adapter.close()


def test_connect_returns_while_the_handshake_hangs():
    import socket

    with socket.socket() as mute:  # accepts TCP, never speaks WebSocket
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        sink = Collector()
        adapter = WsClientAdapter(f"ws://127.0.0.1:{mute.getsockname()[1]}", sink,
                                  open_timeout=0.5)
        try:
            t0 = time.perf_counter()
            adapter.connect()
            assert time.perf_counter() - t0 < 0.25  # did not wait for the handshake
            status = sink.expect(StreamStatus)
            assert not status.connected and "TimeoutError" in status.reason
            assert time.perf_counter() - t0 >= 0.45
        finally:
            adapter.close()


def test_latency_on_the_live_clock(tmp_path):
    srv = run_server(port=0, config={"latency_ms": 60})
    sink = Collector()
    adapter = WsClientAdapter(srv.url, sink)
    try:
        srv.push(Quote(SYM, D("100"), D("100.1"), now()))
        adapter.connect()
        sink.expect(StreamStatus, up)
        t0 = time.monotonic()
        adapter.send(order("slow"))
        sink.expect(OrderAcked)
        assert time.monotonic() - t0 >= 0.055
    finally:
        adapter.close()
        srv.stop()


def test_send_is_thread_safe(server, client, tmp_path):
    adapter, sink = client
    barrier = threading.Barrier(4)

    def burst(k: int) -> None:
        barrier.wait(WAIT)
        for i in range(50):
            adapter.send(order(f"t{k}-{i}"))

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    acked = {sink.expect(OrderAcked).client_order_id for _ in range(200)}
    assert len(acked) == 200
    submitted = [r for r in read_events(tmp_path / "events.jsonl")
                 if r["kind"] == "order_submitted"]
    assert len(submitted) == 200


def test_faults_and_market_data_over_the_wire(server, client):
    adapter, sink = client
    with sync_connect(server.url) as control:  # a scenario driver on its own socket
        control.send(encode(ExchangeFault({"reject_next": 1})))
        control.send(encode(ExchangeFault({"no_such_fault": 1})))
        err = decode(control.recv(timeout=WAIT))
        assert err.code == "bad_fault" and "no_such_fault" in err.reason
        adapter.send(order("r1"))
        assert sink.expect(OrderRejected).reason.startswith("injected_reject:")
        control.send(encode(Quote(SYM, D("90"), D("90.1"), now())))
        adapter.send(order("r2"))
        assert sink.expect(OrderFilled).price == D("90.1")


def test_close_and_stop_leave_no_threads(tmp_path):
    srv = run_server(port=0)
    sink = Collector()
    adapter = WsClientAdapter(srv.url, sink, name="ws-leak-check")
    adapter.connect()
    sink.expect(StreamStatus, up)
    adapter.close()
    adapter.close()  # idempotent
    srv.stop()
    names = [t.name for t in threading.enumerate()]
    assert "tw-ws-leak-check" not in names and "tw-exchange-ws" not in names
    assert not adapter.connected
    assert not (tmp_path / "events.jsonl").exists()  # no out_dir: no file


def test_standalone_server_with_its_own_market_feed():
    from exchange.feed import RandomWalkFeed

    srv = run_server(port=0, feed=RandomWalkFeed([SYM, "ETHUSDT"], seed=1), feed_interval_s=0.02)
    sink = Collector()
    adapter = WsClientAdapter(srv.url, sink)
    try:
        adapter.connect()
        sink.expect(StreamStatus, up)
        adapter.send(Subscribe(("ETHUSDT",)))
        quotes = [sink.expect(Quote) for _ in range(3)]
        assert {q.symbol for q in quotes} == {"ETHUSDT"}
        assert all(q.bid < q.ask for q in quotes)
    finally:
        adapter.close()
        srv.stop()
