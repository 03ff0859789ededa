"""Cancels of the simulated exchange.

A cancel takes effect ``cancel_ack_delay_ms`` after it arrives (the engine
asks its host for an ``ExchangeTimer``), so the order stays fillable in the
meantime: the real-world race where a fill and a cancel cross, which the
stop manager (rule 8) must survive. The answer is a ``CancelConfirmed``
saying canceled (with the quantity taken off), already_filled, or unknown.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from loguru import logger

from exchange.book import CANCELED, EXPIRED, FILLED, NO_QTY
from exchange.emit import ENGINE, Emit
from messages import CancelConfirmed, CancelOrder, CancelOutcome, ExchangeTimer
from messages.types import Symbol

if TYPE_CHECKING:
    from exchange.engine_host import EngineHost
else:
    EngineHost = object

ZERO = Decimal("0")


class CancelsMixin(EngineHost):
    def cancel(self, cmd: CancelOrder, now: datetime | None = None, *,
               account: str | None = None) -> list[Emit]:
        """``account``: the requesting session's; another account's order is
        unknown to it (never canceled, its state never told)."""
        now = now or self._clock()
        self.stats["cancels_received"] += 1
        st = self.orders.get(cmd.client_order_id)
        if st is not None and account is not None and st.request.account != account:
            self.stats["foreign_account_refused"] += 1
            self.log.append("account_mismatch", now, client_order_id=cmd.client_order_id,
                            account=st.request.account, session_account=account)
            return [self._emit(CancelConfirmed(cmd.client_order_id, cmd.symbol or Symbol("?"),
                                               CancelOutcome.UNKNOWN, NO_QTY, now), now,
                               account=account)]
        self.log.append("cancel_requested", now, client_order_id=cmd.client_order_id,
                        symbol=cmd.symbol, qty=st.leaves if st is not None else None)
        delay_s = self.config.cancel_ack_delay_ms / 1000.0
        if delay_s > 0:
            if st is not None and st.is_working:
                st.cancel_pending = True
            key = f"{cmd.client_order_id}#{next(self._cancel_seq)}"
            self.pending_cancels[key] = cmd
            if account is not None:
                self.cancel_accounts[key] = account
            return [Emit(delay_s, ExchangeTimer("cancel", key), ENGINE)]
        return self._resolve_cancel(cmd, now, account)

    def _resolve_cancel(self, cmd: CancelOrder, now: datetime,
                        account: str | None = None) -> list[Emit]:
        coid = cmd.client_order_id
        st = self.orders.get(coid)
        if st is not None:
            account = st.request.account
        # (an order unknown here: the answer goes to the account that asked)
        status = st.status if st is not None else self._retired.get(coid)
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
            self._close(st, CANCELED)
        if why is None:
            assert st is not None  # as above: why is None only for a live order
            self.stats["orders_canceled"] += 1
            self.log.append("order_canceled", now, client_order_id=coid, symbol=symbol,
                            side=st.request.side, qty=qty, price=st.request.price)
        else:
            self.log.append("cancel_rejected", now, client_order_id=coid, symbol=symbol,
                            reason=why, outcome=outcome)
        return [self._emit(CancelConfirmed(coid, symbol or Symbol("?"), outcome, qty, now), now,
                           account=account)]

    def on_timer(self, timer: ExchangeTimer, now: datetime | None = None) -> list[Emit]:
        now = now or self._clock()
        if timer.kind == "cancel":
            cmd = self.pending_cancels.pop(timer.key, None)
            account = self.cancel_accounts.pop(timer.key, None)
            return self._resolve_cancel(cmd, now, account) if cmd is not None else []
        logger.warning("simulated exchange: unknown timer {}", timer.kind)
        return []
