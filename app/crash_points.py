"""Named crash points for scenarios: kill the runtime at an exact step of an order's life.

Crash points sit *between* two steps of the order path: after an
intent is durable but before it is sent (``after_intent``), after it is sent
but before the ack (``after_submit``), after a fill was applied but before
the next one (``after_fill``). A crash at a timeline instant cannot aim that
precisely (actors run on their own threads), so the coordinator calls a hook
at those three places and the scenario runner kills the runtime there.

How it works, and why this way:

* The runner puts one :class:`CrashPoints` in ``system.services`` under
  :data:`SERVICE` when a ``crash: {point: ...}`` entry arms it. Production
  never installs it: the coordinator's cost is one ``dict.get`` per order or
  fill and a ``None`` test.
* When the armed point is reached, the hook *holds the calling actor's
  thread*: nothing after the point in that handler runs, and the messages
  sent to that actor queue up unhandled. Every other actor runs on until it
  is idle (the venue still acks and fills what reached it, as a venue does
  while its client is dead) and virtual time stands still (no timer fires).
  This is deterministic: what the rest of the system does after the point
  cannot depend on thread timing, only on what it had been sent.
* :func:`kill_at_point` then drops every waiting message, lets the held
  handler return (``True``: "you are dead, do nothing more") and kills the
  runtime (``Runtime.kill``), so the held actor never acts past the point.

The system is never fully quiescent while a handler is held, so the runner
steps time with ``ActorSystem.run_until(t, held=points.held)``: it stops,
without moving time on, once everything but the held actor is quiet.
"""

from __future__ import annotations

import threading
from typing import Any

from runtime.actor import current_actor_name
from runtime.dispatcher import managed_blocking

#: key in ``system.services``; absent in production
SERVICE = "crash_points"
#: the points the coordinator reports, in the order an order meets them
POINTS = ("after_intent", "after_submit", "after_fill")


class CrashPoints:
    """One armed point at a time; thread-safe (the hook runs on an actor's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.armed: str | None = None
        self.reached = threading.Event()
        self._release = threading.Event()
        #: the actor held at the point and what it was doing (for the run's log)
        self.holder: str | None = None
        self.detail: str | None = None
        self.reached_point: str | None = None

    def arm(self, point: str) -> None:
        if point not in POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
        with self._lock:
            self.armed = point
            self.holder = self.detail = self.reached_point = None
            self.reached.clear()
            self._release.clear()

    def __call__(self, point: str, detail: str | None = None) -> bool:
        """Called by an actor at ``point``. False: go on. True (after being held
        until the runtime was killed): the process is dead, do nothing more."""
        with self._lock:
            if point != self.armed:
                return False
            self.armed = None
            self.holder, self.detail, self.reached_point = current_actor_name(), detail, point
        self.reached.set()
        with managed_blocking():  # a pooled holder must not stall the other actors
            self._release.wait()
        return True

    def disarm(self) -> None:
        with self._lock:
            self.armed = None

    def release(self) -> None:
        """Let a held handler return (it then does nothing: see ``__call__``)."""
        self._release.set()

    def held(self) -> str | None:
        """The actor held at the point, once reached (``ActorSystem.settle``'s ``held``)."""
        return self.holder if self.reached.is_set() else None


def kill_at_point(rt: Any, points: CrashPoints) -> None:
    """Drop every waiting message, free the held handler (it returns at once),
    and kill the runtime: nothing happens past the point."""
    for cell in rt.system.directory.cells():
        cell.mailbox.drain()
    points.release()
    rt.kill()
