"""Storage benchmarks: what a typical bot does (SQLite, one commit per
record) next to what the persistence actor does (LMDB group commit)."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

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


def lmdb_group_commit_per_s(n: int) -> tuple[float, float]:
    """Records/s through the persistence actor, every acknowledged write synced.

    Writes are told as fast as a busy coordinator would; the last one in
    each burst of 1,000 carries a future ack. Acks are sent in order and
    only after the commit + fsync that holds the write, so an acked burst
    means every write in it is on disk. Returns (records/s, records per txn).
    """
    from concurrent.futures import Future

    from actors.persistence import PersistenceActor
    from messages.persistence import GetStats, Put, StoreDb
    from runtime import ActorSystem, ChildSpec, SupervisorSpec

    value = {"qty": "1.5", "price": "100.25", "side": "buy"}
    with tempfile.TemporaryDirectory(prefix="tw-bench-lmdb-") as tmp:
        system = ActorSystem(name="bench-lmdb")
        system.start(SupervisorSpec("root", [ChildSpec("persistence", PersistenceActor,
                                                       kwargs={"run_dir": tmp})]))
        try:
            tell = system.address("persistence").tell
            futures = []
            t0 = time.perf_counter()
            for i in range(n):
                ack: Future[Any] | None = None
                if i % 1000 == 999 or i == n - 1:
                    ack = Future()
                    futures.append(ack)
                tell(Put(StoreDb.ORDERS, f"o{i:09d}", value, ack=ack))
            for fut in futures:
                fut.result(timeout=120)
            rate = n / (time.perf_counter() - t0)
            stats = system.ask("persistence", GetStats())
            return rate, float(stats.get("records_per_txn", 0))
        finally:
            system.shutdown()


def lmdb_section(quick: bool) -> dict[str, Any]:
    rate, per_txn = lmdb_group_commit_per_s(50_000 if quick else 200_000)
    return {"lmdb_group_commit_per_s": round(rate), "lmdb_records_per_txn": round(per_txn, 1)}
