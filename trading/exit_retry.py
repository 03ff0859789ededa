"""When a refused exit order of a plan is tried again (rule 8: never leave a position unprotected).

A refusal is retried on a doubling delay (``retry_s``, then twice that, up to
``max_retry_s``); a fill of one of the plan's orders starts the doubling over.
A reduce-only refusal means the venue sees less to reduce than the plan does:
retrying on a timer would only repeat it, so that plan waits for the
position to speak (``PositionChanged``: the broker-wins correction or a
fill), retrying at most once per ``max_retry_s`` meanwhile. One alert per
plan, however often it is refused. Plain state over the plans
(``Stop.failures``, ``retry_wait``, ``refusal_alerted``); the stop manager
schedules the timers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from trading.stop_state import Stop


class ExitRetries:
    def __init__(self, retry_s: float, max_retry_s: float) -> None:
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        #: plans waiting for the position to change before they retry
        self.awaiting_position: set[str] = set()

    def refused(self, st: Stop, *, await_position: bool = False) -> float:
        """Hold ``st``'s new orders back; returns the delay until it may retry."""
        st.failures += 1
        doubling: int = 2 ** (st.failures - 1)
        delay = min(self.max_retry_s, self.retry_s * doubling)
        if await_position:
            delay = self.max_retry_s
            self.awaiting_position.add(st.stop_id)
        st.retry_wait = True
        return delay

    @staticmethod
    def first_refusal(st: Stop) -> bool:
        """True once per plan: the refusal to alert on."""
        if st.refusal_alerted:
            return False
        st.refusal_alerted = True
        return True

    @staticmethod
    def traded(st: Stop) -> None:
        """An exit order of ``st`` filled: the next refusal waits ``retry_s`` again."""
        st.failures = 0

    def due(self, st: Stop) -> None:
        """The retry delay of ``st`` passed: it may send again."""
        st.retry_wait = False
        self.awaiting_position.discard(st.stop_id)

    def position_spoke(self, stops: Mapping[str, Stop], symbol: str,
                       account: str) -> Iterator[Stop]:
        """The position of (symbol, account) changed: the plans waiting on it
        stop waiting; yields those that were held back, to drive now."""
        for stop_id in sorted(self.awaiting_position):
            st = stops.get(stop_id)
            if st is None or (st.symbol, st.account) == (symbol, account):
                self.awaiting_position.discard(stop_id)
                if st is not None and st.retry_wait:
                    st.retry_wait = False
                    yield st
