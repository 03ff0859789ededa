"""Remote actors on a Ray cluster (DESIGN section 11).

A :class:`RayPlacement` starts a few long-lived Ray actors, *host processes*,
and places remote Tradewarden actors on them by name (a stable hash of the
name picks the process), so a thousand symbol actors need a handful of
processes, not a thousand. Each host process keeps one
:class:`runtime.remote_host.RemoteHost` per actor it hosts. Ray runs the method
calls of one caller on one Ray actor in submission order, which keeps each
remote actor's batches in order.

Only bytes and plain values cross: message batches are msgpack frames made
by ``messages.codec``; the clock reading and the actor's constructor
arguments (names, numbers, plain dicts) are plain values.

A host process that dies (killed, node lost) fails every batch in flight on
it with Ray's ``RayActorError``; each proxy then crashes, its supervisor
restarts it, and the restart finds the process marked dead and starts a new
one (on whatever node Ray picks). Ray's own actor restarts are off
(``max_restarts=0``): supervision is ours, counted against our intensity.

Ray is an optional dependency (``pip install -e '.[ray]'``).
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runtime.remote_host import RemoteActorDied, RemoteHost

RAY_MISSING = ("Ray is not installed: install the optional extra with "
               "pip install -e '.[ray]' (or pip install 'ray>=2.40')")


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def ray_missing() -> str | None:
    """Why ``--ray`` cannot work here (Ray not installed), or None."""
    import importlib.util

    return None if importlib.util.find_spec("ray") is not None else RAY_MISSING


class HostProcess:
    """The body of one Ray actor: many remote Tradewarden actors by name."""

    def __init__(self) -> None:
        self.hosts: dict[str, RemoteHost] = {}

    def start(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              incarnation: int, seed: int, info: dict[str, Any]) -> dict[str, Any]:
        old = self.hosts.pop(name, None)
        if old is not None:
            old.stop()
        host = RemoteHost(path, name, args, kwargs, incarnation, seed, info)
        self.hosts[name] = host
        return self.where()

    def handle(self, name: str, batch: bytes, now: datetime, mono: float, virtual: bool,
               conflated: int) -> bytes:
        return self.hosts[name].handle(batch, now, mono, virtual, conflated)

    def stop(self, name: str) -> None:
        host = self.hosts.pop(name, None)
        if host is not None:
            host.stop()

    def where(self) -> dict[str, Any]:
        import socket

        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - outside Ray (unit use)
            node = None
        return {"placement": "ray", "pid": os.getpid(), "host": socket.gethostname(),
                "node_id": node}


class _RayHost:
    """The near side's handle on one remote actor in one host process."""

    def __init__(self, placement: RayPlacement, index: int, proc: Any, name: str,
                 started: Any) -> None:
        self._placement, self._index, self._proc, self._name = placement, index, proc, name
        self.node: dict[str, Any] = {"placement": "ray", "process": index}
        fut = started.future()
        fut.add_done_callback(self._started)

    def _started(self, fut: Future[Any]) -> None:
        try:
            self.node = {**fut.result(), "process": self._index}
        except Exception as exc:  # noqa: BLE001 - the first batch reports it too
            self._placement.mark_dead(self._index, self._proc, exc)

    def handle(self, batch: bytes, now: datetime, mono: float, virtual: bool,
               conflated: int) -> Future[bytes]:
        ref = self._proc.handle.remote(self._name, batch, now, mono, virtual, conflated)
        fut: Future[bytes] = Future()

        def landed(ray_fut: Future[Any]) -> None:
            try:
                fut.set_result(ray_fut.result())
            except Exception as exc:  # noqa: BLE001 - RayActorError and friends
                self._placement.mark_dead(self._index, self._proc, exc)
                fut.set_exception(RemoteActorDied(f"ray host process {self._index}: {exc!r}"))

        ref.future().add_done_callback(landed)
        return fut

    def stop(self) -> None:
        if self._placement.alive(self._index, self._proc):
            self._proc.stop.remote(self._name)  # fire and forget: never wait on the network


class RayPlacement:
    """Remote actors on Ray: ``address`` ``auto`` starts a local Ray instance on
    this machine (no dashboard), anything else is a cluster address to join."""

    name = "ray"

    def __init__(self, address: str = "auto", *, processes: int = 2, num_cpus: int | None = None,
                 code_root: str | os.PathLike[str] | None = None) -> None:
        if processes < 1:
            raise ValueError("ray placement needs at least one host process")
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable(RAY_MISSING) from exc
        self._ray = ray
        root = str(Path(code_root) if code_root else Path(__file__).resolve().parent.parent)
        # Host processes import our packages by name: give them this code tree.
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}}
        self._owns = False
        if not ray.is_initialized():
            try:
                if address == "auto":  # this machine only: every Ray socket on loopback
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.ERROR, runtime_env=env, namespace="tradewarden",
                             _node_ip_address="127.0.0.1")
                else:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                             runtime_env=env, namespace="tradewarden")
            except Exception as exc:  # noqa: BLE001 - said plainly to the user
                raise RayUnavailable(f"cannot start or join Ray at {address!r}: {exc}") from exc
            self._owns = True
        self._cls = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(HostProcess)
        self._procs: list[Any] = [None] * processes
        self._dead: set[int] = set()
        self._lock = threading.Lock()
        self.started_processes = 0

    def _process(self, index: int) -> Any:
        with self._lock:
            proc = self._procs[index]
            if proc is None or id(proc) in self._dead:
                proc = self._procs[index] = self._cls.remote()
                self.started_processes += 1
            return proc

    def mark_dead(self, index: int, proc: Any, why: BaseException) -> None:
        with self._lock:
            if self._procs[index] is proc and id(proc) not in self._dead:
                self._dead.add(id(proc))
                logger.warning("ray host process {} is gone ({!r}); the next start replaces it",
                               index, why)

    def alive(self, index: int, proc: Any) -> bool:
        with self._lock:
            return id(proc) not in self._dead

    def index_of(self, name: str) -> int:
        return zlib.crc32(name.encode()) % len(self._procs)

    def start_host(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   incarnation: int, seed: int, info: dict[str, Any]) -> _RayHost:
        index = self.index_of(name)
        proc = self._process(index)
        started = proc.start.remote(path, name, tuple(args), dict(kwargs), incarnation, seed,
                                    dict(info))
        return _RayHost(self, index, proc, name, started)

    def pids(self) -> list[int]:
        """The host processes' pids (for tests that kill one); waits on Ray."""
        ray = self._ray
        return [ray.get(p.where.remote())["pid"] for p in self._procs if p is not None]

    def close(self) -> None:
        ray = self._ray
        with self._lock:
            procs, self._procs = [p for p in self._procs if p is not None], [None] * len(self._procs)
        for proc in procs:
            try:
                ray.kill(proc)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._owns and ray.is_initialized():
            ray.shutdown()
