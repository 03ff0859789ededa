"""Alert messages: what any actor tells the ``alerts`` actor.

An ``Alert`` is plain data so it crosses the msgpack codec like every other
message (DESIGN section 4 and 11): the coordinator, a supervisor's halt hook
or a reconnect controller builds one and ``tell``s it; it never calls a sink.
``SinkReady`` is the control message a launcher (or whatever brings a sink's
dependency up) sends when a sink that waits for it may start delivering.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from messages.base import Message, MessageError, check_str, check_utc, message

SEVERITIES = ("info", "warning", "critical")


@message
class Alert(Message):
    """A notification for people. Delivered to every sink, in order, once.

    ``dedup_key``: alerts with the same key within the alerts actor's dedup
    window are counted and suppressed, so a condition that repeats (a kill
    switch re-asserted every poll) pages once, not a hundred times.
    """

    severity: str
    title: str
    text: str
    ts: datetime
    source: str
    dedup_key: str | None = None

    severities: ClassVar[tuple[str, ...]] = SEVERITIES

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise MessageError(
                f"Alert.severity: {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        check_str(self, "title")
        if not isinstance(self.text, str):
            raise MessageError(f"Alert.text: expected a string, got {type(self.text).__name__}")
        check_utc(self, "ts")
        check_str(self, "source")
        check_str(self, "dedup_key", optional=True)


@message
class SinkReady(Message):
    """Tell the alerts actor that sink ``sink`` may deliver now (rule 5)."""

    sink: str

    def __post_init__(self) -> None:
        check_str(self, "sink")
