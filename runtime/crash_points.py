"""Named crash points for scenarios: kill the runtime at an exact step of an order's life.

Issue 6 asks for crashes *between* two steps of the order path: after an
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

The held-thread design needs its own stepping loop (:func:`run_until_point`):
the system is never fully quiescent while a handler is held, so
``ActorSystem.run_until`` would wait for it forever.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from runtime.actor import current_actor_name
from runtime.directory import RUNNING

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
        self._release.wait()
        return True

    def disarm(self) -> None:
        with self._lock:
            self.armed = None

    def release(self) -> None:
        """Let a held handler return (it then does nothing: see ``__call__``)."""
        self._release.set()


def _quiet_except(system: Any, name: str | None) -> bool:
    """``ActorSystem.is_quiescent`` ignoring the one actor held at the point."""
    activity = system._activity
    before = next(activity)
    for cell in system.directory.cells():
        if cell.state == RUNNING and cell.name != name:
            mb = cell.mailbox
            if mb.busy or mb._items:
                return False
    if system.executor.in_flight:
        return False
    return next(activity) == before + 1


def settle(system: Any, points: CrashPoints, deadline: float) -> bool:
    """Wait until the system is quiescent (False) or the armed point was
    reached and everything but the held actor is idle (True)."""
    spins = 0
    while True:
        if points.reached.is_set():
            if _quiet_except(system, points.holder):
                return True
        elif system.is_quiescent():
            return False
        spins += 1
        if time.monotonic() > deadline:
            from runtime.system import QuiescenceTimeout

            raise QuiescenceTimeout("not quiescent while waiting at a crash point")
        if spins < 200:
            time.sleep(0)
        else:
            time.sleep(0.0005)


def run_until_point(system: Any, points: CrashPoints, t: float, *,
                    timeout: float = 60.0) -> bool:
    """``ActorSystem.run_until(t)`` that stops, without moving time on, when
    the armed point is reached (True); False: ``t`` reached, point not."""
    clock = system._virtual()
    deadline = time.monotonic() + timeout
    while True:
        if settle(system, points, deadline):
            return True
        due = system.timers.next_due()
        if due is None or due > t:
            clock.advance_to(max(clock.monotonic(), t))
            return settle(system, points, deadline)
        clock.advance_to(max(clock.monotonic(), due))
        system.timers.fire_due(due)


def kill_at_point(rt: Any, points: CrashPoints) -> None:
    """Drop every waiting message, free the held handler (it returns at once),
    and kill the runtime: nothing happens past the point."""
    for cell in rt.system.directory.cells():
        cell.mailbox.drain()
    points.release()
    rt.kill()
