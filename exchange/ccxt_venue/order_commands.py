"""Order commands: SubmitOrder and CancelOrder, and the lookup by client order
id that settles what a lost answer left open.

Contracts (the adapter's, module ``adapter``, in detail):

* an order the venue refused is ``OrderRejected`` with a reason code; one the
  local budget cannot take is refused before it leaves (``rate_limited``);
* a resubmission (the id was sent before, or the order is older than the
  adapter or than ``RESUBMIT_AGE``) is looked up first and never doubled;
* an order whose answer did not come stays in flight:
  ``ExchangeError(unknown_outcome)`` and a lookup by its client order id
  until the venue says (found: acked; not found once the request's
  recvWindow has passed: ``OrderRejected(not_placed)``); never resent;
* a cancel runs after its order's submit (``OrderTurns``); one the venue
  refuses is answered after looking the order up: ``already_filled``,
  ``canceled`` or ``unknown``; after ``CANCEL_ATTEMPTS`` it is
  ``ExchangeError(cancel_failed)`` and left to the reconciliation poll.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from exchange.ccxt_venue import events as ev
from exchange.ccxt_venue.errors import Classified, Kind, classify
from exchange.ccxt_venue.ids import ClientIdError, venue_client_id
from exchange.ccxt_venue.orders import order_call
from exchange.ccxt_venue.settings import VenueSettings
from exchange.ccxt_venue.tasks import CostProbe, OrderTurns
from exchange.ccxt_venue.venue_calls import W_ORDER, W_QUERY_ORDER, VenueCalls, info
from messages import CancelConfirmed, CancelOrder, ExchangeError, OrderRejected
from messages.enums import CancelOutcome
from messages.exchange import SubmitOrder
from messages.types import ClientOrderId, Quantity, Symbol

#: lookups of an order whose create answer was lost: first delays, then every MAX
LOOKUP_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
LOOKUP_MAX_DELAY_S = 10.0
#: margin past the request's recvWindow before "not found" is final
RECV_WINDOW_MARGIN_MS = 2000
CANCEL_ATTEMPTS = 6
#: an order older than this when it reaches the adapter is a resubmission
#: (recovery after a crash or a reconnect): the venue is asked first
RESUBMIT_AGE = timedelta(seconds=10)


class OrderCommands:
    def __init__(self, settings: VenueSettings, calls: VenueCalls, tracker: ev.OrderTracker,
                 turns: OrderTurns, symbols: set[str], probe: CostProbe, *,
                 now: Callable[[], datetime], emit: Callable[[Any], None],
                 spawn: Callable[[Awaitable[Any]], Any], counts: Counter[str],
                 name: str) -> None:
        self.settings = settings
        self.calls = calls
        self.tracker = tracker
        self.turns = turns
        #: symbols traded or subscribed (the fills query pages these); shared
        self.symbols = symbols
        self.probe = probe
        self._now = now
        self._emit = emit
        self._spawn = spawn
        self.counts = counts
        self.name = name
        #: an order made before this adapter existed is a resubmission (a resumed
        #: or restarted runtime resends what it never heard of): asked first
        self.born = now()

    async def submit(self, cmd: SubmitOrder) -> None:
        t0 = time.thread_time_ns()  # CPU time of this thread: a busy host's preemption excluded
        req = cmd.order
        coid = req.client_order_id
        calls = self.calls
        unified = calls.unified(req.symbol)
        if unified is None:
            self._reject(req, f"unknown_symbol: {req.symbol} is not listed at the venue")
            return
        try:
            call = order_call(req, unified, hedge_mode=self.settings.hedge_mode)
        except (ClientIdError, ValueError) as exc:
            self._reject(req, f"bad_order: {exc}")
            return
        budget = calls.budget
        wait = budget.wait_s(W_ORDER, order=True)
        if wait > 0:
            budget.refused += 1
            self._reject(req, f"rate_limited: venue request budget exhausted "
                              f"({budget.hold_reason or 'weight window'}); retry in {wait:.1f}s")
            return
        budget.take(W_ORDER, order=True)
        self.symbols.add(req.symbol)
        known = self.tracker.get(coid)
        self.tracker.track(coid, req.symbol, algo=call.algo)
        async with self.turns.turn(coid):
            if (known is not None or req.ts < self.born or self._now() - req.ts > RESUBMIT_AGE) \
                    and await self._already_placed(req, call.algo):
                return
            sent_ms = calls.venue_ms()
            spent = time.thread_time_ns() - t0
            try:
                answer = await calls.ex.create_order(call.symbol, call.type, call.side,
                                                     call.amount, call.price, dict(call.params))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is classified
                calls.note_headers()
                await self._submit_failed(req, call.algo, classify(exc), sent_ms)
                return
            t1 = time.thread_time_ns()
            calls.note_headers()
            self.counts["orders_sent"] += 1
            events = ev.rest_order_events(info(answer), self.tracker, coid, req.symbol,
                                          self._now(), algo=call.algo)
            for event in events:
                self._emit(event)
            if self.probe.keep:
                self.probe.order_ns.append(spent + time.thread_time_ns() - t1)

    async def _already_placed(self, req: Any, algo: bool) -> bool:
        """A resubmission (the id was sent before, the order is older than this
        adapter or than ``RESUBMIT_AGE``: recovery after a crash, however soon
        the runtime came back): does the venue have it? Binance
        keeps client ids unique among *open* orders only, so a filled or
        canceled order's id would be accepted again and the order doubled.
        Found: ``duplicate_client_order_id`` (the original stands; the protocol's
        meaning) and nothing is sent. Not found: it goes out."""
        found, c = await self._lookup(req.client_order_id, req.symbol, algo)
        if found is None and algo and c is not None and c.kind is Kind.NOT_FOUND:
            found, c = await self._lookup(req.client_order_id, req.symbol, False)
        if found is None:
            if c is not None and c.kind is not Kind.NOT_FOUND:
                self.calls.trouble(c, ref=req.client_order_id)
                self._reject(req, f"unknown_outcome_check_failed: could not ask the venue "
                                  f"whether {req.client_order_id} exists ({c.detail}); not sent")
                return True
            return False
        self.counts["resubmissions_found"] += 1
        self._emit(OrderRejected(req.client_order_id, req.symbol,
                                 f"duplicate_client_order_id: the venue has this order "
                                 f"({ev.order_status(found)}); not sent again", self._now()))
        return True

    async def _submit_failed(self, req: Any, algo: bool, c: Classified, sent_ms: int) -> None:
        coid = req.client_order_id
        self.counts[f"submit_{c.kind.value}"] += 1
        if c.kind is Kind.UNKNOWN:
            logger.warning("{}: order {} outcome unknown ({}); looking it up by its client id",
                           self.name, coid, c.detail)
            self._emit(ExchangeError(code="unknown_outcome", ts=self._now(), ref=coid,
                                     reason=f"create_order {coid}: {c.detail}; the order stays in "
                                            f"flight until the venue is asked by its client id"))
            self._spawn(self._resolve_unknown(req, algo, sent_ms))
            return
        self.calls.trouble(c, ref=coid)
        if c.kind is Kind.NOT_FOUND:
            c = Classified(Kind.REJECTED, "venue_rejected", c.venue_code, c.detail)
        if c.code == "duplicate_client_order_id":
            # about this request only: the original order with this id stands
            self._emit(OrderRejected(coid, req.symbol, c.reason(), self._now()))
            return
        if self.tracker.end(coid, req.symbol):
            self._emit(OrderRejected(coid, req.symbol, c.reason(), self._now()))

    async def _resolve_unknown(self, req: Any, algo: bool, sent_ms: int) -> None:
        """Ask the venue about an order whose create answer never came, until it says."""
        coid = req.client_order_id
        deadline_ms = sent_ms + self.settings.recv_window_ms + RECV_WINDOW_MARGIN_MS
        attempt = 0
        while True:
            delay = LOOKUP_DELAYS_S[attempt] if attempt < len(LOOKUP_DELAYS_S) else LOOKUP_MAX_DELAY_S
            attempt += 1
            await asyncio.sleep(max(delay, self.calls.budget.wait_s(W_QUERY_ORDER)))
            t = self.tracker.get(coid)
            if t is not None and (t.acked or t.ended):
                self.counts["unknown_resolved_by_stream"] += 1
                return  # the stream already told
            found, c = await self._lookup(coid, req.symbol, algo)
            if found is not None:
                self.counts["unknown_resolved_found"] += 1
                logger.info("{}: order {} whose answer was lost is at the venue ({})", self.name,
                            coid, ev.order_status(found))
                for event in ev.rest_order_events(found, self.tracker, coid, req.symbol,
                                                  self._now(), algo=algo):
                    self._emit(event)
                return
            if c is not None and c.kind is Kind.NOT_FOUND and self.calls.venue_ms() > deadline_ms:
                self.counts["unknown_resolved_not_placed"] += 1
                if self.tracker.end(coid, req.symbol):
                    self._emit(OrderRejected(
                        coid, req.symbol, "not_placed: the venue has no order with this client id "
                        "and the request's recvWindow has passed, so it can no longer be accepted",
                        self._now()))
                return
            if c is not None and c.kind is not Kind.NOT_FOUND:
                self.calls.trouble(c, ref=coid)

    async def _lookup(self, coid: str, symbol: str, algo: bool
                      ) -> tuple[dict[str, Any] | None, Classified | None]:
        """The venue's record of ``coid`` (raw), or the classified failure."""
        calls = self.calls
        unified = calls.unified(symbol)
        vid = venue_client_id(coid)
        params: dict[str, Any] = ({"clientAlgoId": vid, "trigger": True} if algo
                                  else {"origClientOrderId": vid})
        calls.budget.take(W_QUERY_ORDER)
        try:
            answer = await calls.ex.fetch_order(None, unified, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            calls.note_headers()
            return None, classify(exc)
        return info(answer), None

    async def cancel(self, cmd: CancelOrder) -> None:
        coid, symbol = cmd.client_order_id, cmd.symbol
        async with self.turns.turn(coid):  # never ahead of this order's own submit
            await self._cancel_locked(coid, symbol)

    async def _cancel_locked(self, coid: str, symbol: str) -> None:
        calls = self.calls
        unified = calls.unified(symbol)
        tracked = self.tracker.get(coid)
        algo = tracked.algo if tracked is not None else False
        try:
            vid = venue_client_id(coid)
        except ClientIdError:
            self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.UNKNOWN, Quantity(ev.ZERO), self._now()))
            return
        # an order this adapter never sent (a runtime restarted): the venue may hold
        # it on the plain or, untriggered, on the conditional (algo) endpoints
        tried_algo = algo
        for attempt in range(CANCEL_ATTEMPTS):
            if not await calls.budget_wait(1):
                break
            params: dict[str, Any] = ({"clientAlgoId": vid, "trigger": True} if algo
                                      else {"origClientOrderId": vid})
            try:
                answer = await calls.ex.cancel_order(None, unified, params)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                calls.note_headers()
                c = classify(exc)
                self.counts[f"cancel_{c.kind.value}"] += 1
                if c.kind is Kind.NOT_FOUND or c.kind is Kind.REJECTED:
                    if algo and c.kind is Kind.NOT_FOUND and attempt == 0:
                        algo = False  # maybe it triggered: its matching-engine order carries it
                        continue
                    if tracked is None and not tried_algo and c.kind is Kind.NOT_FOUND:
                        algo = tried_algo = True  # maybe a conditional order not yet triggered
                        continue
                    if await self._settle_cancel(coid, symbol, tracked):
                        return
                    continue
                calls.trouble(c, ref=coid)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
                continue
            calls.note_headers()
            self.counts["cancels_sent"] += 1
            for event in ev.rest_order_events(info(answer), self.tracker, coid, symbol,
                                              self._now(), algo=algo):
                self._emit(event)
            return
        self._emit(ExchangeError(code="cancel_failed", ts=self._now(), ref=coid,
                                 reason=f"cancel of {coid} not confirmed after {CANCEL_ATTEMPTS} "
                                        "attempts; the reconciliation poll will settle it"))

    async def _settle_cancel(self, coid: str, symbol: str, tracked: ev.Tracked | None) -> bool:
        """The venue refused the cancel: what became of the order? True if answered."""
        algo = tracked.algo if tracked is not None else False
        found, c = await self._lookup(coid, symbol, algo)
        if found is None and c is not None and c.kind is Kind.NOT_FOUND \
                and (algo or tracked is None):  # the other endpoint (see _cancel_locked)
            found, c = await self._lookup(coid, symbol, not algo)
        now = self._now()
        if found is None:
            if c is not None and c.kind is Kind.NOT_FOUND:
                self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.UNKNOWN, Quantity(ev.ZERO), now))
                return True
            if c is not None:
                self.calls.trouble(c, ref=coid)
            return False
        status = ev.order_status(found)
        if status in ("FILLED", "FINISHED") and _executed(found) >= _orig(found):
            self.tracker.end(coid, symbol)
            self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.ALREADY_FILLED, Quantity(ev.ZERO), now))
            return True
        if status in ("CANCELED", "EXPIRED", "REJECTED", "FINISHED", "FILLED"):
            if self.tracker.end(coid, symbol):
                leaves = max(_orig(found) - _executed(found), ev.ZERO)
                self._emit(CancelConfirmed(ClientOrderId(coid), Symbol(symbol), CancelOutcome.CANCELED, Quantity(leaves), now))
            return True
        return False  # still working: try the cancel again

    def _reject(self, req: Any, reason: str) -> None:
        self.counts["refused_before_sending"] += 1
        self.tracker.end(req.client_order_id, req.symbol)
        self._emit(OrderRejected(req.client_order_id, req.symbol, reason, self._now()))


def _orig(raw: dict[str, Any]) -> Any:
    return ev.dec(raw.get("origQty") or raw.get("quantity") or "0", "origQty")


def _executed(raw: dict[str, Any]) -> Any:
    return ev.dec(raw.get("executedQty") or raw.get("aq") or "0", "executedQty")
