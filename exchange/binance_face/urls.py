"""Where to point an unmodified ccxt ``binanceusdm`` at the face.

ccxt builds every request from ``exchange.urls['api'][<api name>] + '/' +
path``; the face serves the same paths under the same prefixes on one
loopback port, so overriding the base URLs is enough (no ccxt code changes).
The set below is the minimal one ccxt's USDⓈ-M code paths use (REST: the
``fapi*`` families; streams: ``ws.linear``, from which ccxt derives
``/public/ws``, ``/market/ws`` and ``/private/ws?listenKey=`` itself).

Usage (what the ccxt adapter and the tests do)::

    ex = ccxt.pro.binanceusdm({"apiKey": k, "secret": s, "enableRateLimit": False,
                               "options": CCXT_OPTIONS})
    apply_urls(ex, "127.0.0.1", port)
"""

from __future__ import annotations

from typing import Any

#: ccxt options that keep it on the endpoints the face serves (one-way
#: futures; no spot currency list, no warning for open orders without symbol).
CCXT_OPTIONS: dict[str, Any] = {
    "defaultType": "future",
    "fetchMarkets": {"types": ["linear"]},
    "fetchCurrencies": False,
    "warnOnFetchOpenOrdersWithoutSymbol": False,
}


def ccxt_urls(host: str, port: int) -> dict[str, Any]:
    """The entries of ``exchange.urls['api']`` to override (see :func:`apply_urls`)."""
    base = f"http://{host}:{port}"
    return {
        "fapiPublic": f"{base}/fapi/v1",
        "fapiPublicV2": f"{base}/fapi/v2",
        "fapiPublicV3": f"{base}/fapi/v3",
        "fapiPrivate": f"{base}/fapi/v1",
        "fapiPrivateV2": f"{base}/fapi/v2",
        "fapiPrivateV3": f"{base}/fapi/v3",
        "fapiData": f"{base}/futures/data",
        "ws": {"linear": f"ws://{host}:{port}/ws", "future": f"ws://{host}:{port}/ws"},
    }


def apply_urls(exchange: Any, host: str, port: int) -> None:
    """Point ``exchange`` (a ccxt binanceusdm, REST or pro) at the face.

    Updates ``urls['api']`` in place, keeping the entries ccxt has for other
    market types (its code reads some of them, e.g. ``ws['ws-api']``)."""
    api = exchange.urls["api"]
    new = ccxt_urls(host, port)
    ws = new.pop("ws")
    api.update(new)
    if isinstance(api.get("ws"), dict):
        api["ws"].update(ws)
    else:
        api["ws"] = ws
