"""Messages of the connectivity path: gateway <-> reconnect controller <->
reconciler (rule 12)."""

from __future__ import annotations

from datetime import datetime

from messages.base import Message, check_str, message


@message
class StreamDown(Message):
    """The stream is gone (error, close, or watchdog). Sent, never handled inline."""

    reason: str
    ts: datetime


@message
class StreamUp(Message):
    ts: datetime


@message
class TryConnect(Message):
    """Reconnect controller's own timer: time for the next attempt."""

    generation: int


@message
class ReconnectNow(Message):
    """Reconnect controller -> gateway: open the stream now."""

    attempt: int


@message
class WatchdogCheck(Message):
    generation: int = 0


@message
class ResyncRequest(Message):
    """Gateway -> reconciler after a (re)connect: compare state with the broker."""

    reason: str
    ts: datetime

    def __post_init__(self) -> None:
        check_str(self, "reason")


@message
class ResyncDone(Message):
    """Reconciler -> gateway: state matches the broker again; new risk may flow."""

    ts: datetime


@message
class PollNow(Message):
    """Reconciler's own periodic timer (rule 11: the poll is never removed)."""

    generation: int = 0
