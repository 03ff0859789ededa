"""What the ccxt adapter needs to know, resolved (secrets included) at start.

Built by the launcher from the validated ``venues`` config entry and the
environment; the secret values live only here and in the ccxt object, never
in a repr, a log line, a message or a run file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VenueSettings:
    exchange_id: str = "binanceusdm"
    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)
    #: True: the venue's testnet / demo; False: live money
    testnet: bool = True
    #: ccxt ``urls['api']`` entries to override (a simulator, a proxy), or None
    urls: dict[str, Any] | None = None
    account: str = "default"
    #: the runtime's hedging mode for this account (Binance: dual-side positions)
    hedge_mode: bool = False
    recv_window_ms: int = 5000
    timeout_ms: int = 10_000
    #: how long connect() waits for the user-data stream to open
    open_timeout_s: float = 10.0
    #: PUT the listen key this often (Binance: valid 60 min, extend every 30)
    listen_key_keepalive_s: float = 1800.0
    #: extra ccxt options (tests shorten listenKeyRefreshRate, for one)
    options: dict[str, Any] = field(default_factory=dict)
    #: ccxt's own request pacing (``enableRateLimit``: a wall-time sleep before a
    #: costly request); the adapter's budget of the venue's weights applies either
    #: way. Off only for a simulator in virtual time, where it changes nothing but
    #: the wall time a scenario takes
    client_throttle: bool = True
    #: how long ccxt's close waits for TLS connections to shut (``timeout_on_exit``,
    #: ms); None: ccxt's own (250 ms). A loopback simulator has no TLS to wait for
    close_wait_ms: int | None = None

    def __repr__(self) -> str:
        return (f"VenueSettings(exchange_id={self.exchange_id!r}, testnet={self.testnet}, "
                f"account={self.account!r}, hedge_mode={self.hedge_mode}, "
                f"urls={'set' if self.urls else None})")
