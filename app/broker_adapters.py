"""Which broker adapter a runtime talks through: factories ``sink -> adapter``.

One place decides, from a :class:`~app.launcher.LaunchSpec`, how the gateway
reaches the exchange (a real venue through ccxt, the in-process simulated
venue actor, or a WebSocket exchange), and how the end-of-run check asks that
exchange for its positions once the tree has stopped
(``exchange.position_probe``). A new venue kind adds its adapter in both
functions and gets the gateway and the end-of-run positions check with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.launcher import LaunchSpec


def gateway_adapter_factory(spec: LaunchSpec, account: str, system: Any) -> Any:
    """The gateway's adapter factory: ccxt for a real venue, the in-process
    adapter (through ``system``'s ``venue`` actor) for the embedded exchange,
    a WebSocket client for ``spec.exchange_url``."""
    url = spec.exchange_url
    venue, clock, wire = spec.venue, spec.clock, spec.wire
    if venue is not None:
        from exchange.ccxt_venue.adapter import CcxtVenueAdapter

        def ccxt(sink: Any) -> Any:
            return CcxtVenueAdapter(venue, sink, name=f"ccxt-{venue.exchange_id}",
                                    now=clock.now, wire=wire)
        return ccxt
    if url is None:
        from exchange.inprocess import InProcessAdapter

        def in_process(sink: Any) -> Any:
            return InProcessAdapter(system, "venue", "gateway", sink, account=account)
        return in_process
    from exchange.ws_client import WsClientAdapter

    def websocket(sink: Any) -> Any:
        return WsClientAdapter(url, sink, account=account)
    return websocket


def positions_adapter_factory(spec: LaunchSpec, account: str, engine: Any) -> Any:
    """A factory ``sink -> broker adapter`` for a question to the exchange once
    the tree has stopped: a new connection to a real venue or a WebSocket
    exchange, or the embedded ``engine`` directly (its venue actor no longer
    drives it). None: there is no exchange to ask."""
    venue = spec.venue
    if venue is not None:
        from exchange.ccxt_venue.adapter import CcxtVenueAdapter

        def ccxt(sink: Any) -> Any:
            return CcxtVenueAdapter(venue, sink, name=f"final-positions-{venue.exchange_id}")
        return ccxt
    url = spec.exchange_url
    if url is not None:
        from exchange.ws_client import WsClientAdapter

        def websocket(sink: Any) -> Any:
            return WsClientAdapter(url, sink, name="final-positions", account=account)
        return websocket
    if engine is None:
        return None
    from exchange.direct import DirectAdapter

    def direct(sink: Any) -> Any:
        return DirectAdapter(engine, sink)
    return direct
