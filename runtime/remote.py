"""Remote actors: an actor placed in another process (a Ray worker), reached by
name like any other.

The third kind of actor (DESIGN sections 2 and 11). Its cell, mailbox and
supervisor stay in this process; only the actor's code and state move:

* :class:`RemoteProxy` is the local stand-in, a pooled actor. It takes the
  messages waiting in the cell's mailbox, sends them as one batch of msgpack
  frames (``messages.codec``: no pickled live objects) to the host, and waits
  for the answer without blocking anyone (the answer arrives on a callback
  and wakes the proxy). One batch is in flight at a time, so the order of
  one sender's messages to the actor is kept, and messages that arrive
  meanwhile wait in the mailbox, where market data still conflates.
* :class:`RemoteHost` runs on the far side. It builds the actor with a
  :class:`RemoteContext` (the same ``ActorContext`` surface: ``tell``,
  ``system.address``, ``clock``, ``cell.info``, ``schedule``...), handles the
  batch, and returns what the actor told others (as frames), the timers it
  asked for and its published figures. The proxy delivers those here, in
  order, after the batch.
* A remote actor that dies (its process or node gone) fails the batch; the
  proxy puts the batch back at the front of the mailbox and crashes, so the
  supervisor counts it against its intensity and restarts it (a new host, on
  whatever node the placement picks) with its mail kept. Nothing the dead
  host did escapes it: its outputs travel only with a completed batch.
* A handler that raises on the far side is a crash of the actor like a
  local one: the message is a dead letter, the rest of the batch goes back
  to the mailbox, the supervisor restarts it.
* While a batch is out, the system is not quiescent (``ActorSystem.outstanding``),
  so virtual time waits for remote work exactly as for local work, and the
  far side's clock is the near side's, sent with every batch.

A :class:`Placement` starts hosts: :class:`ThreadPlacement` (a host on a
thread of this process, through the codec: for tests and for comparison) or
``runtime.ray_placement.RayPlacement``.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Protocol

import msgpack
from loguru import logger

from messages.base import Message
from messages.codec import decode, encode
from runtime.actor import Actor
from runtime.mailbox import EMPTY, StopNow
from runtime.signals import GracefulStop, RemoteDown, RemoteUp

#: frames sent to a host in one call, at most
BATCH_MAX = 256
_STOPS = (StopNow, GracefulStop)


class RemoteActorDied(RuntimeError):
    """The process hosting a remote actor is gone (the batch never completed)."""


class RemoteHandlerError(RuntimeError):
    """A remote actor's handler raised (reported by its host)."""


def factory_path(factory: Callable[..., Any]) -> str:
    """``module:QualName`` of an actor class: how a host finds the code to run."""
    return f"{factory.__module__}:{factory.__qualname__}"


def load_factory(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    factory: Callable[..., Any] = obj
    return factory


# -- the far side -----------------------------------------------------------------------


class _FarClock:
    """The near side's clock as of the batch being handled."""

    is_virtual = False

    def __init__(self) -> None:
        self._now: datetime | None = None
        self._mono = 0.0

    def set(self, now: datetime, mono: float, virtual: bool) -> None:
        self._now, self._mono, self.is_virtual = now, mono, virtual

    def now(self) -> datetime:
        assert self._now is not None, "the clock is set with every batch"
        return self._now

    def monotonic(self) -> float:
        return self._mono


class _FarMailbox:
    """What an actor may read of its own mailbox on the far side."""

    def __init__(self) -> None:
        self.conflated = 0
        self._items = ()
        self._market = ()
        self.dispatcher = None


class _FarCell:
    def __init__(self, name: str, incarnation: int, info: dict[str, Any]) -> None:
        self.name = name
        self.incarnation = incarnation
        self.info = info
        self.mailbox = _FarMailbox()
        self.started = threading.Event()


class _Outbox:
    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.timers: list[tuple[float, bytes, str | None, float | None]] = []


class _FarAddress:
    __slots__ = ("_outbox", "name")

    def __init__(self, outbox: _Outbox, name: str) -> None:
        self._outbox, self.name = outbox, name

    def tell(self, message: Any) -> bool:
        self._outbox.frames.append((self.name, encode(message)))
        return True


class _FarSystem:
    """The part of ``ActorSystem`` a remote actor can use: telling by name."""

    def __init__(self, outbox: _Outbox, clock: _FarClock, seed: int) -> None:
        self._outbox = outbox
        self.clock = clock
        self.seed = seed
        self.services: dict[str, Any] = {}

    def tell(self, name: str, message: Any) -> bool:
        self._outbox.frames.append((name, encode(message)))
        return True

    def address(self, name: str) -> _FarAddress:
        return _FarAddress(self._outbox, name)


class RemoteContext:
    """``ActorContext`` for an actor on the far side. Tells and timers are
    collected and carried back with the batch; executor work runs inline (a
    remote actor's process is its own executor)."""

    def __init__(self, name: str, incarnation: int, seed: int, info: dict[str, Any]) -> None:
        self.name = name
        self.outbox = _Outbox()
        self.clock = _FarClock()
        self.system = _FarSystem(self.outbox, self.clock, seed)
        self.cell = _FarCell(name, incarnation, info)

    def tell(self, target: str, message: Any) -> bool:
        return self.system.tell(target, message)

    def tell_self(self, message: Any) -> None:
        self.system.tell(self.name, message)

    def schedule(self, delay_s: float, message: Any, *, target: str | None = None,
                 interval_s: float | None = None) -> int:
        self.outbox.timers.append((delay_s, encode(message), target, interval_s))
        return -len(self.outbox.timers)  # a far-side timer cannot be cancelled by id

    def cancel_timer(self, timer_id: int | None) -> bool:
        return False

    def submit(self, fn: Callable[..., Any], *args: Any, tag: Any = None) -> None:
        raise RuntimeError("a remote actor computes inline; it has no executor")

    def stop_self(self, reason: str = "done") -> None:
        raise RuntimeError("a remote actor is stopped by its supervisor")

    @property
    def seed(self) -> int:
        return self.system.seed

    @property
    def services(self) -> dict[str, Any]:
        return self.system.services


class RemoteHost:
    """Hosts one remote actor instance (constructed in the far process)."""

    def __init__(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 incarnation: int, seed: int, info: dict[str, Any]) -> None:
        self.ctx = RemoteContext(name, incarnation, seed, dict(info))
        factory = load_factory(path)
        self.actor = factory(self.ctx, *args, **kwargs)
        self.started = False

    def where(self) -> dict[str, Any]:
        import os
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname()}

    def handle(self, batch: bytes, now: datetime, mono: float, virtual: bool,
               conflated: int) -> bytes:
        """Handle a batch; returns a msgpack map: ``out`` [(target, frame)],
        ``timers``, ``info``, ``done`` (frames handled), ``error`` (or None)."""
        ctx = self.ctx
        ctx.clock.set(now, mono, virtual)
        ctx.cell.mailbox.conflated = conflated
        ctx.outbox.frames.clear()
        ctx.outbox.timers.clear()
        frames = msgpack.unpackb(batch, raw=False, use_list=False)
        done, error = 0, None
        try:
            if not self.started:
                self.started = True
                self.actor.on_start()
            for frame in frames:
                self.actor.on_receive(decode(frame))
                done += 1
            self.actor.on_idle()
        except Exception as exc:  # noqa: BLE001 - reported to the proxy, which crashes
            error = f"{type(exc).__name__}: {exc}"
        answer: bytes = msgpack.packb({"out": ctx.outbox.frames, "timers": ctx.outbox.timers,
                                      "info": _plain(ctx.cell.info), "done": done, "error": error},
                                     use_bin_type=True, default=_info_default)
        return answer

    def stop(self) -> None:
        try:
            self.actor.on_stop()
        except Exception:  # noqa: BLE001 - the host is going away anyway
            logger.exception("remote actor {} raised in on_stop", self.ctx.name)


def _plain(info: Any) -> Any:
    return info


def _info_default(obj: Any) -> Any:
    return str(obj)  # figures only: a Decimal or a datetime reads fine as text


# -- placements: where hosts run ------------------------------------------------------------


class HostHandle(Protocol):
    """A started host. ``handle`` returns at once; the answer comes on the future."""

    node: dict[str, Any]

    def handle(self, batch: bytes, now: datetime, mono: float, virtual: bool,
               conflated: int) -> Future[bytes]: ...

    def stop(self) -> None: ...


class Placement(Protocol):
    name: str

    def start_host(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   incarnation: int, seed: int, info: dict[str, Any]) -> HostHandle: ...

    def close(self) -> None: ...


class _ThreadHost:
    """A host on a worker thread of this process, every message through the codec."""

    def __init__(self, host: RemoteHost) -> None:
        self._host = host
        self.node = {"placement": "thread", **host.where()}
        self._lock = threading.Lock()
        self.killed = False

    def handle(self, batch: bytes, now: datetime, mono: float, virtual: bool,
               conflated: int) -> Future[bytes]:
        fut: Future[bytes] = Future()

        def run() -> None:
            with self._lock:
                if self.killed:
                    fut.set_exception(RemoteActorDied("host killed"))
                    return
                try:
                    fut.set_result(self._host.handle(batch, now, mono, virtual, conflated))
                except BaseException as exc:  # noqa: BLE001 - the host itself broke
                    fut.set_exception(RemoteActorDied(repr(exc)))

        threading.Thread(target=run, name="tw-remote-call", daemon=True).start()
        return fut

    def kill(self) -> None:
        """As if the host's process died: every later call fails."""
        self.killed = True

    def stop(self) -> None:
        if not self.killed:
            self._host.stop()


class ThreadPlacement:
    """Hosts on threads of this process (tests; the cost of the codec alone)."""

    name = "thread"

    def __init__(self) -> None:
        self.hosts: dict[str, _ThreadHost] = {}

    def start_host(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   incarnation: int, seed: int, info: dict[str, Any]) -> HostHandle:
        host = _ThreadHost(RemoteHost(path, name, args, kwargs, incarnation, seed, info))
        self.hosts[name] = host
        return host

    def close(self) -> None:
        self.hosts.clear()


# -- the near side ---------------------------------------------------------------------------


class RemoteProxy(Actor):
    """The local stand-in of a remote actor: a pooled actor that ships its mail
    to the host in batches and delivers what comes back (see module doc)."""

    def __init__(self, ctx: Any, placement: Placement, factory: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(ctx)
        self._placement = placement
        self._path = factory_path(factory)
        self._args, self._kwargs = tuple(args), dict(kwargs)
        self._host: HostHandle | None = None
        self._batch: list[Any] = []
        self._reply: Future[bytes] | None = None
        self._reply_ready = False
        self._sent_at = 0.0
        self.batches = 0
        self.frames_out = 0
        self._announced_up = False

    # -- lifecycle -------------------------------------------------------------------------

    def on_start(self) -> None:
        cell = self.ctx.cell
        self._host = self._placement.start_host(self._path, cell.name, self._args, self._kwargs,
                                                 cell.incarnation, self.ctx.seed,
                                                 dict(cell.info))
        self._publish({})
        self._send([])  # an empty batch runs the far side's on_start

    def on_stop(self) -> None:
        if self._reply is not None:  # stopped with a batch out: its answer is ignored
            self._reply = None
            self._requeue(self._batch)  # kept for the next instance (or dead letters)
            self._batch = []
            self.ctx.system.outstanding_add(-1)
        host, self._host = self._host, None
        if host is not None:
            try:
                host.stop()
            except Exception:  # noqa: BLE001 - a dead host has nothing left to stop
                self.log.warning("remote actor {}: host did not stop cleanly", self.ctx.name)

    # -- turns ------------------------------------------------------------------------------

    def wants_turn(self) -> bool:
        return super().wants_turn() or self._reply_ready

    def takes_mail(self) -> bool:
        return self._reply is None or self._reply_ready or self._stop_waiting()

    def _stop_waiting(self) -> bool:
        """A stop is honoured even with a batch out: a host that hangs must not
        hold its actor past its supervisor's stop. The batch is kept (put back
        in the mailbox: the next instance handles it, or it is a dead letter at
        shutdown); the far side's answer to it, if any, is ignored."""
        return any(type(item) in _STOPS for _, item in self._cell.mailbox._items)

    def _pooled_work(self, throughput: int) -> None:
        """Deliver a landed answer, then ship what waits as the next batch."""
        mailbox = self._cell.mailbox
        mailbox.busy = True  # from here to the send, the mail is in this actor's hands
        try:
            if self._reply_ready:
                self._reply_ready = False
                self._step(self._deliver)
            if self._reply is not None and self._stop_waiting():
                mailbox.busy = True
                self._handle_item(mailbox.take_first(_STOPS), mailbox)
                mailbox.busy = True
            if self._reply is not None or self.actor_stopped.is_set():
                return
            batch: list[Any] = []
            while len(batch) < BATCH_MAX:
                item = mailbox.take()
                if item is EMPTY:
                    break
                if not isinstance(item, Message):  # stop, an ask, a stray: handled here
                    if batch:  # the far side first gets what came before it
                        self._requeue([item])
                        break
                    self._handle_item(item, mailbox)
                    mailbox.busy = True
                    if self.actor_stopped.is_set():
                        return
                    continue
                batch.append(item)
            if batch:
                self._step(lambda: self._send(batch))
        finally:
            mailbox.done()

    def _step(self, step: Callable[[], None]) -> None:
        """Run one step as a handler would: a raise is this actor's crash."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - recorded and supervised
            self._crash(exc, None, during="remote")

    def _send(self, batch: list[Any]) -> None:
        assert self._host is not None
        frames = msgpack.packb([encode(m) for m in batch], use_bin_type=True)
        self._batch = batch
        self._sent_at = time.perf_counter()
        clock = self.ctx.clock
        self.ctx.system.outstanding_add(1)  # until the answer is delivered (_deliver)
        try:
            self._reply = self._host.handle(frames, clock.now(), clock.monotonic(),
                                            clock.is_virtual, self._cell.mailbox.conflated)
        except Exception:
            self.ctx.system.outstanding_add(-1)
            self._requeue(batch)
            raise
        self.batches += 1
        self._reply.add_done_callback(self._landed)

    def _landed(self, _fut: Future[bytes]) -> None:
        """Any thread: the answer is in; give this actor a turn to deliver it."""
        self._reply_ready = True
        self._cell.mailbox.kick()

    def _deliver(self) -> None:
        fut, self._reply = self._reply, None
        batch, self._batch = self._batch, []
        assert fut is not None
        try:
            try:
                answer = msgpack.unpackb(fut.result(), raw=False, use_list=False)
            except Exception as exc:  # noqa: BLE001 - the host is gone: the batch never happened
                self._requeue(batch)
                raise RemoteActorDied(f"{self.ctx.name}: remote host lost ({exc!r}); "
                                      f"{len(batch)} message(s) kept") from exc
            mailbox = self._cell.mailbox
            done = answer["done"]
            share = (time.perf_counter() - self._sent_at) / max(1, len(batch))
            for _ in range(done):  # the far side's handling, as this mailbox's figures
                mailbox.record_handled(share)
            system = self.ctx.system
            for target, frame in answer["out"]:
                system.tell(target, decode(frame))
                self.frames_out += 1
            for delay, frame, target, interval in answer["timers"]:
                self.ctx.schedule(delay, decode(frame), target=target, interval_s=interval)
            self._publish(answer["info"])
            if not self._announced_up:
                self._announced_up = True
                self._tell_watchers(RemoteUp(self.ctx.name, self._host.node if self._host else None))
            if answer["error"] is not None:
                system.dead_letters.record(self.ctx.name, batch[done],
                                           f"crashed handler: {answer['error']}")
                self._requeue(batch[done + 1:])
                raise RemoteHandlerError(f"{self.ctx.name} (remote) raised handling "
                                         f"{type(batch[done]).__name__}: {answer['error']}")
        finally:
            self.ctx.system.outstanding_add(-1)

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._tell_watchers(RemoteDown(self.ctx.name, f"{exc_type.__name__}: {exc}"))
        self.on_stop()  # a crashed proxy's host is not reused: the restart starts a new one

    def _tell_watchers(self, note: Any) -> None:
        """Who must know while this actor is away (the coordinator fails closed
        for its symbol): ``ActorSystem.placement_watchers``."""
        for name in self.ctx.system.placement_watchers:
            self.ctx.tell(name, note)

    def _requeue(self, items: list[Any]) -> None:
        mailbox = self._cell.mailbox
        for item in reversed(items):
            mailbox.put_front(item)

    def _publish(self, far_info: dict[str, Any]) -> None:
        info = dict(far_info)
        info["remote"] = {"placement": self._placement.name,
                          "node": dict(self._host.node) if self._host is not None else None,
                          "batches": self.batches, "frames_out": self.frames_out,
                          "in_flight": self._reply is not None}
        self.ctx.cell.info = info
