"""The audit trail: append-only JSONL, one record per risk decision (and per
divergence correction, kill switch change, ...). DESIGN section 6.

The file is opened on first write, never at import. One file is one chain.
``seq`` counts records across every writer that ever appended to the file (a
resumed run or a scenario restart continues from the last record, so a
sequence number never repeats within a file), and each record carries
``prev_hash``, the SHA-256 of the previous record's line as written. Editing,
inserting or deleting a record breaks the chain at that point, and
:func:`verify_audit` names the first broken record. The last record is
protected only by whatever copies its hash (the end of a chain cannot vouch
for itself). Readers skip a torn last line.

Two ways to write, one chain:

* **Attached to the persistence actor** (a running runtime,
  :meth:`AuditLog.attach`): ``record`` only numbers the record and queues it,
  so the order path pays neither the JSON, the redaction, the hash nor a
  system call. The persistence actor drains the queue into every group commit
  (:meth:`drain`): the lines are appended to the file (one ``write``) and put
  in the store's ``audit`` database *in the same LMDB transaction* as the
  writes of that commit. An approval is recorded before its order intent is
  sent to persistence, so its record is durable no later than the intent, with
  the intent's one fsync, and the order leaves only after that. The file
  itself is fsynced off the order path, every ``sync_every`` records, and only
  then are those records deleted from the store. A restart appends to the file
  whatever the store holds beyond the file's last record (a process killed
  with lines in its buffer), so the chain loses nothing.
* **Direct** (tools, tests, no persistence actor): ``record`` encodes and
  writes at once; ``flush`` (the owner calls it from ``on_idle``) hands the
  lines to the OS, so a crash loses at most the burst in progress.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from loguru import logger

from messages.jsonl import compact_encoder, iter_jsonl
from runtime.redact import might_hold_secret, redact_text

AUDIT_SCHEMA_VERSION = 2
#: ``prev_hash`` of a file's first record
GENESIS_HASH = "0" * 64
#: how far from the end of an existing file the last record is looked for
_TAIL_BYTES = 1 << 16
#: a record's key in the store's ``audit`` database (zero-padded: key order is seq order)
_KEY_FORMAT = "{:020d}"


#: ``json.dumps(rec, default=str, separators=(",", ":"))`` without building an
#: encoder per record (one per risk decision)
_dumps = compact_encoder(default=str)
#: where a record's line carries ``prev_hash``: right after ``seq``, before this
#: key (the first occurrence: a JSON string value cannot hold an unescaped quote)
_AFTER_LINK = ',"timestamp":'


def line_hash(line: str) -> str:
    """The hash the next record carries: SHA-256 of one line as written (no newline)."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def audit_key(seq: int) -> str:
    """The key of record ``seq`` in the store's ``audit`` database."""
    return _KEY_FORMAT.format(seq)


class AuditLog:
    def __init__(self, path: Path | str | None, *, run_id: str, app_version: str,
                 config_hash: str) -> None:
        self.path = Path(path) if path is not None else None
        self.run_id = run_id
        self.app_version = app_version
        self.config_hash = config_hash
        self._fh: Any = None
        self.records = 0
        self._seq = 0
        self._prev_hash = GENESIS_HASH
        # The event id's random suffix tells apart records of runs that share a
        # run id; a generator seeded once from the OS is enough for that, and
        # spares a getrandom() syscall (uuid4) per record on the order path.
        self._rng = random.Random(os.urandom(16))
        # The coordinator writes most records; the gateway and the reconciler
        # write refused inputs (rule 18) from their own threads, the
        # persistence actor drains them from its own.
        self._lock = threading.Lock()
        #: records numbered but not yet encoded (attached: the writer drains them)
        self._pending: list[dict[str, Any]] = []
        #: the attached writer's wake-up (None: direct writes)
        self._nudge: Callable[[], Any] | None = None
        self._nudged = False
        #: lines encoded (the chain's order) but not yet handed to the file, and
        #: the seq of the last of them: drained lines are written after their commit
        self._staged: list[str] = []
        self._staged_seq = 0
        #: the last seq written to the file, and the last one fsynced there
        self.written_seq = 0
        self.synced_seq = 0

    # -- recording ------------------------------------------------------------------

    def record(self, *, kind: str, reason: str, ts: datetime, inputs: dict[str, Any],
               approved: bool | None = None, **extra: Any) -> dict[str, Any]:
        """Number one record and queue it (attached) or write it (direct). The
        returned dict is the record; its ``prev_hash`` is set when it is encoded
        (attached: when the writer drains it, so nothing in it may change after
        this call: callers pass fresh values)."""
        with self._lock:
            if self.path is not None and self._fh is None:
                self._open()
            self._seq += 1
            rec = {
                "schema_version": AUDIT_SCHEMA_VERSION,
                "event_id": f"{self.run_id}-{self._seq:08d}-{self._rng.getrandbits(32):08x}",
                "seq": self._seq,
                # "prev_hash" goes here, in the line (the chain's link, set when encoded)
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
            self.records += 1
            if self._nudge is not None:
                self._pending.append(rec)
            else:
                self._write(self._encode([rec]), rec["seq"])
            return rec

    def _encode(self, recs: list[dict[str, Any]]) -> list[str]:  # (under the lock, seq order)
        """The lines of ``recs``, each linked to the one before. The link cannot
        make a line need redaction (a hex digest between quotes holds no
        secret-like word), so one check of the batch without its links tells
        whether any line needs the (much slower) per-line redaction."""
        bodies = [_dumps(rec) for rec in recs]
        redact = might_hold_secret("\n".join(bodies))
        lines = []
        prev = self._prev_hash
        for rec, body in zip(recs, bodies, strict=True):
            cut = body.index(_AFTER_LINK)
            line = f'{body[:cut]},"prev_hash":"{prev}"{body[cut:]}'
            if redact:
                line = redact_text(line)
            rec["prev_hash"] = prev
            prev = line_hash(line)
            lines.append(line)
        self._prev_hash = prev
        return lines

    def _write(self, lines: list[str], last_seq: int) -> None:  # (under the lock)
        """Append lines to the file (after any staged before them: chain order)."""
        self._stage(lines, last_seq)
        self._write_staged()

    def _stage(self, lines: list[str], last_seq: int) -> None:  # (under the lock)
        self._staged.extend(lines)
        self._staged_seq = last_seq

    def _write_staged(self) -> None:  # (under the lock)
        if not self._staged:
            return
        lines, self._staged = self._staged, []
        if self._fh is not None:
            self._fh.write("\n".join(lines) + "\n")
            self.written_seq = self._staged_seq

    # -- the attached writer (the persistence actor) -------------------------------

    def attach(self, nudge: Callable[[], Any], durable: list[tuple[int, str]]) -> int:
        """From now on records queue for :meth:`drain`; ``nudge()`` is called
        (at most once per drain) when an owner's ``flush`` finds records
        waiting. ``durable`` are the ``(seq, line)`` records the store holds:
        those the file lacks (a process killed with lines in its buffer) are
        appended first, and the file is synced. Returns the seq up to which
        the file is synced: the store need keep no record up to it."""
        with self._lock:
            if self.path is None:
                self._nudge = nudge
                return max((seq for seq, _ in durable), default=0)
            if self._fh is None:
                self._open()
            self._encode_pending()
            for seq, line in durable:
                if seq <= self._seq:
                    continue  # the file has it
                if seq != self._seq + 1 or _prev_of(line) != self._prev_hash:
                    logger.error("audit records recovered from the store do not continue {} "
                                 "at seq {} (record {}): appended anyway; `audit verify` "
                                 "shows the break", self.path, self._seq, seq)
                self._write([line], seq)
                self._seq, self._prev_hash = seq, line_hash(line)
            self._nudge = nudge
            fd = self._fh.fileno()
            self._fh.flush()
            upto = self.written_seq = self._seq
        os.fsync(fd)
        self.synced_seq = upto
        return upto

    def detach(self) -> None:
        """Back to direct writes (the writer stops): what waits is written now."""
        with self._lock:
            self._nudge = None
            self._encode_pending()
            if self._fh is not None:
                self._fh.flush()

    @property
    def pending(self) -> int:
        """Records waiting for the attached writer."""
        return len(self._pending)

    def drain(self) -> list[tuple[int, str]]:
        """The attached writer, before each commit: encode every waiting record
        (chain order) and return the lines as ``(seq, line)`` for the store's
        ``audit`` database in that commit. They reach the file with
        :meth:`write_out`, after the commit (its fsync is what makes them
        durable; the file's ``write`` need not delay the acks)."""
        with self._lock:
            self._nudged = False
            if not self._pending:
                return []
            recs, self._pending = self._pending, []
            lines = self._encode(recs)
            self._stage(lines, recs[-1]["seq"])
            return [(rec["seq"], line) for rec, line in zip(recs, lines, strict=True)]

    def write_out(self) -> None:
        """Hand the drained lines to the OS (one ``write``)."""
        with self._lock:
            self._write_staged()
            if self._fh is not None:
                self._fh.flush()

    def sync(self) -> int:
        """fsync the file (the attached writer, off the order path); returns the
        seq up to which it is synced (the store may drop records up to it)."""
        with self._lock:
            if self._fh is None:
                return self.synced_seq
            self._write_staged()
            self._fh.flush()
            fd, upto = self._fh.fileno(), self.written_seq
        try:
            os.fsync(fd)
        except OSError as exc:  # closed meanwhile (shutdown): close() synced it
            logger.warning("audit file sync failed: {!r}", exc)
            return self.synced_seq
        self.synced_seq = max(self.synced_seq, upto)
        return self.synced_seq

    def _encode_pending(self) -> None:  # (under the lock)
        """Everything made so far into the file (staged lines first)."""
        if self._pending:
            recs, self._pending = self._pending, []
            self._stage(self._encode(recs), recs[-1]["seq"])
        self._write_staged()

    def _open(self) -> None:
        """Open for appending and continue the file's chain: ``seq`` and ``prev_hash``
        follow its last complete record. A torn last line (a crash mid-write) is cut
        off first: it was never a record, and appending after it would glue the next
        record to it."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        last = _cut_torn_tail(self.path)
        if last is not None:
            try:
                self._seq = int(json.loads(last).get("seq") or 0)
            except (ValueError, AttributeError):
                self._seq = 0
            self._prev_hash = line_hash(last)
        self.written_seq = self.synced_seq = self._seq
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived

    def flush(self) -> None:
        """Owners call this at the end of a burst. Direct: the lines reach the OS.
        Attached: the writer is woken if records wait (it commits them soon)."""
        with self._lock:
            nudge = self._nudge
            if nudge is None:
                if self._fh is not None:
                    self._fh.flush()
                return
            if not self._pending or self._nudged:
                return
            self._nudged = True
        nudge()

    def close(self) -> None:
        with self._lock:
            self._nudge = None
            self._encode_pending()
            if self._fh is not None:
                self._fh.flush()
                self._fh.close()
                self._fh = None


def _prev_of(line: str) -> Any:
    try:
        return json.loads(line).get("prev_hash")
    except (ValueError, AttributeError):
        return None


def decision_reasons() -> list[str]:
    """Every risk decision reason code (a record may also carry group, kill switch
    and reconciliation reasons)."""
    from trading.reasons import Reason

    return [r.value for r in Reason]


def read_audit(path: Path | str, *, reason: str | None = None,
               symbol: str | None = None) -> Iterator[dict[str, Any]]:
    """Records of an audit file, optionally filtered. A torn last line is skipped."""
    for rec in iter_jsonl(path):
        if reason is not None and rec.get("reason") != reason:
            continue
        if symbol is not None and (rec.get("inputs") or {}).get("symbol") != symbol:
            continue
        yield rec


def _cut_torn_tail(path: Path) -> str | None:
    """The last complete line of ``path`` (None: empty or missing), after truncating
    a partial line at its end. Reads backwards from the end, never the whole file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    with open(path, "rb+") as fh:
        buf, pos = b"", size
        while pos > 0 and buf.count(b"\n") < 2:
            step = min(_TAIL_BYTES, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
        if buf and not buf.endswith(b"\n"):
            cut = buf.rfind(b"\n")
            fh.truncate(pos + cut + 1)
            buf = buf[:cut + 1]
    last = buf.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    return last or None


@dataclass(frozen=True)
class ChainBreak:
    """The first record (1-based line number) whose link to the one before is wrong."""

    line: int
    seq: Any
    problem: str


def verify_audit(path: Path | str) -> tuple[int, ChainBreak | None]:
    """Walk the hash chain of an audit file: (records checked, first break or None).

    Every line must be a JSON record whose ``prev_hash`` is the hash of the line
    before (the genesis hash for the first) and whose ``seq`` is one more than the
    previous record's. Only a torn last line is tolerated (a crash mid-write)."""
    prev_hash, prev_seq, n = GENESIS_HASH, 0, 0
    with open(path, encoding="utf-8", newline="\n") as fh:
        for i, raw in enumerate(fh, start=1):
            if not raw.endswith("\n"):
                break  # an unterminated last line: a crash mid-write (the next writer cuts it)
            line = raw[:-1]
            broken = _link(line, i, prev_hash, prev_seq)
            if broken is not None:
                return n, broken
            prev_hash, prev_seq, n = line_hash(line), prev_seq + 1, n + 1
    return n, None


def _link(line: str, i: int, prev_hash: str, prev_seq: int) -> ChainBreak | None:
    """Why line ``i`` does not follow the record before it, or None."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return ChainBreak(i, None, "not a JSON record")
    if not isinstance(rec, dict):
        return ChainBreak(i, None, "not a JSON object")
    seq = rec.get("seq")
    if rec.get("prev_hash") != prev_hash:
        return ChainBreak(i, seq, "prev_hash does not match the line before: this record "
                                  "or the one before it was changed, inserted or removed")
    if seq != prev_seq + 1:
        return ChainBreak(i, seq, f"seq {seq} after {prev_seq}: expected {prev_seq + 1}")
    return None
