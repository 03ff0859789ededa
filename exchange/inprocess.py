"""InProcessAdapter: the broker adapter protocol over the ``SimVenue`` actor.

``send`` is a ``system.tell`` to the venue, so it never blocks and is
thread-safe. The venue delivers its events straight to the client actor's
mailbox by name (on the system clock, so latency is virtual in scenarios):
in the runtime that is exactly what the sink would do
(``system.tell("gateway", event)``), which is why this adapter takes the
client's actor *name* rather than a sink callable. A sink given with
``set_sink`` only receives what the adapter itself reports (a refusal when
the venue actor does not exist).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Collection

from exchange.protocol import Sink, refusal, safe_sink
from messages import Connect, Disconnect, Message


class InProcessAdapter:
    def __init__(self, system: Any, venue_name: str = "venue", client: str = "gateway",
                 sink: Sink | None = None, account: str | None = None) -> None:
        self.system = system
        self.account = account
        self.venue_name = venue_name
        self.client = client
        self._sink = sink

    def set_sink(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def connected(self) -> bool:
        """Whether the venue has a live session for our client right now."""
        cell = self.system.directory.get(self.venue_name)
        venue = getattr(cell, "actor", None) if cell is not None else None
        clients: Collection[str] = getattr(venue, "connected_clients", frozenset())
        return self.client in clients

    def connect(self) -> None:
        """Start a new session; ``StreamStatus(connected=True)`` follows."""
        self._tell(Connect(self.client, self.account))

    def close(self) -> None:
        self._tell(Disconnect(self.client))

    def send(self, command: Message) -> None:
        self._tell(command)

    def _tell(self, msg: Any) -> None:
        if not self.system.tell(self.venue_name, msg):
            event = refusal(msg, "not_connected", f"no venue actor {self.venue_name!r}",
                            self.system.clock.now())
            if not safe_sink(self._sink, event, where="InProcessAdapter"):
                self.system.tell(self.client, event)
