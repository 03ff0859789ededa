"""Read a WebSocket exchange's events.jsonl into a run directory.

A run against ``main.py exchange`` (``run --exchange ws://...``) takes a
mark when it starts (:func:`events_mark`: where the exchange's record ends
then) and, when it ends, copies every record after the mark into its own
``events.jsonl`` (:func:`fetch_events`), so the run directory holds what
the exchange saw and did during the run, as with the embedded exchange.

This is a tool of the run job, not of the trading path: it opens a short
connection of its own, blocking, outside the actor tree. The mark is kept
in the run's ``run_info.json``, so a resumed run copies the whole run, the
part before the kill included. Another client trading on the same exchange
at the same time shows up in the copy too: the exchange's record is one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from messages import ExchangeError
from messages.codec import CodecError, decode, encode
from messages.sim_events import EventsPage, QueryEvents

MAX_FRAME = 1 << 20
_ids = itertools.count(1)


class EventsFetchError(RuntimeError):
    """The exchange's record could not be read (the message says why)."""


@dataclass(frozen=True)
class EventsMark:
    """Where the exchange's record ended (a byte offset and the last seq), and
    the positions the exchange held then: (account, symbol) -> signed qty."""

    cursor: int
    seq: int
    positions: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "seq": self.seq,
                "positions": [[a, s, str(q)] for (a, s), q in sorted(self.positions.items())]}

    @classmethod
    def from_json(cls, data: Any) -> EventsMark:
        try:
            positions = {(str(a), str(s)): Decimal(str(q))
                         for a, s, q in data.get("positions", ())}
            return cls(int(data["cursor"]), int(data["seq"]), positions)
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise EventsFetchError(f"unreadable events mark {data!r}: {exc}") from exc


def events_mark(url: str, *, timeout: float = 5.0) -> EventsMark:
    """The exchange's record as it ends now, with its positions at that moment
    (one answer of the exchange's loop, so the two agree)."""
    with _session(url, timeout) as ws:
        page = ws.ask(QueryEvents(_request_id(), limit=0), timeout)
    return EventsMark(page.cursor, page.last_seq,
                      {(account, symbol): qty for account, symbol, qty in page.positions})


def fetch_events(url: str, since: EventsMark, out: Path, *, timeout: float = 10.0) -> int:
    """Write every record after ``since`` to ``out`` (atomically); returns how many."""
    tmp = out.with_name(out.name + ".part")
    count = 0
    try:
        with _session(url, timeout) as ws, open(tmp, "w", encoding="utf-8") as fh:
            cursor = since.cursor
            while True:
                page = ws.ask(QueryEvents(_request_id(), since_seq=since.seq, cursor=cursor),
                              timeout)
                if page.lines:
                    fh.write("\n".join(page.lines) + "\n")
                    count += len(page.lines)
                if not page.more or page.cursor <= cursor:
                    break
                cursor = page.cursor
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # disk full, permissions, a reset socket...
        _discard(tmp)
        raise EventsFetchError(f"copying into {out} failed: {exc}") from exc
    except BaseException:
        _discard(tmp)
        raise
    try:
        os.replace(tmp, out)
    except OSError as exc:
        _discard(tmp)
        raise EventsFetchError(f"cannot write {out}: {exc}") from exc
    return count


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _request_id() -> str:
    return f"events-{os.getpid()}-{next(_ids)}"


def _session(url: str, timeout: float) -> Any:
    """The native WebSocket exchange (``ws://``) or the Binance face's
    ``GET /_sim/events`` (``http://``: a run at ``--venue`` with a base_url)."""
    if url.startswith(("http://", "https://")):
        return _HttpSession(url.rstrip("/"))
    return _WsSession(_connect(url, timeout))


class _WsSession:
    def __init__(self, cm: Any) -> None:
        self._cm = cm  # websockets' connect(): entered as a context manager
        self.ws: Any = None

    def __enter__(self) -> _WsSession:
        self.ws = self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)

    def ask(self, query: QueryEvents, timeout: float) -> EventsPage:
        return _ask(self.ws, query, timeout)


class _HttpSession:
    """The same pages over plain HTTP (the Binance face serves the engine's record)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def __enter__(self) -> _HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def ask(self, query: QueryEvents, timeout: float) -> EventsPage:
        import json
        import urllib.error
        import urllib.request
        from urllib.parse import urlencode

        qs = urlencode({"since_seq": query.since_seq, "cursor": query.cursor,
                        "limit": query.limit})
        try:
            with urllib.request.urlopen(f"{self.base}/_sim/events?{qs}", timeout=timeout) as r:
                data = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise EventsFetchError(f"{self.base} serves no exchange record (HTTP {exc.code}): "
                                   "only the simulator's face does") from exc
        except (OSError, ValueError) as exc:
            raise EventsFetchError(f"cannot read the exchange record at {self.base}: {exc}") \
                from exc
        try:
            return EventsPage(query.request_id, tuple(str(x) for x in data["lines"]),
                              int(data["cursor"]), int(data["last_seq"]), bool(data["more"]),
                              tuple((str(a), str(sym), Decimal(str(q)))
                                    for a, sym, q in data.get("positions", ())))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise EventsFetchError(f"unreadable events page from {self.base}: {exc}") from exc


def _connect(url: str, timeout: float) -> Any:
    try:
        return connect(url, open_timeout=timeout, max_size=MAX_FRAME, compression=None)
    except (OSError, TimeoutError) as exc:
        raise EventsFetchError(f"cannot reach the exchange at {url}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - websockets' handshake errors have no common base
        raise EventsFetchError(f"cannot connect to {url}: {type(exc).__name__}: {exc}") from exc


def _ask(ws: Any, query: QueryEvents, timeout: float) -> EventsPage:
    """Send one query; skip other frames (the exchange may stream) until its answer."""
    try:
        ws.send(encode(query))
    except ConnectionClosed as exc:
        raise EventsFetchError(f"the exchange closed the connection: {exc}") from exc
    while True:
        try:
            frame = ws.recv(timeout=timeout)
        except TimeoutError as exc:
            raise EventsFetchError(f"no answer to {query.request_id} in {timeout}s") from exc
        except ConnectionClosed as exc:
            raise EventsFetchError(f"the exchange closed the connection: {exc}") from exc
        try:
            msg = decode(frame)
        except CodecError:
            continue
        if isinstance(msg, EventsPage) and msg.request_id == query.request_id:
            return msg
        if isinstance(msg, ExchangeError):
            raise EventsFetchError(f"the exchange refused the events query: {msg.code}: "
                                   f"{msg.reason}")
