"""The far side of a remote actor: the host that runs the actor's code and state.

A :class:`RemoteHost` is built in the process that hosts the actor (a Ray
worker, or a thread for :class:`runtime.remote_placement.ThreadPlacement`).
It builds the actor from its ``module:QualName`` (:func:`load_factory`: a
host gets code by name, never a pickled live object) with a
:class:`RemoteContext`, the same ``ActorContext`` surface a local actor has
(``tell``, ``system.address``, ``clock``, ``cell.info``, ``schedule``...).

Contract with the proxy (:class:`runtime.remote.RemoteProxy`): ``handle``
takes one batch of msgpack frames (``messages.codec``) with the near side's
clock as of the batch, and returns one msgpack map: what the actor told
others (as frames), the timers it asked for, its published figures, how
many frames it handled and the handler's error, if any. Nothing the actor
does leaves the host except in that answer, so a host that dies mid-batch
leaves no trace on the near side. This module imports nothing of the near
side: a worker process loads only what it runs.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgpack
from loguru import logger

from messages.codec import decode, encode


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

