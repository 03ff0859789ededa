"""ActorSystem: owns a tree of supervised actors, their directory and time.

Several systems can live in one process: nothing here uses pykka's global
registry for lookups. Construction has no side effects (rule 14); threads
start in :meth:`ActorSystem.start`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from typing import Any
from collections.abc import Callable

import pykka
from loguru import logger
from pykka._envelope import Envelope

from runtime.actor import EXECUTIONS, POOLED, REMOTE, THREADED, current_actor_name
from runtime.clock import Clock, LiveClock, VirtualClock
from runtime.context import ActorContext
from runtime.directory import RUNNING, STOPPED, ActorCell, DeadLetters, Directory
from runtime.dispatcher import Dispatcher
from runtime.executor import SharedExecutor
from runtime.signals import ChildExited, GracefulStop
from runtime.supervisor import SupervisorSpec
from runtime.timers import TimerService


class QuiescenceTimeout(TimeoutError):
    """The system did not become quiescent in time (an actor is busy or looping)."""


class AskInsideHandler(RuntimeError):
    """A handler tried to block on another actor; use two tells and a timer instead."""


class Address:
    """A cached handle on a named cell: the fastest way to tell repeatedly."""

    __slots__ = ("_system", "name", "_cell")

    def __init__(self, system: ActorSystem, name: str) -> None:
        self._system = system
        self.name = name
        self._cell = system.directory.get(name)

    def tell(self, message: Any) -> bool:
        cell = self._cell
        if cell is None or cell.state == STOPPED:
            cell = self._cell = self._system.directory.get(self.name)
            if cell is None or cell.state == STOPPED:
                self._system.dead_letters.record(self.name, message, "no such actor")
                return False
        cell.mailbox.put(message)
        return True


class ActorSystem:
    def __init__(self, *, clock: Clock | None = None, executor_workers: int = 2,
                 name: str = "tradewarden", seed: int = 0,
                 services: dict[str, Any] | None = None, dispatcher_threads: int = 1,
                 throughput: int = 64, slow_handler_s: float = 0.05,
                 placement: Any = None) -> None:
        self.name = name
        self.clock = clock or LiveClock()
        self.seed = seed
        self.services: dict[str, Any] = dict(services or {})
        self.directory = Directory()
        self.dead_letters = DeadLetters()
        self._activity = itertools.count()
        self._idle = threading.Event()
        self.timers = TimerService(self.clock, self.tell)
        self.executor = SharedExecutor(self, executor_workers)
        #: where pooled actors run (threads start with the system)
        self.dispatcher = Dispatcher("default", threads=dispatcher_threads,
                                     throughput=throughput, slow_handler_s=slow_handler_s)
        #: where remote actors are hosted (runtime.remote_placement.Placement; its creator
        #: closes it, so one placement can serve a runtime's successive lives)
        self.placement = placement
        #: actors told RemoteDown / RemoteUp about remote actors (runtime.remote)
        self.placement_watchers: tuple[str, ...] = ()
        self.root: str | None = None
        self.halted = False
        self.halt_reason: str | None = None
        self._halt_hooks: list[Callable[[str], None]] = []
        self._root_done = threading.Event()
        #: work out of every mailbox that will come back as a message or a turn
        #: (a remote actor's batch): the system is not quiescent while it is out
        self._outstanding = 0
        self._outstanding_lock = threading.Lock()
        #: further timers on this clock that ``run_until`` fires in order with the
        #: system's own (``next_due()``, ``fire_due(now)``): a simulated venue's
        #: delays on a loop of its own (exchange.virtual_wire.VirtualTiming)
        self.timer_sources: list[Any] = []
        self.restart_counts: Counter[str] = Counter()
        self.failure_counts: Counter[str] = Counter()
        self._started = False
        self._shut = False

    # -- lifecycle --------------------------------------------------------------

    def start(self, root: SupervisorSpec, *, timeout: float = 30.0) -> ActorSystem:
        if self._started:
            raise RuntimeError("actor system already started")
        self._check_placement(root)
        self._started = True
        self.root = root.name
        self.dispatcher.start()
        self.timers.start()
        cell = self.new_cell(root.name, supervisor=None, conflate=False)
        self.spawn(cell, root.actor, root.args, root.kwargs, execution=root.execution)
        if not cell.started.wait(timeout):
            raise TimeoutError(f"root supervisor {root.name} did not start within {timeout}s")
        logger.info("actor system {} started: {} actors", self.name, len(self.directory.names()))
        if self.clock.is_virtual:
            self.wait_quiescent(timeout)
        return self

    def _check_placement(self, spec: Any) -> None:
        """A remote child without a placement is bad configuration: say so
        before anything starts, not as a crash-looping child."""
        if getattr(spec, "execution", None) == REMOTE and self.placement is None:
            raise ValueError(f"actor {spec.name}: execution 'remote' needs a placement "
                             "(ActorSystem(placement=...); run --ray)")
        for child in getattr(spec, "children", ()):
            self._check_placement(child)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every actor in reverse start order, then timers and executor."""
        if self._shut:
            return
        self._shut = True
        root = self.directory.get(self.root) if self.root else None
        if root is not None and root.state == RUNNING:
            root.mailbox.put(GracefulStop("system shutdown"))
            if not root.exited.wait(timeout):
                logger.error("root supervisor did not stop within {}s", timeout)
        self.timers.stop()
        self.executor.shutdown()
        self.dispatcher.shutdown()
        left = 0
        for cell in self.directory.cells():
            if cell.state == RUNNING:
                logger.error("actor {} still running after shutdown", cell.name)
                continue
            cell.state = STOPPED
            for item in cell.mailbox.drain():
                if isinstance(item, (GracefulStop, ChildExited)):
                    continue
                if isinstance(item, Envelope) and item.reply_to is not None:
                    item.reply_to.set_exception(
                        (pykka.ActorDeadError, pykka.ActorDeadError(f"{cell.name} stopped"), None))
                left += 1
                self.dead_letters.record(cell.name, item, "shutdown")
        if left:
            logger.warning("{} messages were still waiting at shutdown (dead letters)", left)
        logger.info("actor system {} stopped", self.name)

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # -- cells ------------------------------------------------------------------

    def new_cell(self, name: str, *, supervisor: str | None, conflate: bool,
                 market_lane: bool = False) -> ActorCell:
        cell = ActorCell(self, name, supervisor=supervisor, conflate=conflate,
                         activity=self._activity, market_lane=market_lane)
        return self.directory.add(cell)

    def spawn(self, cell: ActorCell, factory: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], *, execution: str | None = None) -> None:
        """Start a new instance of ``factory`` in ``cell`` (called by supervisors).

        ``execution`` (pooled or threaded) defaults to the actor class's own;
        it is fixed for the cell by its first instance."""
        if cell.incarnation == 0:
            chosen = execution or getattr(factory, "execution", POOLED)
            if chosen not in EXECUTIONS:
                raise ValueError(f"actor {cell.name}: execution must be one of {EXECUTIONS}, "
                                 f"got {chosen!r}")
            if chosen == REMOTE and self.placement is None:
                raise ValueError(f"actor {cell.name}: execution 'remote' needs a placement "
                                 "(ActorSystem(placement=...), run --ray)")
            cell.execution = chosen
            if chosen != THREADED:
                cell.mailbox.use_dispatcher(self.dispatcher)
        kind = getattr(factory, "__name__", str(factory))
        if cell.execution == REMOTE:  # the local stand-in ships the mail to the far side
            from runtime.remote import RemoteProxy

            args, kwargs = (self.placement, factory, tuple(args), dict(kwargs)), {}
            factory = RemoteProxy
        cell.incarnation += 1
        cell.started.clear()
        cell.exited.clear()
        cell.state = RUNNING
        ctx = ActorContext(self, cell)
        try:
            actor = factory(ctx, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a constructor failure is a crash too
            cell.kind = kind
            cell.record_failure(exc, None, "__init__")
            logger.opt(exception=exc).error("could not construct actor {}", cell.name)
            cell.actor = None
            cell.state = "exited"
            cell.started.set()
            cell.exited.set()
            note = ChildExited(cell.name, cell.incarnation, "crash", exc)
            if cell.supervisor is None:
                self.root_exited(note)
            else:
                self.tell(cell.supervisor, note)
            return
        cell.kind = kind
        cell.actor = actor
        pykka.ActorRegistry.register(actor.actor_ref)
        actor._start_actor_loop()

    def retire_cell(self, name: str, *, reason: str) -> None:
        """A child gone for good: its waiting messages become dead letters."""
        cell = self.directory.get(name)
        if cell is None:
            return
        cell.state = STOPPED
        self.directory.remove(name)
        for item in cell.mailbox.drain():
            if not isinstance(item, (GracefulStop, ChildExited)):
                self.dead_letters.record(name, item, reason)
        cell.release_ended()

    def root_exited(self, note: ChildExited) -> None:
        if note.reason != "normal" and not self._shut:
            from runtime.resources import exhausted

            incurable = exhausted(note.error)
            self.halt(f"root supervisor failed: {note.error!r}" if incurable is None
                      else f"{incurable.partition(':')[0]}: {note.error}")
        self._root_done.set()

    def on_halt(self, hook: Callable[[str], None]) -> None:
        """Register a callback for an orderly halt (kill switch, alert, flush)."""
        self._halt_hooks.append(hook)

    def halt(self, reason: str) -> None:
        if self.halted:
            return
        self.halted = True
        self.halt_reason = reason
        logger.critical("HALT: {}", reason)
        for hook in self._halt_hooks:
            try:
                hook(reason)
            except Exception:  # noqa: BLE001
                logger.exception("halt hook {} failed", hook)

    # -- messaging ----------------------------------------------------------------

    def tell(self, name: str, message: Any) -> bool:
        """Send ``message`` to the actor called ``name``. Never blocks."""
        cell = self.directory.get(name)
        if cell is None or cell.state == STOPPED:
            self.dead_letters.record(name, message, "no such actor")
            return False
        cell.mailbox.put(message)
        return True

    def address(self, name: str) -> Address:
        return Address(self, name)

    def ask(self, name: str, message: Any, timeout: float = 10.0) -> Any:
        """Request/reply for tests, tools and the launcher. Never from a handler."""
        if current_actor_name() is not None:
            raise AskInsideHandler(
                f"{current_actor_name()} asked {name} from inside a handler; "
                "send a request message and handle the reply instead")
        cell = self.directory.get(name)
        if cell is None or cell.state == STOPPED:
            raise LookupError(f"no actor named {name!r}")
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        cell.mailbox.put(Envelope(message, reply_to=future))
        if self.clock.is_virtual:
            self.wait_quiescent(timeout)
        return future.get(timeout=timeout)

    # -- failures ---------------------------------------------------------------

    def count_failure(self, name: str, exc: BaseException) -> None:
        self.failure_counts[name] += 1

    def count_restart(self, name: str) -> None:
        self.restart_counts[name] += 1

    # -- quiescence and virtual time --------------------------------------------

    def outstanding_add(self, n: int) -> None:
        """Count work that left every mailbox but will come back (see is_quiescent)."""
        with self._outstanding_lock:
            self._outstanding += n
        next(self._activity)
        if n < 0:
            self.poke()

    def poke(self) -> None:
        self._idle.set()

    def is_quiescent(self, ignore: str | None = None) -> bool:
        """True when no message is queued at a running actor or being handled,
        and no executor task is in flight. Exact: retried if anything moved.
        ``ignore`` leaves one actor out (one held mid-handler on purpose)."""
        before = next(self._activity)
        for cell in self.directory.cells():
            if cell.state == RUNNING and cell.name != ignore:
                mb = cell.mailbox
                if mb.busy or mb._items or mb._market:
                    return False
        if self.executor.in_flight or self._outstanding:
            return False
        return next(self._activity) == before + 1

    def wait_quiescent(self, timeout: float = 10.0) -> None:
        self.settle(time.monotonic() + timeout)

    def settle(self, deadline: float, held: Callable[[], str | None] | None = None) -> bool:
        """Wait until the system is quiescent (False), or until ``held()`` names
        an actor held mid-handler and everything else is quiescent (True): a
        scenario's crash point holds the coordinator inside a handler, so the
        system as a whole never goes quiet then."""
        spins = 0
        started = time.monotonic()
        while True:
            name = held() if held is not None else None
            if self.is_quiescent(ignore=name):
                return name is not None
            spins += 1
            if time.monotonic() > deadline:
                busy = [(c.name, c.mailbox.depth, c.mailbox.busy) for c in self.directory.cells()
                        if c.state == RUNNING and (c.mailbox.busy or c.mailbox.depth)]
                raise QuiescenceTimeout(f"not quiescent after {time.monotonic() - started:.1f}s; "
                                        f"busy: {busy}"
                                        + (f" (holding {name})" if name else ""))
            # Yield the GIL; after a while back off to a short wait on the idle hint.
            if spins < 200:
                time.sleep(0)
            else:
                self._idle.wait(0.001)
                self._idle.clear()

    def _virtual(self) -> VirtualClock:
        if not isinstance(self.clock, VirtualClock):
            raise RuntimeError("this needs a system built with a VirtualClock")
        return self.clock

    def run_until(self, t: float, *, timeout: float = 60.0,
                  held: Callable[[], str | None] | None = None) -> bool:
        """Advance virtual time to ``t`` seconds, firing timers in order, each
        only once the system is quiescent. With ``held`` (see :meth:`settle`):
        stop without moving time on once it names a held actor (True)."""
        clock = self._virtual()
        deadline = time.monotonic() + timeout

        def settled() -> bool:
            return self.settle(max(time.monotonic() + 0.1, deadline), held)

        while True:
            if settled():
                return True
            due = self._next_due()
            if due is None or due > t:
                clock.advance_to(max(clock.monotonic(), t))
                return settled()
            clock.advance_to(max(clock.monotonic(), due))
            self.timers.fire_due(due)
            for source in self.timer_sources:
                source.fire_due(due)
            if time.monotonic() > deadline:
                raise QuiescenceTimeout(f"run_until({t}) exceeded {timeout}s of wall time")

    def _next_due(self) -> float | None:
        dues = [d for d in (self.timers.next_due(), *(s.next_due() for s in self.timer_sources))
                if d is not None]
        return min(dues) if dues else None

    def advance(self, seconds: float, *, timeout: float = 60.0) -> None:
        self.run_until(self.clock.monotonic() + seconds, timeout=timeout)

    # -- introspection ------------------------------------------------------------

    def snapshot(self, *, peek: int = 0) -> dict[str, Any]:
        from runtime.introspection import snapshot

        return snapshot(self, peek=peek)
