"""The loop thread of a broker adapter that talks to its exchange over asyncio.

The WebSocket adapter (``exchange.ws_client``) and the ccxt adapter
(``exchange.ccxt_venue``) run the same way: one thread of the adapter's own
runs one event loop, started by the first ``connect()`` (nothing at
construction, rule 14) and ended by ``close()``; every ``connect()`` and
``close()`` starts a new generation, so whatever the superseded connection
still reports is recognised and dropped. A subclass writes
``_start_connection(gen)`` (on the loop thread) and ``_shutdown(loop)`` (a
coroutine that ends its tasks and stops the loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import ClassVar

from loguru import logger


class LoopThreadClient:
    #: how long ``close()`` waits for the loop thread to end
    close_timeout_s: ClassVar[float] = 5.0

    name: str

    def _init_loop_thread(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gen = 0

    def connect(self) -> None:
        """Start (or restart) the connection; returns at once. The outcome is a
        ``StreamStatus`` on the sink; no retry here (the reconnect controller's)."""
        with self._lock:
            self._gen += 1
            gen = self._gen
            loop = self._ensure_loop()
        loop.call_soon_threadsafe(self._start_connection, gen)

    def close(self, timeout: float | None = None) -> None:
        """Close the connection and stop the loop thread (nothing is reported)."""
        with self._lock:
            self._gen += 1
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._shutdown(loop)))
        except RuntimeError:  # the loop has closed already
            return
        if threading.current_thread() is not thread:
            wait = self.close_timeout_s if timeout is None else timeout
            thread.join(wait)
            if thread.is_alive():
                logger.error("{}: loop thread did not stop within {}s", self.name, wait)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        """Start the loop thread if needed. Does not wait for it: callbacks
        queued with call_soon_threadsafe run once the loop starts."""
        if self._loop is None:
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    loop.run_forever()
                finally:
                    loop.close()

            self._thread = threading.Thread(target=run, name=f"tw-{self.name}", daemon=True)
            self._loop = loop
            self._thread.start()
        return self._loop

    def _start_connection(self, gen: int) -> None:
        raise NotImplementedError

    def _shutdown(self, loop: asyncio.AbstractEventLoop) -> Awaitable[None]:
        raise NotImplementedError
