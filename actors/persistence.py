"""The persistence actor: the only writer of the run's LMDB store.

Group commit. Each write message is encoded and buffered; the buffer is
committed in ONE transaction, with one fsync, when the mailbox runs empty
(``on_idle``), when it holds ``max_batch`` records, when its oldest
acknowledged write has waited ``max_delay_s``, or its oldest write of any
kind ``unacked_max_delay_s`` (writes nobody waits for, such as fills and
order statuses, do not force an fsync of their own while the mailbox is
busy: they ride with the next acknowledged write or the next idle commit).
Only then are the acks sent, all at once. Under
load one fsync thus covers thousands of records, which is how every
acknowledged write can be on disk and still be fast. An ack is never sent
before the commit that holds its write has returned (``sync=True``).

Failures never vanish (rule 17): a value that cannot be encoded fails only
its own message's ack; a transaction that fails fails the acks of that batch
and is logged; writes without an ack that fail are logged at ERROR and
counted. The actor keeps running either way.

The audit trail rides along (``trading.audit``, attached in ``on_start``
when the system has an ``audit`` service): every commit first drains the
audit records made since the last one into the same transaction, so a
record is durable no later than any write sent after it was made (an
approval before its order intent). Every ``audit_sync_every`` records the
audit file is fsynced at idle and the store forgets the records it holds.

``trading.id_allocator.IdAllocator`` hands out client
order ids from counter blocks durably reserved through this actor ahead of
need (rule 15), so the coordinator never waits for a disk write per order.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from messages.codec import CodecError
from messages.persistence import (
    Ack, AuditWaiting, Delete, Durable, Flush, GetStats, PersistenceError, Put, PutMany, Reserve, StoreDb,
)
from runtime.actor import THREADED, Actor, handles
from trading.audit import AuditLog, audit_key
from trading.store import DEFAULT_MAP_SIZE, Store, key_bytes, pack_value, put_op

_AUDIT_DB = StoreDb.AUDIT.value

if TYPE_CHECKING:
    from loguru import Logger

    from runtime.context import ActorContext

AckLike = Ack | Future | None
_DONE = Durable(ok=True)  # immutable, so one instance serves every plain future ack


class AuditRider:
    """The persistence actor's part in the audit trail (``trading.audit``): it
    takes the trail's writes over at start (putting back in the file what only
    the store kept), is woken when records wait, and syncs the file off the
    order path so the store can forget them. The drain itself is in the commit."""

    if TYPE_CHECKING:  # what the actor provides
        ctx: ActorContext
        log: Logger
        _ops: list[tuple]

        def _commit(self) -> str | None: ...
        def _start_window(self) -> None: ...

    def _attach_audit(self, audit: AuditLog, store: Store) -> None:
        """Take over the audit trail's writes; first put back in its file what
        only the store kept (records drained into a commit whose lines died in
        a killed process's buffer)."""
        held = [(int(key), line) for key, line in store.items(StoreDb.AUDIT)]
        synced = audit.attach(self._wake_for_audit, held)
        if held:
            self.log.info("audit: {} record(s) held in the store, the file synced to seq {}",
                          len(held), synced)
            self._ops.append(("del_upto", _AUDIT_DB, key_bytes(audit_key(synced))))
            self._commit()

    def _wake_for_audit(self) -> None:
        """Records wait and their owner's burst ended: commit them soon."""
        self.ctx.system.tell(self.ctx.name, AuditWaiting())

    @handles(AuditWaiting)
    def on_audit_waiting(self, msg: AuditWaiting) -> None:
        """Nothing to do now: the records are committed at idle like any write."""

    def _sync_audit(self, audit: AuditLog) -> None:
        """Off the order path (at idle, every ``audit_sync_every`` records): the
        audit file is fsynced, so the store may forget the records up to there
        (deleted with the next commit)."""
        synced = audit.sync()
        self._start_window()
        self._ops.append(("del_upto", _AUDIT_DB, key_bytes(audit_key(synced))))


class PersistenceActor(AuditRider, Actor):
    """Single LMDB writer with group commit and durable acknowledgements.

    Construct through a ``ChildSpec("persistence", PersistenceActor,
    kwargs={"run_dir": ...})``; or pass ``store=`` an open :class:`Store`
    (the actor takes its own hold on it). With neither, the system's
    services ``store`` or ``run_dir`` are used.
    """
    #: blocks in LMDB commits (fsync) and lingers for a group commit
    execution = THREADED

    def __init__(self, ctx: Any, run_dir: Any = None, *, store: Store | None = None,
                 map_size: int = DEFAULT_MAP_SIZE, max_batch: int = 10_000,
                 max_delay_s: float = 0.05, linger_s: float = 0.001,
                 unacked_max_delay_s: float = 0.05,
                 audit: AuditLog | None = None, audit_sync_every: int = 4096) -> None:
        super().__init__(ctx)
        if run_dir is None and store is None:
            store = ctx.services.get("store")
            run_dir = ctx.services.get("run_dir")
        if run_dir is None and store is None:
            raise ValueError("PersistenceActor needs run_dir= or store= (or a 'run_dir' service)")
        if max_batch < 1 or max_delay_s <= 0 or not linger_s >= 0:
            raise ValueError("PersistenceActor needs max_batch >= 1, max_delay_s > 0 and "
                             "linger_s >= 0")
        if audit_sync_every < 1:
            raise ValueError("PersistenceActor needs audit_sync_every >= 1")
        self._run_dir = run_dir
        self._given_store = store
        self.audit: AuditLog | None = audit if audit is not None else ctx.services.get("audit")
        self.audit_sync_every = audit_sync_every
        self._map_size = map_size
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.unacked_max_delay_s = max(unacked_max_delay_s, max_delay_s)
        self.linger_s = linger_s
        self.store: Store | None = None
        self._ops: list[tuple] = []
        self._acks: list[tuple[Ack | Future, int | None]] = []
        self._first_at = 0.0
        self._first_ack_at = 0.0
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
        if self.audit is not None:
            self._attach_audit(self.audit, self.store)

    def on_stop(self) -> None:
        self._commit()
        if self.audit is not None:
            self.audit.detach()
        self._release()

    def on_crashed_message(self, message: Any, exc: BaseException) -> None:
        ack = getattr(message, "ack", None)
        if ack is not None and all(a is not ack for a, _ in self._acks):  # else on_failure has it
            self._ack_error(ack, f"persistence actor crashed on {type(message).__name__}: {exc!r}")

    def on_failure(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
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
            op = put_op(msg.db, msg.key, msg.value)
        except CodecError as exc:
            self._ack_error(msg.ack, f"Put {msg.db}/{msg.key}: {exc}")
            return
        self._buffer(op, msg.ack, False)

    @handles(Delete)
    def on_delete(self, msg: Delete) -> None:
        self._buffer(("del", msg.db.value, key_bytes(msg.key)), msg.ack, True)

    @handles(PutMany)
    def on_put_many(self, msg: PutMany) -> None:
        ops = []
        try:
            for db, key, value in msg.items:
                ops.append(put_op(db, key, value))
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
            self._add_ack(msg.ack, None)
        self._maybe_commit()

    @handles(Reserve)
    def on_reserve(self, msg: Reserve) -> None:
        self._buffer(("reserve", msg.counter, msg.n), msg.ack, True)

    @handles(Flush)
    def on_flush(self, msg: Flush) -> Durable:
        """Commit now. The reply goes to ``msg.ack`` (an actor, a message); to a
        tool or test that asked (``system.ask``) it is the return value."""
        if msg.ack is not None:  # an ack-less Flush only commits
            self._add_ack(msg.ack, None)
        error = self._commit()
        return _DONE if error is None else Durable(ok=False, error=error)

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
            self._add_ack(ack, index if wants_result else None)
        self._maybe_commit()

    def _add_ack(self, ack: Ack | Future, index: int | None) -> None:
        if not self._acks:
            self._first_ack_at = time.monotonic()
        self._acks.append((ack, index))

    def _maybe_commit(self) -> None:
        # Wall time on purpose: this bounds ack latency under sustained load,
        # it is not trading logic (which reads the injected clock).
        now = time.monotonic()
        if (len(self._ops) >= self.max_batch
                or self._acks and now - self._first_ack_at >= self.max_delay_s
                or self._ops and now - self._first_at >= self.unacked_max_delay_s):
            self._commit()

    def on_idle(self) -> None:
        audit = self.audit
        if not self._ops and not self._acks and (audit is None or not audit.pending):
            return
        if not self._acks and self.linger_s > 0 and self._linger():
            return  # company arrived: it joins this batch, committed at the next idle
        self._commit()
        if audit is not None and audit.written_seq - audit.synced_seq >= self.audit_sync_every:
            self._sync_audit(audit)

    def _linger(self) -> bool:
        """Writes nobody waits for may wait ``linger_s`` for the next message
        (PostgreSQL's commit_delay). The usual next message is the acknowledged
        write that a state write was made for: an actor records its decision,
        then the coordinator's order intent follows (write-then-send). Lingering
        lets both share one fsync, which halves the disk time on the hedge and
        stop paths, instead of the intent waiting out the first one. The actor
        stays busy meanwhile, so quiescence still means committed."""
        wait = min(self.linger_s, self.unacked_max_delay_s - (time.monotonic() - self._first_at))
        if wait <= 0:
            return False
        mailbox = self.ctx.cell.mailbox
        return mailbox.wait_for_item(wait) and mailbox.depth > 0

    # -- the group commit ------------------------------------------------------------

    def _commit(self) -> str | None:
        """Commit what is buffered and answer its acks; the error text if it failed."""
        audit = self.audit.drain() if self.audit is not None else None
        if not audit:
            return self._commit_ops()
        # Every audit record made before the writes of this commit were sent is
        # durable with them (one transaction, one fsync); the lines reach the
        # file after the acks have left, whatever the commit's outcome.
        self._ops.extend(("put", _AUDIT_DB, key_bytes(audit_key(seq)), pack_value(line))
                         for seq, line in audit)
        try:
            return self._commit_ops()
        finally:
            assert self.audit is not None  # it drained
            self.audit.write_out()

    def _commit_ops(self) -> str | None:
        ops, acks = self._ops, self._acks
        if not ops and not acks:
            return None
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
                return text
            ms = (time.perf_counter() - t0) * 1000.0
            self.transactions += 1
            self.records += len(ops)
            self.last_commit_ms = ms
            self.max_commit_ms = max(self.max_commit_ms, ms)
            self.max_records_in_txn = max(self.max_records_in_txn, len(ops))
        for ack, index in acks:
            self._ack_ok(ack, None if index is None else results[index])
        return None

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
