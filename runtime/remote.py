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
* :class:`~runtime.remote_host.RemoteHost` runs on the far side. It builds the
  actor with a :class:`~runtime.remote_host.RemoteContext` (the same ``ActorContext`` surface: ``tell``,
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

A :class:`~runtime.remote_placement.Placement` starts hosts:
:class:`~runtime.remote_placement.ThreadPlacement` (a host on a thread of this
process, through the codec: for tests and for comparison) or
``runtime.ray_placement.RayPlacement``.

This module is the near side only (the proxy); the far side is
``runtime.remote_host`` and where hosts run is ``runtime.remote_placement``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import msgpack

from messages.base import Message
from messages.codec import decode, encode
from runtime.actor import Actor
from runtime.mailbox import EMPTY, StopNow
from runtime.remote_host import RemoteActorDied, RemoteHandlerError, factory_path
from runtime.remote_placement import HostHandle, Placement
from runtime.signals import GracefulStop, RemoteDown, RemoteUp

#: frames sent to a host in one call, at most
BATCH_MAX = 256
_STOPS = (StopNow, GracefulStop)


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
