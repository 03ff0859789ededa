"""Messages to and from the persistence actor (the single LMDB writer).

Writes are fire-and-forget unless they carry an ``ack``. An ack says who
must hear when the write is *durable* (committed and synced to disk), which
is what write-ahead order intent needs: the coordinator persists an order
with ``ack=Ack("coordinator", token=client_order_id)`` and sends it to the
broker only when ``Durable(token=client_order_id)`` arrives.

Two kinds of ack, because two kinds of caller:

* ``Ack(reply_to, token)``: an actor name and a token. The actor receives a
  ``Durable`` message (``ok=False`` and ``error`` set if the write failed).
  This form crosses the codec, like every message.
* a ``concurrent.futures.Future``, on ``Put``, ``Delete`` and ``PutMany``
  only: for code outside the actor system (tests, the benchmark, the
  launcher). It resolves to the ``Durable`` message, or raises
  ``PersistenceError`` if the write failed. A message carrying a future is
  in-process only: the codec refuses to encode it. ``Reserve`` and ``Flush``,
  which actors send, take an ``Ack`` only: the reply is a message. Outside
  the actor system, ``system.ask(persistence, Flush())`` answers ``Durable``
  once everything sent before it is durable.

Keys are non-empty strings (UTF-8, at most ``MAX_KEY_BYTES``, LMDB's limit).
Values are anything the codec can carry: messages, dicts, tuples, Decimal,
aware datetimes, enums, str, int, bool, None.
"""

from __future__ import annotations

from concurrent.futures import Future
from enum import Enum
from typing import Any

from messages.base import Message, MessageError, message
from messages.enums import register_enum

#: LMDB's default maximum key size (mdb_env_get_maxkeysize).
MAX_KEY_BYTES = 511


class PersistenceError(RuntimeError):
    """A write was not made durable (bad value, failed transaction, stopped writer)."""


@register_enum
class StoreDb(str, Enum):
    """The named databases of a run's store (DESIGN section 6)."""

    ORDERS = "orders"
    GROUPS = "groups"
    FILLS = "fills"
    POSITIONS = "positions"
    META = "meta"
    COUNTERS = "counters"
    #: audit records not yet synced in audit.jsonl (trading.audit: they ride
    #: in the same transaction as the order intent they belong to)
    AUDIT = "audit"

    def __str__(self) -> str:
        return self.value


def _coerce_db(obj: Message, value: Any, where: str) -> StoreDb:
    if isinstance(value, StoreDb):
        return value
    try:
        return StoreDb(value)
    except ValueError:
        allowed = ", ".join(d.value for d in StoreDb)
        raise MessageError(f"{type(obj).__name__}.{where}: unknown database {value!r} "
                           f"(one of {allowed})") from None


def check_key(obj: Message, key: Any, where: str) -> None:
    if not isinstance(key, str) or not key:
        raise MessageError(f"{type(obj).__name__}.{where}: key must be a non-empty string, "
                           f"got {key!r}")
    if len(key) <= MAX_KEY_BYTES // 4:  # fast path: cannot exceed even at 4 bytes a char
        return
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise MessageError(f"{type(obj).__name__}.{where}: key is {size} bytes, "
                           f"LMDB allows at most {MAX_KEY_BYTES}")


def _check_ack(obj: Message, *, required: bool = False, future: bool = True) -> None:
    ack = obj.ack  # type: ignore[attr-defined]  # only called for message types with an ack field
    if ack is None:
        if required:
            raise MessageError(f"{type(obj).__name__}: needs an ack (Ack(reply_to, token))")
        return
    if isinstance(ack, Ack) or future and isinstance(ack, Future):
        return
    allowed = "Ack, a concurrent.futures.Future or None" if future else "Ack(reply_to, token)"
    raise MessageError(f"{type(obj).__name__}.ack: expected {allowed}, got {type(ack).__name__}")


@message
class Ack(Message):
    """Where to send ``Durable(token)`` once a write is on disk."""

    reply_to: str
    token: str | int

    def __post_init__(self) -> None:
        if not isinstance(self.reply_to, str) or not self.reply_to:
            raise MessageError(f"Ack.reply_to: expected an actor name, got {self.reply_to!r}")
        if isinstance(self.token, bool) or not isinstance(self.token, (str, int)):
            raise MessageError(f"Ack.token: expected str or int, got {self.token!r}")


@message
class Put(Message):
    """Write ``value`` under ``key`` in ``db`` (in the next group commit)."""

    db: StoreDb
    key: str
    value: Any
    ack: Ack | Future[Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", _coerce_db(self, self.db, "db"))
        check_key(self, self.key, "key")
        _check_ack(self)


@message
class Delete(Message):
    """Remove ``key`` from ``db``; ``Durable.result`` says whether it existed."""

    db: StoreDb
    key: str
    ack: Ack | Future[Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", _coerce_db(self, self.db, "db"))
        check_key(self, self.key, "key")
        _check_ack(self)


@message
class PutMany(Message):
    """Several writes that must land together: never split across transactions.

    ``items`` are ``(db, key, value)`` triples, applied in order, then
    ``deletes`` (``(db, key)`` pairs). If any value cannot be encoded, none
    of the batch is written and the ack carries the error.
    """

    items: tuple[tuple[StoreDb, str, Any], ...]
    deletes: tuple[tuple[StoreDb, str], ...] = ()
    ack: Ack | Future[Any] | None = None

    def __post_init__(self) -> None:
        items: list[tuple[StoreDb, str, Any]] = []
        for i, item in enumerate(self.items):
            try:
                db, key, value = item
            except (TypeError, ValueError):
                raise MessageError(f"PutMany.items[{i}]: expected (db, key, value)") from None
            check_key(self, key, f"items[{i}]")
            items.append((_coerce_db(self, db, f"items[{i}]"), key, value))
        deletes: list[tuple[StoreDb, str]] = []
        for i, pair in enumerate(self.deletes):
            try:
                db, key = pair
            except (TypeError, ValueError):
                raise MessageError(f"PutMany.deletes[{i}]: expected (db, key)") from None
            check_key(self, key, f"deletes[{i}]")
            deletes.append((_coerce_db(self, db, f"deletes[{i}]"), key))
        object.__setattr__(self, "items", tuple(items))
        object.__setattr__(self, "deletes", tuple(deletes))
        _check_ack(self)


@message
class Reserve(Message):
    """Durably reserve ``n`` values of the persisted counter ``counter``.

    ``Durable.result`` is ``(start, stop)``: the values ``start .. stop-1``
    belong to the caller and will never be handed out again, even after a
    crash (the reservation is on disk before the ack). Counters start at 1.
    """

    counter: str
    n: int
    ack: Ack | None = None

    def __post_init__(self) -> None:
        check_key(self, self.counter, "counter")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= 1 << 32:
            raise MessageError(f"Reserve.n: expected an int in 1..2**32, got {self.n!r}")
        _check_ack(self, required=True, future=False)


@message
class Flush(Message):
    """Commit whatever is buffered now; with an ack, ``Durable(token)`` once
    everything sent before it is durable (a request/reply: the asker parks what
    waits for it, never blocks)."""

    ack: Ack | None = None

    def __post_init__(self) -> None:
        _check_ack(self, future=False)


@message
class AuditWaiting(Message):
    """To the persistence actor: audit records wait for its next commit (sent
    by the audit trail when an owner ends a burst; committed like any write)."""


@message
class GetStats(Message):
    """Ask the persistence actor for its figures (use with ``system.ask``)."""


@message
class Durable(Message):
    """Reply to an ack: the write is committed and synced (or failed: ``ok=False``)."""

    token: str | int | None = None
    ok: bool = True
    error: str | None = None
    result: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.ok, bool):
            raise MessageError(f"Durable.ok: expected a bool, got {self.ok!r}")
        if not self.ok and not self.error:
            raise MessageError("Durable: a failed write needs an error text")
