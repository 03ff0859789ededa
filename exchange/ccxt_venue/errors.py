"""What a ccxt exception means for an order: rejected, unknown, or retry.

Classification reads Binance's own error code from the message first (ccxt
puts the venue's JSON body in it, and which ccxt class a code maps to has
changed between ccxt versions), then falls back on the ccxt class. The one
rule that matters: only an answer that says the venue refused the request is
a rejection. A timeout, a dropped connection or a 5xx means the request may
have been executed (Binance: "the execution status is UNKNOWN"), so the
order stays in flight and is looked up by its client order id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import ccxt

_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')
#: ccxt puts "<exchange id> <HTTP status> <reason>" first in an HTTP error's message
_STATUS = re.compile(r"^\S+ (418|429) ")


class Kind(StrEnum):
    #: the venue refused the request; reason code for OrderRejected
    REJECTED = "rejected"
    #: the venue may or may not have executed it: look it up, never resend blindly
    UNKNOWN = "unknown"
    #: the order the request named does not exist at the venue
    NOT_FOUND = "not_found"
    #: request weight / order rate exceeded (HTTP 429): nothing executed, back off
    RATE_LIMITED = "rate_limited"
    #: IP banned (HTTP 418): nothing executed, back off for Retry-After
    BANNED = "ip_banned"
    #: timestamp outside recvWindow (-1021): nothing executed, resync the clock
    CLOCK_SKEW = "clock_skew"
    #: keys refused: nothing executed, an operator must act
    AUTH = "auth"


@dataclass(frozen=True, slots=True)
class Classified:
    kind: Kind
    #: the stable reason code (``insufficient_funds``, ``invalid_order``, ...)
    code: str
    venue_code: int | None
    detail: str

    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


#: Binance error codes with a fixed meaning (futures REST error codes)
_BY_CODE: dict[int, tuple[Kind, str]] = {
    -1003: (Kind.RATE_LIMITED, "rate_limited"),
    -1015: (Kind.RATE_LIMITED, "rate_limited"),
    -1021: (Kind.CLOCK_SKEW, "clock_skew"),
    -1022: (Kind.AUTH, "auth"),
    -2014: (Kind.AUTH, "auth"),
    -2015: (Kind.AUTH, "auth"),
    -2011: (Kind.NOT_FOUND, "unknown_order"),
    -2013: (Kind.NOT_FOUND, "unknown_order"),
    -2018: (Kind.REJECTED, "insufficient_funds"),
    -2019: (Kind.REJECTED, "insufficient_funds"),
    -2022: (Kind.REJECTED, "reduce_only_rejected"),
    -4116: (Kind.REJECTED, "duplicate_client_order_id"),
    -4015: (Kind.REJECTED, "bad_client_order_id"),
    -4164: (Kind.REJECTED, "min_notional"),
    -4131: (Kind.REJECTED, "price_band"),
    -4024: (Kind.REJECTED, "price_band"),
    -4016: (Kind.REJECTED, "price_band"),
    -1000: (Kind.UNKNOWN, "venue_internal"),
    -1001: (Kind.UNKNOWN, "venue_disconnected"),
    -1006: (Kind.UNKNOWN, "venue_unexpected_response"),
    -1007: (Kind.UNKNOWN, "venue_timeout"),
}


def venue_code(exc: BaseException) -> int | None:
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


def classify(exc: BaseException) -> Classified:
    """What ``exc`` (raised by a ccxt call) means; never raises."""
    code = venue_code(exc)
    detail = _detail(exc)
    status = _STATUS.search(str(exc))
    if status is not None and status.group(1) == "418":  # a ban, whatever code the body has
        return Classified(Kind.BANNED, "ip_banned", code, detail)
    if status is not None and status.group(1) == "429":
        return Classified(Kind.RATE_LIMITED, "rate_limited", code, detail)
    if code is not None and code in _BY_CODE:
        kind, name = _BY_CODE[code]
        return Classified(kind, name, code, detail)
    # ccxt classes, most specific first (RateLimitExceeded and InvalidNonce are
    # NetworkErrors: they must be caught before the generic unknown outcome)
    for cls, kind, name in _BY_CLASS:
        if isinstance(exc, cls):
            return Classified(kind, name, code, detail)
    if code is not None and code < 0 and isinstance(exc, ccxt.ExchangeError):
        # a venue error code we do not list, on a 4xx answer: the venue refused it
        return Classified(Kind.REJECTED, "venue_rejected", code, detail)
    return Classified(Kind.UNKNOWN, "unknown_outcome", code, detail)


_BY_CLASS: tuple[tuple[type[BaseException], Kind, str], ...] = (
    (ccxt.RateLimitExceeded, Kind.RATE_LIMITED, "rate_limited"),
    (ccxt.DDoSProtection, Kind.BANNED, "ip_banned"),
    (ccxt.InvalidNonce, Kind.CLOCK_SKEW, "clock_skew"),
    (ccxt.RequestTimeout, Kind.UNKNOWN, "timeout"),
    (ccxt.NetworkError, Kind.UNKNOWN, "network"),
    (ccxt.OrderNotFound, Kind.NOT_FOUND, "unknown_order"),
    (ccxt.InsufficientFunds, Kind.REJECTED, "insufficient_funds"),
    (ccxt.DuplicateOrderId, Kind.REJECTED, "duplicate_client_order_id"),
    (ccxt.InvalidOrder, Kind.REJECTED, "invalid_order"),
    (ccxt.AuthenticationError, Kind.AUTH, "auth"),
    (ccxt.BadSymbol, Kind.REJECTED, "unknown_symbol"),
    (ccxt.BadRequest, Kind.REJECTED, "bad_request"),
    (ccxt.OperationRejected, Kind.REJECTED, "venue_rejected"),
    (ccxt.NotSupported, Kind.REJECTED, "not_supported"),
)


def _detail(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def retry_after_s(headers: object, default: float) -> float:
    """Seconds from a ``Retry-After`` header (Binance sends seconds), else ``default``."""
    if not isinstance(headers, dict):
        return default
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            try:
                seconds = float(str(value).strip())
            except ValueError:
                return default
            if seconds == seconds and 0 <= seconds <= 86_400:  # not NaN, at most a day
                return max(seconds, 0.0)
            return default
    return default
