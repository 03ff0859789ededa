"""events.jsonl writer: the engine's fast ``write`` is byte for byte ``append``,
and a held command's lines keep the file in seq order across threads."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, UTC
from decimal import Decimal

import pytest

from exchange.events_log import CORE_KEYS, EventsLog, read_events
from messages.enums import OrderType, Side, TimeInForce

T0 = datetime(2026, 1, 5, 14, 30, 0, 123456, tzinfo=UTC)

CASES = [
    # (core values in CORE_KEYS order, extra keys, extra values)
    (("c-1", "BTCUSDT", Side.BUY, Decimal("1.50"), Decimal("100.10"), None),
     ("order_type", "trigger_price", "reduce_only", "tif", "account", "group_id"),
     (OrderType.MARKET, None, False, TimeInForce.GTC, "default", None)),
    (("c-2", "ETH\"USD\\é", Side.SELL, Decimal("1E+2"), None, "X1-F7"),
     ("leaves_qty", "fee", "liquidity", "account", "cursor"),
     (Decimal("0"), Decimal("0.00000001"), "taker", "acct ☃", 12)),
    (("c-3", "SOL", Side.BUY, Decimal("-0"), Decimal("NaN"), None),
     ("exchange_order_id", "flag", "ratio", "when"),
     ("X1-O3", True, 0.25, T0 + timedelta(seconds=1))),
]


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("core, keys, values", CASES)
def test_write_is_byte_for_byte_append(tmp_path, core, keys, values) -> None:
    fast, slow = EventsLog(tmp_path / "fast.jsonl").open(), EventsLog(tmp_path / "slow.jsonl").open()
    fast.write("order_filled", T0, core, keys, values)
    slow.append("order_filled", T0, **dict(zip(CORE_KEYS, core, strict=True)),
                **dict(zip(keys, values, strict=True)))
    fast.close()
    slow.close()
    assert _lines(tmp_path / "fast.jsonl") == _lines(tmp_path / "slow.jsonl")
    json.loads(_lines(tmp_path / "fast.jsonl")[0])  # and it is JSON


def test_held_lines_wait_for_release_and_another_thread_writes_after_them(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventsLog(path).open()
    assert log.hold()
    log.append("order_submitted", T0, client_order_id="a")
    log.append("order_acked", T0, client_order_id="a")
    assert _lines(path) == []  # held: one write when the command ends
    other = threading.Thread(target=lambda: log.append("cancel_requested", T0,
                                                       client_order_id="b"))
    other.start()
    other.join(10)
    # The other thread's record (seq 3) went out after the held ones (seq 1, 2).
    assert [r["seq"] for r in read_events(path)] == [1, 2, 3]
    log.append("order_filled", T0, client_order_id="a")
    log.release()
    log.close()
    records = read_events(path)
    assert [(r["seq"], r["kind"]) for r in records] == [
        (1, "order_submitted"), (2, "order_acked"), (3, "cancel_requested"), (4, "order_filled")]


def test_hold_is_refused_when_closed_or_already_held(tmp_path) -> None:
    log = EventsLog(tmp_path / "events.jsonl")
    assert not log.hold()  # closed: nothing to hold
    log.open()
    assert log.hold() and not log.hold()
    log.release()
    assert log.hold()
    log.close()  # closing writes what is held
