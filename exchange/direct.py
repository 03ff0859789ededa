"""DirectAdapter: the broker adapter protocol straight over an idle engine.

For reading a :class:`~exchange.engine.SimulatedExchange` that no host
drives any more: the embedded exchange once its ``venue`` actor stopped at
the end of a run (``exchange.position_probe`` asks it for the final
positions the same way it asks a WebSocket exchange). Calls are synchronous
on the caller's thread: ``connect`` reports ``StreamStatus(True)`` and each
command's replies for the requester go to the sink at once. It must never
run beside a live host of the same engine (the engine is not thread-safe).
"""

from __future__ import annotations

from typing import Any

from exchange.emit import REQUESTER
from exchange.protocol import Sink, refusal, safe_sink
from messages import Message, StreamStatus, utc_now


class DirectAdapter:
    def __init__(self, engine: Any, sink: Sink | None = None) -> None:
        self.engine = engine
        self._sink = sink
        self._connected = False

    def set_sink(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self._connected = True
        safe_sink(self._sink, StreamStatus(True, "connected", utc_now()), where="DirectAdapter")

    def close(self) -> None:
        self._connected = False

    def send(self, command: Message) -> None:
        if not self._connected:
            safe_sink(self._sink, refusal(command, "not_connected", "not connected"),
                      where="DirectAdapter")
            return
        for emit in self.engine.handle(command):
            if emit.audience == REQUESTER:
                safe_sink(self._sink, emit.event, where="DirectAdapter")
