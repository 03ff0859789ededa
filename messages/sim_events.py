"""The simulated exchange's own record, read over its protocol.

``events.jsonl`` is what the exchange saw and did (DESIGN section 7). With
the embedded exchange the run writes it into its own directory; a run
against ``main.py exchange`` (``--exchange ws://...``) reads it from the
server with these messages at the end, so that its directory holds the
record too (DESIGN section 8) and the run's invariants are checked against
what really reached the venue. A real broker has no such record: only the
simulator answers ``QueryEvents``.
"""

from __future__ import annotations

from decimal import Decimal

from messages.base import Message, MessageError, check_str, message, to_decimal
from messages.exchange import _check_bool, _check_int


@message
class QueryEvents(Message):
    """Ask for the lines of ``events.jsonl`` with ``seq > since_seq``.

    ``cursor`` is a byte offset into the file to start reading at (0: from
    the start; the reply's ``cursor`` is where to go on). ``limit`` 0 asks
    for no lines, only the current end (``cursor``, ``last_seq``): the mark
    a run takes when it starts.
    """

    request_id: str
    since_seq: int = 0
    cursor: int = 0
    limit: int = 5000

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        _check_int(self, "since_seq")
        _check_int(self, "cursor")
        _check_int(self, "limit")


@message
class EventsPage(Message):
    """Lines of ``events.jsonl`` (each one JSON object, as the file holds it).

    The answer to a mark (``limit`` 0) also carries every non-zero position
    the exchange holds then, per account: a run's record starts there, and
    replaying its fills from zero would see flips that never happened.
    """

    request_id: str
    lines: tuple[str, ...]
    cursor: int
    last_seq: int
    more: bool = False
    #: (account, symbol, signed qty), at the mark only
    positions: tuple[tuple[str, str, Decimal], ...] = ()

    def __post_init__(self) -> None:
        check_str(self, "request_id")
        if not isinstance(self.lines, tuple) or not all(isinstance(x, str) for x in self.lines):
            raise MessageError("EventsPage.lines: expected a tuple of strings")
        _check_int(self, "cursor")
        _check_int(self, "last_seq")
        _check_bool(self, "more")
        norm = []
        for i, item in enumerate(self.positions):
            try:
                account, symbol, qty = item
            except (TypeError, ValueError):
                raise MessageError(f"EventsPage.positions[{i}]: expected (account, symbol, "
                                   "qty)") from None
            if not isinstance(account, str) or not isinstance(symbol, str):
                raise MessageError(f"EventsPage.positions[{i}]: account and symbol must be "
                                   "strings")
            norm.append((account, symbol, to_decimal(qty, f"positions[{i}].qty",
                                                     where="EventsPage.")))
        object.__setattr__(self, "positions", tuple(norm))
