"""Binance's error shape: ``{"code": -1022, "msg": "..."}`` with its HTTP status.

Every refusal of the face is a :class:`BinanceError` raised inside a handler
and turned into exactly this body, so a client (ccxt) maps it the way it maps
the real venue's answers: ``-1022`` to ``AuthenticationError``, ``-1021`` to
``InvalidNonce``, ``-2011``/``-2013`` to ``OrderNotFound`` and so on. The
codes and messages are those of Binance's USDⓈ-M futures error-code page.
"""

from __future__ import annotations

from typing import Any


class BinanceError(Exception):
    """A refusal with Binance's code, message and HTTP status."""

    def __init__(self, code: int, msg: str, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def unauthorized(msg: str) -> BinanceError:
    """-2015: unknown API key (Binance answers 401)."""
    return BinanceError(-2015, msg, 401)


def bad_signature() -> BinanceError:
    return BinanceError(-1022, "Signature for this request is not valid.", 400)


def outside_recv_window() -> BinanceError:
    return BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.", 400)


def ahead_of_server() -> BinanceError:
    return BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.",
                        400)


def missing(param: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{param}' was not sent, was empty/null, "
                               "or malformed.", 400)


def bad_param(param: str, why: str) -> BinanceError:
    return BinanceError(-1102, f"Parameter '{param}' was malformed: {why}", 400)


def unknown_symbol() -> BinanceError:
    return BinanceError(-1121, "Invalid symbol.", 400)


def unknown_order_cancel() -> BinanceError:
    return BinanceError(-2011, "Unknown order sent.", 400)


def order_does_not_exist() -> BinanceError:
    return BinanceError(-2013, "Order does not exist.", 400)


def too_many_requests(retry_after_s: int) -> BinanceError:
    return BinanceError(-1003, "Too many requests; current limit of IP(127.0.0.1) is 2400 "
                               "requests per minute. Please use the websocket for live updates "
                               "to avoid polling the API.", 429,
                        {"Retry-After": str(retry_after_s)})


def banned(until_ms: int, retry_after_s: int) -> BinanceError:
    return BinanceError(-1003, f"Way too many requests; IP(127.0.0.1) banned until {until_ms}. "
                               "Please use the websocket for live updates to avoid bans.", 418,
                        {"Retry-After": str(retry_after_s)})


def no_such_listen_key() -> BinanceError:
    return BinanceError(-1125, "This listenKey does not exist.", 400)
