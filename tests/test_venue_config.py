"""The ``venues`` config section and ``run --venue`` start checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_config
from exchange.ccxt_venue.venue_config import VenueStartError, endpoint_urls, prepare_venue


def test_defaults_are_a_testnet_binance_entry_with_env_names_only() -> None:
    v = load_config().venues["binanceusdm"]
    assert (v.kind, v.exchange_id, v.mode) == ("ccxt", "binanceusdm", "testnet")
    assert (v.api_key_env, v.api_secret_env) == ("TW_BINANCE_API_KEY", "TW_BINANCE_API_SECRET")
    assert v.base_url is None


@pytest.mark.parametrize("entry, key, words", [
    ({"exchange_id": "kraken"}, "exchange_id", "not supported"),
    ({"mode": "paper"}, "mode", "testnet"),
    ({"kind": "ib"}, "kind", "ccxt"),
    ({"api_key_env": "my-actual-key-abc123"}, "api_key_env", "NAME of an environment variable"),
    ({"base_url": "ftp://x:1"}, "base_url", "http://HOST:PORT"),
    ({"base_url": "http://user:pw@127.0.0.1:1"}, "base_url", "credentials"),
    ({"recv_window_ms": 90000}, "recv_window_ms", "60000"),
    ({"colour": "red"}, "colour", "unknown key"),
])
def test_bad_venue_entries_are_clear_errors(tmp_path: Path, entry: dict, key: str,
                                             words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"venues": {"binanceusdm": entry}})
    text = str(info.value)
    assert f"venues.binanceusdm.{key}" in text and words in text, text


def test_start_refusals_name_what_to_change(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(overrides={"venues": {"prod": {"mode": "live"}}})
    with pytest.raises(VenueStartError, match="--live"):
        prepare_venue(cfg, "prod", live=False)
    with pytest.raises(VenueStartError, match="configured: binanceusdm, prod"):
        prepare_venue(cfg, "nope", live=False)
    with pytest.raises(VenueStartError, match="--exchange"):
        prepare_venue(cfg, "binanceusdm", live=False, exchange_url="ws://127.0.0.1:1")
    monkeypatch.delenv("TW_BINANCE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="TW_BINANCE_API_KEY"):
        prepare_venue(cfg, "binanceusdm", live=False)
    long_acct = load_config(overrides={"exchange": {"account": "a-very-long-account"}})
    with pytest.raises(VenueStartError, match="36"):
        prepare_venue(long_acct, "binanceusdm", live=False)


def test_base_url_points_every_endpoint_at_it() -> None:
    urls = endpoint_urls("https://10.0.0.5:9443")
    assert urls["fapiPrivate"] == "https://10.0.0.5:9443/fapi/v1"
    assert urls["ws"]["linear"] == "wss://10.0.0.5:9443/ws"
