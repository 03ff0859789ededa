"""``events.jsonl``: the simulated exchange's own record (DESIGN section 7).

One JSON object per line, what the exchange itself saw and did. Tests and
tools read it as ground truth, so every record carries the same core keys
(``seq``, ``t``, ``kind``, ``client_order_id``, ``symbol``, ``side``, ``qty``,
``price``, ``fill_id``; null when not relevant) plus kind-specific extras.
Decimals are written as strings so no digit is lost.

The file is line-buffered and flushed per record so another process can tail
it live. Nothing is created until :meth:`EventsLog.open` is called (rule 14:
constructing or importing creates no file). Reopening an existing file
appends and continues its ``seq``, so an exchange restarted on the same
directory keeps one consistent log.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from loguru import logger

from runtime.run_files import iter_jsonl

CORE_KEYS = ("client_order_id", "symbol", "side", "qty", "price", "fill_id")


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
        self._fh: TextIO | None = None
        self._lock = threading.Lock()
        self.seq = 0
        self.records = 0

    @property
    def is_open(self) -> bool:
        return self._fh is not None

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
            self._fh = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            logger.debug("exchange events log {} opened at seq {}", self.path, self.seq)
            return self

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.flush()
                    self._fh.close()
                finally:
                    self._fh = None

    def append(self, kind: str, t: datetime, **fields: Any) -> int | None:
        """Write one record; returns its seq, or None when the log is closed."""
        if self._fh is None:
            return None
        record: dict[str, Any] = {"seq": 0, "t": t.isoformat(timespec="microseconds"),
                                  "kind": kind}
        for key in CORE_KEYS:
            record[key] = _jsonable(fields.pop(key, None))
        for key, value in fields.items():
            record[key] = _jsonable(value)
        with self._lock:
            fh = self._fh
            if fh is None:
                return None
            self.seq += 1
            record["seq"] = self.seq
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            self.records += 1
            return self.seq


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
