"""The run's LMDB store: one environment per run directory, shared in-process.

Why LMDB: a write transaction is all-or-nothing even if the process is
killed mid-commit (copy-on-write B-tree, the meta page flips last), readers
see a consistent snapshot without ever waiting for the writer (MVCC), and
with ``sync=True`` a commit returns only once the data is on disk, so one
fsync covers a whole group commit.

Layout: ``<run_dir>/store/`` holds ``data.mdb`` and ``lock.mdb`` with the
named databases of :class:`~messages.persistence.StoreDb`. Keys are UTF-8
strings; values are msgpack through the message codec's ext types (Decimal,
aware datetime, enums, nested messages), so a stored order reads back as the
same ``OrderRequest`` and a stored dict keeps its Decimals.

LMDB forbids opening the same environment twice in one process, so
:meth:`Store.open` returns the instance already open for that directory and
counts holders; the environment closes when the last holder closes it.
Nothing here touches the disk until ``Store.open`` is called (rule 14).

Only the persistence actor writes (``Store.apply``); everyone else reads.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable, Iterable, Iterator

import lmdb
import msgpack
from loguru import logger

# The codec's ext hooks are the one definition of how Decimal, datetime,
# enums and messages become bytes; storage must not invent a second one.
from messages.codec import CodecError, _default, _ext_hook
from messages.enums import ENUM_TYPES
from messages.persistence import StoreDb

DEFAULT_MAP_SIZE = 1 << 30  # 1 GiB of address space; the file grows sparsely
STORE_SUBDIR = "store"
_R = TypeVar("_R")
_MAX_GROWTHS = 12
_EXT_TYPES = (Decimal, datetime)
DATABASES = tuple(d.value for d in StoreDb)

_OPEN: dict[str, Store] = {}
_OPEN_LOCK = threading.Lock()


class StoreClosed(RuntimeError):
    """The store was used after its last holder closed it."""


def _store_default(obj: Any) -> Any:
    """With ``strict_types`` msgpack hands us subclasses of its native types.

    That is what keeps a ``Side`` (a ``str`` enum) inside a stored dict a
    ``Side`` on the way back instead of a bare string; tuples travel as arrays.
    """
    if type(obj) in _EXT_TYPES:
        return _default(obj)
    if isinstance(obj, Enum):
        if ENUM_TYPES.get(type(obj).__name__) is not type(obj):
            raise CodecError(f"enum {type(obj).__name__} is not registered with the codec "
                             "(messages.enums.register_enum)")
        return _default(obj)
    for native in _NATIVE:
        if isinstance(obj, native):
            return list(obj) if native is tuple else native(obj)
    return _default(obj)


_NATIVE: tuple[type[Any], ...] = (tuple, list, dict, str, bytes, int, float)


#: one Packer per thread: ``packb`` builds one (with a 256 KiB buffer) per call,
#: which costs more than packing a status or a position (several per order)
_packers = threading.local()


def pack_value(value: Any) -> bytes:
    """Any codec-able value -> bytes. Raises CodecError naming what failed."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(default=_store_default, use_bin_type=True,
                                                  strict_types=True, buf_size=4096)
    try:
        out: bytes = packer.pack(value)  # the Packer resets after each pack, error or not
        return out
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {type(value).__name__}: {exc}") from None


def unpack_value(data: bytes) -> Any:
    """bytes -> value (arrays come back as lists; messages as messages)."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on garbage
        raise CodecError(f"undecodable stored value: {type(exc).__name__}: {exc}") from None


def key_bytes(key: str) -> bytes:
    return key.encode("utf-8")


def put_op(db: str | StoreDb, key: str, value: Any) -> tuple[Any, ...]:
    """The :meth:`Store.apply` op writing ``value`` under ``key``; raises CodecError."""
    return ("put", db.value if isinstance(db, StoreDb) else db, key_bytes(key), pack_value(value))


def store_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / STORE_SUBDIR


class Store:
    """One open LMDB environment. Build with :meth:`Store.open`, not directly."""

    def __init__(self, path: Path, *, map_size: int, readonly: bool) -> None:
        self.path = path
        self.map_size = map_size
        self.readonly = readonly
        self._refs = 0
        self._env: lmdb.Environment | None = None
        self._dbs: dict[str, Any] = {}
        # LMDB requires that no transaction of this process is active while
        # the map is resized or the environment closed; every transaction
        # made here registers with this gate for its (short) duration.
        self._gate = threading.Condition()
        self._active = 0
        self._paused = False

    # -- opening and closing ----------------------------------------------------

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], *, map_size: int = DEFAULT_MAP_SIZE,
             readonly: bool = False) -> Store:
        """Open (creating ``<run_dir>/store/`` unless ``readonly``) or share the store."""
        path = store_path(run_dir)
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        elif not (path / "data.mdb").exists():
            raise FileNotFoundError(f"no store at {path}")
        key = os.path.realpath(path)
        with _OPEN_LOCK:
            store = _OPEN.get(key)
            if store is None:
                store = cls(path, map_size=map_size, readonly=readonly)
                store._open_env()
                _OPEN[key] = store
            elif store.readonly and not readonly:
                raise RuntimeError(f"store {path} is open read-only in this process")
            store._refs += 1
            return store

    def retain(self) -> Store:
        """Take one more hold on an open store (pair with :meth:`close`)."""
        with _OPEN_LOCK:
            self._require()
            self._refs += 1
        return self

    def _open_env(self) -> None:
        self._env = lmdb.open(
            str(self.path), map_size=self.map_size, max_dbs=len(DATABASES) + 2,
            subdir=True, readonly=self.readonly, sync=True, metasync=True, lock=True,
            max_spare_txns=4)
        if self.readonly:
            self._env.set_mapsize(0)  # adopt the writer's current map size
        self.map_size = self._env.info()["map_size"]
        dbs: dict[str, Any] = {}
        for name in DATABASES:
            create = not self.readonly
            try:
                dbs[name] = self._env.open_db(name.encode(), create=create)
            except lmdb.NotFoundError:
                dbs[name] = None  # read-only view of a store from an older build
        self._dbs = dbs
        logger.debug("store opened at {} (map {} MiB)", self.path, self.map_size >> 20)

    def close(self) -> None:
        """Release one hold; the environment closes (after a sync) with the last."""
        with _OPEN_LOCK:
            if self._env is None:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            _OPEN.pop(os.path.realpath(self.path), None)
            with self._exclusive():
                env, self._env = self._env, None
                if not self.readonly:
                    env.sync(True)
                env.close()
        logger.debug("store closed at {}", self.path)

    def reopen(self) -> None:
        """Close and reopen the environment (after a crash of the writer, or to
        pick up a store another process changed). Holders keep their handle;
        transactions in progress finish first."""
        with _OPEN_LOCK, self._exclusive():
            self._require().close()
            self._env = None
            self._open_env()

    @property
    def closed(self) -> bool:
        return self._env is None

    @property
    def env(self) -> lmdb.Environment:
        return self._require()

    def _require(self) -> lmdb.Environment:
        env = self._env
        if env is None:
            raise StoreClosed(f"store {self.path} is closed")
        return env

    def _db(self, db: str | StoreDb) -> Any:
        name = db.value if isinstance(db, StoreDb) else db
        try:
            return self._dbs[name]
        except KeyError:
            raise KeyError(f"unknown database {name!r}; known: {', '.join(DATABASES)}") from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading (any thread, never blocks the writer) ------------------------------

    @contextmanager
    def _txn_slot(self) -> Iterator[lmdb.Environment]:
        """Register one transaction with the gate (waits only during a resize)."""
        with self._gate:
            while self._paused:
                self._gate.wait()
            self._active += 1
        try:
            yield self._require()
        finally:
            with self._gate:
                self._active -= 1
                if not self._active:
                    self._gate.notify_all()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """No transaction of this process runs inside (resize, reopen, close)."""
        with self._gate:
            self._paused = True
            try:
                while self._active:
                    self._gate.wait()
                yield
            finally:
                self._paused = False
                self._gate.notify_all()

    def _read(self, fn: Callable[[lmdb.Transaction[bytes]], _R]) -> _R:
        for attempt in (1, 2):
            with self._txn_slot() as env:
                try:
                    with env.begin(buffers=False) as txn:
                        return fn(txn)
                except lmdb.MapResizedError:  # another process grew the map
                    if attempt == 2:
                        raise
            with self._exclusive():
                self._require().set_mapsize(0)
        raise AssertionError("unreachable")

    def get(self, db: str | StoreDb, key: str, default: Any = None) -> Any:
        dbi = self._db(db)
        if dbi is None:
            return default
        raw = self._read(lambda txn: txn.get(key_bytes(key), db=dbi))
        return default if raw is None else unpack_value(raw)

    def items(self, db: str | StoreDb, prefix: str | None = None) -> list[tuple[str, Any]]:
        """Every ``(key, value)`` of ``db`` in key order, from one snapshot."""
        dbi = self._db(db)
        if dbi is None:
            return []
        return self._read(lambda txn: _scan(txn, dbi, prefix))

    def count(self, db: str | StoreDb) -> int:
        dbi = self._db(db)
        return 0 if dbi is None else self._read(lambda txn: txn.stat(dbi)["entries"])

    def read_all(self) -> dict[str, dict[str, Any]]:
        """All databases from ONE snapshot (what recovery wants: no torn view)."""
        def scan_all(txn: lmdb.Transaction[bytes]) -> dict[str, dict[str, Any]]:
            return {name: dict(_scan(txn, dbi, None)) if dbi is not None else {}
                    for name, dbi in self._dbs.items()}
        return self._read(scan_all)

    def counter(self, name: str) -> int:
        """Next unreserved value of a persisted counter (1 if never used)."""
        value: int = self.get(StoreDb.COUNTERS, name, 1)
        return value

    def stats(self) -> dict[str, Any]:
        info = self.env.info()
        return {"path": str(self.path), "map_size": info["map_size"],
                "last_txnid": info["last_txnid"],
                "entries": {name: self.count(name) for name in DATABASES}}

    # -- writing (the persistence actor only) -----------------------------------------

    def apply(self, ops: Iterable[tuple[Any, ...]]) -> list[Any]:
        """Apply encoded ops in ONE transaction, committed and synced on return.

        Ops: ``("put", db, key_bytes, value_bytes)``, ``("del", db, key_bytes)``
        -> existed?, ``("del_upto", db, key_bytes)`` -> how many keys up to and
        including it were deleted, ``("reserve", counter, n)`` -> ``(start, stop)``. Returns one
        result per op. Either every op lands or none does. A full map is grown
        (doubled, up to ``_MAX_GROWTHS`` times) and the transaction retried.
        """
        ops = list(ops)
        for _ in range(_MAX_GROWTHS):
            try:
                return self._apply_once(ops)
            except lmdb.MapFullError:
                self._grow()
        return self._apply_once(ops)

    def _apply_once(self, ops: list[tuple[Any, ...]]) -> list[Any]:
        dbs = self._dbs
        results: list[Any] = []
        append = results.append
        # The with-block commits (and, with sync=True, fsyncs) on success and
        # aborts on any exception: all of the ops or none of them.
        with self._txn_slot() as env, env.begin(write=True) as txn:
            for op in ops:
                kind = op[0]
                if kind == "put":
                    txn.put(op[2], op[3], db=dbs[op[1]])
                    append(None)
                elif kind == "del":
                    append(txn.delete(op[2], db=dbs[op[1]]))
                elif kind == "reserve":
                    append(_reserve(txn, dbs["counters"], op[1], op[2]))
                elif kind == "del_upto":
                    append(_delete_upto(txn, dbs[op[1]], op[2]))
                else:
                    raise ValueError(f"unknown store op {kind!r}")
        return results

    def reserve(self, counter: str, n: int) -> tuple[int, int]:
        """Reserve counter values in a transaction of its own. Only for when no
        persistence actor runs (tools, tests); otherwise send ``Reserve``."""
        span: tuple[int, int] = self.apply([("reserve", counter, n)])[0]
        return span

    def sync(self) -> None:
        self.env.sync(True)

    def _grow(self) -> None:
        with self._exclusive():
            env = self._require()
            new_size = env.info()["map_size"] * 2
            env.set_mapsize(new_size)
            self.map_size = new_size
        logger.warning("store {} map grown to {} MiB", self.path, self.map_size >> 20)


def _scan(txn: lmdb.Transaction[bytes], dbi: Any, prefix: str | None) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    cursor = txn.cursor(db=dbi)
    if prefix:
        pb = key_bytes(prefix)
        if not cursor.set_range(pb):
            return out
        for k, v in cursor:
            if not k.startswith(pb):
                break
            out.append((k.decode("utf-8"), unpack_value(v)))
    else:
        for k, v in cursor:
            out.append((k.decode("utf-8"), unpack_value(v)))
    return out


def _delete_upto(txn: lmdb.Transaction[bytes], dbi: Any, last: bytes) -> int:
    cursor = txn.cursor(db=dbi)
    n = 0
    while cursor.first() and cursor.key() <= last:
        cursor.delete()
        n += 1
    return n


def _reserve(txn: lmdb.Transaction[bytes], dbi: Any, counter: str, n: int) -> tuple[int, int]:
    kb = key_bytes(counter)
    raw = txn.get(kb, db=dbi)
    start = 1 if raw is None else unpack_value(raw)
    if not isinstance(start, int) or start < 1:
        raise CodecError(f"counter {counter!r} holds {start!r}, not a positive int")
    stop = start + n
    txn.put(kb, pack_value(stop), db=dbi)
    return (start, stop)
