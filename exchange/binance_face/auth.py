"""Signed requests as Binance checks them: API key, HMAC-SHA256, timestamp.

Binance signs ``totalParams``: the query string concatenated with the request
body (no separator), without the ``signature`` parameter itself, HMAC-SHA256
with the key's secret, hex. ``X-MBX-APIKEY`` names the key; the request's
``timestamp`` (ms) must lie within ``recvWindow`` (default 5,000 ms, at most
60,000) before the server's time and not more than 1,000 ms after it.

Each API key maps to exactly one account of the engine, so a key sees and
trades only its own account. A request that fails any check is refused with
Binance's code (``-2015`` unknown key, ``-1022`` bad signature, ``-1021``
timestamp) and never reaches the engine.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from urllib.parse import parse_qsl

from exchange.binance_face import errors

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
MAX_AHEAD_MS = 1000
#: environment variable holding ``key:secret:account[,key:secret:account...]``
KEYS_ENV = "TW_BINANCE_FACE_KEYS"


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    secret: str
    account: str = "default"

    def __repr__(self) -> str:  # never print a secret
        return f"ApiKey({self.key[:4]}..., account={self.account!r})"


DEFAULT_KEYS = (ApiKey("tw-face-key", "tw-face-secret", "default"),)


def keys_from_env(value: str | None = None) -> tuple[ApiKey, ...]:
    """``key:secret:account`` triples from ``TW_BINANCE_FACE_KEYS`` (or
    ``value``); the default key when unset. ValueError names a bad entry."""
    raw = os.environ.get(KEYS_ENV, "") if value is None else value
    if not raw.strip():
        return DEFAULT_KEYS
    out = []
    for i, item in enumerate(raw.split(",")):
        parts = item.strip().split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{KEYS_ENV} entry {i + 1}: expected key:secret:account")
        out.append(ApiKey(*parts))
    return tuple(out)


def sign(payload: str, secret: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _split_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` without its ``signature=`` pair, and that signature."""
    if not raw:
        return "", None
    kept, sig = [], None
    for pair in raw.split("&"):
        if pair.startswith("signature="):
            sig = pair[len("signature="):]
        else:
            kept.append(pair)
    return "&".join(kept), sig


class Authenticator:
    """Checks key, signature and timestamp of one request."""

    def __init__(self, keys: tuple[ApiKey, ...] | list[ApiKey]) -> None:
        self.keys = {k.key: k for k in keys}
        if len(self.keys) != len(keys):
            raise ValueError("binance face: an API key is listed twice")

    def key_of(self, header: str | None) -> ApiKey:
        if not header:
            raise errors.unauthorized("API-key format invalid.")
        key = self.keys.get(header)
        if key is None:
            raise errors.unauthorized("Invalid API-key, IP, or permissions for action.")
        return key

    def verify(self, header: str | None, query: str, body: str, server_ms: int) -> ApiKey:
        """The key of a correctly signed, timely request; BinanceError otherwise."""
        key = self.key_of(header)
        q, q_sig = _split_signature(query)
        b, b_sig = _split_signature(body)
        given = q_sig or b_sig
        if not given:
            raise errors.missing("signature")
        if not hmac.compare_digest(sign(q + b, key.secret), given.lower()):
            raise errors.bad_signature()
        params = dict(parse_qsl(q + ("&" if q and b else "") + b, keep_blank_values=True))
        check_timestamp(params, server_ms)
        return key


def check_timestamp(params: dict[str, str], server_ms: int) -> None:
    ts_raw = params.get("timestamp")
    if not ts_raw:
        raise errors.missing("timestamp")
    try:
        ts = int(ts_raw)
        window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
    except ValueError:
        raise errors.bad_param("timestamp/recvWindow", "not an integer") from None
    if not 0 < window <= MAX_RECV_WINDOW_MS:
        raise errors.BinanceError(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    if ts - server_ms > MAX_AHEAD_MS:
        raise errors.ahead_of_server()
    if server_ms - ts > window:
        raise errors.outside_recv_window()
