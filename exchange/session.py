"""A client session of the simulated exchange, shared by both transports.

A session is one connection (a WebSocket, or an in-process ``Connect``). It
owns the market-data subscriptions: a new session starts with none, exactly
like a fresh socket at a real venue, so after a reconnect the client must
restore them. Duplicate subscriptions are counted and recorded in
``events.jsonl`` so a test can prove the reconnect controller restores each
subscription exactly once.
"""

from __future__ import annotations

import itertools
from collections import deque
from datetime import datetime
from typing import Any

from exchange.emit import ACCOUNT, MARKET, REQUESTER, Emit
from exchange.engine import SimulatedExchange
from messages import ExchangeError, Quote, SubmitOrder, Subscribe, Unsubscribe

_ids = itertools.count(1)

#: Events held for a stalled session before the oldest are dropped (memory
#: stays bounded however long a stall lasts).
MAX_HELD = 100_000


class Session:
    """Subscriptions, account and stall state of one client connection.

    A session trades one account (DESIGN rule 18: each session sees only its
    own account's order events). The account is given when the session
    opens (``?account=`` on the WebSocket URL, ``Connect.account``
    in-process), or else taken from the first command that names one; a
    session with no account yet receives no order events. ``promiscuous``
    (only the in-process venue's legacy auto-connected session, which serves
    one trusted client) keeps the old behaviour: an unbound session gets
    every account's events.
    """

    def __init__(self, client: str, account: str | None = None, *,
                 promiscuous: bool = False) -> None:
        self.id = next(_ids)
        self.client = client
        self.account = account
        self.promiscuous = promiscuous
        self.subscriptions: set[str] = set()
        self.stalled = False
        self.held: deque = deque()

    def wants(self, emit: Emit) -> bool:
        """Whether this session should receive ``emit`` (requester aside)."""
        audience = emit.audience
        if audience == MARKET:
            return getattr(emit.event, "symbol", None) in self.subscriptions
        if audience == ACCOUNT:
            if self.account is None:
                return self.promiscuous
            return emit.account == self.account
        return audience != REQUESTER

    def bind(self, command: Any) -> str | None:
        """The account this session trades, binding it on the first command
        that names one (an order's or a query's account)."""
        if self.account is None and not self.promiscuous:
            account = command_account(command)
            if account is not None:
                self.account = account
        return self.account

    def __repr__(self) -> str:
        return f"Session({self.id}, {self.client!r}, subs={sorted(self.subscriptions)})"


def command_account(command: Any) -> str | None:
    """The account a command names (an order's, a query's), or None."""
    if type(command) is SubmitOrder:
        account = getattr(command.order, "account", None)
    else:
        account = getattr(command, "account", None)
    return account if isinstance(account, str) and account else None


def handle_subscription(engine: SimulatedExchange, session: Session, cmd: Any,
                        now: datetime) -> list[Any]:
    """Apply a Subscribe/Unsubscribe; returns the events for this session
    (an error for unknown symbols, the current quote of each new symbol)."""
    allowed = engine.config.symbols
    unknown = [s for s in cmd.symbols if allowed is not None and s not in allowed]
    symbols = [s for s in cmd.symbols if s not in unknown]
    out: list[Any] = []
    if unknown:
        out.append(ExchangeError(code="unknown_symbol", reason=f"unknown symbol(s) {unknown}",
                                 ts=now, ref=",".join(unknown)))
    if isinstance(cmd, Subscribe):
        dup = [s for s in symbols if s in session.subscriptions]
        new = [s for s in symbols if s not in session.subscriptions]
        session.subscriptions.update(new)
        engine.stats["subscriptions"] += len(new)
        engine.stats["duplicate_subscriptions"] += len(dup)
        engine.log.append("subscribed", now, symbols=new, duplicates=dup, session=session.id,
                          client=session.client)
        for sym in new:
            book = engine.books.get(sym)
            if book is not None and book.bid is not None and book.ask is not None:  # has a quote
                out.append(Quote(sym, book.bid, book.ask, book.ts or now,
                                 bid_size=book.bid_size, ask_size=book.ask_size))
    elif isinstance(cmd, Unsubscribe):
        gone = [s for s in symbols if s in session.subscriptions]
        session.subscriptions.difference_update(gone)
        engine.log.append("unsubscribed", now, symbols=gone, session=session.id,
                          client=session.client)
    return out
