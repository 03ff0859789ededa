"""Storage benchmarks: what a typical bot does (SQLite, one commit per
record) next to what the persistence actor does (LMDB group commit)."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import msgpack


def sqlite_per_record_per_s(n: int, synchronous: str) -> float:
    """SQLite in WAL mode, one INSERT + COMMIT per record."""
    with tempfile.TemporaryDirectory(prefix="tw-bench-sqlite-") as tmp:
        con = sqlite3.connect(str(Path(tmp) / "bench.db"), isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={synchronous}")
            con.execute("CREATE TABLE orders (k TEXT PRIMARY KEY, v BLOB)")
            payload = msgpack.packb({"qty": "1.5", "price": "100.25", "side": "buy"})
            t0 = time.perf_counter()
            for i in range(n):
                con.execute("BEGIN")
                con.execute("INSERT INTO orders VALUES (?, ?)", (f"o{i:09d}", payload))
                con.execute("COMMIT")
            return n / (time.perf_counter() - t0)
        finally:
            con.close()
