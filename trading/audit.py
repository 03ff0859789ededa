"""The audit trail: append-only JSONL, one record per risk decision (and per
divergence correction, kill switch change, ...). DESIGN section 6.

The file is opened on first write, never at import. Records are flushed at
the end of every burst of work (the owner calls ``flush`` from ``on_idle``)
so a crash loses at most the burst in progress, and never a half line that
a reader would trip on: readers skip a torn last line.
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from collections.abc import Iterator

from runtime.run_files import iter_jsonl
from runtime.redact import redact_text

AUDIT_SCHEMA_VERSION = 1


class AuditLog:
    def __init__(self, path: Path | str | None, *, run_id: str, app_version: str,
                 config_hash: str) -> None:
        self.path = Path(path) if path is not None else None
        self.run_id = run_id
        self.app_version = app_version
        self.config_hash = config_hash
        self._fh: TextIO | None = None
        self.records = 0
        self._seq = 0
        # The event id's random suffix tells apart records of runs that share a
        # run id; a generator seeded once from the OS is enough for that, and
        # spares a getrandom() syscall (uuid4) per record on the order path.
        self._rng = random.Random(os.urandom(16))

    def record(self, *, kind: str, reason: str, ts: datetime, inputs: dict[str, Any],
               approved: bool | None = None, **extra: Any) -> dict[str, Any]:
        self._seq += 1
        rec = {
            "schema_version": AUDIT_SCHEMA_VERSION,
            "event_id": f"{self.run_id}-{self._seq:08d}-{self._rng.getrandbits(32):08x}",
            "seq": self._seq,
            "timestamp": ts.isoformat(),
            "run_id": self.run_id,
            "app_version": self.app_version,
            "config_hash": self.config_hash,
            "kind": kind,
            "reason": reason,
            "approved": approved,
            "inputs": inputs,
            **extra,
        }
        if self.path is not None:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived
            self._fh.write(redact_text(json.dumps(rec, default=str, separators=(",", ":"))) + "\n")
        self.records += 1
        return rec

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None


def read_audit(path: Path | str, *, reason: str | None = None,
               symbol: str | None = None) -> Iterator[dict[str, Any]]:
    """Records of an audit file, optionally filtered. A torn last line is skipped."""
    for rec in iter_jsonl(path):
        if reason is not None and rec.get("reason") != reason:
            continue
        if symbol is not None and (rec.get("inputs") or {}).get("symbol") != symbol:
            continue
        yield rec
