"""Cancels of the simulated exchange.

A cancel takes effect ``cancel_ack_delay_ms`` after it arrives (the queue
asks the host for an ``ExchangeTimer``), so the order stays fillable in the
meantime: the real-world race where a fill and a cancel cross, which the
stop manager (rule 8) must survive. The answer is a ``CancelConfirmed``
saying canceled (with the quantity taken off), already_filled, or unknown.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from typing import Any

from loguru import logger

from exchange.book import CANCELED, EXPIRED, FILLED, NO_QTY
from exchange.emit import ENGINE, Emit
from exchange.events_log import EventsLog
from exchange.order_table import OrderTable
from exchange.outbox import Outbox
from messages import CancelConfirmed, CancelOrder, CancelOutcome, ExchangeTimer
from messages.types import Symbol


class CancelQueue:
    """Cancels waiting for their acknowledgement delay, and their answers.
    Reads ``cancel_ack_delay_ms`` from the engine's live settings object."""

    def __init__(self, settings: Any, table: OrderTable, outbox: Outbox, log: EventsLog,
                 stats: Counter[str]) -> None:
        self._settings = settings
        self._table = table
        self._outbox = outbox
        self._log = log
        self._stats = stats
        self.reset()

    def reset(self) -> None:
        """Forget every pending cancel (an exchange restart with data loss)."""
        #: timer key -> (the cancel, the requesting session's account: its answer's audience)
        self.pending: dict[str, tuple[CancelOrder, str | None]] = {}
        self._seq = itertools.count(1)

    def request(self, cmd: CancelOrder, now: datetime, account: str | None = None) -> list[Emit]:
        """``account``: the requesting session's; another account's order is
        unknown to it (never canceled, its state never told)."""
        stats, log = self._stats, self._log
        stats["cancels_received"] += 1
        st = self._table.get(cmd.client_order_id)
        if st is not None and account is not None and st.request.account != account:
            stats["foreign_account_refused"] += 1
            log.append("account_mismatch", now, client_order_id=cmd.client_order_id,
                       account=st.request.account, session_account=account)
            return [self._outbox.emit(CancelConfirmed(cmd.client_order_id,
                                                      cmd.symbol or Symbol("?"),
                                                      CancelOutcome.UNKNOWN, NO_QTY, now), now,
                                      account=account)]
        log.append("cancel_requested", now, client_order_id=cmd.client_order_id,
                   symbol=cmd.symbol, qty=st.leaves if st is not None else None)
        delay_s = self._settings.cancel_ack_delay_ms / 1000.0
        if delay_s > 0:
            if st is not None and st.is_working:
                st.cancel_pending = True
            key = f"{cmd.client_order_id}#{next(self._seq)}"
            self.pending[key] = (cmd, account)
            return [Emit(delay_s, ExchangeTimer("cancel", key), ENGINE)]
        return self._resolve(cmd, now, account)

    def on_timer(self, timer: ExchangeTimer, now: datetime) -> list[Emit]:
        if timer.kind == "cancel":
            entry = self.pending.pop(timer.key, None)
            if entry is None:
                return []
            cmd, account = entry
            return self._resolve(cmd, now, account)
        logger.warning("simulated exchange: unknown timer {}", timer.kind)
        return []

    def _resolve(self, cmd: CancelOrder, now: datetime,
                 account: str | None = None) -> list[Emit]:
        coid = cmd.client_order_id
        st = self._table.get(coid)
        if st is not None:
            account = st.request.account
        # (an order unknown here: the answer goes to the account that asked)
        status = self._table.status_of(coid)
        symbol = st.request.symbol if st is not None else cmd.symbol
        qty = NO_QTY
        if status is None:
            outcome, why = CancelOutcome.UNKNOWN, "unknown order"
        elif status == FILLED:
            outcome, why = CancelOutcome.ALREADY_FILLED, "already filled"
        elif status in (CANCELED, EXPIRED):
            outcome, why = CancelOutcome.CANCELED, f"already {status}"
        else:
            assert st is not None  # a live status comes from a live order only
            outcome, why = CancelOutcome.CANCELED, None
            qty = st.leaves
            self._table.close(st, CANCELED)
        if why is None:
            assert st is not None  # as above: why is None only for a live order
            self._stats["orders_canceled"] += 1
            self._log.append("order_canceled", now, client_order_id=coid, symbol=symbol,
                             side=st.request.side, qty=qty, price=st.request.price)
        else:
            self._log.append("cancel_rejected", now, client_order_id=coid, symbol=symbol,
                             reason=why, outcome=outcome)
        return [self._outbox.emit(CancelConfirmed(coid, symbol or Symbol("?"), outcome, qty, now),
                                  now, account=account)]
