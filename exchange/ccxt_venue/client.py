"""The ccxt exchange object, with its stream messages routed to the adapter.

ccxt.pro's own handlers fold user-data reports into caches keyed by order id
and hand back the latest state of each order: two reports of one order that
arrive between two ``watch_orders`` calls become one, and the first one's
trade id is gone. The adapter needs every report, in order, as the venue sent
it, so :class:`HookedBinanceUsdm` overrides ``handle_message`` for the events
it maps (order and algo updates, book tickers, listen-key expiry) and passes
everything else (subscription answers, pings) to ccxt. The ``watch_*`` calls
still open, authenticate and keep alive the connections (listen key created
with POST and kept alive with PUT every ``listenKeyRefreshRate`` by ccxt);
connection opens and closes are reported to the adapter through the hooks
ccxt provides for them.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

#: a scenario harness's wire-ledger token for the requests of the current task
#: (exchange.virtual_wire), sent in ``X-TW-Wire``; None (live): no header
WIRE_TOKEN: ContextVar[int | None] = ContextVar("tw_wire_token", default=None)


class StreamListener(Protocol):
    def on_stream_message(self, kind: str, message: dict[str, Any]) -> None: ...

    def on_ws_connected(self, url: str) -> None: ...

    def on_ws_closed(self, url: str, error: Any) -> None: ...

    # optional: ``on_stream_reply(message)``, a stream's answer to a (un)subscription


_ROUTED = {"ORDER_TRADE_UPDATE": "order", "ALGO_UPDATE": "algo", "bookTicker": "book",
           "listenKeyExpired": "listen_key_expired",
           # positions and balances come from the reconciler's polls; ccxt's own
           # handler would start REST position snapshots behind the budget's back
           "ACCOUNT_UPDATE": "ignore", "MARGIN_CALL": "ignore",
           "ACCOUNT_CONFIG_UPDATE": "ignore", "TRADE_LITE": "ignore"}


def exchange_class() -> type:
    """``HookedBinanceUsdm`` (built on first use: importing ccxt.pro is slow)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build()
    return _CLASS


_CLASS: type | None = None


def _build() -> type:
    import ccxt.pro as ccxtpro

    class HookedBinanceUsdm(ccxtpro.binanceusdm):
        listener: StreamListener | None = None

        def handle_message(self, client: Any, message: Any) -> None:
            if isinstance(message, dict):
                event = message.get("e")
                kind = _ROUTED.get(event) if isinstance(event, str) else None
                if kind is None and event is None and "b" in message and "a" in message \
                        and "s" in message:
                    kind = "book"  # the real-time bookTicker may come without "e"
                if kind is not None and self.listener is not None:
                    self.listener.on_stream_message(kind, message)
                    return
            super().handle_message(client, message)
            if isinstance(message, dict) and "result" in message and "id" in message:
                reply = getattr(self.listener, "on_stream_reply", None)
                if reply is not None:
                    reply(message)

        def on_connected(self, client: Any, message: Any = None) -> None:
            super().on_connected(client, message)
            if self.listener is not None:
                self.listener.on_ws_connected(client.url)

        def on_close(self, client: Any, error: Any) -> None:
            super().on_close(client, error)
            if self.listener is not None:
                self.listener.on_ws_closed(client.url, error)

        def on_error(self, client: Any, error: Any) -> None:
            super().on_error(client, error)
            if self.listener is not None:
                self.listener.on_ws_closed(client.url, error)

        async def fetch(self, url: str, method: str = "GET", headers: Any = None,
                        body: Any = None) -> Any:
            token = WIRE_TOKEN.get()
            if token is not None:
                from exchange.virtual_wire import WireLedger

                headers = {**(headers or {}), WireLedger.HEADER: str(token)}
            return await super().fetch(url, method, headers, body)

        def listen_key(self) -> str | None:
            for value in self.options.values():
                if isinstance(value, dict) and isinstance(value.get("listenKey"), str):
                    return str(value["listenKey"])
            return None

        def forget_listen_key(self) -> None:
            """Make the next authenticate POST for a listen key (a new session)."""
            for value in self.options.values():
                if isinstance(value, dict) and "listenKey" in value:
                    value["listenKey"] = None
                    value["lastAuthenticatedTime"] = 0

    return HookedBinanceUsdm


def make_exchange(*, api_key: str, api_secret: str, testnet: bool, urls: dict[str, Any] | None,
                  recv_window_ms: int, timeout_ms: int, options: dict[str, Any] | None = None,
                  enable_rate_limit: bool = True, close_wait_ms: int | None = None) -> Any:
    """A configured ``HookedBinanceUsdm`` (call on the adapter's loop thread)."""
    cls = exchange_class()
    opts: dict[str, Any] = {
        "recvWindow": recv_window_ms,
        "adjustForTimeDifference": True,     # sign with the venue's clock (-1021)
        "warnOnFetchOpenOrdersWithoutSymbol": False,
        "defaultType": "future",
        "fetchMarkets": {"types": ["linear"]},
        "fetchCurrencies": False,            # spot wallet endpoints: not needed, not keyed
        # watch_orders would otherwise start REST position/balance snapshots of
        # its own: requests the adapter's budget never sees (the reconciler polls)
        "watchPositions": {"fetchPositionsSnapshot": False, "awaitPositionsSnapshot": False},
        "watchBalance": {"fetchBalanceSnapshot": False, "awaitBalanceSnapshot": False},
    }
    opts.update(options or {})
    extra: dict[str, Any] = {} if close_wait_ms is None else {"timeout_on_exit": close_wait_ms}
    ex = cls({"apiKey": api_key, "secret": api_secret, "enableRateLimit": enable_rate_limit,
              "timeout": timeout_ms, "options": opts, **extra})
    if testnet and not urls:
        ex.set_sandbox_mode(True)
    if urls:
        api = ex.urls["api"]
        for key, value in dict(urls.get("api", urls)).items():
            if isinstance(value, dict) and isinstance(api.get(key), dict):
                api[key].update(value)  # keep the ws entries ccxt has for other types
            else:
                api[key] = value
    return ex
