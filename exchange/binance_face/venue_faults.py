"""The venue's own faults, beside the engine's (latency, rejects, partial
fills, cancel delay, stream drop/stall, restart).

Spec keys (``BinanceFaceServer.venue_fault(spec)``, or ``POST /_sim/fault``
with ``{"venue": spec}``):

* ``rate_limit: N | {count, retry_after_s}`` - the next N signed requests get
  HTTP 429 ``{"code": -1003}`` with ``Retry-After`` and are not served;
* ``ban: {count, retry_after_s}`` (or N) - HTTP 418, the IP ban, same shape;
* ``timestamp_error: N`` - the next N signed requests fail ``-1021``
  (outside recvWindow) whatever their timestamp;
* ``clock_offset_ms: X`` - the server's clock runs X ms ahead (negative:
  behind): ``/fapi/v1/time`` shows it and the recvWindow check uses it, so
  a client that does not resync fails with real ``-1021`` answers;
* ``lose_create_answer: N | {count, mode}`` - the next N order placements
  reach the engine (the order is on the book, in events.jsonl, on the user
  stream) but the HTTP answer is lost: ``mode`` ``drop`` (default) closes
  the connection unanswered, ``hang`` holds it for ``hang_s`` seconds
  (a client timeout);
* ``expire_listen_keys: true`` - every listen key expires now:
  ``listenKeyExpired`` is sent on its streams, which then close.

Unknown keys and bad values raise ValueError naming them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

KEYS = ("rate_limit", "ban", "timestamp_error", "clock_offset_ms", "lose_create_answer",
        "expire_listen_keys")


@dataclass
class _Counted:
    count: int = 0
    retry_after_s: int = 1
    mode: str = "drop"
    hang_s: float = 30.0


def _counted(key: str, value: Any, **defaults: Any) -> _Counted:
    if isinstance(value, bool) or not isinstance(value, (int, dict)):
        raise ValueError(f"venue fault {key!r}: expected a count or a mapping, got {value!r}")
    spec = {"count": value} if isinstance(value, int) else dict(value)
    unknown = set(spec) - {"count", "retry_after_s", "mode", "hang_s"}
    if unknown:
        raise ValueError(f"venue fault {key!r}: unknown key(s) {sorted(unknown)}")
    c = _Counted(**{**defaults, **spec})
    if not isinstance(c.count, int) or c.count < 0:
        raise ValueError(f"venue fault {key!r}: count must be an integer >= 0")
    if c.mode not in ("drop", "hang"):
        raise ValueError(f"venue fault {key!r}: mode must be 'drop' or 'hang'")
    return c


class VenueFaults:
    def __init__(self) -> None:
        self.rate_limit = _Counted()
        self.ban = _Counted()
        self.timestamp_error = 0
        self.clock_offset_ms = 0
        self.lose_create = _Counted()

    def validate(self, spec: dict[str, Any]) -> None:
        if not isinstance(spec, dict):
            raise ValueError(f"venue fault: expected a mapping, got {type(spec).__name__}")
        unknown = [k for k in spec if k not in KEYS]
        if unknown:
            raise ValueError(f"unknown venue fault key(s) {unknown}; known keys: {list(KEYS)}")
        for key in ("rate_limit", "ban", "lose_create_answer"):
            if key in spec:
                _counted(key, spec[key])
        for key in ("timestamp_error", "clock_offset_ms"):
            v = spec.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"venue fault {key!r}: expected an integer, got {v!r}")
        if spec.get("timestamp_error", 0) < 0:
            raise ValueError("venue fault 'timestamp_error': expected a count >= 0")

    def apply(self, spec: dict[str, Any]) -> None:
        """Apply (after validating everything); ``expire_listen_keys`` is the
        server's to carry out."""
        self.validate(spec)
        if "rate_limit" in spec:
            self.rate_limit = _counted("rate_limit", spec["rate_limit"])
        if "ban" in spec:
            self.ban = _counted("ban", spec["ban"], retry_after_s=60)
        if "timestamp_error" in spec:
            self.timestamp_error = spec["timestamp_error"]
        if "clock_offset_ms" in spec:
            self.clock_offset_ms = spec["clock_offset_ms"]
        if "lose_create_answer" in spec:
            self.lose_create = _counted("lose_create_answer", spec["lose_create_answer"])

    def server_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    @staticmethod
    def take(c: _Counted) -> bool:
        if c.count > 0:
            c.count -= 1
            return True
        return False

    def take_timestamp_error(self) -> bool:
        if self.timestamp_error > 0:
            self.timestamp_error -= 1
            return True
        return False
