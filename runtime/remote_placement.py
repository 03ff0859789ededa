"""Placements: where remote actors' hosts run, behind one small protocol.

A :class:`Placement` starts a :class:`HostHandle` per remote actor
(incarnation); the proxy calls ``handle`` and gets a ``Future`` at once, so
it never blocks a dispatcher thread while the far side works. A host that
is gone fails that future with
:class:`~runtime.remote_host.RemoteActorDied`.

:class:`ThreadPlacement` hosts on threads of this process, every message
still through the codec: for tests (a host can be killed as if its process
died) and for measuring the codec's cost alone.
``runtime.ray_placement.RayPlacement`` hosts in Ray workers.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Protocol

from runtime.remote_host import RemoteActorDied, RemoteHost


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
