"""Binance's integer ids for the engine's string ids.

The engine names orders ``<prefix><epoch>-O<n>`` and fills
``<prefix><epoch>-F<n>``; Binance's ``orderId``/``algoId`` and trade ``id``
are integers. The mapping is arithmetic (``epoch * 10**9 + n``), so it needs
no table, survives a restart of the face on the same engine, and keeps the
engine's order: ids only grow, which is what ``fromId`` paging relies on.
"""

from __future__ import annotations

import re

EPOCH_SPAN = 1_000_000_000
#: algo ids live above every order id (Binance's algo service numbers its own
#: orders): a conditional order has an ``algoId`` and, once triggered, the
#: ``orderId`` of the order it placed in the matching engine; both stay below
#: 2**53, so JavaScript clients read them exactly
ALGO_BASE = 4_000_000_000_000_000
_ID = re.compile(r"(\d+)-([OF])(\d+)$")


def numeric_id(engine_id: str) -> int:
    """``SIM3-O17`` -> 3000000017; ValueError for an id of another shape."""
    m = _ID.search(engine_id)
    if m is None:
        raise ValueError(f"not an engine order/fill id: {engine_id!r}")
    return int(m.group(1)) * EPOCH_SPAN + int(m.group(3))


def algo_id(engine_id: str) -> int:
    """The ``algoId`` of a conditional order (its engine order's id + ALGO_BASE)."""
    return ALGO_BASE + numeric_id(engine_id)
