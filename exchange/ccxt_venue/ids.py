"""Client order ids at the venue: ours, unchanged, when the venue's rule allows it.

Binance (USDⓈ-M futures) accepts ``newClientOrderId`` / ``clientAlgoId``
matching ``^[.A-Z:/a-z0-9_-]{1,36}$``. Tradewarden's ids are
``<account>-<store id>-<n>`` (letters, digits, ``-``), so the mapping is the
identity: deterministic and trivially reversible, which is what recovery
needs (it looks an order up at the venue by the id in its store, and reads
ours back from the venue's reports). An id the rule refuses is never
rewritten into something else (a lossy rewrite could collide, and the venue's
reports would then name an order we cannot find): the adapter refuses the
order before it leaves, and the config check keeps the account name short
enough that this cannot happen with ids the runtime makes.
"""

from __future__ import annotations

import re

#: Binance's rule for client order ids (futures REST docs, ``newClientOrderId``)
BINANCE_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
MAX_LEN = 36
#: the longest counter part an id needs room for (``-`` + 12 digits)
COUNTER_ROOM = 13
STORE_ID_LEN = 8


class ClientIdError(ValueError):
    """A client order id the venue would refuse."""


def venue_client_id(client_order_id: str) -> str:
    """The id the venue knows our order by (the identity, or an error)."""
    if not BINANCE_CLIENT_ID.match(client_order_id):
        raise ClientIdError(f"client order id {client_order_id!r} breaks the venue's rule "
                            f"{BINANCE_CLIENT_ID.pattern}")
    return client_order_id


def our_client_id(venue_id: str) -> str:
    """Our id from the venue's (the inverse of :func:`venue_client_id`)."""
    return venue_id


def max_account_len() -> int:
    """The longest account name whose ids ``<account>-<store id>-<n>`` still fit."""
    return MAX_LEN - 1 - STORE_ID_LEN - COUNTER_ROOM
