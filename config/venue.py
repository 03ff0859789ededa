"""The ``exchange`` section: which broker to trade at, and the simulated exchange's behaviour.

The simulated-exchange keys carry the names ``exchange/config.py`` uses, so
:meth:`ExchangeConfig.sim_settings` feeds ``ExchangeConfig.from_dict`` there
directly and a scenario's ``exchange:`` block uses the same words. Named
``venue`` to keep ``config.venue`` apart from the ``exchange`` package.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from pydantic import field_validator

from config.types import Dec, EnvName, Ident, NonNegDec, NonNegFloat, PosDec, PosInt, Section

#: ExchangeConfig keys that configure the simulated exchange (exchange/config.py names).
SIM_KEYS = ("latency_ms", "latency_jitter_ms", "cancel_ack_delay_ms", "partial_fills",
            "partial_fill_interval_ms", "maker_fee_bps", "taker_fee_bps", "limit_by_quote_size",
            "starting_cash", "quote_currency")


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
