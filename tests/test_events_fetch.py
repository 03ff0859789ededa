"""A run against a WebSocket exchange copies the exchange's events.jsonl.

``EventsLog.read_page`` pages the file by byte cursor and seq; over a real
socket, ``events_mark`` then ``fetch_events`` copy exactly the records after
the mark, across several pages; an exchange without a record, or nothing
listening, is a clear ``EventsFetchError``, never a hang or a partial file.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, UTC
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.events_fetch import EventsFetchError, EventsMark, events_mark, fetch_events
from exchange.events_log import EventsLog, read_events
from exchange.ws_server import run_server
from messages import OrderRequest, OrderType, Side, SubmitOrder

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _log_with(tmp_path: Path, n: int) -> EventsLog:
    log = EventsLog(tmp_path / "events.jsonl").open()
    for i in range(n):
        log.append("note", T0, symbol=f"S{i}", text="x" * 50)
    return log


def test_read_page_pages_by_cursor_and_skips_what_the_reader_has(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 10)
    try:
        lines, end, last, more = log.read_page(0, 0, 0)
        assert (lines, last, more) == ([], 10, False) and end == log.path.stat().st_size

        got, cursor, pages = [], 0, 0
        while True:
            lines, cursor, last, more = log.read_page(3, cursor, 4)
            got += lines
            pages += 1
            if not more:
                break
        assert [json.loads(x)["seq"] for x in got] == list(range(4, 11)) and pages == 2
        assert cursor == end

        small, _, _, more = log.read_page(0, 0, 100, max_bytes=1)
        assert len(small) == 1 and more, "the byte budget ends a page early"
        again, _, _, _ = log.read_page(0, end + 999, 100)
        assert len(again) == 10, "a cursor past the end (file replaced) reads from the start"
    finally:
        log.close()


def test_read_page_leaves_a_torn_last_line_for_later(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 2)
    try:
        with open(log.path, "ab") as fh:
            fh.write(b'{"seq":3,"t":"2026')  # a writer mid-line
        lines, cursor, _, more = log.read_page(0, 0, 100)
        assert [json.loads(x)["seq"] for x in lines] == [1, 2] and not more
        assert cursor < log.path.stat().st_size
    finally:
        log.close()


def test_read_page_refuses_when_no_log_is_kept() -> None:
    with pytest.raises(ValueError, match="no events log"):
        EventsLog().read_page(0, 0, 10)


def _order(i: int) -> SubmitOrder:
    return SubmitOrder(OrderRequest(f"c-{i}", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("1"),
                                    T0, price=Decimal("90")))


def test_mark_then_fetch_copies_exactly_the_records_after_the_mark(tmp_path: Path) -> None:
    server = run_server(port=0, out_dir=tmp_path / "exchange")
    try:
        for i in range(5):  # before the run: not copied
            server.call(server.engine.handle, _order(i)).result(5)
        mark = events_mark(server.url)
        for i in range(5, 3005):  # enough to need several 512 KiB pages
            server.call(server.engine.handle, _order(i)).result(5)
        out = tmp_path / "run" / "events.jsonl"
        out.parent.mkdir()
        n = fetch_events(server.url, mark, out)
    finally:
        server.stop()
    copied = read_events(out)
    assert n == len(copied) and copied[0]["seq"] == mark.seq + 1
    everything = read_events(tmp_path / "exchange" / "events.jsonl")
    assert copied == [e for e in everything if mark.seq < e["seq"] <= copied[-1]["seq"]]
    submitted = [e["client_order_id"] for e in copied if e["kind"] == "order_submitted"]
    assert submitted == [f"c-{i}" for i in range(5, 3005)]
    assert out.stat().st_size > 1 << 20, "the copy spans several pages"
    assert not out.with_name("events.jsonl.part").exists()


def test_the_mark_carries_the_positions_and_invariants_start_from_them(tmp_path: Path) -> None:
    """A second run on the same server starts from the positions the first left;
    the copy's invariants replay from them, and only for the run's account."""
    from app.resume import RUN_INFO
    from app.run_events import MARK_KEY, remote_scope

    server = run_server(port=0, out_dir=tmp_path / "exchange")
    try:
        server.inject({"set_position": {"symbol": "BTCUSDT", "qty": "5"}})
        server.inject({"set_position": {"symbol": "ETHUSDT", "qty": "-2", "account": "other"}})
        mark = events_mark(server.url)
    finally:
        server.stop()
    assert mark.positions == {("default", "BTCUSDT"): Decimal("5"),
                              ("other", "ETHUSDT"): Decimal("-2")}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_INFO).write_text(json.dumps({MARK_KEY: mark.to_json()}), encoding="utf-8")
    events = [{"kind": "order_filled", "account": "default", "symbol": "BTCUSDT", "side": "sell",
               "qty": "3", "fill_id": "f1"},
              {"kind": "order_submitted", "account": "other", "client_order_id": "x-1"},
              {"kind": "client_connected"}]
    mine, start = remote_scope(run_dir, "default", events)
    assert start == {("default", "BTCUSDT"): Decimal("5")}
    assert [e.get("client_order_id") for e in mine] == [None, None], "other accounts left out"
    assert EventsMark.from_json(json.loads(json.dumps(mark.to_json()))) == mark
    assert remote_scope(tmp_path, "default", events) is None, "no mark: an embedded run"


def test_an_exchange_without_a_record_or_nothing_listening_is_a_clear_error(
        tmp_path: Path) -> None:
    server = run_server(port=0)  # no --out: it keeps no events.jsonl
    try:
        with pytest.raises(EventsFetchError, match="no_events_log"):
            events_mark(server.url)
        with pytest.raises(EventsFetchError, match="no_events_log"):
            fetch_events(server.url, EventsMark(0, 0), tmp_path / "events.jsonl")
        assert not (tmp_path / "events.jsonl").exists()
        assert not (tmp_path / "events.jsonl.part").exists()
    finally:
        server.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(EventsFetchError, match="cannot"):
        events_mark(f"ws://127.0.0.1:{free}", timeout=2)
