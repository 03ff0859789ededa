"""Addressing: actors by name, cells that outlive instances, dead letters.

A cell is the stable identity behind a name. It owns the mailbox, so a
message sent to ``coordinator`` while the coordinator restarts waits in the
cell and reaches the next instance. Only when a cell is stopped for good (or
a name was never known) does a message become a dead letter.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from loguru import logger

from runtime.mailbox import Mailbox
from runtime.signals import ChildExited

if TYPE_CHECKING:
    from runtime.system import ActorSystem

RUNNING = "running"
EXITED = "exited"          # instance gone, supervisor deciding; messages held
RESTARTING = "restarting"  # waiting out the restart backoff; messages held
STOPPED = "stopped"        # gone for good; messages become dead letters


def summarize(message: Any, limit: int = 160) -> str:
    """A short, redacted description of a message for logs and introspection."""
    from runtime.redact import redact_text

    try:
        text = redact_text(repr(message))
    except Exception as exc:  # noqa: BLE001 - a broken message must not break the crash path
        text = f"<{type(message).__name__}: repr failed: {exc!r}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DeadLetters:
    """Messages that could not be delivered or crashed their handler. Kept, counted."""

    def __init__(self, keep: int = 1000) -> None:
        self._recent: deque[tuple[dict[str, Any], Any]] = deque(maxlen=keep)
        self._by_reason: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.total = 0

    def record(self, target: str, message: Any, reason: str) -> None:
        entry = {
            "at": time.time(),
            "target": target,
            "type": type(message).__name__,
            "reason": reason,
            "summary": summarize(message),
        }
        with self._lock:
            self.total += 1
            self._by_reason[reason] += 1
            self._recent.append((entry, message))
        if not isinstance(message, ChildExited):
            logger.warning("dead letter for {} ({}): {}", target, reason, entry["summary"])

    def messages(self) -> list[Any]:
        with self._lock:
            return [m for _, m in self._recent]

    def snapshot(self, recent: int = 20) -> dict[str, Any]:
        with self._lock:
            items = [e for e, _ in list(self._recent)[-recent:]] if recent else []
            return {"total": self.total, "by_reason": dict(self._by_reason), "recent": items}


class ActorCell:
    """The stable identity of a named actor across restarts."""

    def __init__(self, system: ActorSystem, name: str, *, supervisor: str | None,
                 conflate: bool, activity: itertools.count[int], market_lane: bool = False) -> None:
        self.system = system
        self.name = name
        self.supervisor = supervisor
        self.mailbox = Mailbox(name, conflate=conflate, market_lane=market_lane,
                               activity=activity)
        self.state = EXITED
        self.kind = "?"
        #: pooled or threaded, fixed by the first instance (runtime.actor.EXECUTIONS)
        self.execution = "?"
        self.incarnation = 0
        self.restarts = 0
        self.failures = 0
        self.last_failure: dict[str, Any] | None = None
        self.started = threading.Event()
        self.exited = threading.Event()
        self.exited.set()
        self.actor: Any = None
        self.info: dict[str, Any] = {}

    @property
    def accepting(self) -> bool:
        return self.state != STOPPED

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def record_failure(self, exc: BaseException, message: Any, during: str) -> None:
        self.failures += 1
        self.last_failure = {
            "at": self.system.clock.now().isoformat(),
            "error": f"{type(exc).__name__}: {exc}",
            "during": during,
            "message": None if message is None else type(message).__name__,
        }
        self.system.count_failure(self.name, exc)
        if message is not None:
            self.system.dead_letters.record(self.name, message, f"crashed handler: {type(exc).__name__}")

    def instance_exited(self, actor: Any, reason: str, error: BaseException | None) -> None:
        if actor is not self.actor:
            return
        note = ChildExited(self.name, self.incarnation, reason, error)
        # Notify first, then leave RUNNING: the cell stays visible to the
        # quiescence check until the supervisor (or the halt) has the news.
        if self.supervisor is None:
            self.system.root_exited(note)
        else:
            self.system.tell(self.supervisor, note)
        if actor is self.actor and self.state == RUNNING:
            self.state = EXITED

    def thread_ended(self, actor: Any) -> None:
        if actor is self.actor:
            self.exited.set()
            self.release_ended()

    def release_ended(self) -> None:
        """A retired cell lets go of its ended instance, which holds the cell
        (``ctx.cell``): so the instance and what it held are freed as soon as
        nothing else holds them, not at the garbage collector's next full
        collection. Short-lived actors (an order group a drill) would
        otherwise pile up between those collections. Whichever comes second,
        the retirement or the instance's end, lets go."""
        if self.state == STOPPED and self.exited.is_set():
            self.actor = None


class Directory:
    """Name -> cell. Lookups are lock-free dict reads; changes take a lock."""

    def __init__(self) -> None:
        self._cells: dict[str, ActorCell] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> ActorCell | None:
        return self._cells.get(name)

    def add(self, cell: ActorCell) -> ActorCell:
        with self._lock:
            existing = self._cells.get(cell.name)
            if existing is not None and existing.state != STOPPED:
                raise ValueError(f"an actor named {cell.name!r} already exists")
            self._cells[cell.name] = cell
        return cell

    def remove(self, name: str) -> None:
        with self._lock:
            self._cells.pop(name, None)

    def cells(self) -> list[ActorCell]:
        return list(self._cells.values())

    def names(self) -> list[str]:
        return list(self._cells)
