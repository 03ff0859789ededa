"""The Tradewarden actor: a pykka ThreadingActor with a held mailbox.

Differences from a plain pykka actor, and why:

* Its inbox is the :class:`~runtime.mailbox.Mailbox` of its directory cell,
  which outlives the instance. pykka drops the rest of the inbox when a
  handler raises; here the waiting messages stay and the restarted instance
  handles them in order.
* A handler that raises does not vanish into a log line: the failure is
  recorded on the cell (count, last failure, the poison message goes to the
  dead letters) and the supervisor is told, which applies its restart policy.
* Messages are dispatched by type to methods marked with :func:`handles`.
* Handlers must never block on another actor, so ``ask`` from inside a
  handler raises (request and reply are two tells; see ``ActorContext``).
* One class, two ways to run (``execution``): *pooled* (the default) on a
  :class:`~runtime.dispatcher.Dispatcher` shared by many actors, for handlers
  that never block; *threaded* on a thread of its own, for actors that block
  on I/O. Handling, supervision, restarts and figures are the same code.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from collections.abc import Callable

import pykka
from loguru import logger
from pykka import ActorRegistry
from pykka._envelope import Envelope  # no public name: what pykka's ActorRef.tell/ask put

from runtime.mailbox import EMPTY, Mailbox, StopNow
from runtime.signals import GracefulStop

if TYPE_CHECKING:
    from runtime.context import ActorContext

_current = threading.local()
_Handler = TypeVar("_Handler", bound=Callable[..., Any])
_perf = time.perf_counter


def _what(item: Any) -> str:
    if type(item) is Envelope:
        return f"ask:{type(item.message).__name__}"
    return type(item).__name__


def current_actor_name() -> str | None:
    """Name of the actor whose handler is running on this thread, if any."""
    return getattr(_current, "name", None)


def handles(*message_types: type) -> Callable[[_Handler], _Handler]:
    """Mark a method as the handler for one or more message types."""
    if not message_types:
        raise TypeError("handles() needs at least one message type")

    def mark(fn: _Handler) -> _Handler:
        fn._tw_handles = tuple(message_types)  # type: ignore[attr-defined]  # a marker attribute on the function object
        return fn

    return mark


POOLED = "pooled"
THREADED = "threaded"
#: in another process (runtime.remote): its cell and mailbox stay here
REMOTE = "remote"
EXECUTIONS = (POOLED, THREADED, REMOTE)


class Actor(pykka.ThreadingActor):
    """Base class of every Tradewarden actor. Construct with an ActorContext."""

    use_daemon_thread = True
    #: pooled (on the system's dispatcher) unless the class blocks on I/O;
    #: a child spec may override it
    execution: ClassVar[str] = POOLED
    _tw_dispatch: ClassVar[dict[type, str]] = {}
    #: whether the class overrides on_idle (else the per-message check is skipped)
    _tw_idle_hook: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for mtype in getattr(value, "_tw_handles", ()):
                    table[mtype] = attr
        cls._tw_dispatch = table
        cls._tw_idle_hook = cls.on_idle is not Actor.on_idle

    def __init__(self, ctx: ActorContext, *args: Any, **kwargs: Any) -> None:
        self.ctx = ctx
        self._cell = ctx.cell
        self.log = logger.bind(actor=ctx.name)
        self._exit_reason = "normal"
        self._exit_error: BaseException | None = None
        self._exit_announced = False
        super().__init__()
        self._dispatch_cache: dict[type, Callable[..., Any] | None] = {}
        #: mirrors ``actor_stopped`` (a plain read: the hot loop asks per message)
        self._stopping = False
        self._began = False
        self._finished = False

    def _create_actor_inbox(self) -> Mailbox:  # type: ignore[override]  # pykka's is a staticmethod; ours is the cell's
        # The mailbox belongs to the directory cell, not to this instance.
        return self._cell.mailbox

    def _start_actor_loop(self) -> None:
        mailbox = self._cell.mailbox
        if mailbox.dispatcher is not None:
            mailbox.attach(self)  # pooled: the first turn runs on_start
            return
        thread = threading.Thread(target=self._actor_loop, name=f"tw-{self.ctx.name}",
                                  daemon=True)
        thread.start()

    # -- hooks for subclasses --------------------------------------------------

    def on_idle(self) -> None:
        """Called after a message when the mailbox is empty (e.g. group commit)."""

    def on_crashed_message(self, message: Any, exc: BaseException) -> None:
        """The handler of ``message`` crashed this instance (it is kept as a dead
        letter). Answer anyone waiting on it here: a reply promised inside the
        message (an ack future) would otherwise leave its sender waiting out
        its own timeout. An ``ask``'s reply is failed by the runtime itself."""

    def on_unhandled(self, message: Any) -> None:
        """A message with no handler: logged and kept as a dead letter."""
        self.log.warning("no handler for {} in {}", type(message).__name__, type(self).__name__)
        self.ctx.system.dead_letters.record(self.ctx.name, message, "unhandled")

    def on_receive(self, message: Any) -> Any:
        try:
            handler = self._dispatch_cache[type(message)]
        except KeyError:
            handler = self._resolve(type(message))
        if handler is None:
            return self.on_unhandled(message)
        return handler(message)

    def _resolve(self, mtype: type) -> Callable[..., Any] | None:
        try:
            return self._dispatch_cache[mtype]
        except KeyError:
            pass
        name = None
        for klass in mtype.__mro__:
            name = self._tw_dispatch.get(klass)
            if name is not None:
                break
        handler = getattr(self, name) if name else None
        self._dispatch_cache[mtype] = handler
        return handler

    # -- the loop ----------------------------------------------------------------

    def _actor_loop(self) -> None:
        cell = self._cell
        _current.name = cell.name
        try:
            try:
                self.on_start()
            except Exception as exc:  # noqa: BLE001 - recorded and supervised
                self._crash(exc, None, during="on_start")
                self._announce_exit()
            cell.started.set()
            if not self._stopping:
                self._run()
        finally:
            self._announce_exit()
            _current.name = None
            self._dispatch_cache.clear()  # bound methods: a cycle through this instance
            cell.started.set()
            cell.thread_ended(self)

    def _announce_exit(self) -> None:
        """Tell the cell (and so the supervisor) once that this instance ended.

        Called while the mailbox still shows this actor busy, so a quiescence
        check can never slip between the exit and the supervisor hearing of it.
        """
        if self._exit_announced:
            return
        self._exit_announced = True
        ActorRegistry.unregister(self.actor_ref)
        self._mark_stopped()
        self._cell.instance_exited(self, self._exit_reason, self._exit_error)

    def _mark_stopped(self) -> None:
        self._stopping = True
        self.actor_stopped.set()

    def _run(self) -> None:
        mailbox = self._cell.mailbox
        while not self._stopping:
            self._handle_item(mailbox.get(), mailbox)

    def _handle_item(self, item: Any, mailbox: Any) -> float:
        """Handle one item taken from the mailbox; returns the seconds it took.
        The per-message path of both kinds of actor: kept to the calls it needs
        (at 1,000 symbols every quote pays it once per hop)."""
        t0 = _perf()
        try:
            kind = type(item)
            if kind is Envelope:
                self._handle_envelope(item)
            elif kind is StopNow or kind is GracefulStop:
                self._stop_instance(item.reason)
            else:
                self.on_receive(item)
            if (self._tw_idle_hook and not (mailbox._items or mailbox._market)
                    and not self._stopping):
                self.on_idle()
        except Exception as exc:  # noqa: BLE001 - recorded and supervised
            self._crash(exc, item, during="handler")
        finally:
            if self._stopping:
                self._announce_exit()
            took = _perf() - t0
            mailbox.handled(took)
        return took

    # -- pooled: turns on a dispatcher --------------------------------------------

    def wants_turn(self) -> bool:
        """True while this pooled instance has work besides its mail (to start)."""
        return not self._began and not self._finished

    def takes_mail(self) -> bool:
        """Whether a turn would take mail now (a remote proxy waiting for an
        answer does not: its mail waits, and conflates, in the mailbox)."""
        return True

    def pooled_turn(self, throughput: int) -> None:
        """Dispatcher worker only: start if new, then work through up to
        ``throughput`` messages (the mailbox makes sure no two turns of one
        actor overlap)."""
        if self._finished:
            return
        cell = self._cell
        _current.name = cell.name
        try:
            if not self._began:
                self._begin_pooled()
            if not self._stopping:
                self._pooled_work(throughput)
            if self._stopping:
                self._finish_pooled()
        finally:
            _current.name = None

    def _begin_pooled(self) -> None:
        self._began = True
        cell = self._cell
        mailbox = cell.mailbox
        mailbox.busy = True  # starting counts as busy for quiescence
        try:
            self.on_start()
        except Exception as exc:  # noqa: BLE001 - recorded and supervised
            self._crash(exc, None, during="on_start")
            self._announce_exit()
        finally:
            cell.started.set()
            mailbox.done()

    def _pooled_work(self, throughput: int) -> None:
        mailbox = self._cell.mailbox
        bound = mailbox.dispatcher.slow_handler_s
        take, handle = mailbox.take, self._handle_item
        for _ in range(throughput):
            if self._stopping or not (mailbox._items or mailbox._market):
                break  # nothing waits: end the turn without a take that finds nothing
            item = take()
            if item is EMPTY:
                break
            took = handle(item, mailbox)
            if took > bound:
                mailbox.dispatcher.report_slow(self._cell.name, _what(item), took, mailbox)

    def _finish_pooled(self) -> None:
        if self._finished:
            return
        self._finished = True
        cell = self._cell
        self._announce_exit()
        cell.mailbox.detach(self)
        self._dispatch_cache.clear()  # bound methods: a cycle through this instance
        cell.started.set()
        cell.thread_ended(self)

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        reply_to = envelope.reply_to
        try:
            result = self._handle_receive(envelope.message)
        except Exception:  # noqa: BLE001 - returned to the asker, like pykka
            if reply_to is None:
                raise
            reply_to.set_exception(sys.exc_info())
        else:
            if reply_to is not None:
                reply_to.set(result)

    def _stop(self) -> None:
        # pykka's ActorRef.stop() arrives here via _ActorStop.
        self._stop_instance("stop requested")

    def _stop_instance(self, reason: str) -> None:
        self._mark_stopped()
        self.log.debug("stopping: {}", reason)
        try:
            self.on_stop()
        except Exception as exc:  # noqa: BLE001
            self._crash(exc, None, during="on_stop")

    def _crash(self, exc: BaseException, message: Any, *, during: str) -> None:
        self._exit_reason = "crash"
        self._exit_error = exc
        self._mark_stopped()
        self.log.opt(exception=exc).error(
            "actor {} crashed in {} while handling {}: {!r}",
            self.ctx.name, during, type(message).__name__ if message is not None else "-", exc)
        self._cell.record_failure(exc, message, during)
        if message is not None:
            try:
                self.on_crashed_message(message, exc)
            except Exception as hook_exc:  # noqa: BLE001
                self.log.opt(exception=hook_exc).error("on_crashed_message hook of {} raised",
                                                       self.ctx.name)
        try:
            self.on_failure(type(exc), exc, exc.__traceback__)
        except Exception as hook_exc:  # noqa: BLE001
            self.log.opt(exception=hook_exc).error("on_failure hook of {} raised", self.ctx.name)

    def _handle_failure(self, exception_type: type[BaseException] | None,
                        exception_value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        # pykka calls this from paths we do not override; route it to _crash.
        if exception_value is not None:
            self._crash(exception_value, None, during="pykka")
