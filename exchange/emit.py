"""What the engine returns: events to deliver, each with a delay and an audience.

The engine is pure and synchronous: it never sleeps, sends or schedules.
Every call returns a list of :class:`Emit`; the host (the ``SimVenue`` actor
on the virtual clock, or the WebSocket server on the live loop) delivers each
``event`` after ``delay_s`` seconds to the right audience:

* ``ACCOUNT``  - order events (acks, rejects, fills, cancels): the sessions
  of the order's account (``Emit.account``) only, in order; another
  account's session never sees them (DESIGN rule 18);
* ``MARKET``   - quotes and bars: sessions subscribed to the event's symbol;
* ``REQUESTER`` - query replies and errors: only the session that asked;
* ``ENGINE``   - an ``ExchangeTimer`` to hand back to the engine after the
  delay (a delayed cancel taking effect);
* ``TRANSPORT`` - a :class:`StreamAction` the transport carries out (drop
  or stall the stream), not a message for any client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACCOUNT = "account"
MARKET = "market"
REQUESTER = "requester"
ENGINE = "engine"
TRANSPORT = "transport"


@dataclass(frozen=True, slots=True)
class Emit:
    delay_s: float
    event: Any
    audience: str = ACCOUNT
    #: the account an ACCOUNT event belongs to (None: nobody's; delivered to no session)
    account: str | None = None


@dataclass(frozen=True, slots=True)
class StreamAction:
    """``drop`` closes every session; ``stall`` keeps sockets but stops
    sending (for ``duration_s`` seconds, or until ``resume``)."""

    kind: str
    reason: str
    duration_s: float | None = None
