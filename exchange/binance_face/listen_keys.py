"""Listen keys of the user-data stream (``/fapi/v1/listenKey``).

Binance's rules: ``POST`` creates a key for the API key, or returns the
active one extending it; ``PUT`` keeps it alive for another 60 minutes
(``-1125`` if it does not exist); ``DELETE`` closes it. A key not kept
alive expires: its streams get ``listenKeyExpired`` and close, and it is
unknown from then on.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from exchange.binance_face import errors
from exchange.binance_face.auth import ApiKey

VALIDITY_S = 3600.0


@dataclass
class ListenKey:
    value: str
    owner: ApiKey
    expires_at: float


class ListenKeys:
    def __init__(self, validity_s: float = VALIDITY_S) -> None:
        self.validity_s = validity_s
        self.by_value: dict[str, ListenKey] = {}

    def _live(self, value: str) -> ListenKey | None:
        lk = self.by_value.get(value)
        if lk is not None and lk.expires_at <= time.monotonic():
            del self.by_value[value]
            return None
        return lk

    def create(self, owner: ApiKey) -> str:
        for lk in list(self.by_value.values()):
            if lk.owner.key == owner.key and self._live(lk.value) is not None:
                lk.expires_at = time.monotonic() + self.validity_s
                return lk.value
        value = secrets.token_urlsafe(48)
        self.by_value[value] = ListenKey(value, owner, time.monotonic() + self.validity_s)
        return value

    def keepalive(self, owner: ApiKey) -> str:
        for lk in list(self.by_value.values()):
            if lk.owner.key == owner.key and self._live(lk.value) is not None:
                lk.expires_at = time.monotonic() + self.validity_s
                return lk.value
        raise errors.no_such_listen_key()

    def close(self, owner: ApiKey) -> list[str]:
        gone = [v for v, lk in self.by_value.items() if lk.owner.key == owner.key]
        for v in gone:
            del self.by_value[v]
        return gone

    def owner_of(self, value: str) -> ApiKey | None:
        lk = self._live(value)
        return lk.owner if lk is not None else None

    def expire_all(self) -> list[str]:
        gone = list(self.by_value)
        self.by_value.clear()
        return gone
