"""The ``exchange`` section: which broker to trade at, and the simulated exchange's behaviour.

The simulated exchange's keys and defaults are :class:`config.sim_exchange.SimBehaviour`'s
(inherited, not restated), the same words a scenario's ``exchange:`` block
uses. Named ``venue`` to keep ``config.venue`` apart from the ``exchange``
package.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from config.sim_exchange import SimBehaviour
from config.types import EnvName, Ident, PosInt, Section


class ExchangeConfig(SimBehaviour):
    """Which broker, and how the embedded simulated exchange behaves."""

    #: adapter name; "sim" is the simulated exchange
    venue: Ident = "sim"
    #: null: in-process simulated exchange; ws://host:port: a WebSocket exchange server
    url: str | None = None
    account: Ident = "default"
    api_key_env: EnvName | None = None
    api_secret_env: EnvName | None = None
    # the simulated exchange's behaviour: SimBehaviour's fields

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError("must be a ws:// or wss:// URL (or null for the embedded exchange)")
            if parts.username or parts.password:
                raise ValueError("must not carry credentials: use api_key_env / api_secret_env")
        return v

    def sim_settings(self) -> dict[str, Any]:
        """The simulated exchange's settings, for ``SimSettings.from_spec``."""
        return {key: getattr(self, key) for key in SimBehaviour.model_fields}


#: the ccxt exchange ids the adapter supports (exchange/ccxt_venue)
CCXT_EXCHANGES = ("binanceusdm",)


class VenueEntry(Section):
    """A real venue for ``run --venue NAME``, reached through ccxt.

    Holds only the NAMES of the environment variables with the API key and
    secret (config.secrets reads them at start; the values never reach a log,
    the audit trail, metrics, /actors or a run file). ``mode: live`` is real
    money and also needs ``--live`` on the command line.
    """

    kind: Literal["ccxt"] = "ccxt"
    exchange_id: Ident = "binanceusdm"
    #: testnet: the venue's test / demo environment; live: real money (needs --live)
    mode: Literal["testnet", "live"] = "testnet"
    api_key_env: EnvName = "TW_BINANCE_API_KEY"
    api_secret_env: EnvName = "TW_BINANCE_API_SECRET"
    #: a Binance-compatible endpoint (the simulator's face, a proxy) instead of
    #: the venue's own: http://HOST:PORT; null: the venue's URLs for the mode
    base_url: str | None = None
    #: raw ccxt ``urls['api']`` entries to override (advanced; base_url is simpler)
    urls: dict[str, Any] = {}
    recv_window_ms: PosInt = Field(default=5000, le=60000)
    timeout_ms: PosInt = Field(default=10000, le=120000)

    @field_validator("exchange_id")
    @classmethod
    def _exchange(cls, v: str) -> str:
        if v not in CCXT_EXCHANGES:
            raise ValueError(f"{v!r} is not supported; supported: {', '.join(CCXT_EXCHANGES)}")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
                raise ValueError("must be http://HOST:PORT (or https://), or null")
            if parts.username or parts.password:
                raise ValueError("must not carry credentials: use api_key_env / api_secret_env")
        return v


def default_venues() -> dict[str, VenueEntry]:
    return {"binanceusdm": VenueEntry()}
