"""The simulated exchange: a pure, synchronous, deterministic matching engine.

``SimulatedExchange`` takes commands and market data with the time they
happen (``now``, aware UTC) and returns what it produced as a list of
:class:`~exchange.emit.Emit` (event, delay, audience). It does no I/O except
appending to its ``events.jsonl``, never sleeps and never raises on bad
input: a malformed or invalid command becomes an ``OrderRejected`` or an
``ExchangeError`` with a clear reason.

The engine is the front door and the owner of named parts, each with its
own state and a narrow interface, none reaching back into the engine:

* ``table`` (:mod:`exchange.order_table`): accepted orders, live and closed;
* ``accounts`` (:mod:`exchange.accounts`): positions, cash, fill history;
* ``matcher`` (:mod:`exchange.matching`): books, validation, acceptance,
  fills (the matching rules are documented there);
* ``cancels`` (:mod:`exchange.cancels`): the delayed-cancel queue;
* ``queries`` (:mod:`exchange.queries`): snapshot and events-page replies;
* ``armed`` and ``faults`` (:mod:`exchange.faults`): one-shot faults waiting
  for orders, and the injector that carries out the rest;
* ``outbox`` (:mod:`exchange.outbox`): every event's delay (latency, seeded
  jitter, FIFO).

The engine itself keeps what spans parts: dispatch, the session's account
check, fault specs (settings and restarts are its own), lifecycle and the
``events.jsonl`` it opens.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any
from collections.abc import Callable, Mapping

from loguru import logger

from config.sim_exchange import CONFIG_KEYS, SimSettings, parse_spec, split_spec
from exchange.accounts import Account, Accounts
from exchange.book import Book, OrderState
from exchange.cancels import CancelQueue
from exchange.emit import ENGINE, TRANSPORT, Emit, StreamAction
from exchange.events_log import EventsLog
from exchange.faults import ArmedFaults, FaultInjector
from exchange.matching import Matcher
from exchange.order_table import OrderTable
from exchange.outbox import Outbox
from exchange.queries import Queries
from messages import (
    Bar,
    CancelOrder,
    ExchangeError,
    ExchangeFault,
    ExchangeTimer,
    OrderRejected,
    OrderRequest,
    QueryBalances,
    QueryFills,
    QueryOpenOrders,
    QueryPositions,
    Quote,
    SubmitOrder,
    utc_now,
)
from messages.bounds import DEFAULT_BOUNDS, Bounds, event_problem
from messages.sim_events import QueryEvents
from messages.types import Symbol

_SUBMITTED_KEYS = ("order_type", "trigger_price", "reduce_only", "tif", "account", "group_id")
_QUERIES = (QueryPositions, QueryOpenOrders, QueryBalances, QueryFills)


class SimulatedExchange:
    """Matching engine, accounts and fault injection of the simulated venue."""

    def __init__(self, config: SimSettings | Mapping[str, Any] | None = None, *,
                 events_log: EventsLog | None = None,
                 clock: Callable[[], datetime] | None = None, strict: bool = False) -> None:
        #: Faults given with the initial settings (a scenario's ``exchange:``
        #: block may hold both); applied by :meth:`start`, after the log opens.
        self.pending_faults: dict[str, Any] = {}
        if isinstance(config, SimSettings):
            self.config = config
        else:
            settings, self.pending_faults = split_spec(config or {})
            parse_spec(self.pending_faults)  # fail now, not at start
            self.config = SimSettings.from_spec(settings)
        self.log = events_log if events_log is not None else EventsLog()
        self._clock = clock or utc_now
        self.stats: Counter[str] = Counter()
        #: sane ranges of incoming orders and market data (DESIGN rule 18)
        self.bounds: Bounds = DEFAULT_BOUNDS
        cfg, log, stats = self.config, self.log, self.stats
        self.outbox = Outbox(cfg)
        self.table = OrderTable(cfg)
        self.accounts = Accounts(cfg)
        self.armed = ArmedFaults()
        self.matcher = Matcher(cfg, self.table, self.accounts, self.armed, self.outbox, log, stats,
                               strict=strict)
        self.cancels = CancelQueue(cfg, self.table, self.outbox, log, stats)
        self.queries = Queries(self.table, self.accounts, self.outbox, log, stats)
        self.faults = FaultInjector(self.armed, self.matcher, self.table, self.accounts,
                                    self.outbox, log, stats)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The id epoch: 1, plus one per restart with data loss or per fresh
        engine continuing an existing events.jsonl."""
        return self.matcher.epoch

    def start(self, events_path: Any = None) -> SimulatedExchange:
        """Open ``events.jsonl`` (the only file the engine touches) if a path
        is known, then apply the faults given with the initial settings."""
        if events_path is not None or self.log.path is not None:
            self.log.open(events_path)
            if self.log.seq > 0 and self.epoch == 1 and not self.table.live:
                # A fresh engine continuing an existing log (the exchange
                # process was restarted): start a new id epoch so fill and
                # order ids never repeat ones a client may already hold.
                self.matcher.epoch = self.log.seq + 1
                self.log.append("exchange_started", self._clock(), epoch=self.epoch)
        if self.pending_faults:
            faults, self.pending_faults = self.pending_faults, {}
            self.apply(faults)
        return self

    def stop(self) -> None:
        self.log.close()

    def handle_unattended(self, command: Any, now: datetime | None = None,
                          ) -> list[tuple[float, Any]]:
        """``handle`` with no client connected (a scenario's runtime is down): what
        clients would be told goes nowhere (``events.jsonl`` records it), the
        engine's own timers come back as (delay seconds, timer) for the caller to
        run at their time, and a fault the engine refuses is a ValueError."""
        timers: list[tuple[float, Any]] = []
        for e in self.handle(command, now):
            if e.audience == ENGINE:
                timers.append((e.delay_s, e.event))
            elif isinstance(e.event, ExchangeError) and e.event.code == "bad_fault":
                raise ValueError(e.event.reason)
        return timers

    def now(self) -> datetime:
        return self._clock()

    def stream_delay(self, now: datetime, extra_s: float = 0.0) -> float:
        """Latency of the next stream event (see :class:`~exchange.outbox.Outbox`)."""
        return self.outbox.delay(now, extra_s)

    # -- dispatch ------------------------------------------------------------------

    def handle(self, command: Any, now: datetime | None = None, *,
               account: str | None = None) -> list[Emit]:
        """Process any command or market data message. Never raises.

        ``account`` is the requesting session's account (None: a host that
        serves one trusted client, or no session): an order or query for
        another account is refused, and a cancel only reaches that
        account's orders (DESIGN rule 18)."""
        now = now or self._clock()
        held = self.log.hold()  # this command's events.jsonl lines: one write, on return
        try:
            kind = type(command)
            if kind is SubmitOrder:
                return self.submit(command.order, now, account=account)
            if kind is CancelOrder:
                return self.cancels.request(command, now, account)
            if kind is Quote or kind is Bar:
                problem = event_problem(command, self.bounds)
                if problem is not None:
                    return self._bad_market_data(command, problem, now)
                if kind is Quote:
                    return self.matcher.on_quote(command, now)
                return self.matcher.on_bar(command, now)
            if kind is ExchangeTimer:
                return self.cancels.on_timer(command, now)
            if kind is ExchangeFault:
                try:
                    return self.apply(command.spec, now)
                except ValueError as exc:
                    return [self.outbox.error("bad_fault", str(exc), now)]
            if kind in _QUERIES:
                if account is not None and command.account != account:
                    return [self._foreign_account(command.account, account, now,
                                                  command.request_id)]
                return self.queries.answer(command, now)
            if kind is QueryEvents:
                return self.queries.events_page(command, now)
            self.stats["bad_commands"] += 1
            self.log.append("bad_command", now, reason=f"unexpected {kind.__name__}")
            return [self.outbox.error("bad_command",
                                      f"the exchange does not accept {kind.__name__}", now)]
        except Exception as exc:  # noqa: BLE001 - the exchange must outlive any bug
            self.stats["internal_errors"] += 1
            logger.opt(exception=exc).error("simulated exchange failed on {}", type(command).__name__)
            return [self.outbox.error("internal", f"{type(exc).__name__}: {exc}", now)]
        finally:
            if held:
                self.log.release()

    def _foreign_account(self, asked: str, own: str, now: datetime, ref: str | None) -> Emit:
        self.stats["foreign_account_refused"] += 1
        self.log.append("account_mismatch", now, account=asked, session_account=own, ref=ref)
        return self.outbox.error("account_mismatch", f"this session trades account {own!r}, "
                                 f"not {asked[:64]!r}", now, ref=ref)

    def _bad_market_data(self, event: Any, problem: str, now: datetime) -> list[Emit]:
        """Market data with an unbelievable number never reaches a book (one
        bad quote would otherwise poison the symbol for every client)."""
        self.stats["market_data_refused"] += 1
        self.log.append("market_data_refused", now, symbol=getattr(event, "symbol", None),
                        reason=problem)
        return [self.outbox.error("out_of_range", f"{type(event).__name__} refused: {problem}",
                                  now, ref=getattr(event, "symbol", None))]

    # -- orders, cancels, market data ----------------------------------------------

    def submit(self, order: Any, now: datetime | None = None, *,
               account: str | None = None) -> list[Emit]:
        now = now or self._clock()
        if not isinstance(order, OrderRequest):
            self.stats["bad_commands"] += 1
            self.log.append("bad_command", now, reason="SubmitOrder without an OrderRequest")
            return [self.outbox.error("bad_command", f"SubmitOrder.order must be an OrderRequest, "
                                      f"got {type(order).__name__}", now)]
        self.stats["orders_received"] += 1
        log = self.log
        if log.is_open:
            log.write("order_submitted", now, (order.client_order_id, order.symbol, order.side,
                                               order.qty, order.price, None),
                      _SUBMITTED_KEYS, (order.order_type, order.trigger_price, order.reduce_only,
                                        order.tif, order.account, order.group_id))
        reason = self.matcher.refusal(order, self.bounds)
        if reason is None and account is not None and order.account != account:
            self.stats["foreign_account_refused"] += 1
            reason = (f"account_mismatch: this session trades account {account!r}, "
                      f"not {order.account[:64]!r}")
        armed = self.armed
        if reason is None and (armed.reject_next or armed.reject_rules):
            reason = armed.take_reject(order)
        if reason is not None:
            return [self._reject(order, reason, now)]
        return self.matcher.accept(order, now)

    def _reject(self, order: OrderRequest, reason: str, now: datetime) -> Emit:
        self.stats["orders_rejected"] += 1
        self.log.append("order_rejected", now, client_order_id=order.client_order_id,
                        symbol=order.symbol, side=order.side, qty=order.qty, price=order.price,
                        reason=reason)
        return self.outbox.emit(OrderRejected(order.client_order_id, order.symbol or Symbol("?"),
                                              reason, now), now, account=order.account)

    def cancel(self, cmd: CancelOrder, now: datetime | None = None, *,
               account: str | None = None) -> list[Emit]:
        return self.cancels.request(cmd, now or self._clock(), account)

    def on_quote(self, quote: Quote, now: datetime | None = None) -> list[Emit]:
        return self.matcher.on_quote(quote, now or self._clock())

    def query_events(self, q: QueryEvents, now: datetime | None = None) -> list[Emit]:
        return self.queries.events_page(q, now or self._clock())

    # -- settings and faults ----------------------------------------------------------

    def apply(self, spec: Mapping[str, Any], now: datetime | None = None) -> list[Emit]:
        """Apply a scenario ``exchange:`` dict; ValueError on any bad key/value,
        before anything changes."""
        now = now or self._clock()
        parsed = parse_spec(spec)
        self.log.append("fault_injected", now, spec=dict(spec))
        out: list[Emit] = []
        for key, value in parsed:
            if key in CONFIG_KEYS:
                self.configure(key, value)
            elif key == "restart":
                out.extend(self._restart(value["wipe"], now))
            else:
                out.extend(self.faults.inject(key, value, now, self.bounds))
        return out

    def configure(self, key: str, value: Any) -> None:
        """Change one (validated) setting, e.g. ``latency_ms`` or ``partial_fills``."""
        self.config.set(key, value)
        if key == "seed":
            self.outbox.reseed(value)

    def set_position(self, symbol: str, qty: Any, account: str = "default",
                     now: datetime | None = None, **extra: Any) -> list[Emit]:
        """A position changed behind the clients' backs (no event is sent)."""
        return self.apply({"set_position": {"symbol": symbol, "qty": str(qty),
                                            "account": account, **extra}}, now)

    def _restart(self, wipe: bool, now: datetime) -> list[Emit]:
        """The exchange restarts: every session drops; ``wipe`` also loses all
        orders, positions, balances and armed faults (ids stay unique via the
        epoch; books survive: they mirror the outside market)."""
        self.log.append("exchange_restarted", now, wipe=wipe, epoch=self.epoch + (1 if wipe else 0))
        if wipe:
            self.matcher.reset(self.epoch + 1)
            for part in (self.table, self.accounts, self.cancels, self.outbox, self.armed):
                part.reset()
        self.stats["restarts"] += 1
        return [Emit(0.0, StreamAction("drop", f"exchange restarted (wipe={wipe})"), TRANSPORT)]

    # -- read access (tests, tools, the faces) ------------------------------------------

    @property
    def orders(self) -> dict[str, OrderState]:
        """Accepted orders not yet retired, by client order id."""
        return self.table.live

    @property
    def books(self) -> dict[str, Book]:
        return self.matcher.books

    def account(self, name: str) -> Account:
        """The account called ``name``, opened with the starting cash if new."""
        return self.accounts.get(name)

    def order(self, client_order_id: str) -> OrderState | None:
        return self.table.get(client_order_id)

    def open_orders(self, account: str | None = None) -> list[OrderState]:
        return self.table.open_orders(account)

    def position(self, symbol: str, account: str = "default") -> Decimal:
        return self.accounts.position(symbol, account)

    def positions(self, account: str = "default") -> dict[str, Decimal]:
        return self.accounts.positions(account)

    def book(self, symbol: str) -> Book | None:
        return self.matcher.books.get(symbol)
