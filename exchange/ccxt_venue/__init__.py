"""The ccxt venue adapter: real venues behind the broker adapter protocol.

First venue: Binance USDⓈ-M futures (``binanceusdm``). Small modules, one idea
each: ``adapter`` (the BrokerAdapter: loop thread, dispatch; it owns the
parts below), ``streams`` (connection, user data, keep-alive, market
streams), ``order_commands`` (submit, cancel, the lookup of an order whose
answer was lost), ``venue_calls`` (the ccxt object, request budget, error
mapping), ``tasks`` (loop tasks and their wire-ledger count, per-order turns),
``client`` (ccxt's exchange with its stream messages routed to the adapter),
``orders`` (SubmitOrder -> create_order arguments), ``events`` (venue reports
-> protocol events, once each), ``errors`` (what an exception means for an
order), ``weights`` (request-weight budget), ``queries`` (snapshot queries, fills paging),
``markets`` (instrument rules as data), ``ids`` (client order ids),
``settings``, ``start`` (checks before a run trades), ``venue_config`` (a
config ``venues`` entry -> checked settings for ``run --venue``).

Importing this package imports neither ccxt nor anything with side effects
(rule 14); ccxt is loaded when an adapter first connects.
"""

from __future__ import annotations

__all__ = ["CcxtVenueAdapter", "VenueSettings"]


def __getattr__(name: str) -> object:
    if name == "CcxtVenueAdapter":
        from exchange.ccxt_venue.adapter import CcxtVenueAdapter

        return CcxtVenueAdapter
    if name == "VenueSettings":
        from exchange.ccxt_venue.settings import VenueSettings

        return VenueSettings
    raise AttributeError(name)
