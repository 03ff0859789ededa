"""The persistence actor: the only writer of the run's LMDB store.

Group commit. Each write message is encoded and buffered; the buffer is
committed in ONE transaction, with one fsync, when the mailbox runs empty
(``on_idle``), when it holds ``max_batch`` records, or when its oldest write
has waited ``max_delay_s``. Only then are the acks sent, all at once. Under
load one fsync thus covers thousands of records, which is how every
acknowledged write can be on disk and still be fast. An ack is never sent
before the commit that holds its write has returned (``sync=True``).

Failures never vanish (rule 17): a value that cannot be encoded fails only
its own message's ack; a transaction that fails fails the acks of that batch
and is logged; writes without an ack that fail are logged at ERROR and
counted. The actor keeps running either way.

:class:`IdAllocator` hands out client order ids from counter blocks that are
durably reserved through this actor ahead of need (rule 15), so the
coordinator never waits for a disk write per order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from loguru import logger

from messages.codec import CodecError
from messages.persistence import (
    Ack, Delete, Durable, Flush, GetStats, PersistenceError, Put, PutMany, Reserve,
)
from runtime.actor import Actor, handles
from runtime.store import DEFAULT_MAP_SIZE, Store, key_bytes, pack_value

AckLike = Ack | Future | None
_DONE = Durable(ok=True)  # immutable, so one instance serves every plain future ack


class PersistenceActor(Actor):
    """Single LMDB writer with group commit and durable acknowledgements.

    Construct through a ``ChildSpec("persistence", PersistenceActor,
    kwargs={"run_dir": ...})``; or pass ``store=`` an open :class:`Store`
    (the actor takes its own hold on it). With neither, the system's
    services ``store`` or ``run_dir`` are used.
    """

    def __init__(self, ctx: Any, run_dir: Any = None, *, store: Store | None = None,
                 map_size: int = DEFAULT_MAP_SIZE, max_batch: int = 10_000,
                 max_delay_s: float = 0.05, linger_s: float = 0.001) -> None:
        super().__init__(ctx)
        if run_dir is None and store is None:
            store = ctx.services.get("store")
            run_dir = ctx.services.get("run_dir")
        if run_dir is None and store is None:
            raise ValueError("PersistenceActor needs run_dir= or store= (or a 'run_dir' service)")
        if max_batch < 1 or max_delay_s <= 0 or not linger_s >= 0:
            raise ValueError("PersistenceActor needs max_batch >= 1, max_delay_s > 0 and "
                             "linger_s >= 0")
        self._run_dir = run_dir
        self._given_store = store
        self._map_size = map_size
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.linger_s = linger_s
        self.store: Store | None = None
        self._ops: list[tuple] = []
        self._acks: list[tuple[Ack | Future, int | None]] = []
        self._first_at = 0.0
        self.transactions = 0
        self.records = 0
        self.failed_batches = 0
        self.failed_records = 0
        self.rejected = 0
        self.last_commit_ms = 0.0
        self.max_commit_ms = 0.0
        self.max_records_in_txn = 0

    # -- lifecycle ---------------------------------------------------------------

    def on_start(self) -> None:
        if self._given_store is not None:
            self.store = self._given_store.retain()
        else:
            self.store = Store.open(self._run_dir, map_size=self._map_size)
        self.log.info("persistence writing to {}", self.store.path)

    def on_stop(self) -> None:
        self._commit()
        self._release()

    def on_crashed_message(self, message: Any, exc: BaseException) -> None:
        ack = getattr(message, "ack", None)
        if ack is not None and all(a is not ack for a, _ in self._acks):  # else on_failure has it
            self._ack_error(ack, f"persistence actor crashed on {type(message).__name__}: {exc!r}")

    def on_failure(self, exc_type: Any, exc: BaseException, tb: Any) -> None:
        for ack, _ in self._acks:
            self._ack_error(ack, f"persistence actor crashed before commit: {exc!r}")
        if self._ops:
            self.log.error("{} buffered writes lost with the crash of {}", len(self._ops),
                           self.ctx.name)
        self._ops, self._acks = [], []
        self._release()

    def _release(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            store.close()

    # -- writes ------------------------------------------------------------------

    @handles(Put)
    def on_put(self, msg: Put) -> None:
        try:
            value = pack_value(msg.value)
        except CodecError as exc:
            self._ack_error(msg.ack, f"Put {msg.db}/{msg.key}: {exc}")
            return
        self._buffer(("put", msg.db.value, key_bytes(msg.key), value), msg.ack, False)

    @handles(Delete)
    def on_delete(self, msg: Delete) -> None:
        self._buffer(("del", msg.db.value, key_bytes(msg.key)), msg.ack, True)

    @handles(PutMany)
    def on_put_many(self, msg: PutMany) -> None:
        ops = []
        try:
            for db, key, value in msg.items:
                ops.append(("put", db.value, key_bytes(key), pack_value(value)))
        except CodecError as exc:
            self._ack_error(msg.ack, f"PutMany {db}/{key}: {exc}; nothing of the batch written")
            return
        ops.extend(("del", db.value, key_bytes(key)) for db, key in msg.deletes)
        if not ops:
            self._buffer(None, msg.ack, False)
            return
        self._start_window()
        self._ops.extend(ops)
        if msg.ack is not None:
            self._acks.append((msg.ack, None))
        self._maybe_commit()

    @handles(Reserve)
    def on_reserve(self, msg: Reserve) -> None:
        self._buffer(("reserve", msg.counter, msg.n), msg.ack, True)

    @handles(Flush)
    def on_flush(self, msg: Flush) -> None:
        self._acks.append((msg.ack, None))
        self._commit()

    @handles(GetStats)
    def on_get_stats(self, msg: GetStats) -> dict[str, Any]:
        return self.stats()

    def _start_window(self) -> None:
        if not self._ops:
            self._first_at = time.monotonic()

    def _buffer(self, op: tuple | None, ack: AckLike, wants_result: bool) -> None:
        index = None
        if op is not None:
            self._start_window()
            index = len(self._ops)
            self._ops.append(op)
        if ack is not None:
            self._acks.append((ack, index if wants_result else None))
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        # Wall time on purpose: this bounds ack latency under sustained load,
        # it is not trading logic (which reads the injected clock).
        if (len(self._ops) >= self.max_batch
                or time.monotonic() - self._first_at >= self.max_delay_s):
            self._commit()

    def on_idle(self) -> None:
        if not self._ops and not self._acks:
            return
        if not self._acks and self.linger_s > 0 and self._linger():
            return  # company arrived: it joins this batch, committed at the next idle
        self._commit()

    def _linger(self) -> bool:
        """Writes nobody waits for may wait ``linger_s`` for the next message
        (PostgreSQL's commit_delay). The usual next message is the acknowledged
        write that a state write was made for: an actor records its decision,
        then the coordinator's order intent follows (write-then-send). Lingering
        lets both share one fsync, which halves the disk time on the hedge and
        stop paths, instead of the intent waiting out the first one. The actor
        stays busy meanwhile, so quiescence still means committed."""
        wait = min(self.linger_s, self.max_delay_s - (time.monotonic() - self._first_at))
        if wait <= 0:
            return False
        mailbox = self.ctx.cell.mailbox
        return mailbox.wait_for_item(wait) and mailbox.depth > 0

    # -- the group commit ------------------------------------------------------------

    def _commit(self) -> None:
        ops, acks = self._ops, self._acks
        if not ops and not acks:
            return
        self._ops, self._acks = [], []
        results: list[Any] = []
        if ops:
            t0 = time.perf_counter()
            try:
                if self.store is None:
                    raise PersistenceError("store is not open")
                results = self.store.apply(ops)
            except Exception as exc:  # noqa: BLE001 - every failure goes to the acks
                self.failed_batches += 1
                self.failed_records += len(ops)
                self.log.opt(exception=exc).error(
                    "group commit of {} records failed ({} acks get the error): {!r}",
                    len(ops), len(acks), exc)
                text = f"transaction of {len(ops)} records failed: {type(exc).__name__}: {exc}"
                for ack, _ in acks:
                    self._ack_error(ack, text)
                return
            ms = (time.perf_counter() - t0) * 1000.0
            self.transactions += 1
            self.records += len(ops)
            self.last_commit_ms = ms
            self.max_commit_ms = max(self.max_commit_ms, ms)
            self.max_records_in_txn = max(self.max_records_in_txn, len(ops))
        for ack, index in acks:
            self._ack_ok(ack, None if index is None else results[index])

    def _ack_ok(self, ack: Ack | Future, result: Any) -> None:
        if isinstance(ack, Ack):
            self.ctx.tell(ack.reply_to, Durable(token=ack.token, ok=True, result=result))
            return
        try:
            ack.set_result(_DONE if result is None else Durable(ok=True, result=result))
        except Exception:  # noqa: BLE001 - a cancelled or already resolved future
            pass

    def _ack_error(self, ack: AckLike, text: str) -> None:
        self.rejected += 1
        if ack is None:
            self.log.error("write without ack not persisted: {}", text)
            return
        self.log.warning("write not persisted: {}", text)
        if isinstance(ack, Ack):
            self.ctx.tell(ack.reply_to, Durable(token=ack.token, ok=False, error=text))
            return
        try:
            ack.set_exception(PersistenceError(text))
        except Exception:  # noqa: BLE001
            pass

    # -- figures ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        txns = self.transactions
        return {
            "transactions": txns,
            "records": self.records,
            "records_per_txn": round(self.records / txns, 2) if txns else 0.0,
            "max_records_in_txn": self.max_records_in_txn,
            "failed_batches": self.failed_batches,
            "failed_records": self.failed_records,
            "rejected": self.rejected,
            "buffered": len(self._ops),
            "max_batch": self.max_batch,
            "last_commit_ms": round(self.last_commit_ms, 3),
            "max_commit_ms": round(self.max_commit_ms, 3),
        }


class IdsUnavailable(TimeoutError):
    """No reserved id was available in time (the persistence actor is slow or down)."""


class IdAllocator:
    """Unique, increasing, restart-stable ids from durably reserved blocks.

    Blocks of ``block`` counter values are reserved through the persistence
    actor (``Reserve``) and only used once the reservation is on disk, so an
    id handed out before a crash is never handed out again after it. The
    next block is requested when fewer than ``low_water`` ids remain, so
    :meth:`try_next` almost never finds the pool empty. Thread-safe.

    Ids unused at a crash are skipped (gaps), never reused. ``prefix`` should
    make ids unique at the broker across stores (e.g. include the account).
    """

    def __init__(self, send: Callable[[str, int, Future], Any], counter: str, *,
                 prefix: str = "", block: int = 1024, low_water: int | None = None,
                 on_refill: Callable[[], None] | None = None) -> None:
        if block < 1:
            raise ValueError("IdAllocator block must be >= 1")
        self._send = send
        self.counter = counter
        self.prefix = prefix
        self.block = block
        self.low_water = block // 2 if low_water is None else low_water
        self.on_refill = on_refill
        self._cond = threading.Condition(threading.Lock())
        self._blocks: deque[tuple[int, int]] = deque()
        self._next = 0
        self._stop = 0
        self._pending = False
        self.last_error: BaseException | None = None
        self.issued = 0

    @classmethod
    def via_actor(cls, tell: Callable[[str, Any], bool], counter: str, *,
                  target: str = "persistence", **kw: Any) -> IdAllocator:
        """Reserve through the persistence actor; ``tell`` is ``ctx.tell`` or ``system.tell``."""
        def send(name: str, n: int, fut: Future) -> None:
            if not tell(target, Reserve(name, n, ack=fut)):
                raise PersistenceError(f"cannot reach {target!r} to reserve ids")
        return cls(send, counter, **kw)

    @classmethod
    def via_store(cls, store: Store, counter: str, **kw: Any) -> IdAllocator:
        """Reserve directly in the store: only when no persistence actor runs."""
        def send(name: str, n: int, fut: Future) -> None:
            fut.set_result(Durable(ok=True, result=store.reserve(name, n)))
        return cls(send, counter, **kw)

    # -- handing out ----------------------------------------------------------------

    def try_next(self) -> str | None:
        """The next id, or None if no reserved id is left (a refill is on its way)."""
        with self._cond:
            value = self._take()
            refill = self._claim_refill()
        if refill:
            self._request()
        return None if value is None else f"{self.prefix}{value}"

    def next_id(self, timeout: float = 10.0) -> str:
        """The next id, waiting up to ``timeout`` for a refill. Not for handlers."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.try_next()
            if got is not None:
                return got
            with self._cond:
                while not self._blocks and self._next >= self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise IdsUnavailable(
                            f"no {self.counter} id reserved within {timeout}s "
                            f"(last error: {self.last_error!r})")
                    if not self._pending:
                        # The last refill failed: pause briefly, then ask again.
                        self._cond.wait(min(left, 0.05))
                        break
                    self._cond.wait(left)

    def next(self, timeout: float = 5.0) -> str:
        """:meth:`next_id` by the name the coordinator calls. Returns at once
        unless the persistence actor is a whole block behind; then waits."""
        return self.next_id(timeout)

    def start(self, timeout: float = 10.0) -> IdAllocator:
        """Reserve the first block and wait until it is durable (startup only)."""
        with self._cond:
            claim = not self._pending and not self._blocks and self._next >= self._stop
            if claim:
                self._pending = True
        if claim:
            self._request()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._blocks and self._next >= self._stop:
                left = deadline - time.monotonic()
                if left <= 0 or not self._pending:
                    raise IdsUnavailable(f"could not reserve {self.counter} ids: "
                                         f"{self.last_error!r}")
                self._cond.wait(left)
        return self

    @property
    def available(self) -> int:
        with self._cond:
            return self._remaining()

    # -- mechanics (call under the lock unless said otherwise) -------------------------

    def _remaining(self) -> int:
        return (self._stop - self._next) + sum(b - a for a, b in self._blocks)

    def _take(self) -> int | None:
        if self._next >= self._stop:
            if not self._blocks:
                return None
            self._next, self._stop = self._blocks.popleft()
        value = self._next
        self._next += 1
        self.issued += 1
        return value

    def _claim_refill(self) -> bool:
        if self._pending or self._remaining() >= max(1, self.low_water):
            return False
        self._pending = True
        return True

    def _request(self) -> None:
        """Send one reservation (outside the lock: the reply may land at once)."""
        fut: Future = Future()
        fut.add_done_callback(self._landed)
        try:
            self._send(self.counter, self.block, fut)
        except Exception as exc:  # noqa: BLE001 - reported through the future
            if not fut.done():
                fut.set_exception(exc)

    def _landed(self, fut: Future) -> None:
        exc = fut.exception()
        with self._cond:
            self._pending = False
            if exc is None:
                result = fut.result()
                start, stop = result.result if isinstance(result, Durable) else result
                self._blocks.append((start, stop))
            else:
                self.last_error = exc
            self._cond.notify_all()
        if exc is not None:
            logger.error("id reservation for {} failed: {!r}", self.counter, exc)
        elif self.on_refill is not None:
            try:
                self.on_refill()
            except Exception:  # noqa: BLE001
                logger.exception("IdAllocator on_refill hook failed")
