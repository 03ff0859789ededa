"""Runtime control messages (not part of the wire codec).

These travel between the runtime's own pieces: supervisors, the executor
and timers. They are plain frozen dataclasses because they may carry live
objects (child specs, exceptions, task results) that never leave the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChildExited:
    """Sent by an actor's thread to its supervisor when the instance ends."""

    name: str
    incarnation: int
    reason: str  # "normal" or "crash"
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class RestartChildren:
    """Timer message: the backoff delay for a restart has passed."""

    names: tuple[str, ...]
    generation: int


@dataclass(frozen=True, slots=True)
class StartChild:
    """Ask a supervisor to start a dynamic child (e.g. an order group)."""

    spec: Any


@dataclass(frozen=True, slots=True)
class TerminateChild:
    name: str


@dataclass(frozen=True, slots=True)
class TaskDone:
    """Result of work submitted to the shared executor, delivered as a message."""

    tag: Any
    result: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class RemoteDown:
    """Told to the placement's watchers when a remote actor's host fails: the
    actor is not running until a ``RemoteUp`` with its name follows."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class RemoteUp:
    """Told to the placement's watchers when a remote actor's host answered
    its first batch (after every start, so after every restart)."""

    name: str
    node: Any = None


class GracefulStop:
    """Queued at the back of a mailbox: handle what came before, then stop."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "stop requested") -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"GracefulStop({self.reason!r})"
