"""Ask an exchange for one account's positions, through the broker adapter protocol.

The end of every run compares the runtime's positions with the exchange's
(rule 18: a summary never says a check held unless it ran it). The question
goes through a fresh adapter of the same kind the gateway used (WebSocket,
the embedded engine, a ccxt venue...), so any venue that implements the
protocol gets the check without code of its own: ``connect()``, wait for
``StreamStatus(connected=True)``, ``send(QueryPositions)``, wait for the
``PositionSnapshot`` that answers *this* request (its ``request_id`` and
account), ``close()``. Anything else arriving meanwhile (quotes, another
session's traffic) is ignored. A failure is a :class:`ProbeError` whose
text says why, which the summary reports as "not run", never as "held".
"""

from __future__ import annotations

import queue
import time
import uuid
from decimal import Decimal
from typing import Any
from collections.abc import Callable

from exchange.protocol import Sink
from messages import ExchangeError, OrderRejected, PositionSnapshot, QueryPositions, StreamStatus

#: how long the whole question may take (connect plus answer)
DEFAULT_TIMEOUT_S = 5.0


class ProbeError(RuntimeError):
    """The positions could not be read; the text says why."""


def query_positions(make_adapter: Callable[[Sink], Any], account: str,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Decimal]:
    """``account``'s positions at the exchange ``make_adapter(sink)`` reaches."""
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    deadline = time.monotonic() + timeout_s
    request_id = f"final-positions-{uuid.uuid4().hex[:12]}"
    adapter = make_adapter(events.put)
    try:
        adapter.connect()
        _wait(events, deadline, "connecting", lambda ev: _connected(ev))
        adapter.send(QueryPositions(request_id, account))
        snap = _wait(events, deadline, "waiting for the positions",
                     lambda ev: _answer(ev, request_id, account))
    finally:
        try:
            adapter.close()
        except Exception:  # noqa: BLE001 - the answer is in hand; closing is best effort
            pass
    return {sym: qty for sym, qty in snap.positions}


def _connected(ev: Any) -> bool | None:
    if isinstance(ev, StreamStatus):
        if not ev.connected:
            raise ProbeError(f"the exchange refused the connection: {ev.reason}")
        return True
    return None


def _answer(ev: Any, request_id: str, account: str) -> bool | None:
    if isinstance(ev, PositionSnapshot) and ev.request_id == request_id:
        if ev.account != account:
            raise ProbeError(f"the exchange answered for account {ev.account!r}, "
                             f"not {account!r}")
        return True
    if isinstance(ev, ExchangeError) and ev.ref == request_id:
        raise ProbeError(f"the exchange refused the query: {ev.code}: {ev.reason}")
    if isinstance(ev, StreamStatus) and not ev.connected:
        raise ProbeError(f"the connection dropped before the answer: {ev.reason}")
    if isinstance(ev, (OrderRejected,)):
        return None
    return None


def _wait(events: queue.SimpleQueue[Any], deadline: float, doing: str,
          match: Callable[[Any], bool | None]) -> Any:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeError(f"no answer from the exchange while {doing}")
        try:
            ev = events.get(timeout=left)
        except queue.Empty:
            continue
        if match(ev):
            return ev
