"""What the order ledger decided to do, as values: messages, store writes, audit records.

The ledger (``trading.ledger``) never sends anything itself: every method
takes an event and returns an :class:`Effects`, the ordered list of what to
do about it. The coordinator actor carries them out in that order. Keeping
them as values is what lets the ledger run (and be tested) with no actor,
and lets the actor choose how each kind travels: a store write goes to the
persistence actor, an audit record to the audit log, a message to its
actor, each on whatever path the actor takes for it.

Order matters and is part of the contract: an approval's audit record is
flushed (:data:`FLUSH_AUDIT`) before the order's write-ahead intent is sent
to the store, and nothing after a :class:`CrashPoint` that fires is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from messages.persistence import Put


@dataclass(frozen=True, slots=True)
class Send:
    """Tell actor ``to`` (a name: the gateway, an order's owner, ...) ``message``."""

    to: str
    message: Any


@dataclass(frozen=True, slots=True)
class StoreWrite:
    """One write for the store's single writer (the persistence actor)."""

    put: Put


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record: the keyword arguments of ``trading.audit.AuditLog.record``."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FlushAudit:
    """The audit records so far reach the OS before anything that follows."""


@dataclass(frozen=True, slots=True)
class Publish:
    """The owner's published figures are refreshed now, not when it goes idle."""


@dataclass(frozen=True, slots=True)
class Sent:
    """The order the effects before this one sent has left: its status is
    stamped with the time now, after the send (``OrderRecords.stamp``). A
    resync asked earlier than the stamp cannot have seen the order; one
    asked later reaches the broker after it (``trading.recovery``)."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """A named step of an order's life where a scenario may kill the runtime
    (``app.crash_points``); if it fires, nothing after it is done."""

    point: str
    detail: str


Effect = Send | StoreWrite | AuditRecord | FlushAudit | Publish | Sent | CrashPoint
FLUSH_AUDIT = FlushAudit()
PUBLISH = Publish()


class Effects(list[Effect]):
    """The ordered effects of one event, with one builder per kind.

    ``record`` has the audit log's signature, so anything that writes audit
    records to an audit object (``trading.trust.TrustReport``) can write
    them here instead."""

    __slots__ = ()

    def send(self, to: str, message: Any) -> None:
        self.append(Send(to, message))

    def store(self, put: Put) -> None:
        self.append(StoreWrite(put))

    def record(self, *, kind: str, reason: str, ts: datetime, inputs: dict[str, Any],
               approved: bool | None = None, **extra: Any) -> None:
        self.append(AuditRecord({"kind": kind, "reason": reason, "approved": approved, "ts": ts,
                                 "inputs": inputs, **extra}))

    def flush_audit(self) -> None:
        self.append(FLUSH_AUDIT)

    def publish(self) -> None:
        self.append(PUBLISH)

    def sent_stamp(self, client_order_id: str) -> None:
        self.append(Sent(client_order_id))

    def crash_point(self, point: str, detail: str) -> None:
        self.append(CrashPoint(point, detail))

    def of(self, kind: type[Any]) -> list[Any]:
        """The effects of one kind, in order (for tests and introspection)."""
        return [e for e in self if type(e) is kind]

    def sent(self, kind: type[Any] | None = None) -> list[tuple[str, Any]]:
        """``(to, message)`` of every message sent, optionally of one message type."""
        return [(e.to, e.message) for e in self
                if type(e) is Send and (kind is None or type(e.message) is kind)]

    def audited(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The audit records' fields, optionally of one record kind."""
        return [e.fields for e in self
                if type(e) is AuditRecord and (kind is None or e.fields["kind"] == kind)]
