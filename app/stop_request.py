"""SIGINT/SIGTERM as a request to stop, for the long-running commands.

The handler only sets an event and notes the signal: the main thread then
stops things in order (rule 16: actors in reverse order, persistence last),
never from inside the signal handler. ``run`` and ``exchange`` share it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopRequest:
    """SIGINT/SIGTERM set an event; the main thread does the orderly stop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
