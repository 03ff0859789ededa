"""The ``exchange`` section: which broker to trade at, and the simulated exchange's behaviour.

The simulated-exchange keys carry the names ``exchange/config.py`` uses, so
:meth:`ExchangeConfig.sim_settings` feeds ``ExchangeConfig.from_dict`` there
directly and a scenario's ``exchange:`` block uses the same words. Named
``venue`` to keep ``config.venue`` apart from the ``exchange`` package.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from config.types import (Dec, EnvName, Ident, NonNegDec, NonNegFloat, NonNegInt, PosDec, PosInt,
                          Section)

#: ExchangeConfig keys that configure the simulated exchange (exchange/config.py names).
SIM_KEYS = ("latency_ms", "latency_jitter_ms", "cancel_ack_delay_ms", "partial_fills",
            "partial_fill_interval_ms", "maker_fee_bps", "taker_fee_bps", "limit_by_quote_size",
            "starting_cash", "quote_currency", "fill_history", "closed_orders",
            "closed_order_ids")


class ExchangeConfig(Section):
    """Which broker, and how the embedded simulated exchange behaves."""

    #: adapter name; "sim" is the simulated exchange
    venue: Ident = "sim"
    #: null: in-process simulated exchange; ws://host:port: a WebSocket exchange server
    url: str | None = None
    account: Ident = "default"
    api_key_env: EnvName | None = None
    api_secret_env: EnvName | None = None
    # simulated exchange behaviour (same names as the scenario `exchange:` keys)
    latency_ms: NonNegFloat = 1.0
    latency_jitter_ms: NonNegFloat = 0.0
    cancel_ack_delay_ms: NonNegFloat = 0.0
    #: every fill split into this many partial fills ...
    partial_fills: PosInt = 1
    #: ... this far apart
    partial_fill_interval_ms: NonNegFloat = 0.0
    #: may be negative (a maker rebate)
    maker_fee_bps: Dec = Decimal("1")
    taker_fee_bps: NonNegDec = Decimal("2")
    #: fills never exceed the quoted size at the touch
    limit_by_quote_size: bool = True
    starting_cash: PosDec = Decimal("1000000")
    quote_currency: Ident = "USDT"
    #: the simulated exchange's memory, bounded (exchange.retention): fills kept per
    #: account for ``QueryFills`` catch-up ...
    fill_history: PosInt = Field(default=10_000, le=10_000_000)
    #: ... closed orders whose full state is kept (queries, cancel answers) ...
    closed_orders: NonNegInt = Field(default=10_000, le=10_000_000)
    #: ... and, after that, whose final status is kept (duplicate-id refusals)
    closed_order_ids: NonNegInt = Field(default=100_000, le=100_000_000)

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
        """The simulated exchange's settings, for ``exchange.config.ExchangeConfig.from_dict``."""
        return {key: getattr(self, key) for key in SIM_KEYS}


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
