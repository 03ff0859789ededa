"""A server of the simulated exchange on an asyncio loop of its own thread.

The native WebSocket face (``exchange.ws_server``) and the Binance-compatible
face (``exchange.binance_face``) serve the same engine the same way: one
thread runs one event loop; ``start`` returns the bound port once the socket
listens (or raises what stopped it, a busy port as a one-line error);
``stop`` closes every connection and the listening socket and keeps the
engine, so a new server can carry on with its state. The events log is
opened here only when the engine's is not already open, and closed with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from loguru import logger


class EngineLoopServer:
    """Lifecycle shared by the exchange's servers; a subclass writes ``_main``
    (bind, set ``self.port``, call ``self._ready.set()``, serve until
    ``self._stop_event`` is set) and names itself."""

    #: the thread's name, and how the log speaks of this server
    thread_name: ClassVar[str] = "tw-exchange-server"
    what: ClassVar[str] = "exchange server"

    engine: Any
    host: str
    port: int
    out_dir: Path | None

    def _init_loop(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._opened_log = False

    @property
    def listening_at(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on the server loop (the engine's only thread); the
        future carries its result or what it raised."""
        if self._loop is None:
            raise RuntimeError(f"{self.what} is not running")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut

    def start(self, timeout: float = 5.0) -> int:
        """Start the server thread; returns the bound port (``port=0`` picks one)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.what} already started")
        if self.out_dir is not None and not self.engine.log.is_open:
            self.engine.start(self.out_dir / "events.jsonl")
            self._opened_log = True
        else:
            self.engine.start()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.what} did not start within {timeout}s")
        if self._start_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._start_error
        logger.info("{} listening on {}", self.what, self.listening_at)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket; keep the engine."""
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and self._stop_event is not None:
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        if thread.is_alive():
            logger.error("{} thread did not stop within {}s", self.what, timeout)
        self._thread = None
        if self._opened_log:
            self.engine.stop()
            self._opened_log = False

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            if isinstance(exc, OSError) and not self._ready.is_set():  # bind: no trace needed
                logger.error("{} cannot listen on {}:{}: {}", self.what, self.host, self.port,
                             exc)
            else:
                logger.opt(exception=exc).error("{} failed", self.what)
        finally:
            self._ready.set()
            try:
                left = asyncio.all_tasks(loop)
                for task in left:
                    task.cancel()
                if left:
                    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._loop = None

    async def _main(self) -> None:
        raise NotImplementedError
