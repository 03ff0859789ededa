"""When the simulated exchange's events leave: latency, seeded jitter, FIFO.

Every event the engine returns to a client is an :class:`~exchange.emit.Emit`
made here, with the delay the host waits before delivering it. The delay is
``latency_ms`` plus a jitter drawn from this part's own ``random.Random``
(seeded by the settings' ``seed``: the only randomness of the exchange), and
never earlier than the previous event's, so jitter cannot reorder the stream
(it is FIFO like a socket). Events that are not for clients (an engine timer,
a stream action) are made where they arise, with no delay drawn.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from exchange._fast import maker
from exchange.emit import ACCOUNT, REQUESTER, Emit
from messages import ExchangeError

#: A clock set back further than this is not held to the previous due time.
MAX_FIFO_HOLD_S = 60.0

_new_emit = maker(Emit)  # (Emit without its frozen __init__: see exchange._fast)


class Outbox:
    """Delays of the engine's outgoing events; reads ``latency_ms`` and
    ``latency_jitter_ms`` from the engine's live settings object."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._rng = random.Random(settings.seed)
        # ``now.timestamp()`` of the last ``now`` seen: one order's ack and
        # fills share the same ``now``, so it is computed once per command.
        self._ts_of: datetime | None = None
        self._ts = 0.0
        self._last_due = float("-inf")

    def reseed(self, seed: int) -> None:
        self._rng.seed(seed)

    def reset(self) -> None:
        """Forget the last due time (the exchange restarted and lost its streams)."""
        self._last_due = float("-inf")

    def delay(self, now: datetime, extra_s: float = 0.0) -> float:
        """Latency of the next stream event, at or after the previous one's."""
        cfg = self._settings
        lat = cfg.latency_ms / 1000.0 + extra_s
        if cfg.latency_jitter_ms:
            lat += self._rng.uniform(0.0, cfg.latency_jitter_ms) / 1000.0
        if now is self._ts_of:
            t = self._ts
        else:
            t = self._ts = now.timestamp()
            self._ts_of = now
        due = t + lat
        last = self._last_due
        if due < last < due + MAX_FIFO_HOLD_S:  # (a clock set back is not held)
            due = last
        self._last_due = due
        delay = due - t
        return delay if delay > 0.0 else 0.0  # max(0.0, delay) without the call

    def emit(self, event: Any, now: datetime, audience: str = ACCOUNT, extra_s: float = 0.0,
             account: str | None = None) -> Emit:
        return _new_emit(self.delay(now, extra_s), event, audience, account)

    def error(self, code: str, reason: str, now: datetime, ref: str | None = None) -> Emit:
        """An ``ExchangeError`` for the requester only."""
        return self.emit(ExchangeError(code=code, reason=reason, ts=now, ref=ref), now, REQUESTER)
