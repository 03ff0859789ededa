"""Supervisors with Erlang/OTP semantics.

Vocabulary follows OTP's ``supervisor`` module:

* strategy: ``one_for_one`` (restart the child that died),
  ``one_for_all`` (stop every other child, restart all),
  ``rest_for_one`` (stop the children started after it, restart them and it);
* child restart type: ``permanent`` (always restarted), ``transient``
  (restarted only after a crash), ``temporary`` (never restarted);
* intensity and period: more than ``intensity`` restarts within
  ``period_s`` seconds and the supervisor gives up, stops its children in
  reverse order and fails to its own supervisor. The root failing halts the
  system (see ``ActorSystem.root_exited``).

Children start in order and stop in reverse order. Restarts wait out an
exponential, jittered, bounded backoff on the system timer, during which the
child's messages are held in its cell. Waiting for a child to stop (bounded
by the child's ``shutdown_s``) is the one wait a supervisor does, exactly as
in OTP.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

from runtime.actor import EXECUTIONS, THREADED, Actor, handles
from runtime.backoff import Backoff
from runtime.directory import EXITED, RESTARTING, RUNNING, STOPPED
from runtime.mailbox import StopNow
from runtime.resources import exhausted
from runtime.signals import ChildExited, GracefulStop, RestartChildren, StartChild, TerminateChild

if TYPE_CHECKING:
    from runtime.context import ActorContext

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")


class SupervisorEscalation(RuntimeError):
    """Raised by a supervisor whose restart intensity was exceeded."""


@dataclass
class ChildSpec:
    """How to start, restart and stop one child (OTP child spec)."""

    name: str
    actor: Callable[..., Actor]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    restart: str = "permanent"
    shutdown_s: float = 5.0
    conflate: bool = False
    #: pooled or threaded; None: the actor class's own ``execution``
    execution: str | None = None
    #: market data waits behind every other message (runtime.mailbox)
    market_lane: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"child spec needs a non-empty name, got {self.name!r}")
        if self.execution is not None and self.execution not in EXECUTIONS:
            raise ValueError(f"child {self.name}: execution must be one of {EXECUTIONS}, "
                             f"got {self.execution!r}")
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"child {self.name}: restart must be one of {RESTART_TYPES}, "
                             f"got {self.restart!r}")
        if not self.shutdown_s > 0:
            raise ValueError(f"child {self.name}: shutdown_s must be > 0")


@dataclass
class SupervisorSpec:
    """A supervisor and its children; usable as a child of another supervisor."""

    name: str
    children: Sequence[ChildSpec | SupervisorSpec] = field(default_factory=list)
    strategy: str = "one_for_one"
    intensity: int = 5
    period_s: float = 60.0
    restart: str = "permanent"
    backoff: Backoff = field(default_factory=Backoff)
    shutdown_s: float = 30.0
    conflate: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"supervisor {self.name}: strategy must be one of {STRATEGIES}, "
                             f"got {self.strategy!r}")
        if self.intensity < 0 or not self.period_s > 0:
            raise ValueError(f"supervisor {self.name}: need intensity >= 0 and period_s > 0")
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"supervisor {self.name}: bad restart type {self.restart!r}")
        names = [c.name for c in self.children]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"supervisor {self.name}: duplicate child names {sorted(dupes)}")

    # A SupervisorSpec stands in for a ChildSpec:
    @property
    def actor(self) -> Callable[..., Actor]:
        return Supervisor

    @property
    def execution(self) -> str:
        return THREADED

    @property
    def args(self) -> tuple[Any, ...]:
        return (self,)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {}


class Supervisor(Actor):
    #: a supervisor waits for its children to start and to stop (the one wait
    #: OTP allows it), so it must not hold a dispatcher worker while it does
    execution = THREADED

    def __init__(self, ctx: ActorContext, spec: SupervisorSpec) -> None:
        super().__init__(ctx)
        self.spec = spec
        self.children: list[Any] = list(spec.children)
        self._restart_times: deque[float] = deque()
        self._expected_exits: set[tuple[str, int]] = set()
        self._generation = 0
        #: child name -> the restart plan that will start it: a later plan for
        #: other children (one_for_one: a sibling's crash) leaves it pending
        self._planned: dict[str, int] = {}
        self._rng = random.Random(f"{ctx.seed}:{ctx.name}")
        self._terminating = False
        self._publish()

    # -- lifecycle --------------------------------------------------------------

    def on_start(self) -> None:
        for child in self.children:
            self._start(child)
        self._publish()

    def on_stop(self) -> None:
        self._terminating = True
        self._stop_children(self.children, graceful=True)
        self._publish()

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        self._terminating = True
        self._stop_children(self.children, graceful=False)

    # -- messages ---------------------------------------------------------------

    @handles(ChildExited)
    def on_child_exited(self, note: ChildExited) -> None:
        key = (note.name, note.incarnation)
        if key in self._expected_exits:
            self._expected_exits.discard(key)
            return
        child = self._child(note.name)
        cell = self.ctx.system.directory.get(note.name)
        if child is None or cell is None or cell.incarnation != note.incarnation or self._terminating:
            return
        if child.restart == "temporary" or (child.restart == "transient" and note.reason == "normal"):
            self.log.info("child {} ended ({}), not restarted ({})", note.name, note.reason,
                          child.restart)
            self._forget(child)
            return
        self.log.warning("child {} exited ({}: {!r}); strategy {}", note.name, note.reason,
                         note.error, self.spec.strategy)
        incurable = exhausted(note.error)
        if incurable is not None:  # a restart would only crash again (runtime.resources)
            self._escalate(note, f"gave up on {note.name} at once ({incurable}; "
                                 "a restart cannot cure it)")
            return
        if not self._within_intensity():
            self._escalate(note)
            return
        idx = self.children.index(child)
        if self.spec.strategy == "one_for_one":
            to_restart = [child]
        elif self.spec.strategy == "one_for_all":
            others = [c for c in self.children if c is not child]
            self._stop_children(others, graceful=False)
            to_restart = list(self.children)
        else:  # rest_for_one
            later = self.children[idx + 1:]
            self._stop_children(later, graceful=False)
            to_restart = self.children[idx:]
        self._schedule_restart(to_restart, cell.restarts + 1)

    @handles(RestartChildren)
    def on_restart_children(self, msg: RestartChildren) -> None:
        if self._terminating:
            return
        for name in msg.names:
            if self._planned.get(name) != msg.generation:
                continue  # a later plan covers this child (one_for_all, rest_for_one)
            del self._planned[name]
            child = self._child(name)
            cell = self.ctx.system.directory.get(name)
            if child is None or cell is None or cell.state == RUNNING:
                continue
            cell.restarts += 1
            self.ctx.system.count_restart(name)
            self._start(child)
        self._publish()

    @handles(StartChild)
    def on_start_child(self, msg: StartChild) -> None:
        spec = msg.spec
        if self._child(spec.name) is not None:
            self.log.error("start_child: {} already supervised by {}", spec.name, self.ctx.name)
            return
        self.children.append(spec)
        self._start(spec)
        self._publish()

    @handles(TerminateChild)
    def on_terminate_child(self, msg: TerminateChild) -> None:
        child = self._child(msg.name)
        if child is None:
            return
        self._stop_children([child], graceful=True)
        self._forget(child)

    # -- mechanics --------------------------------------------------------------

    def _child(self, name: str) -> Any:
        for c in self.children:
            if c.name == name:
                return c
        return None

    def _start(self, child: Any) -> None:
        system = self.ctx.system
        cell = system.directory.get(child.name)
        if cell is None or cell.state == STOPPED:
            cell = system.new_cell(child.name, supervisor=self.ctx.name, conflate=child.conflate,
                                   market_lane=getattr(child, "market_lane", False))
        system.spawn(cell, child.actor, child.args, child.kwargs,
                     execution=getattr(child, "execution", None))
        if not cell.started.wait(timeout=child.shutdown_s):
            self.log.error("child {} did not finish on_start within {}s", child.name,
                           child.shutdown_s)

    def _stop_children(self, children: list[Any], *, graceful: bool) -> None:
        for child in reversed(children):
            cell = self.ctx.system.directory.get(child.name)
            if cell is None:
                continue
            if cell.state == RUNNING:
                self._expected_exits.add((child.name, cell.incarnation))
                if graceful:
                    cell.mailbox.put(GracefulStop(f"stopped by {self.ctx.name}"))
                else:
                    cell.mailbox.put_front(StopNow(f"stopped by {self.ctx.name}"))
                if not cell.exited.wait(timeout=child.shutdown_s):
                    self.log.error("child {} did not stop within {}s", child.name,
                                   child.shutdown_s)
            if cell.state in (EXITED, RESTARTING):
                cell.state = RESTARTING if not self._terminating else EXITED

    def _forget(self, child: Any) -> None:
        self.children.remove(child)
        self.ctx.system.retire_cell(child.name, reason=f"{child.restart} child ended")
        self._publish()

    def _within_intensity(self) -> bool:
        now = self.ctx.clock.monotonic()
        self._restart_times.append(now)
        while self._restart_times and now - self._restart_times[0] > self.spec.period_s:
            self._restart_times.popleft()
        return len(self._restart_times) <= self.spec.intensity

    def _schedule_restart(self, children: list[Any], attempt: int) -> None:
        self._generation += 1
        for child in children:
            self._planned[child.name] = self._generation
            cell = self.ctx.system.directory.get(child.name)
            if cell is not None:
                cell.state = RESTARTING  # every child listed has exited or is exiting
        delay = self.spec.backoff.delay(attempt, self._rng)
        names = tuple(c.name for c in children)
        self.log.info("restarting {} in {:.3f}s (attempt {})", ", ".join(names), delay, attempt)
        self.ctx.schedule(delay, RestartChildren(names, self._generation))
        self._publish()

    def _escalate(self, note: ChildExited, why: str | None = None) -> None:
        """Stop every child and fail to our own supervisor; the child's error is
        the escalation's cause, so what failed stays readable up the tree."""
        self._terminating = True
        if why is None:
            self.log.error("supervisor {}: more than {} restarts in {}s; giving up after {}",
                           self.ctx.name, self.spec.intensity, self.spec.period_s, note.name)
            why = (f"restart intensity {self.spec.intensity} in {self.spec.period_s}s "
                   f"exceeded (last: {note.name} {note.reason}: {note.error!r})")
        else:
            self.log.error("supervisor {}: giving up at once: {}", self.ctx.name, why)
        self._stop_children(self.children, graceful=False)
        raise SupervisorEscalation(f"{self.ctx.name}: {why}") from note.error

    def _publish(self) -> None:
        """Expose supervisor figures on the cell for introspection (read-only)."""
        self.ctx.cell.info = {
            "strategy": self.spec.strategy,
            "intensity": self.spec.intensity,
            "period_s": self.spec.period_s,
            "children": [c.name for c in self.children],
            "recent_restarts": len(self._restart_times),
        }
