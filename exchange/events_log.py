"""``events.jsonl``: the simulated exchange's own record (DESIGN section 7).

One JSON object per line, what the exchange itself saw and did. Tests and
tools read it as ground truth, so every record carries the same core keys
(``seq``, ``t``, ``kind``, ``client_order_id``, ``symbol``, ``side``, ``qty``,
``price``, ``fill_id``; null when not relevant) plus kind-specific extras.
Decimals are written as strings so no digit is lost.

Records reach the file (the OS) as whole lines, at the latest when the
engine call that made them returns: ``append`` writes at once, except that
``SimulatedExchange.handle`` holds the records of one command (an order's
submitted/acked/filled) and writes them together in one ``write`` when it
returns (:meth:`EventsLog.hold`), one system call per command instead of per
record. So another process can tail the file live, and a crash after an
engine call (or a test reading the file after it) finds all its lines. Nothing
is created until :meth:`EventsLog.open` is called (rule 14: constructing or
importing creates no file). Reopening an existing file appends and continues
its ``seq``, so an exchange restarted on the same directory keeps one
consistent log.
"""

from __future__ import annotations

import json
import os
import threading
from threading import get_ident
from datetime import datetime
from decimal import Decimal
from enum import Enum
from itertools import chain
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any, BinaryIO
from collections.abc import Iterable

from loguru import logger

from messages.jsonl import compact_encoder, iter_jsonl

CORE_KEYS = ("client_order_id", "symbol", "side", "qty", "price", "fill_id")
#: bytes of lines per ``read_page``: a page travels as one WebSocket frame (1 MiB at most)
PAGE_BYTES = 512 * 1024


#: ``json.dumps(record, separators=(",", ":"))`` from one encoder built once
_dumps = compact_encoder()


_esc = _json_encoder.encode_basestring_ascii  # a str as json.dumps writes it (C)


class _Prefixes(dict):
    """``,"key":`` for each key ``EventsLog.write`` has seen."""

    def __missing__(self, key: str) -> str:
        prefix = self[key] = f",{_esc(key)}:"
        return prefix


_PREFIXES = _Prefixes()
_CORE_PREFIXES = tuple(_PREFIXES[key] for key in CORE_KEYS)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class EventsLog:
    """Append-only JSONL writer. Thread-safe; a no-op until opened."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        # Unbuffered binary file: a record is one ``write`` of its encoded
        # line (JSON here is ASCII-only), the same bytes the line-buffered
        # text file wrote, without its two extra layers and second flush.
        self._fh: BinaryIO | None = None
        #: whether records are being written (a plain attribute: the engine
        #: reads it for every order before building a record)
        self.is_open = False
        self._lock = threading.Lock()
        self.seq = 0
        self.records = 0
        #: the thread holding its records (``hold``) and those records, in seq order
        self._holder: int | None = None
        self._held: list[bytes] = []
        # (datetime, its isoformat): the records of one engine call share one
        # ``now`` object. One tuple, so threads never see a mismatched pair.
        self._t: tuple[datetime | None, str] = (None, "")

    def open(self, path: str | os.PathLike | None = None) -> EventsLog:
        """Open (creating parent directories) for append; continue ``seq``."""
        with self._lock:
            if path is not None:
                self.path = Path(path)
            if self.path is None:
                raise ValueError("EventsLog.open needs a path")
            if self._fh is not None:
                return self
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.seq = max(self.seq, _last_seq(self.path))
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
            self.is_open = True
            logger.debug("exchange events log {} opened at seq {}", self.path, self.seq)
            return self

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                try:
                    self._flush_held()
                    self._holder = None
                    self._fh.close()
                finally:
                    self._fh = None
                    self.is_open = False

    def append(self, kind: str, t: datetime, **fields: Any) -> int | None:
        """Write one record; returns its seq, or None when the log is closed."""
        if self._fh is None:
            return None
        record: dict[str, Any] = {"seq": 0, "t": self._iso(t), "kind": kind}
        for key in CORE_KEYS:
            record[key] = _jsonable(fields.pop(key, None))
        for key, value in fields.items():
            record[key] = _jsonable(value)
        return self._commit(record, None)

    def write(self, kind: str, t: datetime, core: Iterable[Any], keys: Iterable[str] = (),
              values: Iterable[Any] = ()) -> int | None:
        """``append`` for the engine's per-order records, without a keyword
        dict, a record dict and a JSON encoder pass: ``core`` holds the
        values of ``CORE_KEYS`` in order, then come the extra ``keys``
        (distinct, none of them a core key, ``seq``, ``t`` or ``kind``) with
        their ``values``. The line is byte for byte the one ``append``
        writes for the same record (the same escaping, ``_jsonable`` for
        anything but the common value types)."""
        if self._fh is None:
            return None
        parts = [',"t":', _esc(self._iso(t)), ',"kind":', _esc(kind)]
        add = parts.append
        for prefix, value in chain(zip(_CORE_PREFIXES, core, strict=True),
                                   zip(map(_PREFIXES.__getitem__, keys), values, strict=True)):
            add(prefix)
            kind_of = type(value)
            if kind_of is str:
                add(_esc(value))
            elif value is None:
                add("null")
            elif kind_of is Decimal:
                add(_esc(str(value)))
            elif kind_of is bool:
                add("true" if value else "false")
            elif kind_of is int:
                add(int.__repr__(value))
            elif isinstance(value, str):  # a str enum: json writes its string
                add(_esc(value))
            else:
                add(_dumps(_jsonable(value)))
        add("}\n")
        return self._commit(None, "".join(parts))

    def hold(self) -> bool:
        """Keep this thread's records in memory until :meth:`release` (one
        engine call). False when there is nothing to hold (closed, or held
        already): then the caller must not call ``release``. A record from
        another thread meanwhile first writes the held ones, so the file
        stays in seq order."""
        if self._fh is None or self._holder is not None:
            return False
        with self._lock:
            if self._holder is not None:
                return False
            self._holder = get_ident()
        return True

    def release(self) -> None:
        """Write the held records (one ``write``) and stop holding."""
        with self._lock:
            self._holder = None
            self._flush_held()

    def read_page(self, since_seq: int, cursor: int, limit: int,
                  max_bytes: int = PAGE_BYTES) -> tuple[list[str], int, int, bool]:
        """Lines with ``seq > since_seq`` from byte ``cursor`` on, at most ``limit``
        of them and about ``max_bytes``: ``(lines, next cursor, last seq, more)``.

        What this thread holds is written first, so the page is current. A
        cursor past the end (the file was replaced) reads from the start: the
        ``seq`` filter still skips what the reader has. ``limit`` 0 returns
        only the end: ``([], end of file, last seq, False)``.
        """
        with self._lock:
            if self._fh is None or self.path is None:
                raise ValueError("the exchange keeps no events log (start it with --out DIR)")
            if self._holder == get_ident():
                self._flush_held()
            end, last_seq = self.path.stat().st_size, self.seq
        if limit == 0:
            return [], end, last_seq, False
        if cursor > end:
            cursor = 0
        lines: list[str] = []
        size = 0
        with open(self.path, "rb") as fh:
            fh.seek(cursor)
            while cursor < end and len(lines) < limit and size < max_bytes:
                raw = fh.readline(end - cursor)
                if not raw.endswith(b"\n"):
                    # a torn line at the end is not a record (yet): the next
                    # page starts at it
                    return lines, cursor, last_seq, False
                cursor += len(raw)
                if _seq_of(raw) > since_seq:
                    lines.append(raw[:-1].decode("utf-8"))
                    size += len(raw)
        return lines, cursor, last_seq, cursor < end

    def _flush_held(self) -> None:  # (under the lock)
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if self._fh is not None:
                self._write(data)

    def _write(self, data: bytes) -> None:  # (under the lock)
        fh = self._fh
        assert fh is not None  # callers write only to an open log
        done = fh.write(data)
        while done < len(data):  # a short write (e.g. interrupted): write the rest
            data = data[done:]
            done = fh.write(data)

    def _iso(self, t: datetime) -> str:
        cached, iso = self._t
        if cached is not t:
            iso = t.isoformat(timespec="microseconds")
            self._t = (t, iso)
        return iso

    def _commit(self, record: dict[str, Any] | None, rest: str | None) -> int | None:
        """Number and write one line: ``record`` whole, or the text ``rest``
        that follows ``{"seq":N`` (the seq is only known under the lock)."""
        with self._lock:
            fh = self._fh
            if fh is None:
                return None
            self.seq += 1
            if record is not None:
                record["seq"] = self.seq
                line = _dumps(record) + "\n"
            else:
                line = f'{{"seq":{self.seq}{rest}'
            data = line.encode("utf-8")
            holder = self._holder
            if holder is None:
                self._write(data)
            elif holder == get_ident():
                self._held.append(data)
            else:  # another thread holds: its records come first (lower seq)
                self._flush_held()
                self._write(data)
            self.records += 1
            return self.seq


def _seq_of(line: bytes) -> int:
    """The ``seq`` of one record line (-1 when it has none). Both writers put it
    first (``{"seq":N,``), so the fast path skips JSON decoding."""
    if line.startswith(b'{"seq":'):
        end = line.find(b",", 7)
        if end > 7 and line[7:end].isdigit():
            return int(line[7:end])
    try:
        return int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        return -1


def _last_seq(path: Path) -> int:
    """The seq of the last complete record in an existing file (0 if none)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 65536))
        tail = fh.read().splitlines()
    for line in reversed(tail):
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of an events.jsonl (a torn last line is skipped)."""
    return list(iter_jsonl(path))
