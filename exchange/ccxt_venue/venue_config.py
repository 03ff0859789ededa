"""``run --venue NAME``: from the config's ``venues`` entry to a checked venue.

The one place that turns a venue entry into adapter settings: the keys are
read from the environment variables the entry names (never from the file),
a live venue needs ``--live``, and the venue is asked, before anything
starts, for its markets (the instrument rules the risk gate enforces) and
the account's position mode, which must match ``risk.hedging_mode`` or the
run does not start (exit 2) with what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config.secrets import read_secret


class VenueStartError(Exception):
    """The run may not start at this venue; the message says what to change."""


@dataclass
class PreparedVenue:
    name: str
    settings: Any          # exchange.ccxt_venue.settings.VenueSettings (secrets inside)
    rules: dict[str, dict[str, str]]
    mode: str
    base_url: str | None

    def label(self) -> str:
        where = self.base_url or ("testnet" if self.mode == "testnet" else "LIVE")
        return f"{self.name} ({self.settings.exchange_id}, {where})"

    def describe(self) -> dict[str, Any]:
        """For run.json: which venue, never how to log in."""
        return {"name": self.name, "exchange_id": self.settings.exchange_id, "mode": self.mode,
                "base_url": self.base_url, "account": self.settings.account}


def endpoint_urls(base_url: str) -> dict[str, Any]:
    """ccxt url overrides for a Binance-compatible endpoint at ``base_url``."""
    from exchange.binance_face.urls import ccxt_urls

    parts = urlsplit(base_url)
    urls = ccxt_urls(parts.hostname or "127.0.0.1", int(parts.port or 0))
    if parts.scheme == "https":
        def secure(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: secure(x) for k, x in v.items()}
            return v.replace("http://", "https://").replace("ws://", "wss://")
        urls = secure(urls)
    return urls


def prepare_venue(cfg: Any, name: str, *, live: bool, exchange_url: str | None = None,
                  preflight_timeout_s: float = 30.0) -> PreparedVenue:
    from exchange.ccxt_venue.ids import max_account_len
    from exchange.ccxt_venue.settings import VenueSettings
    from exchange.ccxt_venue.start import StartRefused, check_start, preflight

    if exchange_url:
        raise VenueStartError("--venue and --exchange name two different exchanges; use one")
    entry = cfg.venues.get(name)
    if entry is None:
        known = ", ".join(sorted(cfg.venues)) or "none"
        raise VenueStartError(f"--venue {name}: no such entry in the config's venues section "
                              f"(configured: {known})")
    if entry.mode == "live" and not live:
        raise VenueStartError(f"venue {name} is live (real money): pass --live to trade it, or "
                              f"set venues.{name}.mode: testnet")
    account = cfg.exchange.account
    if len(account) > max_account_len():
        raise VenueStartError(f"exchange.account {account!r} is longer than {max_account_len()} "
                              "characters: client order ids would not fit the venue's 36")
    key = read_secret(entry.api_key_env, f"venues.{name}.api_key_env")
    secret = read_secret(entry.api_secret_env, f"venues.{name}.api_secret_env")
    urls = dict(entry.urls)
    if entry.base_url:
        urls = {**endpoint_urls(entry.base_url), **urls}
    hedge = cfg.risk.hedging_enabled(account)
    settings = VenueSettings(exchange_id=entry.exchange_id, api_key=key, api_secret=secret,
                             testnet=entry.mode == "testnet", urls=urls or None, account=account,
                             hedge_mode=hedge, recv_window_ms=entry.recv_window_ms,
                             timeout_ms=entry.timeout_ms)
    symbols = list(cfg.market.symbols)
    try:
        pre = preflight(settings, symbols, timeout=preflight_timeout_s)
        check_start(pre, hedge_mode=hedge, account=account, exchange_id=entry.exchange_id)
    except StartRefused as exc:
        raise VenueStartError(f"venue {name}: {exc}") from None
    return PreparedVenue(name, settings, pre.rules, entry.mode, entry.base_url)
