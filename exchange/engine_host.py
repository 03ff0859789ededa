"""What the simulated exchange's mixins may use of the engine they are part of.

``SimulatedExchange`` is assembled from mixins (cancels, market, faults,
queries), each a module of its own; their methods use the engine's state and
each other's. The mixins subclass this protocol for the type checker only
(``if TYPE_CHECKING``), so every use is checked against one declaration and
the engine's own definitions are checked against it too. Nothing here runs.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import datetime
from typing import Any, Protocol
from collections.abc import Callable, Mapping

from exchange.accounts import Account
from exchange.book import Book, OrderState
from exchange.config import ExchangeConfig
from exchange.emit import Emit
from exchange.events_log import EventsLog
from messages import CancelOrder, OrderFilled, Quote
from messages.bounds import Bounds
from messages.types import Price, Quantity


class EngineHost(Protocol):
    config: ExchangeConfig
    log: EventsLog
    stats: Counter[str]
    epoch: int
    books: dict[str, Book]
    reject_next: int
    reject_rules: list[dict[str, Any]]
    duplicate_next: int
    orders: dict[str, OrderState]
    working: dict[str, dict[str, OrderState]]
    accounts: dict[str, Account]
    pending_cancels: dict[str, CancelOrder]
    _clock: Callable[[], datetime]
    _rng: random.Random
    _retired: dict[str, str]
    _cancel_seq: itertools.count[int]
    _last_fill: OrderFilled | None
    bounds: Bounds
    cancel_accounts: dict[str, str]

    # -- the engine's own ---------------------------------------------------------
    def account(self, name: str) -> Account: ...
    def _reset_state(self) -> None: ...
    def _emit(self, event: Any, now: datetime, audience: str = ..., extra_s: float = ...,
              account: str | None = ...) -> Emit: ...
    def _error(self, code: str, reason: str, now: datetime, ref: str | None = None) -> Emit: ...
    def _emit_duplicate(self, fill: OrderFilled, now: datetime) -> Emit: ...
    def _trigger(self, st: OrderState, now: datetime) -> None: ...
    def _take(self, st: OrderState, book: Book, now: datetime, out: list[Emit]) -> None: ...
    def _fillable(self, st: OrderState, book: Book | None, qty: Quantity | None) -> Quantity: ...
    def _fill(self, st: OrderState, qty: Quantity, price: Price, liquidity: str,
              now: datetime, out: list[Emit]) -> None: ...
    def _close(self, st: OrderState, status: str) -> None: ...
    def _expire(self, st: OrderState, reason: str, now: datetime, out: list[Emit]) -> None: ...

    # -- one mixin's, used by another ----------------------------------------------
    def apply(self, spec: Mapping[str, Any], now: datetime | None = None) -> list[Emit]: ...
    def configure(self, key: str, value: Any) -> None: ...
    def on_quote(self, quote: Quote, now: datetime | None = None) -> list[Emit]: ...
    def open_orders(self, account: str | None = None) -> list[OrderState]: ...
    def _fault_resume_stream(self, on: bool, now: datetime) -> list[Emit]: ...
    def _match_book(self, book: Book, now: datetime, out: list[Emit]) -> None: ...
    def _resolve_cancel(self, cmd: CancelOrder, now: datetime) -> list[Emit]: ...
