"""The broker adapter protocol: how the gateway talks to any exchange.

Fully message-based so that no actor ever blocks on the broker:

* ``send(command)`` queues a command and returns at once (thread-safe);
* every answer and every stream event is passed to the adapter's *sink*, a
  callable ``sink(event)`` that must never block (in the runtime:
  ``lambda e: system.tell("gateway", e)``);
* ``connect()`` starts a connection attempt and returns at once; the outcome
  arrives on the sink as ``StreamStatus(connected=True/False, reason)``.
  Calling it while connected replaces the connection (a watchdog reconnect);
  the superseded connection reports nothing. The adapter never retries or
  sleeps by itself: reconnecting is the reconnect controller's job;
* ``close()`` ends the connection and any thread the adapter owns; it
  reports nothing (the caller knows);
* ``connected`` says whether a connection is up right now.

Commands (``messages.exchange`` and ``messages.orders``): ``SubmitOrder``,
``CancelOrder``, ``QueryPositions``, ``QueryOpenOrders``, ``QueryBalances``,
``QueryFills``, ``Subscribe``, ``Unsubscribe``.

Events: ``OrderAcked``, ``OrderRejected``, ``OrderFilled`` (unique
``fill_id``; a duplicate report repeats it), ``OrderExpired``,
``CancelConfirmed`` (canceled / already_filled / unknown),
``PositionSnapshot``, ``OpenOrdersSnapshot``, ``BalanceSnapshot``,
``FillsSnapshot``, ``Quote``, ``Bar``, ``StreamStatus``, ``ExchangeError``.

Rejection reasons start with a stable code and a colon
(``duplicate_client_order_id: ...``, ``not_connected: ...``). A
``duplicate_client_order_id`` rejection is about the *new* request: the
original order with that id stands (query it); never treat it as the end of
the original order.

When a command cannot leave (no connection), the adapter answers it on the
sink at once with :func:`refusal`: an ``OrderRejected`` with reason
``not_connected`` for a ``SubmitOrder`` (the order certainly did not reach
the exchange) and an ``ExchangeError`` (code ``not_connected``) otherwise.
A real venue adapter added later implements the same five members.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from messages import CancelOrder, ExchangeError, Message, OrderRejected, SubmitOrder, utc_now
from messages.exchange import COMMAND_TYPES

Sink = Callable[[Any], None]


@runtime_checkable
class BrokerAdapter(Protocol):
    @property
    def connected(self) -> bool: ...

    def set_sink(self, sink: Sink) -> None: ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def send(self, command: Message) -> None: ...


def is_command(obj: Any) -> bool:
    return type(obj) in COMMAND_TYPES


def command_ref(command: Any) -> str | None:
    """The order or request id a command concerns, for error reports."""
    if isinstance(command, SubmitOrder):
        return command.order.client_order_id
    if isinstance(command, CancelOrder):
        return command.client_order_id
    ref = getattr(command, "request_id", None)
    return ref if isinstance(ref, str) else None


def refusal(command: Any, code: str, detail: str, now: Any = None) -> Message:
    """The event that tells the sender a command never reached the exchange."""
    now = now or utc_now()
    if isinstance(command, SubmitOrder):
        order = command.order
        return OrderRejected(order.client_order_id, order.symbol, f"{code}: {detail}", now)
    name = type(command).__name__
    return ExchangeError(code=code, reason=f"{name} not sent: {detail}", ts=now,
                         ref=command_ref(command))


def safe_sink(sink: Sink | None, event: Any, *, where: str) -> bool:
    """Call ``sink(event)``; a raising sink is logged, never propagated."""
    if sink is None:
        return False
    try:
        sink(event)
        return True
    except Exception:  # noqa: BLE001 - a broken sink must not kill the transport
        from loguru import logger

        logger.exception("{}: sink raised on {}", where, type(event).__name__)
        return False


def close_in_background(adapter: Any, *, name: str = "adapter-close") -> threading.Thread:
    """``adapter.close()`` on a short-lived thread of its own, returned so the
    owner can join it at shutdown. Closing a transport may wait (a socket's
    closing handshake with a stalled peer, a thread join); the actor that
    drops a connection must not wait with it. A raising close is logged."""

    def close() -> None:
        try:
            adapter.close()
        except Exception:  # noqa: BLE001 - the connection is abandoned either way
            from loguru import logger

            logger.exception("{}: closing {} raised", name, type(adapter).__name__)

    thread = threading.Thread(target=close, name=name, daemon=True)
    thread.start()
    return thread
